"""The one request path every connector client uses, and the one create-once loop.

Base URL, auth, timeouts, User-Agent, bounded tenacity retries on 408/429/5xx and
transport errors (honouring Retry-After), status -> error mapping and secret redaction
live here, so a connector client is a list of endpoints and nothing else. `create_once`
is the same retry policy around a create the platform cannot dedupe.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from crowdloop import __version__
from crowdloop.connectors.errors import (
    AlreadyExists,
    AuthError,
    ConnectorError,
    GarbledResponse,
    InvalidRequest,
    NotFound,
    RateLimited,
    TransientError,
)

logger = logging.getLogger("crowdloop.http")

USER_AGENT = f"crowdloop/{__version__}"
ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
_SECRET_QUERY = re.compile(r"(?i)((?:token|key|secret|password|signature)=)[^&\s]+")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    max_total_s: float = 120.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # A Retry-After (or a vendor's own wait hint, see `HttpSeam.rate_limit_wait`) larger
    # than this is not waited out: the call fails at once as RateLimited.
    max_retry_after_s: float = 120.0


# Reads a vendor-specific wait (seconds) out of a 429 response that carries no
# Retry-After header; None when the body says nothing usable.
RateLimitWait = Callable[[httpx.Response], float | None]


def client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The `timeout_s` and `retry_attempts` connector options as `get_client` overrides."""
    timeout_s = options.get("timeout_s")
    attempts = options.get("retry_attempts")
    return {
        "timeout_s": float(timeout_s) if timeout_s is not None else None,
        "retry": RetryPolicy(attempts=int(attempts)) if attempts is not None else RetryPolicy(),
    }


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove secret values (and secret-looking query params) from text bound for logs."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET_QUERY.sub(r"\1***", text)


def waits_out(policy: RetryPolicy, exc: BaseException) -> bool:
    """Whether a failed call is retried: transient errors are, except a rate limit whose
    announced wait is longer than the policy allows (an hourly or daily quota)."""
    if not isinstance(exc, TransientError):
        return False
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return exc.retry_after <= policy.max_retry_after_s
    return True


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after_s)
        backoff = policy.base_delay_s * 2 ** (state.attempt_number - 1)
        return float(min(backoff, policy.max_delay_s))

    return wait


def _retrying(
    policy: RetryPolicy,
    *,
    attempts: int,
    retry: Callable[[BaseException], bool],
    sleep: Callable[[float], None],
    before_sleep: Callable[[RetryCallState], None],
) -> Retrying:
    """The one tenacity policy: bounded attempts and total time, exponential backoff or
    the platform's announced wait, and only what `retry` accepts is tried again."""
    return Retrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(policy.max_total_s),
        wait=_wait(policy),
        retry=retry_if_exception(retry),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )


