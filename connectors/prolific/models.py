"""Wire models of the parts of Prolific's API v1 this connector uses.

Only the connector folder sees these; `connector.py` maps them to and from the domain.
Everything read tolerates fields Prolific adds later (`extra="ignore"`); a response record
(a participant's answer) is kept as raw JSON in the page models and validated one by one,
so one malformed answer becomes a quarantined row instead of failing the page.

Shapes follow docs.prolific.com (AI Task Builder datasets / batches / responses, studies,
submissions, participant groups, workspaces) and the field names used by Prolific's own CLI
(github.com/prolific-oss/cli, `client/responses.go`, `model/*.go`; the AI Task Builder
records in `model/ai_task_builder.go`, the sync job in `cmd/aitaskbuilder/batch_sync.go`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    # Tolerate fields the platform adds later; send only what we set.
    model_config = ConfigDict(extra="ignore")


# --- shared list envelopes ----------------------------------------------------------------


class _Href(_Wire):
    href: str | None = None


class _Links(_Wire):
    next: _Href | None = None


class _Meta(_Wire):
    count: int | None = None


class Paged(_Wire):
    """`{"results": [...], "_links": {"next": {"href": ...}}, "meta": {"count": n}}`."""

    results: list[dict[str, Any]] = Field(default_factory=list)
    links: _Links | None = Field(default=None, alias="_links")
    meta: _Meta | None = None

    @property
    def next_href(self) -> str | None:
        return self.links.next.href if self.links and self.links.next else None


# --- AI Task Builder: datasets ------------------------------------------------------------


class SchemaField(_Wire):
    type: Literal["text", "metadata", "image_url", "audio_url", "video_url", "task_group_id"]
    label: str | None = None


class DatasetSchema(_Wire):
    strict: bool = False
    fields: dict[str, SchemaField]


class DatasetCreate(_Wire):
    name: str
    workspace_id: str
    # A schema makes this a V4 dataset: the only kind datapoints can be appended to.
    schema_: DatasetSchema = Field(alias="schema")

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ImportJob(_Wire):
    """A V4 dataset import job (docs: get-dataset-import-status). Polled while
    `uninitialised` / `queued` / `processing`; `complete`, `partial`, `failed` and
    `pending_schema` are terminal."""

    id: str | None = None
    status: str
    accepted_count: int | None = None
    rejected_count: int | None = None
    errors: list[Any] = Field(default_factory=list)
    reason: str | None = None


class WireDataset(_Wire):
    id: str
    name: str | None = None
    # V4 datasets list their import jobs (docs: get-task-builder-dataset).
    imports: list[ImportJob] = Field(default_factory=list)


class UploadUrl(_Wire):
    """GET /datasets/{id}/upload-url/{filename}: creates an import job (docs: uploading-data)."""

    upload_url: str
    http_method: str = "PUT"
    import_id: str
    content_type: str | None = None


class AppendResult(_Wire):
    """Outcome of `POST /datasets/{id}/datapoints`: per-request accepted/rejected counts."""

    accepted_count: int = 0
    rejected_count: int = 0
    errors: list[Any] = Field(default_factory=list)


# --- AI Task Builder: batches -------------------------------------------------------------


class TaskDetails(_Wire):
    task_name: str
    task_introduction: str
    task_steps: str


class BatchCreate(_Wire):
    name: str
    workspace_id: str
    dataset_id: str
    task_details: TaskDetails
    batch_items: list[dict[str, Any]]


class BatchDataset(_Wire):
    id: str
    name: str | None = None  # the CLI's `model.Dataset` carries it


class WireBatch(_Wire):
    id: str
    name: str
    task_details: TaskDetails | None = None
    status: str | None = None
    total_task_count: int = 0
    datasets: list[BatchDataset] = Field(default_factory=list)


class BatchList(_Wire):
    results: list[WireBatch] = Field(default_factory=list)


class BatchStatusBody(_Wire):
    status: str


class SetupRequest(_Wire):
    dataset_id: str
    tasks_per_group: int = 1


class SyncJob(_Wire):
    # Optional as in the CLI: a sync may come back already terminal without an id
    # (cmd/aitaskbuilder/batch_sync.go handles both).
    sync_id: str | None = None
    status: Literal["queued", "processing", "complete", "failed"]
    tasks_created: int | None = None
    reason: str | None = None


class ResponseAnswer(_Wire):
    value: str


class ResponseBody(_Wire):
    instruction_id: str | None = None
    type: str
    text: str | None = None
    answer: list[ResponseAnswer] | None = None

    def free_text(self) -> str:
        """The written text of a free-text response.

        The CLI's model (`AITaskBuilderResponseData`, model/ai_task_builder.go) and its
        test fixtures put it in `text`; answers also come back as `answer[0].value` (the
        shape issue 13 reports the CLI reading, and the `value` collection exports use).
        Both are read: `text` first, then the first answer's value.
        """
        if self.text and self.text.strip():
            return self.text.strip()
        for answer in self.answer or []:
            if answer.value.strip():
                return answer.value.strip()
        return ""


class WireResponse(_Wire):
    """One participant's answer to one task (one datapoint) of a batch."""

    id: str
    participant_id: str
    task_id: str
    submission_id: str
    metadata: dict[str, Any]
    response: ResponseBody
    created_at: datetime


