"""A thin typed client for Toloka API v1: one method per endpoint, all through `HttpSeam`.

Paths are relative to the API root (`https://toloka.dev/api`, sandbox
`https://sandbox.toloka.dev/api`). Which calls may be retried by the seam:

- reads (GET), PUT /v1/user-restrictions and PUT /v1/user-skills (both "sets"): always;
- POST /v1/tasks: yes, because every call carries an `operation_id` and Toloka performs an
  operation id once (a repeat answers OPERATION_ALREADY_EXISTS, which is read here as
  "fetch that operation");
- PATCH /v1/assignments/{id}: yes, setting a status twice is answered with a conflict the
  connector treats as done;
- POST /v1/pools/{id}/open|close: yes, a pool already in the wanted state answers 204;
- POST /v1/pools and POST /v1/skills: NO (`retry=False`): Toloka has no idempotency key
  for either, so the connector reconciles by looking the object up (pools by our key in
  their metadata, skills by name; see `create_once` in connectors/_http.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.errors import GarbledResponse
from crowdloop.connectors.toloka.models import (
    ANSWERED_STATUSES,
    AssignmentPage,
    AssignmentPatch,
    AssignmentState,
    OperationLogItem,
    PoolCreate,
    PoolPage,
    SkillCreate,
    SkillPage,
    TaskCreate,
    TaskPage,
    UserRestriction,
    UserSkillSet,
    WireError,
    WireOperation,
    WirePool,
    WireProject,
    WireRequester,
    WireSkill,
    WireUserSkill,
)

ModelT = TypeVar("ModelT", bound=BaseModel)
_LOG = TypeAdapter(list[OperationLogItem])

# A per-method quota 429 names its window in `payload.interval`; toloka-kit's TolokaRetry
# (src/client/primitives/retry.py, `seconds_to_wait`) waits 60 s for MIN, 3600 for HOUR,
# 86400 for DAY, and by default retries only MIN. The quotas themselves (e.g. 20 pool
# creations a minute, 100 a day) are listed under "Rate limiting" in the API reference
# (github.com/Toloka/docs en/api/reference/parts/api/info-description.md).
QUOTA_WAIT_S = {"MIN": 60.0, "HOUR": 3600.0, "DAY": 86400.0}


def quota_wait(response: httpx.Response) -> float | None:
    """The wait a Toloka quota 429 asks for, read from its error body (`HttpSeam` hook).

    The seam waits out MIN (60 s, within `RetryPolicy.max_retry_after_s`) and fails at
    once with RateLimited on HOUR / DAY, which are longer than the policy allows: what
    toloka-kit does by default.
    """
    try:
        body = response.json()
    except ValueError:
        return None
    payload = body.get("payload") if isinstance(body, dict) else None
    interval = payload.get("interval") if isinstance(payload, dict) else None
    return QUOTA_WAIT_S.get(interval) if isinstance(interval, str) else None


POOL_PAGE_MAX = 300  # GET /v1/pools `limit` maximum (toloka-kit find_pools)
TASK_PAGE_MAX = 100_000  # GET /v1/tasks and GET /v1/assignments `limit` maximum


class TolokaClient:
    def __init__(self, seam: HttpSeam) -> None:
        self.seam = seam

    def close(self) -> None:
        self.seam.close()

    # --- parsing ---------------------------------------------------------------------------

    def _garbled(
        self, response: httpx.Response, what: str, exc: ValidationError
    ) -> GarbledResponse:
        return GarbledResponse(
            self.seam.connector,
            f"{response.request.method} {response.request.url.path}: unreadable {what}: "
            f"{exc.errors()[0]['msg']}",
        )

    def _parse(self, model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._garbled(response, model.__name__, exc) from exc

    def _error(self, response: httpx.Response) -> WireError:
        try:
            return WireError.model_validate_json(response.content)
        except ValidationError:
            return WireError(code=f"HTTP_{response.status_code}", message=response.text[:300])

    # --- account (read-only; the first-contact check) -------------------------------------

    def get_requester(self) -> WireRequester:
        """GET /v1/requester: who the key belongs to and the balance (API reference tag
        `requester`; toloka-kit `get_requester`)."""
        return self._parse(WireRequester, self.seam.request("GET", "/v1/requester"))

    # --- projects --------------------------------------------------------------------------

    def get_project(self, project_id: str) -> WireProject:
        return self._parse(WireProject, self.seam.request("GET", f"/v1/projects/{project_id}"))

    # --- pools -----------------------------------------------------------------------------

    def create_pool(self, body: PoolCreate) -> WirePool:
        """POST /v1/pools, sent once: the caller reconciles a failure by looking it up."""
        response = self.seam.request(
            "POST", "/v1/pools", json=body.model_dump(mode="json"), retry=False
        )
        return self._parse(WirePool, response)

    def iter_pools(self, project_id: str, *, limit: int = POOL_PAGE_MAX) -> Iterator[WirePool]:
        """Every pool of the project (archived ones too), by ascending id."""
        id_gt: str | None = None
        while True:
            params: dict[str, str | int] = {"project_id": project_id, "sort": "id", "limit": limit}
            if id_gt is not None:
                params["id_gt"] = id_gt
            page = self._parse(PoolPage, self.seam.request("GET", "/v1/pools", params=params))
            yield from page.items
            if not page.has_more or not page.items:
                return
            id_gt = page.items[-1].id

    def get_pool(self, pool_id: str) -> WirePool:
        return self._parse(WirePool, self.seam.request("GET", f"/v1/pools/{pool_id}"))

    def open_pool(self, pool_id: str) -> WireOperation | WireError | None:
        """The opening operation; None if the pool is open already (204); the error body
        if Toloka refuses to open it (409, e.g. EMPTY_POOL)."""
        response = self.seam.request("POST", f"/v1/pools/{pool_id}/open", ok_statuses=(409,))
        if response.status_code == 409:
            return self._error(response)
        if response.status_code == 204:
            return None
        return self._parse(WireOperation, response)

    def close_pool(self, pool_id: str) -> WireOperation | None:
        """The closing operation; None if the pool is closed already (204)."""
        response = self.seam.request("POST", f"/v1/pools/{pool_id}/close")
        if response.status_code == 204:
            return None
        return self._parse(WireOperation, response)

    # --- operations ------------------------------------------------------------------------

    def get_operation(self, operation_id: str) -> WireOperation:
        return self._parse(
            WireOperation, self.seam.request("GET", f"/v1/operations/{operation_id}")
        )

    def get_operation_log(self, operation_id: str) -> list[OperationLogItem]:
        response = self.seam.request("GET", f"/v1/operations/{operation_id}/log")
        try:
            return _LOG.validate_json(response.content)
        except ValidationError as exc:
            raise self._garbled(response, "operation log", exc) from exc

    # --- tasks -----------------------------------------------------------------------------

    def create_tasks(
        self, tasks: Sequence[TaskCreate], *, operation_id: uuid.UUID, open_pool: bool
    ) -> WireOperation:
        """Start (or find, on a repeat of `operation_id`) the async task-creation operation."""
        response = self.seam.request(
            "POST",
            "/v1/tasks",
            params={
                "async_mode": "true",
                "allow_defaults": "false",
                "skip_invalid_items": "false",
                "open_pool": "true" if open_pool else "false",
                "operation_id": str(operation_id),
            },
            json=[t.model_dump(mode="json") for t in tasks],
            ok_statuses=(400, 409),
        )
        if response.status_code in (400, 409):
            if self._error(response).code == "OPERATION_ALREADY_EXISTS":
                return self.get_operation(str(operation_id))
            raise self.seam.error_for(response)
        return self._parse(WireOperation, response)

    def iter_task_pages(self, pool_id: str, *, limit: int) -> Iterator[TaskPage]:
        id_gt: str | None = None
        while True:
            params: dict[str, str | int] = {"pool_id": pool_id, "sort": "id", "limit": limit}
            if id_gt is not None:
                params["id_gt"] = id_gt
            page = self._parse(TaskPage, self.seam.request("GET", "/v1/tasks", params=params))
            yield page
            last_id = page.items[-1].get("id") if page.items else None
            if not page.has_more or not isinstance(last_id, str):
                return
            id_gt = last_id

    # --- assignments -----------------------------------------------------------------------

    def list_assignments(self, pool_id: str, *, limit: int, **filters: str) -> AssignmentPage:
        """One page of answered assignments (SUBMITTED, ACCEPTED, REJECTED) of the pool.

        `filters` are Toloka search parameters: `sort`, `id_gt`, `submitted_gt`,
        `submitted_gte`, `submitted_lte` (toloka-kit AssignmentSearchRequest).
        """
        params: dict[str, str | int] = {
            "pool_id": pool_id,
            "status": ",".join(ANSWERED_STATUSES),
            "limit": limit,
            **filters,
        }
        return self._parse(
            AssignmentPage, self.seam.request("GET", "/v1/assignments", params=params)
        )

    def get_assignment(self, assignment_id: str) -> AssignmentState:
        return self._parse(
            AssignmentState, self.seam.request("GET", f"/v1/assignments/{assignment_id}")
        )

    def patch_assignment(self, assignment_id: str, patch: AssignmentPatch) -> WireError | None:
        """Set an assignment's status; the error body if Toloka refuses (400/409)."""
        response = self.seam.request(
            "PATCH",
            f"/v1/assignments/{assignment_id}",
            json=patch.model_dump(mode="json"),
            ok_statuses=(400, 409),
        )
        if response.status_code in (400, 409):
            return self._error(response)
        return None

    # --- workers ---------------------------------------------------------------------------

    def set_user_restriction(self, body: UserRestriction) -> dict[str, Any]:
        response = self.seam.request(
            "PUT", "/v1/user-restrictions", json=body.model_dump(mode="json", exclude_none=True)
        )
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            data = {}
        return data

    # --- skills ----------------------------------------------------------------------------

    def iter_skills(self, name: str) -> Iterator[WireSkill]:
        """The requester's skills called `name`, by ascending id (get-skill-list.md:
        GET /v1/skills?name=&sort=id, then `id_gt` of the last one while `has_more`)."""
        id_gt: str | None = None
        while True:
            params: dict[str, str | int] = {"name": name, "sort": "id"}
            if id_gt is not None:
                params["id_gt"] = id_gt
            page = self._parse(SkillPage, self.seam.request("GET", "/v1/skills", params=params))
            yield from page.items
            if not page.has_more or not page.items:
                return
            id_gt = page.items[-1].id

    def create_skill(self, body: SkillCreate) -> WireSkill:
        """POST /v1/skills, sent once: the caller reconciles a failure by looking it up."""
        response = self.seam.request(
            "POST", "/v1/skills", json=body.model_dump(mode="json"), retry=False
        )
        return self._parse(WireSkill, response)

    def set_user_skill(self, body: UserSkillSet) -> WireUserSkill:
        """PUT /v1/user-skills: a set, so repeating it (or the seam retrying it) is harmless."""
        response = self.seam.request("PUT", "/v1/user-skills", json=body.model_dump(mode="json"))
        return self._parse(WireUserSkill, response)
