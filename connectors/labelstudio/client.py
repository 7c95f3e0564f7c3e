"""A thin typed client for Label Studio's REST API: one method per endpoint, plus auth.

Every call goes through `HttpSeam` (retries, error mapping). Creates that Label Studio does
not dedupe (`POST /api/projects/`, `POST /api/projects/{id}/import`) are sent with
`retry=False`; the connector reconciles them by our key before sending again. Reads and
`PATCH` are safe to retry.

Auth (see the connector's module docstring for the sources):
- personal access token: a JWT refresh token. It is exchanged at `POST /api/token/refresh/`
  for an access token (5 minutes by default) sent as `Authorization: Bearer <access>`. The
  access token is renewed shortly before its `exp` claim and once more when the server
  answers 401 to an access token that is not brand new (clock skew, a restarted server).
  Label Studio answers an expired Bearer token with the same 401 as a missing one, so a 401
  to a token we have only just been given is reported at once as an auth failure.
- legacy token: `Authorization: Token <token>`, static (the organization must allow it).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.errors import GarbledResponse
from crowdloop.connectors.labelstudio.models import (
    ImportResult,
    ProjectCreate,
    ProjectPage,
    ProjectPatch,
    TaskImport,
    TaskPage,
    TokenRefreshed,
    WireProject,
)

REFRESH_PATH = "/api/token/refresh/"
# Renew an access token this long before it expires.
REFRESH_MARGIN_S = 30.0
# A 401 to an access token younger than this is a real auth failure, not an expiry.
FRESH_TOKEN_S = 60.0


def looks_like_jwt(token: str) -> bool:
    """True for a JWT (a personal access token), False for a legacy 40-hex token."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    header = _b64_json(parts[0])
    return isinstance(header, dict) and "alg" in header


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying it; None if absent."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    claims = _b64_json(parts[1])
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def _b64_json(segment: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


class AccessTokens:
    """Short-lived Bearer access tokens minted from a personal access token."""

    def __init__(
        self,
        seam: HttpSeam,
        personal_token: SecretStr,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seam = seam
        self.personal_token = personal_token
        seam.add_secret(personal_token.get_secret_value())
        self.clock = clock
        self.refreshes = 0
        self._access: str | None = None
        self._expires_at: float | None = None
        self._issued_at = 0.0

    def headers(self) -> dict[str, str]:
        stale = self._expires_at is not None and self.clock() >= self._expires_at - REFRESH_MARGIN_S
        if self._access is None or stale:
            self.refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def is_fresh(self) -> bool:
        return self._access is not None and self.clock() - self._issued_at < FRESH_TOKEN_S

    def refresh(self) -> None:
        # The refresh view authenticates by the body alone; no Authorization header is sent.
        response = self.seam.request(
            "POST", REFRESH_PATH, json={"refresh": self.personal_token.get_secret_value()}
        )
        try:
            access = TokenRefreshed.model_validate_json(response.content).access
        except ValidationError as exc:
            raise GarbledResponse(
                self.seam.connector, f"POST {REFRESH_PATH}: no access token in the answer"
            ) from exc
        self.seam.add_secret(access)
        self._access = access
        self._issued_at = self.clock()
        self._expires_at = jwt_expiry(access)
        self.refreshes += 1


class LabelStudioClient:
    def __init__(self, seam: HttpSeam, tokens: AccessTokens | None = None) -> None:
        self.seam = seam
        self.tokens = tokens  # None: the seam carries a static legacy `Token` header

    def close(self) -> None:
        self.seam.close()

    # --- the one request path -------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        retry: bool = True,
    ) -> httpx.Response:
        if self.tokens is None:
            return self.seam.request(method, path, params=params, json=json, retry=retry)
        headers = self.tokens.headers()
        fresh = self.tokens.is_fresh()
        response = self.seam.request(
            method, path, params=params, json=json, retry=retry, headers=headers, ok_statuses=(401,)
        )
        if response.status_code != 401:
            return response
        if fresh:
            raise self.seam.error_for(response)
        # An access token that has been around a while: it may have expired under us.
        # Label Studio checks credentials before doing anything, so resending is safe.
        self.tokens.refresh()
        response = self.seam.request(
            method,
            path,
            params=params,
            json=json,
            retry=retry,
            headers=self.tokens.headers(),
            ok_statuses=(401,),
        )
        if response.status_code == 401:
            raise self.seam.error_for(response)
        return response

    # --- projects ---------------------------------------------------------------------------

    def create_project(self, body: ProjectCreate) -> WireProject:
        """`POST /api/projects/`: not deduplicated by Label Studio, so never retried here."""
        response = self._request(
            "POST", "/api/projects/", json=body.model_dump(mode="json"), retry=False
        )
        return self.seam.parse(WireProject, response)

    def iter_projects(self, *, title: str, page_size: int = 100) -> Iterator[WireProject]:
        """`GET /api/projects/?title=..`: projects whose title contains `title` (icontains)."""
        page = 1
        while True:
            response = self._request(
                "GET",
                "/api/projects/",
                params={"title": title, "page": page, "page_size": page_size},
            )
            parsed = self.seam.parse(ProjectPage, response)
            yield from parsed.results
            if not parsed.next or not parsed.results:
                return
            page += 1

    def get_project(self, project_id: str) -> WireProject:
        return self.seam.parse(WireProject, self._request("GET", f"/api/projects/{project_id}/"))

    def patch_project(self, project_id: str, body: ProjectPatch) -> WireProject:
        response = self._request(
            "PATCH",
            f"/api/projects/{project_id}/",
            json=body.model_dump(mode="json", exclude_none=True),
        )
        return self.seam.parse(WireProject, response)

    # --- tasks ------------------------------------------------------------------------------

    def import_tasks(self, project_id: str, tasks: Sequence[TaskImport]) -> ImportResult:
        """`POST /api/projects/{id}/import`: Label Studio imports duplicates, so never retried."""
        response = self._request(
            "POST",
            f"/api/projects/{project_id}/import",
            params={"return_task_ids": "true"},
            json=[t.model_dump(mode="json") for t in tasks],
            retry=False,
        )
        return self.seam.parse(ImportResult, response)

    def iter_task_pages(
        self, project_id: str, *, page_size: int, with_annotations: bool
    ) -> Iterator[tuple[TaskPage, httpx.Response]]:
        """Every page of `GET /api/tasks/?project=..` (page numbers, until `total` is read)."""
        page = 1
        while True:
            params: dict[str, str | int] = {
                "project": project_id,
                "page": page,
                "page_size": page_size,
                "fields": "all" if with_annotations else "task_only",
            }
            response = self._request("GET", "/api/tasks/", params=params)
            parsed = self.seam.parse(TaskPage, response)
            yield parsed, response
            if not parsed.tasks or page * page_size >= parsed.total:
                return
            page += 1
