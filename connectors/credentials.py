"""One credentials base for every connector: a Prefect block, or the environment.

A connector's `credentials.py` declares its fields (secrets as `SecretStr`), which
environment variable fills each one, the `Authorization` header and the client class;
`from_env`, `get_client` and the "block or environment" choice of `from_config` live here.

This module imports Prefect. Import it (and a connector's `credentials.py`) only inside
`from_config`, never at the top of a connector module: listing the installed connectors
(`crowdloop connectors`) and checking a campaign's options then load no Prefect, which
would cost them seconds (tests/connectors/test_kit.py holds this).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, cast

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, ValidationError

from crowdloop.connectors._http import HttpSeam, RateLimitWait, RetryPolicy

ClientT = TypeVar("ClientT")

# The per-request timeout every credentials block carries (its last field).
TIMEOUT_S = Field(default=30.0, gt=0, description="Per-request timeout in seconds")


class ConnectorCredentials(CredentialsBlock, Generic[ClientT]):
    """Base of every connector's credentials block; `ClientT` is what `get_client` returns.

    A subclass sets `connector_name`, `env_vars` (field -> environment variable; a field
    without a default must be set there), `client_class` (built on the shared `HttpSeam`)
    and `auth_headers()`; `api_root()` when the base URL is not simply `base_url`, and
    `make_client()` when the client needs more than the seam.
    """

    connector_name: ClassVar[str]
    env_vars: ClassVar[Mapping[str, str]]
    # None: `get_client` returns the seam itself (a connector small enough to call
    # `seam.request` directly, like the worked example in docs/connectors.md).
    client_class: ClassVar[type[Any] | None] = None
    # A vendor's own wait for a 429 without Retry-After (see `HttpSeam.rate_limit_wait`).
    rate_limit_wait: ClassVar[RateLimitWait | None] = None

    if TYPE_CHECKING:
        # Each subclass declares `timeout_s: float = TIMEOUT_S` as its last field: a field
        # declared here would come first in the block's form and change its schema.
        timeout_s: float

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "connector_name" in cls.__dict__ and "timeout_s" not in cls.model_fields:
            raise TypeError(f"{cls.__name__}: declare `timeout_s: float = TIMEOUT_S` last")

    @classmethod
    def from_env(cls) -> Self:
        """Read the declared fields from the environment (unset or empty: the default)."""
        values = {
            name: os.environ[var] for name, var in cls.env_vars.items() if os.environ.get(var)
        }
        missing = [
            var
            for name, var in cls.env_vars.items()
            if name not in values and cls.model_fields[name].is_required()
        ]
        if missing:
            raise RuntimeError(
                f"{cls.connector_name} credentials: no credentials block named and "
                f"{' and '.join(missing)} not set in the environment"
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            var = (
                cls.env_vars.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else ""
            )
            # pydantic's message quotes the rejected input: keep a secret's value out of it.
            raise RuntimeError(f"{cls.connector_name} credentials: {var}: {error['msg']}") from None

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate every request (redacted from logs by the seam)."""
        raise NotImplementedError

    def api_root(self) -> str:
        return str(getattr(self, "base_url", "")).rstrip("/")

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        base_url: str | None = None,
        **extra: Any,
    ) -> ClientT:
        """A client on this endpoint; the keyword overrides exist for tests and tuning
        (`extra` goes to `make_client`)."""
        seam = HttpSeam(
            connector=self.connector_name,
            base_url=(base_url or self.api_root()).rstrip("/"),
            auth_headers=self.auth_headers(),
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
            rate_limit_wait=type(self).rate_limit_wait,
        )
        if sleep is not None:
            seam.sleep = sleep
        return self.make_client(seam, **extra)

    def make_client(self, seam: HttpSeam, **extra: Any) -> ClientT:
        """The connector's client on the configured seam (override for more than that)."""
        made = type(self).client_class
        return cast(ClientT, seam if made is None else made(seam, **extra))


CredentialsT = TypeVar("CredentialsT", bound=ConnectorCredentials[Any])


def resolve_credentials(cls: type[CredentialsT], block: str | None) -> CredentialsT:
    """The named Prefect block of this type, or, when no block is named, the environment.

    `Block.load` is sync-compatible: called from sync code it returns the block."""
    if block:
        return cast(CredentialsT, cls.load(block))
    return cls.from_env()