@dataclass
class HttpSeam:
    """A configured httpx client plus the retry and error mapping around each call."""

    connector: str
    base_url: str
    auth_headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    request_id_header: str = "x-request-id"
    requests_made: int = 0
    # The vendor's own wait for a 429 without Retry-After (e.g. Toloka's per-minute quota
    # body); the bounds of `retry` apply to it like to Retry-After.
    rate_limit_wait: RateLimitWait | None = None

    def __post_init__(self) -> None:
        self._secrets = tuple(v.split(" ", 1)[-1] for v in self.auth_headers.values())
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": USER_AGENT, **self.auth_headers},
            timeout=httpx.Timeout(self.timeout_s),
            transport=self.transport,
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add_secret(self, value: str) -> None:
        """Redact this value too (a token minted at run time, not in `auth_headers`)."""
        if value and value not in self._secrets:
            self._secrets = (*self._secrets, value)

    def close(self) -> None:
        self._client.close()

    def parse(self, model: type[ModelT], response: httpx.Response) -> ModelT:
        """Read a 2xx body into a wire model; a body we cannot read is a GarbledResponse."""
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise GarbledResponse(
                self.connector,
                f"{response.request.method} {response.request.url.path}: "
                f"unreadable {model.__name__}: {exc.errors()[0]['msg']}",
                request_id=response.headers.get(self.request_id_header),
            ) from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        ok_statuses: tuple[int, ...] = (),
        send_auth: bool = True,
    ) -> httpx.Response:
        """Send one request; retry transient failures when `retry` (keyed or read-only calls).

        `send_auth=False` leaves the auth headers off (a presigned upload URL on another
        host, which must not receive the API token)."""
        retryer = _retrying(
            self.retry,
            attempts=self.retry.attempts if retry else 1,
            retry=lambda exc: waits_out(self.retry, exc),
            sleep=self.sleep,
            before_sleep=self._log_retry,
        )
        response: httpx.Response = retryer(
            self._send, method, path, params, json, data, content, headers, ok_statuses, send_auth
        )
        return response

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s: retrying after %s (attempt %d)",
            self.connector,
            redact(str(exc), self._secrets),
            state.attempt_number,
        )

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        ok_statuses: tuple[int, ...],
        send_auth: bool = True,
    ) -> httpx.Response:
        self.requests_made += 1
        request = self._client.build_request(
            method, path, params=params, json=json, data=data, content=content, headers=headers
        )
        if not send_auth:
            for name in self.auth_headers:
                request.headers.pop(name, None)
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as exc:
            raise TransientError(self.connector, f"{method} {path}: timed out ({exc})") from exc
        except httpx.TransportError as exc:
            raise TransientError(
                self.connector, f"{method} {path}: transport error: {type(exc).__name__}"
            ) from exc
        if response.is_success or response.status_code in ok_statuses:
            return response
        raise self.error_for(response)

    def error_for(self, response: httpx.Response) -> ConnectorError:
        status = response.status_code
        request_id = response.headers.get(self.request_id_header)
        what = f"{response.request.method} {redact(response.request.url.path)}"
        detail = redact(response.text[:500], self._secrets)
        message = f"{what} -> HTTP {status}: {detail}"
        if status in (401, 403):
            return AuthError(self.connector, message, request_id=request_id)
        if status == 404:
            return NotFound(self.connector, message, request_id=request_id)
        if status == 409:
            return AlreadyExists(self.connector, message, request_id=request_id)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None and self.rate_limit_wait is not None:
                retry_after = self.rate_limit_wait(response)
            return RateLimited(
                self.connector, message, retry_after=retry_after, request_id=request_id
            )
        if status == 408 or status >= 500:
            return TransientError(self.connector, message, request_id=request_id)
        return InvalidRequest(self.connector, message, details=detail, request_id=request_id)


def create_once(
    seam: HttpSeam,
    what: str,
    create: Callable[[], T],
    find: Callable[[], T | None],
    *,
    attempts: int | None = None,
    find_first: bool = True,
    rate_limit_refused: bool = False,
) -> T:
    """Create an object the platform does not dedupe, at most once: find it by our key,
    else create it, and after a failure that may have happened anyway, reconcile.

    `create` must send its request once (`retry=False`: the seam would resend blindly);
    `find` looks the object up by the idempotency key it carries (None: not there).
    After a 5xx, a timeout or a transport error the object is looked up before anything
    is sent again, and returned if it is there. A 429 is looked up too, unless the vendor
    documents that a rate-limited request was not processed (`rate_limit_refused`, e.g.
    Toloka). The waits and bounds are the seam's `RetryPolicy`, as for every other call:
    backoff, or the announced wait; a quota longer than `max_retry_after_s` fails at once.
    `attempts` defaults to the policy's; `find_first=False` when the caller has just
    looked. A `find` that fails is not retried here (the seam has retried it already).
    """
    if find_first:
        found = find()
        if found is not None:
            return found
    create_failure: list[BaseException] = []

    def retried(exc: BaseException) -> bool:
        return bool(create_failure) and exc is create_failure[-1] and waits_out(seam.retry, exc)

    def log(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s: %s not confirmed (%s); retrying (attempt %d)",
            seam.connector,
            what,
            redact(str(exc), seam.secrets),
            state.attempt_number,
        )

    retryer = _retrying(
        seam.retry,
        attempts=attempts or seam.retry.attempts,
        retry=retried,
        sleep=seam.sleep,
        before_sleep=log,
    )
    for attempt in retryer:
        with attempt:
            try:
                return create()
            except TransientError as exc:
                create_failure.append(exc)
                if isinstance(exc, RateLimited) and rate_limit_refused:
                    raise
                found = find()
                if found is not None:
                    logger.info("%s: %s was created behind an error", seam.connector, what)
                    return found
                raise
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True