class ResponseList(_Wire):
    results: list[dict[str, Any]] = Field(default_factory=list)  # validated one by one
    meta: _Meta | None = None


# --- studies ------------------------------------------------------------------------------


class CompletionCode(_Wire):
    code: str
    code_type: str = "COMPLETED"
    actions: list[dict[str, Any]]


class StudyFilter(_Wire):
    filter_id: str
    selected_values: list[str]


class SubmissionsConfig(_Wire):
    max_submissions_per_participant: int


class StudyCreate(_Wire):
    name: str
    internal_name: str
    description: str
    data_collection_method: Literal["AI_TASK_BUILDER_BATCH"] = "AI_TASK_BUILDER_BATCH"
    data_collection_id: str
    data_collection_metadata: dict[str, Any]
    reward: int  # minor units (pence / cents) of the workspace currency
    total_available_places: int
    estimated_completion_time: int  # minutes
    prolific_id_option: str = "not_required"
    device_compatibility: list[str]
    completion_codes: list[CompletionCode]
    filters: list[StudyFilter]
    submissions_config: SubmissionsConfig | None = None
    project: str | None = None


class WireStudy(_Wire):
    id: str
    name: str | None = None
    internal_name: str | None = None
    status: str
    total_available_places: int = 0
    reward: float | None = None


class WireProject(_Wire):
    id: str
    title: str | None = None
    workspace: str | None = None


class WireWorkspace(_Wire):
    id: str
    title: str | None = None


class WorkspaceBalance(_Wire):
    """GET /workspaces/{id}/balance/: minor units of the workspace currency."""

    currency_code: str | None = None
    total_balance: int | None = None
    available_balance: int | None = None


class StudyPatch(_Wire):
    total_available_places: int


class Transition(_Wire):
    action: str


# --- submissions --------------------------------------------------------------------------


class WireSubmission(_Wire):
    id: str
    status: str
    participant_id: str | None = None
    participant: str | None = None  # the single-submission view names it this way
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def worker(self) -> str | None:
        return self.participant_id or self.participant


class SubmissionTransition(_Wire):
    action: Literal["APPROVE", "REJECT"]
    message: str | None = None
    rejection_category: str | None = None


class BulkApprove(_Wire):
    study_id: str
    submission_ids: list[str]


# --- participant groups -------------------------------------------------------------------


class GroupCreate(_Wire):
    name: str
    workspace_id: str
    description: str
    participant_ids: list[str] = Field(default_factory=list)


class WireGroup(_Wire):
    id: str
    name: str | None = None


class GroupMembers(_Wire):
    participant_ids: list[str]
