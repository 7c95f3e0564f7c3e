"""Wire models of Scale's v1 REST API (https://api.scale.com/v1): bodies sent and received.

Only the connector folder sees these; `connector.py` maps them to and from the domain.
Received objects tolerate fields Scale adds later (`extra="ignore"`); task answers
(`response`) and `metadata` stay raw JSON here on purpose: one unreadable task must
become a quarantined row, not fail the whole page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskType = Literal["comparison", "textcollection"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- projects ------------------------------------------------------------------------------


class ProjectCreate(_Wire):
    """POST /v1/projects (the SDK's `create_project`)."""

    type: TaskType
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


# --- batches -------------------------------------------------------------------------------


class BatchCreate(_Wire):
    """POST /v1/batches: `name` must be unique among all of the customer's batches."""

    project: str
    name: str
    callback: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class WireBatch(_Wire):
    name: str
    project: str
    # staging | in_progress | completed (v1); newer accounts also report paused / cancelled.
    status: str
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class WireBatchStatus(_Wire):
    """GET /v1/batches/{name}/status: task counts by task status (absent means zero)."""

    status: str
    pending: int = 0
    completed: int = 0
    error: int = 0
    canceled: int = 0


# --- tasks ---------------------------------------------------------------------------------


class TextAttachment(_Wire):
    """A TextCollectionAttachment; `content` is markdown for type "text"."""

    type: Literal["text"] = "text"
    content: str


class _TaskCreate(_Wire):
    batch: str  # with a batch the project need not be given (the batch belongs to one)
    instruction: str
    unique_id: str
    metadata: dict[str, Any]
    callback_url: str | None = None


class ComparisonTaskCreate(_TaskCreate):
    """POST /v1/task/comparison: the worker picks one of `choices` about `attachments`."""

    attachment_type: Literal["text"] = "text"
    attachments: list[str]
    choices: list[str]


class TextCollectionTaskCreate(_TaskCreate):
    """POST /v1/task/textcollection: `fields` is the form; answers come back by field_id."""

    attachments: list[TextAttachment]
    fields: list[dict[str, Any]]


class WireTask(_Wire):
    """A task as GET /v1/task/{id} and GET /v1/tasks return it."""

    task_id: str
    type: str
    status: str  # pending | completed | canceled | error
    batch: str | None = None
    project: str | None = None
    unique_id: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    response: Any = None
    customer_review_status: str | None = None


class TaskPage(_Wire):
    """GET /v1/tasks: up to `limit` (1..100) tasks, and a `next_token` while `has_more`."""

    docs: list[dict[str, Any]]  # validated one by one into WireTask
    has_more: bool = False
    next_token: str | None = None
    total: int | None = None


class CrowdloopMeta(_Wire):
    """What crowdloop stores in each task's `metadata` (Scale never reads it)."""

    crowdloop_key: str
    crowdloop_group: str
    crowdloop_kind: str
    crowdloop_slot: int = Field(ge=0)
    crowdloop_overlap: int = Field(ge=1)


class AuditRequest(_Wire):
    """POST /v1/task/{id}/audit (the SDK's `audit_task`)."""

    accepted: bool
    comments: str | None = None
