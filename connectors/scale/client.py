"""A thin typed client for Scale's v1 API: one method per endpoint, all through `HttpSeam`.

Every call here may be retried (`retry=True`, the seam's default): reads are safe; a
task create carries a `unique_id` and a batch create a unique `name`, so a repeat is
answered 409 (the connector then looks the object up) instead of creating twice; finalize,
cancel and audit converge on the same state when repeated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.errors import GarbledResponse
from crowdloop.connectors.scale.models import (
    AuditRequest,
    BatchCreate,
    ProjectCreate,
    TaskPage,
    TaskType,
    WireBatch,
    WireBatchStatus,
    WireTask,
)

API = "/v1"
MAX_PAGE = 100  # GET /v1/tasks: limit is 1..100
# unique_ids travel as repeated query parameters; keep each URL well below common limits.
MAX_LOOKUP_QUERY_CHARS = 3000

Params = Mapping[str, str | int | Sequence[str]]


def _name(value: str) -> str:
    """A project or batch name as one path segment (the SDK quotes them the same way)."""
    return quote(value, safe="")


class ScaleClient:
    def __init__(self, seam: HttpSeam) -> None:
        self.seam = seam

    def close(self) -> None:
        self.seam.close()

    # --- projects ------------------------------------------------------------------------

    def create_project(self, body: ProjectCreate) -> bool:
        """Create the project; False when one with this name exists already (409)."""
        response = self.seam.request(
            "POST", f"{API}/projects", json=body.model_dump(mode="json"), ok_statuses=(409,)
        )
        return response.status_code != 409

    def get_project(self, name: str) -> dict[str, Any]:
        """GET /v1/projects/{name} (the SDK's `get_project`): read-only, for `check`."""
        response = self.seam.request("GET", f"{API}/projects/{name}")
        body = response.json() if response.content else {}
        return body if isinstance(body, dict) else {}

    # --- batches -------------------------------------------------------------------------

    def create_batch(self, body: BatchCreate) -> WireBatch:
        """Raises AlreadyExists (409) when the name is taken."""
        response = self.seam.request(
            "POST", f"{API}/batches", json=body.model_dump(mode="json", exclude_none=True)
        )
        return self.seam.parse(WireBatch, response)

    def get_batch(self, name: str) -> WireBatch:
        return self.seam.parse(WireBatch, self.seam.request("GET", f"{API}/batches/{_name(name)}"))

    def finalize_batch(self, name: str) -> WireBatch:
        response = self.seam.request("POST", f"{API}/batches/{_name(name)}/finalize")
        return self.seam.parse(WireBatch, response)

    def batch_status(self, name: str) -> WireBatchStatus:
        response = self.seam.request("GET", f"{API}/batches/{_name(name)}/status")
        return self.seam.parse(WireBatchStatus, response)

    # --- tasks ---------------------------------------------------------------------------

    def create_task(self, task_type: TaskType, body: BaseModel) -> WireTask:
        """Raises AlreadyExists (409) when the body's unique_id is in use."""
        response = self.seam.request(
            "POST", f"{API}/task/{task_type}", json=body.model_dump(mode="json", exclude_none=True)
        )
        return self.seam.parse(WireTask, response)

    def get_task(self, task_id: str) -> WireTask:
        return self.seam.parse(WireTask, self.seam.request("GET", f"{API}/task/{_name(task_id)}"))

    def cancel_task(self, task_id: str) -> WireTask:
        # unique_id is kept (no clear_unique_id): a rerun must still find the task by it.
        response = self.seam.request("POST", f"{API}/task/{_name(task_id)}/cancel")
        return self.seam.parse(WireTask, response)

    def audit_task(self, task_id: str, body: AuditRequest) -> None:
        self.seam.request(
            "POST", f"{API}/task/{_name(task_id)}/audit", json=body.model_dump(mode="json")
        )

    def list_tasks(self, params: Params) -> TaskPage:
        """One page of GET /v1/tasks; list values become repeated query parameters."""
        query = {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in params.items()}
        response = self.seam.request("GET", f"{API}/tasks", params=query)
        return self.seam.parse(TaskPage, response)

    def iter_tasks(self, params: Params) -> Iterator[dict[str, Any]]:
        """Every task matching `params`, following next_token to the end."""
        token: str | None = None
        while True:
            page = self.list_tasks({**params, "next_token": token} if token else params)
            yield from page.docs
            if not page.has_more:
                return
            if not page.next_token:
                raise GarbledResponse(
                    self.seam.connector, "GET /v1/tasks: has_more without a next_token"
                )
            token = page.next_token

    def find_by_unique_ids(
        self, unique_ids: Sequence[str], *, batch: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """unique_id -> raw task for those of `unique_ids` that exist (optionally in `batch`)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunk(unique_ids):
            params: dict[str, str | int | Sequence[str]] = {"unique_id": chunk, "limit": MAX_PAGE}
            if batch is not None:
                params["batch"] = batch
            for raw in self.iter_tasks(params):
                uid = raw.get("unique_id")
                if isinstance(uid, str):
                    found[uid] = raw
        return found


def _chunk(values: Sequence[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for value in values:
        if chunk and (len(chunk) >= MAX_PAGE or size + len(value) > MAX_LOOKUP_QUERY_CHARS):
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += len(value) + len("&unique_id=")
    if chunk:
        yield chunk
