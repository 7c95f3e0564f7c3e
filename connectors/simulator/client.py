"""A thin typed client for the simulated marketplace: one method per endpoint.

Every call goes through `HttpSeam` (auth, retries, error mapping). All calls here are
safe to retry: creates are keyed, and open/close/review/block are idempotent on the
server, so `retry=True` throughout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.simulator.models import (
    REVIEW_REQUEST,
    TASKS_ADD,
    AssignmentPage,
    BlockRequest,
    PoolCreate,
    PoolList,
    PoolSummary,
    QualificationCreate,
    QualificationGranted,
    QualificationList,
    ReviewRequest,
    TaskList,
    TaskRef,
    TasksAdd,
    TasksAdded,
    WireMoney,
    WirePool,
    WireQualification,
)

API = "/api/v1"

# Task keys travel comma-joined in a query string; keep each URL far below the server's
# request-line limit.
MAX_KEYS_QUERY_CHARS = 3000

_JSON = {"content-type": "application/json"}


class SimulatorClient:
    def __init__(self, seam: HttpSeam) -> None:
        self.seam = seam

    def close(self) -> None:
        self.seam.close()

    # --- pools ---------------------------------------------------------------------------

    def create_pool(self, body: PoolCreate) -> tuple[WirePool, bool]:
        """The pool for `body.idempotency_key`, and whether this call created it."""
        # No qualification: the field is left out rather than sent as null.
        payload = body.model_dump(mode="json", exclude_none=True)
        response = self.seam.request("POST", f"{API}/pools", json=payload)
        return self.seam.parse(WirePool, response), response.status_code == 201

    def find_pools(self, idempotency_key: str) -> list[WirePool]:
        response = self.seam.request(
            "GET", f"{API}/pools", params={"idempotency_key": idempotency_key}
        )
        return self.seam.parse(PoolList, response).items

    def get_pool(self, pool_id: str) -> PoolSummary:
        return self.seam.parse(PoolSummary, self.seam.request("GET", f"{API}/pools/{pool_id}"))

    def open_pool(self, pool_id: str) -> WirePool:
        return self.seam.parse(WirePool, self.seam.request("POST", f"{API}/pools/{pool_id}/open"))

    def close_pool(self, pool_id: str, reason: str) -> WirePool:
        response = self.seam.request(
            "POST", f"{API}/pools/{pool_id}/close", json={"reason": reason}
        )
        return self.seam.parse(WirePool, response)

    def get_spend(self, pool_id: str) -> WireMoney:
        return self.seam.parse(WireMoney, self.seam.request("GET", f"{API}/pools/{pool_id}/spend"))

    # --- tasks ---------------------------------------------------------------------------

    def add_tasks(self, pool_id: str, body: TasksAdd) -> TasksAdded:
        # Serialised by pydantic in one pass, not dumped to dicts and re-encoded by
        # httpx's json.dumps: this body carries up to 500 task payloads.
        response = self.seam.request(
            "POST",
            f"{API}/pools/{pool_id}/tasks",
            content=TASKS_ADD.dump_json(body),
            headers=_JSON,
        )
        return self.seam.parse(TasksAdded, response)

    def find_tasks(self, pool_id: str, keys: Sequence[str]) -> list[TaskRef]:
        found: list[TaskRef] = []
        for chunk in _chunk_keys(keys):
            response = self.seam.request(
                "GET", f"{API}/pools/{pool_id}/tasks", params={"keys": ",".join(chunk)}
            )
            found.extend(self.seam.parse(TaskList, response).items)
        return found

    # --- assignments -----------------------------------------------------------------------

    def iter_assignment_pages(
        self, pool_id: str, *, cursor: str | None, limit: int
    ) -> Iterator[AssignmentPage]:
        """Pages after `cursor` until the server says there is no more (at least one page)."""
        while True:
            params: dict[str, str | int] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            response = self.seam.request("GET", f"{API}/pools/{pool_id}/assignments", params=params)
            page = self.seam.parse(AssignmentPage, response)
            yield page
            if not page.has_more or not page.items:
                return
            cursor = page.next_cursor

    def review(self, body: ReviewRequest) -> None:
        # Up to 500 decisions a request, serialised in one pass like `add_tasks`' body.
        self.seam.request(
            "POST",
            f"{API}/assignments/review",
            content=REVIEW_REQUEST.dump_json(body),
            headers=_JSON,
        )

    def block_worker(self, worker_id: str, body: BlockRequest) -> None:
        self.seam.request(
            "POST", f"{API}/workers/{worker_id}/block", json=body.model_dump(mode="json")
        )

    # --- qualifications --------------------------------------------------------------------

    def create_qualification(self, body: QualificationCreate) -> WireQualification:
        """Keyed by name on the server: a replay returns the existing one."""
        response = self.seam.request(
            "POST", f"{API}/qualifications", json=body.model_dump(mode="json")
        )
        return self.seam.parse(WireQualification, response)

    def find_qualifications(self, name: str) -> list[WireQualification]:
        response = self.seam.request("GET", f"{API}/qualifications", params={"name": name})
        return self.seam.parse(QualificationList, response).items

    def grant_qualification(self, qualification_id: str, worker_id: str) -> QualificationGranted:
        response = self.seam.request(
            "PUT", f"{API}/qualifications/{qualification_id}/workers/{worker_id}"
        )
        return self.seam.parse(QualificationGranted, response)


def _chunk_keys(keys: Sequence[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for key in keys:
        if "," in key:
            raise ValueError(f"task key {key!r} contains a comma, which the lookup cannot carry")
        if chunk and size + len(key) + 1 > MAX_KEYS_QUERY_CHARS:
            yield chunk
            chunk, size = [], 0
        chunk.append(key)
        size += len(key) + 1
    if chunk:
        yield chunk
