"""Wire models of Label Studio's REST API (requests sent and bodies received).

Only the connector folder sees these; `connector.py` maps them to and from the domain.
Fields follow the open-source server's serializers (label_studio/projects/serializers.py,
tasks/serializers.py, data_manager/api.py, data_import/api.py, jwt_auth/serializers.py).
Fields Label Studio adds later are ignored. Tasks and annotations arrive as raw JSON and
are validated one by one in the connector: one unreadable annotation must become a
quarantined row, not fail the whole page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    # Tolerate fields the platform adds later; never send fields it does not know.
    model_config = ConfigDict(extra="ignore")


# --- auth -------------------------------------------------------------------------------------


class TokenRefreshed(_Wire):
    """`POST /api/token/refresh/` answer: a short-lived access token (a JWT)."""

    access: str = Field(min_length=1)


# --- projects -----------------------------------------------------------------------------------


class ProjectCreate(_Wire):
    title: str = Field(min_length=3, max_length=50)  # PROJECT_TITLE_MIN_LEN / _MAX_LEN
    description: str
    label_config: str
    expert_instruction: str
    show_instruction: bool = True
    show_skip_button: bool = True
    maximum_annotations: int = Field(ge=1)
    is_published: bool = False


class ProjectPatch(_Wire):
    maximum_annotations: int | None = None
    is_published: bool | None = None


class WireProject(_Wire):
    id: int
    title: str | None = None
    description: str | None = None
    maximum_annotations: int = 1
    is_published: bool = False
    # Counters are present on the detail and list endpoints (Project.objects.with_counts()).
    task_number: int | None = None
    total_annotations_number: int | None = None  # not counting skipped ones
    skipped_annotations_number: int | None = None
    finished_task_number: int | None = None


class ProjectPage(_Wire):
    """`GET /api/projects/` (DRF page-number pagination)."""

    count: int
    next: str | None = None
    results: list[WireProject]


# --- tasks ------------------------------------------------------------------------------------


class TaskImport(_Wire):
    data: dict[str, Any]
    meta: dict[str, Any] = Field(default_factory=dict)


class ImportResult(_Wire):
    """`POST /api/projects/{id}/import?return_task_ids=true` (synchronous in Community)."""

    task_count: int
    task_ids: list[int] = Field(default_factory=list)


class TaskPage(_Wire):
    """`GET /api/tasks/?project=..&page=..&page_size=..` (data manager task list)."""

    tasks: list[dict[str, Any]]  # validated one by one
    total: int


class WireTask(_Wire):
    id: int
    data: dict[str, Any]
    annotations: list[dict[str, Any]] = Field(default_factory=list)  # only with fields=all


class WireAnnotation(_Wire):
    id: int
    # An int on /api/tasks/{id}/annotations/, a user object in the data manager's task list.
    completed_by: int | dict[str, Any] | None = None
    result: Any = None
    was_cancelled: bool = False
    ground_truth: bool = False
    created_at: datetime
    task: int | None = None


# --- what crowdloop keeps in a task's `data` ------------------------------------------------------


class TaskData(_Wire):
    """The crowdloop fields every task carries; the payload fields sit beside them."""

    crowdloop_key: str = Field(min_length=1)
    crowdloop_group: str
    crowdloop_kind: str
