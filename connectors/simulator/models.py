"""Wire models of the simulated marketplace's /api/v1 (requests sent and bodies received).

Only the connector folder sees these; `connector.py` maps them to and from the domain.
Assignment answers are kept as raw JSON here on purpose: one malformed answer must
become a quarantined row, not fail the whole page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict

from crowdloop.models.domain import TaskPayload


class _Wire(BaseModel):
    # Tolerate fields the platform adds later; never send fields it does not know.
    model_config = ConfigDict(extra="ignore")


class WireMoney(_Wire):
    amount: str  # a decimal string: money never travels as a float
    currency: str


class PoolCreate(_Wire):
    name: str
    stage: str
    instruction: str
    reward: WireMoney
    campaign_id: str
    idempotency_key: str
    required_qualification: str | None = None  # a qualification id


class WirePool(_Wire):
    id: str
    name: str
    status: Literal["draft", "open", "closed"]
    idempotency_key: str
    created_at: datetime


class PoolList(_Wire):
    items: list[WirePool]


class PoolSummary(_Wire):
    id: str
    name: str
    status: Literal["draft", "open", "closed"]
    tasks: int
    assignments_total: int
    assignments_submitted: int


# The two bodies the connector sends most (up to 500 tasks or decisions per request) are
# plain dicts serialised by a TypeAdapter in one pass (`TASKS_ADD`, `REVIEW_REQUEST`):
# built as models, a task's payload dumped to a dict and the body then serialised with
# that dict's types inferred cost ~17 us a task, this ~7 us, the same bytes. A payload is
# the domain task model, serialised by its own serializer as `model_dump(mode="json")`
# would (opt-in fields left out while unset).
class TaskCreate(TypedDict):
    key: str
    group: str
    payload: TaskPayload
    overlap: int
    exclude_workers: list[str]


class TasksAdd(TypedDict):
    idempotency_key: str
    tasks: list[TaskCreate]


TASKS_ADD: TypeAdapter[TasksAdd] = TypeAdapter(TasksAdd)


class TaskCreated(_Wire):
    id: str
    key: str
    created: bool


class TasksAdded(_Wire):
    tasks: list[TaskCreated]


class TaskRef(_Wire):
    id: str
    key: str


class TaskList(_Wire):
    items: list[TaskRef]


class WireAssignment(_Wire):
    id: str
    task_id: str
    task_key: str
    task_kind: str
    worker_id: str
    submitted_at: datetime
    answer: Any


class AssignmentPage(_Wire):
    items: list[dict[str, Any]]  # validated one by one into WireAssignment
    next_cursor: str | None
    has_more: bool


class ReviewItem(TypedDict):
    id: str
    status: Literal["accepted", "rejected"]
    comment: str


class ReviewRequest(TypedDict):
    decisions: list[ReviewItem]


REVIEW_REQUEST: TypeAdapter[ReviewRequest] = TypeAdapter(ReviewRequest)


class BlockRequest(_Wire):
    scope: str
    reason: str


class QualificationCreate(_Wire):
    name: str


class WireQualification(_Wire):
    id: str
    name: str


class QualificationList(_Wire):
    items: list[WireQualification]


class QualificationGranted(_Wire):
    qualification_id: str
    worker_id: str
    granted: bool  # false: the worker held it already
