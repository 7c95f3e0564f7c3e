"""The Prolific connector: crowdloop batches run as AI Task Builder studies.

Why AI Task Builder (AITB) and not a classic study
----------------------------------------------------
A classic Prolific study sends each participant to an `external_study_url`: the task UI
would have to be a server of our own. An AITB **Batch** is hosted by Prolific itself: we
push datapoints into a dataset, a layout (`batch_items`) shows dataset fields and asks
multiple-choice / free-text questions, Prolific serves one task per datapoint through a
study whose `data_collection_method` is `AI_TASK_BUILDER_BATCH`, and the answers are read
back by API. (An AITB *Collection* shows the same questions to everyone, so it cannot carry
per-item content.) Docs: docs.prolific.com/api-reference/ai-task-builder/batches,
.../ai-task-builder/llms.txt (Batches vs Collections), Prolific's `design-ai-eval-task`
skill (github.com/prolific-oss/skills) for the pairwise layout and study template.

One crowdloop batch (one stage of a campaign) is, in the order of Prolific's own guide
(documentation/core-concepts/running-ai-task-builder-batches-via-prolifics-api;
api-reference/ai-task-builder/batches: dataset, upload, batch, setup, READY, study, publish):
  * one V4 dataset (`POST /api/v1/data-collection/datasets` with a `schema`); its name holds
    our key, the reward and the required qualification as JSON (the study needs them and is
    created later, possibly by another process);
  * one AITB batch (`POST /api/v1/data-collection/batches`, `name` = our key) whose
    `batch_items` layout follows the stage: compare = prompt + two columns + a
    left/right/tie multiple choice; verify = prompt + text + accept/reject choice;
    write_prompt / write_response = topic or prompt + a free-text box.
    `BatchRef.external_id` is the AITB batch id (a study id from before is still read);
  * with the first items: a file upload, which creates the import job that setup requires
    for a V4 dataset (setup-task-builder-batch: "at least one import job with status
    complete"; appends make none), then setup, then, once the batch is READY,
  * one study (`POST /api/v1/studies/`, `internal_name` = our key, `project` = the option
    `project_id`, which is required: a study without a project is paid from the personal
    balance, not the workspace's funds (cookbooks/collecting-original-data-with-ai-task-
    builder-collections); reward in minor units, `completion_codes` with `MANUALLY_REVIEW`
    so crowdloop approves/rejects, `filters` = a `participant_group_blocklist` of our block
    group and the batch's own exclusion group, plus a `participant_group_allowlist` when the
    spec requires a qualification), published at once (option `publish_on_add`).

Endpoints (all under https://api.prolific.com/api/v1/) and where they are documented
  * datasets: POST data-collection/datasets (docs .../task-builder/datasets),
    GET data-collection/datasets/{id} (V4: its `imports`; get-task-builder-dataset),
    GET .../datasets/{id}/upload-url/{filename} -> {upload_url, http_method, import_id},
    the file PUT to that presigned URL without the API token, and
    GET .../datasets/{id}/imports/{import_id} until complete | partial | failed |
    pending_schema (.../uploading-data, .../get-dataset-import-status) for the first load;
    POST data-collection/datasets/{id}/datapoints — JSONL, at most 1000 records a request,
    a record identical to one already there is counted but not stored again, 409 while an
    import runs — for later loads
    (.../append-dataset-datapoints, .../appending-data).
  * AITB batches: POST data-collection/batches (.../create-task-builder-batch),
    GET data-collection/batches/?workspace_id= (with the trailing slash, as the CLI's
    `client/client.go` GetAITaskBuilderBatches; httpx does not follow a redirect) and
    GET .../batches/{id}, GET .../batches/{id}/status, POST .../batches/{id}/setup
    (.../setup-task-builder-batch: async, PROCESSING -> READY), POST .../batches/{id}/sync
    and GET .../batches/{id}/syncs/{sync_id} (.../sync-task-builder-batch,
    .../get-batch-sync-status, .../syncing-a-batch; `sync_id` optional, a sync may come back
    terminal: CLI cmd/aitaskbuilder/batch_sync.go), GET .../batches/{id}/responses
    (.../get-task-builder-batch-task-responses; record shape from the CLI's
    `model/ai_task_builder.go`: participant_id, task_id, submission_id, metadata, response).
    A free-text answer is read from `response.text` (the CLI's model and its test fixture,
    cmd/aitaskbuilder/get_task_responses_test.go) or, failing that, `response.answer[0]
    .value` (the shape issue 13 reports; collection exports use `value`); neither is a
    quarantine with its reason, never an empty answer.
  * studies: POST studies/, GET projects/{id}/studies/, GET/PATCH studies/{id}/,
    POST studies/{id}/transition/ with {"action": "PUBLISH" | "PAUSE" | "START" | "STOP"}
    (api-reference/studies, CLI `TransitionStudy`, `model/study.go` TransitionList).
    `stop`, `pause` and `resume` read the study's status first and send a transition only
    when it changes something (STOP from ACTIVE / PAUSED, PAUSE from ACTIVE, START from
    PAUSED), so repeating any of them sends nothing; how Prolific answers a repeated
    transition is not documented, and this way it does not matter.
  * first contact (`check`, read-only): GET users/me (CLI `GetMe`), GET workspaces/{id}/
    (get-workspace), GET workspaces/{id}/balance/ (get-workspace-balance: available_balance
    in minor units), GET projects/{id}/ (CLI `GetProject`: the project must belong to the
    workspace).
  * submissions: GET studies/{id}/submissions/ (.../studies/get-study-submissions, `ordering`),
    POST submissions/{id}/transition/ APPROVE / REJECT with `message` (>= 100 chars) and
    `rejection_category`; a repeated transition is ignored (.../submissions/transition-submission),
    POST submissions/bulk-approve/ (.../submissions/llms.txt). Statuses:
    .../submissions/submission-object.
  * participant groups: GET/POST participant-groups/, POST participant-groups/{id}/participants/
    (members already in the group are skipped); blocklist filter id
    `participant_group_blocklist` (api-reference/participant-groups: groups are dynamic,
    published studies follow membership changes).

Auth: `Authorization: Token <token>` (credentials.py).

Pagination: list endpoints return `{"results", "_links": {"next": {"href"}}, "meta":
{"count"}}`; we follow `_links.next`. Study submissions are read with
`ordering=started_at&offset=&limit=` (the CLI's limit/offset paging); new submissions only
land at the end, so the cursor is an offset. It never moves past a submission still
RESERVED/ACTIVE (its answers are not final), so pages after one may be re-read later
(sync stores each submission once). Batch responses are one unpaged list (as the CLI reads
them), fetched once per `iter_submissions` call and indexed by submission id.

Rate limits: Prolific has no fixed limits; 429s come from contention (mostly payments) and
are to be retried with back-off (documentation/core-concepts/managing-high-loads). HttpSeam
retries reads, transitions, appends and group adds on 429/5xx honouring Retry-After when
sent; creates handle their own 429 (wait, look up, retry) as below. Approvals use the bulk
endpoint, as that guide recommends.

Idempotency: Prolific dedupes nothing by a client key, except datapoints by content. So
  * every create that Prolific does not dedupe (dataset, AITB batch, study, participant
    group) is sent once with `retry=False`; on a TransientError (429, 5xx, timeout) the
    connector waits, looks the object up by our key (study `internal_name`, AITB batch
    `name`, group `name`) and only re-sends if it is not there. A dataset cannot be looked
    up (no list endpoint): a failed dataset create may leave an empty, costless dataset.
  * tasks are datapoints carrying our task key as a `metadata` field; re-sending the same
    items appends identical records, which Prolific does not write twice, and a sync
    creates tasks only for datapoints that have none. A replayed `add_items` creates nothing.
  * LIMIT: Prolific has no endpoint that lists datapoints or maps tasks to datapoints, so
    `find_tasks` can only confirm keys that already have an answer (responses echo the
    datapoint metadata). Reconciliation stays safe because re-sending is a no-op, but a
    fresh process cannot list unanswered tasks by key.

Overlap, exclusions, blocking (limits)
  * `annotators_per_task` is one number per study, crowdloop overlap is per item: an item
    with overlap k is pushed as k datapoints (replicas) to a study with
    `annotators_per_task` = 1. Prolific cannot keep one participant off a second replica of
    the same item (they arrive as separate submissions); `max_submissions_per_participant`
    (option) bounds it.
  * EXCLUDE_WORKERS: Prolific filters are per study, not per task. Workers named in
    `TaskItem.exclude_workers` join the batch's exclusion group, which the study blocklists:
    they are kept off every task of that batch (stricter than asked, never looser).
  * BLOCK_WORKER: every BlockScope maps to one workspace-wide participant group (name set by
    option `block_group`) blocklisted by every study this connector creates — Prolific
    has no per-campaign ban and `block_worker` names no batch. Running studies follow the
    group as it changes.
  * QUALIFY_WORKERS: a qualification is a participant group named
    "crowdloop qualification <name>"; a grant adds the participant (repeats are ignored);
    a batch whose spec requires it gets a `participant_group_allowlist` filter, which also
    admits members added after publishing (as `Connector.grant_qualification` requires).
  * REVIEW: one Prolific submission per task group (`tasks_per_group`, default 1, so one
    item per submission). A crowdloop decision applies to the whole Prolific submission;
    if one submission's items get both, reject wins. Decisions already applied are skipped
    (status read first); a decision contrary to a final status is logged and skipped.
  * Spend: the study object's `total_cost` is the cost reserved for its places, not money
    spent, and the workspace cost report is enabled for select workspaces only
    (api-reference/workspaces/get-workspace-cost), so SPEND_REPORT is not declared.
  * The study is created (1 place) once the batch is READY; after each push its places are
    set to the batch's task count divided by `tasks_per_group` (one place per task group).
    `start()` before the first push has nothing to publish; `add_items` publishes the study
    as soon as its tasks are ready (option `publish_on_add`, default true: crowdloop starts
    every batch before pushing). A batch stopped or paused before its first push has no
    study yet to stop or pause: a later push would still publish it.
  * Not verified against a live account: that datasets with a schema (V4, needed for
    appends) are enabled for the workspace (a workspace feature; `check` cannot tell
    without creating one); that a later identical append is deduped against records that
    came in by file import; what Prolific answers to a repeated transition.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import client_options, create_once
from crowdloop.connectors.answers import first_error, quarantine_for, quarantined
from crowdloop.connectors.base import CheckItem, CheckReport, Connector, probe
from crowdloop.connectors.errors import (
    AlreadyExists,
    GarbledResponse,
    InvalidRequest,
    NotFound,
    TransientError,
)
from crowdloop.connectors.prolific.client import ProlificClient
from crowdloop.connectors.prolific.models import (
    AppendResult,
    BatchCreate,
    BulkApprove,
    CompletionCode,
    DatasetCreate,
    DatasetSchema,
    GroupCreate,
    ImportJob,
    SchemaField,
    SetupRequest,
    StudyCreate,
    StudyFilter,
    StudyPatch,
    SubmissionsConfig,
    SubmissionTransition,
    TaskDetails,
    WireBatch,
    WireResponse,
    WireStudy,
    WireSubmission,
)
from crowdloop.connectors.prolific.options import CONNECTOR_NAME, PAGE_LIMIT, ProlificOptions
from crowdloop.models.domain import (
    ANSWER_KIND_FOR_TASK,
    AddItemsResult,
    Answer,
    BatchRef,
    BatchSpec,
    BatchState,
    BatchStatus,
    BlockScope,
    Capability,
    CompareTask,
    FeeModel,
    Quarantined,
    ReviewDecision,
    Stage,
    Submission,
    SubmissionPage,
    TaskItem,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)

logger = logging.getLogger(__name__)

_ANSWER = TypeAdapter[Answer](Answer)
_STUDY_ID = re.compile(r"[0-9a-f]{24}")  # Prolific study ids; AITB batch ids are UUIDs
T = TypeVar("T")

ENV_WORKSPACE = "CROWDLOOP_PROLIFIC_WORKSPACE_ID"
ENV_PROJECT = "CROWDLOOP_PROLIFIC_PROJECT_ID"
# Import job statuses (docs: get-dataset-import-status).
IMPORT_RUNNING = frozenset({"uninitialised", "queued", "processing"})
IMPORT_LOADED = frozenset({"complete", "partial"})
APPEND_LIMIT = 1000  # datapoints per append request (documented maximum)
APPROVE_CHUNK = 500
MIN_REJECT_MESSAGE = 100  # Prolific refuses shorter rejection messages

# Submission statuses (api-reference/submissions/submission-object).
UNSETTLED = frozenset({"RESERVED", "ACTIVE"})
ANSWERED = frozenset({"AWAITING REVIEW", "APPROVED", "REJECTED", "PARTIALLY APPROVED"})
OPEN_STUDY = frozenset({"ACTIVE", "PUBLISHING", "SCHEDULED"})

KIND_FOR_STAGE: dict[Stage, str] = {
    Stage.PROMPTS: "write_prompt",
    Stage.RESPONSES: "write_response",
    Stage.VERIFY: "verify",
    Stage.COMPARE: "compare",
    Stage.EXAM: "compare",  # golden comparisons: a compare batch to the marketplace
}
CHOICES: dict[str, frozenset[str]] = {
    "preference": frozenset({"left", "right", "tie"}),
    "verdict": frozenset({"accept", "reject"}),
}

# Dataset fields: content shown to participants plus our bookkeeping as `metadata`
# (not shown; echoed in each response's `metadata`).
SCHEMA = DatasetSchema(
    strict=False,
    fields={
        "crowdloop_key": SchemaField(type="metadata"),
        "crowdloop_group": SchemaField(type="metadata"),
        "crowdloop_kind": SchemaField(type="metadata"),
        "crowdloop_replica": SchemaField(type="metadata"),
        "instruction": SchemaField(type="text", label="Instructions"),
        "topic": SchemaField(type="text", label="Topic"),
        "prompt": SchemaField(type="text", label="Request"),
        "text": SchemaField(type="text", label="Text to check"),
        "left": SchemaField(type="text", label="Answer A"),
        "right": SchemaField(type="text", label="Answer B"),
    },
)


def _field(name: str) -> dict[str, Any]:
    return {"type": "dataset_field", "field": name}


def _column(*items: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(items)}


def _row(*columns: dict[str, Any]) -> dict[str, Any]:
    return {"columns": list(columns)}


def _choice(question: str, options: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "multiple_choice",
        "description": question,
        "answer_limit": 1,
        "options": [{"label": label, "value": value} for label, value in options],
    }


def _free_text(question: str) -> dict[str, Any]:
    return {"type": "free_text", "description": question}


def batch_items(kind: str) -> list[dict[str, Any]]:
    """The one-page task layout for a task kind."""
    if kind == "compare":
        rows = [
            _row(_column(_field("instruction"), _field("prompt"))),
            _row(_column(_field("left")), _column(_field("right"))),
            _row(
                _column(
                    _choice(
                        "Which answer is better?",
                        [("Answer A", "left"), ("Answer B", "right"), ("Equally good", "tie")],
                    )
                )
            ),
        ]
    elif kind == "verify":
        rows = [
            _row(_column(_field("instruction"), _field("prompt"), _field("text"))),
            _row(
                _column(
                    _choice(
                        "Is this text acceptable?",
                        [("Acceptable", "accept"), ("Not acceptable", "reject")],
                    )
                )
            ),
        ]
    elif kind == "write_prompt":
        rows = [
            _row(_column(_field("instruction"), _field("topic"))),
            _row(_column(_free_text("Write your request"))),
        ]
    elif kind == "write_response":
        rows = [
            _row(_column(_field("instruction"), _field("prompt"))),
            _row(_column(_free_text("Write your answer"))),
        ]
    else:
        raise ValueError(f"no layout for task kind {kind!r}")
    return [{"rows": rows}]


STEPS = {
    "compare": "Read the request and both answers, then pick the better answer (or a tie).",
    "verify": "Read the request and the text, then say whether the text is acceptable.",
    "write_prompt": "Read the topic and write one request a person might ask about it.",
    "write_response": "Read the request and write a helpful, correct answer.",
}


@dataclass(frozen=True)
class _Template:
    """What the study needs that the AI Task Builder batch does not hold: kept as the
    batch's dataset name (JSON), since the study is created only once the batch is READY,
    possibly by another process."""

    key: str
    reward: int  # minor units per task group
    qualification: str | None = None

    def encode(self) -> str:
        body = {"crowdloop": self.key, "reward": self.reward, "qualification": self.qualification}
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, name: str | None) -> _Template | None:
        try:
            body = json.loads(name or "")
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("crowdloop"), str):
            return None
        reward, qualification = body.get("reward"), body.get("qualification")
        if not isinstance(reward, int):
            return None
        if qualification is not None and not isinstance(qualification, str):
            return None
        return cls(body["crowdloop"], reward, qualification)


@dataclass
class _Batch:
    """What one crowdloop batch is on Prolific (cached per connector instance)."""

    aitb_id: str  # BatchRef.external_id
    key: str  # our idempotency key: AITB batch name == study internal_name
    dataset_id: str
    template: _Template
    name: str
    description: str
    exclusion_group: str | None
    study_id: str | None = None  # created once the AITB batch is READY


class ProlificConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = ProlificOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PAIRWISE,
            Capability.FREE_TEXT,
            Capability.REVIEW,
            Capability.BLOCK_WORKER,
            Capability.EXCLUDE_WORKERS,
            Capability.QUALIFY_WORKERS,
            Capability.PAUSE,
        }
    )
    # Prolific adds a service fee (and VAT where it applies) to participant payments; the
    # rate depends on the account and is shown only in the study quote
    # (https://researcher-help.prolific.co/hc/en-gb/articles/360026330474-Billing-Invoices-Receipts),
    # so it is not priced here: set `budget.fee_rate` to the rate your quote shows.
    fee: ClassVar[FeeModel | None] = None
    # One add_items call appends in requests of at most APPEND_LIMIT records; keep a call's
    # items (times their overlap) to a handful of requests.
    max_items_per_call: ClassVar[int] = 500

    def __init__(
        self,
        client: ProlificClient,
        *,
        workspace_id: str,
        project_id: str,
        currency: str = "USD",
        estimated_minutes: int = 5,
        devices: Sequence[str] = ("desktop", "tablet", "mobile"),
        block_group: str = "crowdloop blocklist",
        rejection_category: str = "LOW_EFFORT",
        tasks_per_group: int = 1,
        max_submissions_per_participant: int | None = None,
        publish_on_add: bool = True,
        page_limit: int = PAGE_LIMIT,
        poll_interval_s: float = 2.0,
        poll_timeout_s: float = 600.0,
        create_attempts: int = 4,
    ) -> None:
        self.client = client
        self.workspace_id = workspace_id
        self.project_id = project_id
        self.currency = currency.upper()
        self.estimated_minutes = estimated_minutes
        self.devices = list(devices)
        self.block_group = block_group
        self.rejection_category = rejection_category
        self.tasks_per_group = tasks_per_group
        self.max_submissions_per_participant = max_submissions_per_participant
        self.publish_on_add = publish_on_add
        self.page_limit = page_limit
        self.poll_interval_s = poll_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.create_attempts = max(1, create_attempts)
        self._batches: dict[str, _Batch] = {}
        self._groups: dict[str, str] = {}

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from crowdloop.connectors.credentials import resolve_credentials
        from crowdloop.connectors.prolific.credentials import ProlificCredentials

        opts = ProlificOptions.model_validate(dict(options))
        credentials = resolve_credentials(ProlificCredentials, credentials_block)
        workspace = opts.workspace_id or os.environ.get(ENV_WORKSPACE)
        if not workspace:
            raise ValueError(f"prolific: set connector option workspace_id (or {ENV_WORKSPACE})")
        project = opts.project_id or os.environ.get(ENV_PROJECT)
        if not project:
            raise ValueError(
                f"prolific: set connector option project_id (or {ENV_PROJECT}): a study created "
                "without a project is paid from the personal balance, not the workspace's "
                "funds. List the workspace's projects with `prolific project list -w "
                f"{workspace}` or `crowdloop connectors check prolific`."
            )
        return cls(
            credentials.get_client(**client_options(opts.model_dump())),
            workspace_id=str(workspace),
            project_id=str(project),
            currency=opts.currency,
            estimated_minutes=opts.estimated_minutes,
            devices=opts.devices,
            block_group=opts.block_group,
            rejection_category=opts.rejection_category,
            tasks_per_group=opts.tasks_per_group,
            max_submissions_per_participant=opts.max_submissions_per_participant,
            publish_on_add=opts.publish_on_add,
            page_limit=opts.page_limit,
            poll_interval_s=opts.poll_interval_s,
            poll_timeout_s=opts.poll_timeout_s,
        )

    def close(self) -> None:
        self.client.close()

    # --- creates (keyed) -----------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        """The dataset and the AI Task Builder batch (and the batch's participant groups).

        The study comes later, in `add_items`, once the batch is READY: the order of
        Prolific's own guide (documentation/core-concepts/running-ai-task-builder-batches-
        via-prolifics-api; api-reference/ai-task-builder/batches, steps 1-10).
        """
        found = self.find_batch(idempotency_key)
        if found is not None:
            return found
        if spec.reward.currency.upper() != self.currency:
            raise InvalidRequest(
                self.name,
                f"reward is in {spec.reward.currency} but the workspace pays in "
                f"{self.currency} (connector option `currency`)",
            )
        self._ensure_group(self.block_group, "crowdloop: workers blocked by quality checks")
        if spec.required_qualification:
            self._qualification_group(spec.required_qualification)
        self._ensure_group(
            _exclusion_group_name(idempotency_key),
            "crowdloop: workers kept off this batch (authors of the items checked)",
        )
        template = _Template(
            key=idempotency_key,
            reward=_minor_units(spec.reward.amount * self.tasks_per_group),
            qualification=spec.required_qualification,
        )
        aitb = self._ensure_aitb_batch(spec, KIND_FOR_STAGE[spec.stage], template)
        return self.batch_ref(aitb.id)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        aitb = self._find_aitb(idempotency_key)
        return self.batch_ref(aitb.id) if aitb is not None else None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        if not items:
            return AddItemsResult(external_ids={})
        ctx = self._context(batch)
        excluded = sorted({w for item in items for w in item.exclude_workers})
        if excluded:
            if ctx.exclusion_group is None:
                raise InvalidRequest(self.name, f"batch {ctx.aitb_id} has no exclusion group")
            self.client.add_to_group(ctx.exclusion_group, excluded)
        records = [_record(item, replica) for item in items for replica in range(item.overlap)]
        self._load(ctx, records, idempotency_key)
        tasks = self._materialise(ctx)
        study = self._ensure_study(ctx)
        # One place per task group: a participant's submission covers `tasks_per_group` tasks.
        places = -(-tasks // self.tasks_per_group)
        if places and study.total_available_places != places:
            study = self.client.update_study(study.id, StudyPatch(total_available_places=places))
        if self.publish_on_add and tasks and study.status == "UNPUBLISHED":
            self.client.transition_study(study.id, "PUBLISH")
        return AddItemsResult(external_ids={item.key: _task_id(ctx, item.key) for item in items})

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        """Keys Prolific can show exist: those with an answer (see the module docstring)."""
        ctx = self._context(batch)
        wanted = set(task_keys)
        seen: dict[str, str] = {}
        for raw in self.client.batch_responses(ctx.aitb_id).results:
            metadata = raw.get("metadata") if isinstance(raw, dict) else None
            key = metadata.get("crowdloop_key") if isinstance(metadata, dict) else None
            if isinstance(key, str) and key in wanted:
                seen[key] = _task_id(ctx, key)
        return seen

    # --- batch control -------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        ctx = self._context(batch)
        study = self._study(ctx)
        if study is None:
            logger.info(
                "%s: batch %s has no tasks yet; its study is created and published when its "
                "first items are ready",
                self.name,
                ctx.aitb_id,
            )
        elif study.status == "PAUSED":
            self.client.transition_study(study.id, "START")
        elif study.status == "UNPUBLISHED":
            self.client.transition_study(study.id, "PUBLISH")

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        """STOP the study (final). Read first, so a stopped (COMPLETED / AWAITING REVIEW)
        study is left alone: repeating `stop` sends nothing."""
        ctx = self._context(batch)
        study = self._study(ctx)
        if study is None:
            logger.info("%s: batch %s was never published; nothing to stop", self.name, ctx.aitb_id)
            return
        if study.status in OPEN_STUDY or study.status == "PAUSED":
            logger.info("%s: stopping study %s: %s", self.name, study.id, reason)
            self.client.transition_study(study.id, "STOP")

    def pause(self, batch: BatchRef) -> None:
        """PAUSE an ACTIVE study (the CLI's study transitions: PUBLISH, START, PAUSE, STOP;
        model/study.go). Participants with a task in hand may still submit it."""
        ctx = self._context(batch)
        study = self._study(ctx)
        if study is not None and study.status == "ACTIVE":
            self.client.transition_study(study.id, "PAUSE")

    def resume(self, batch: BatchRef) -> None:
        """START a PAUSED study; anything else is left as it is (an open study is open, a
        stopped one cannot be restarted on Prolific)."""
        ctx = self._context(batch)
        study = self._study(ctx)
        if study is None or study.status != "PAUSED":
            if study is not None and study.status not in OPEN_STUDY | {"UNPUBLISHED"}:
                logger.warning(
                    "%s: study %s is %s; it cannot be resumed", self.name, study.id, study.status
                )
            return
        self.client.transition_study(study.id, "START")

    def get_status(self, batch: BatchRef) -> BatchStatus:
        ctx = self._context(batch)
        study = self._study(ctx)
        tasks = self.client.get_batch(ctx.aitb_id).total_task_count
        answered = len(self.client.batch_responses(ctx.aitb_id).results)
        open_ = study is not None and study.status in OPEN_STUDY
        return BatchStatus(
            state=BatchState.OPEN if open_ else BatchState.CLOSED,
            tasks=tasks,
            assignments_total=tasks,
            assignments_submitted=min(answered, tasks) if tasks else answered,
        )

    # --- first contact ---------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Read-only: the token (GET users/me), the workspace, its balance, the project."""
        ws = self.workspace_id

        def me() -> str:
            user = self.client.get_me()
            return f"token accepted (user {user.get('id', '?')})"

        def workspace() -> str:
            found = self.client.get_workspace(ws)
            return f"workspace {found.id} ({found.title or 'untitled'})"

        def balance() -> str:
            funds = self.client.workspace_balance(ws)
            currency = funds.currency_code or "?"
            if currency != "?" and currency.upper() != self.currency:
                raise InvalidRequest(
                    self.name,
                    f"the workspace pays in {currency}, the connector option `currency` is "
                    f"{self.currency}",
                )
            available = funds.available_balance
            if available is None:
                return f"balance not reported ({currency})"
            if available <= 0:
                raise InvalidRequest(
                    self.name, f"workspace {ws} has no available balance ({available} {currency})"
                )
            return f"available {available / 100:.2f} {currency}"

        def project() -> str:
            found = self.client.get_project(self.project_id)
            if found.workspace and found.workspace != ws:
                raise InvalidRequest(
                    self.name,
                    f"project {found.id} belongs to workspace {found.workspace}, not {ws}: "
                    "its studies would not be paid from this workspace",
                )
            return f"project {found.id} ({found.title or 'untitled'}) bills the workspace"

        return CheckReport(
            self.name,
            (
                probe("credentials", me),
                probe("workspace access", workspace),
                probe("workspace balance", balance),
                probe("project (billing)", project),
                CheckItem(
                    "AI Task Builder datasets with a schema",
                    None,
                    "a workspace feature; not checkable without creating a dataset",
                ),
            ),
        )

    # --- results -------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        ctx = self._context(batch)
        offset = _parse_cursor(cursor)
        study_id = self._study_id(ctx)
        if study_id is None:  # not published yet: nothing to read
            yield SubmissionPage(submissions=(), cursor=cursor, has_more=False)
            return
        answers = _ResponseIndex(lambda: self.client.batch_responses(ctx.aitb_id).results)
        hold: int | None = None  # first position whose submission is not final yet
        while True:
            page = self.client.submissions_page(study_id, offset=offset, limit=self.page_limit)
            submissions: list[Submission] = []
            quarantined: list[Quarantined] = []
            for position, raw in enumerate(page.results, start=offset):
                read = self._read_submission(raw, answers)
                if read is None:  # still running: read it again next time
                    hold = position if hold is None else hold
                    continue
                for row in read:
                    if isinstance(row, Submission):
                        submissions.append(row)
                    else:
                        quarantined.append(row)
            offset += len(page.results)
            has_more = bool(page.results) and page.next_href is not None
            yield SubmissionPage(
                submissions=tuple(submissions),
                quarantined=tuple(quarantined),
                cursor=str(hold if hold is not None else offset),
                has_more=has_more,
            )
            if not has_more:
                return

    def _read_submission(
        self, raw: dict[str, Any], answers: _ResponseIndex
    ) -> list[Submission | Quarantined] | None:
        """Rows for one Prolific submission; None while it may still change."""
        try:
            sub = WireSubmission.model_validate(raw)
        except ValidationError as exc:
            return [
                quarantined(
                    f"{raw.get('id', '?')}:submission",
                    f"unreadable submission: {first_error(exc)}",
                    raw,
                )
            ]
        if sub.status in UNSETTLED:
            return None
        if sub.status not in ANSWERED:
            return []  # returned, timed out, screened out: no answers to read
        responses = answers.for_submission(sub.id)
        if not responses:
            return [
                quarantined(
                    f"{sub.id}:none",
                    f"submission is {sub.status} but Prolific has no task responses for it",
                    raw,
                    worker_id=sub.worker,
                )
            ]
        return [_read_response(sub, response) for response in responses]

    # --- money and workers ---------------------------------------------------------------

    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        ctx = self._context(batch)
        study_id = self._study_id(ctx)
        if study_id is None:
            return  # never published: no submissions to decide on
        wanted: dict[str, ReviewDecision] = {}
        for decision in decisions:
            submission = decision.submission_id.split(":", 1)[0]
            current = wanted.get(submission)
            if current is None or (current.accept and not decision.accept):
                wanted[submission] = decision  # reject wins within one Prolific submission
        statuses = self._submission_statuses(study_id)
        approve: list[str] = []
        for submission, decision in wanted.items():
            status = statuses.get(submission)
            target = "APPROVED" if decision.accept else "REJECTED"
            if status == target:
                continue  # already applied
            if status != "AWAITING REVIEW":
                logger.warning(
                    "%s: cannot %s submission %s, it is %s",
                    self.name,
                    "approve" if decision.accept else "reject",
                    submission,
                    status or "not in this study",
                )
                continue
            if decision.accept:
                approve.append(submission)
            else:
                self.client.transition_submission(
                    submission,
                    SubmissionTransition(
                        action="REJECT",
                        message=_rejection_message(decision.comment),
                        rejection_category=self.rejection_category,
                    ),
                )
        for start in range(0, len(approve), APPROVE_CHUNK):
            self.client.bulk_approve(
                BulkApprove(
                    study_id=study_id, submission_ids=approve[start : start + APPROVE_CHUNK]
                )
            )

    def block_worker(self, worker_id: str, *, scope: BlockScope, reason: str) -> None:
        # Every scope lands in the workspace-wide group (see the module docstring).
        group = self._ensure_group(self.block_group, "crowdloop: workers blocked by quality checks")
        logger.info(
            "%s: blocking %s (%s scope widened to workspace): %s",
            self.name,
            worker_id,
            scope.value,
            reason,
        )
        self.client.add_to_group(group, [worker_id])

    # --- qualifications ------------------------------------------------------------------

    def ensure_qualification(self, qualification: str) -> None:
        self._qualification_group(qualification)

    def grant_qualification(self, worker_id: str, qualification: str) -> None:
        # Members already in the group are ignored, so a repeated grant changes nothing.
        self.client.add_to_group(self._qualification_group(qualification), [worker_id])

    def _qualification_group(self, qualification: str) -> str:
        return self._ensure_group(
            f"crowdloop qualification {qualification}",
            f"crowdloop: workers holding the qualification {qualification!r}",
        )

    # --- helpers -------------------------------------------------------------------------

    def _find_study_id(self, key: str) -> str | None:
        for study in self.client.iter_studies(self.project_id):
            if study.internal_name == key:
                return study.id
        return None

    def _find_aitb(self, key: str) -> WireBatch | None:
        for batch in self.client.list_batches(self.workspace_id):
            if batch.name == key:
                return batch
        return None

    def _ensure_aitb_batch(self, spec: BatchSpec, kind: str, template: _Template) -> WireBatch:
        key = template.key
        existing = self._find_aitb(key)
        if existing is not None:
            return existing
        # A dataset cannot be looked up by name (no list endpoint): a failed create may leave
        # an empty, costless dataset behind.
        dataset = self.client.create_dataset(
            DatasetCreate(name=template.encode(), workspace_id=self.workspace_id, schema_=SCHEMA)
        )
        body = BatchCreate(
            name=key,
            workspace_id=self.workspace_id,
            dataset_id=dataset.id,
            task_details=TaskDetails(
                task_name=spec.name, task_introduction=spec.instruction, task_steps=STEPS[kind]
            ),
            batch_items=batch_items(kind),
        )
        return self._create_once(
            f"AI Task Builder batch {key!r}",
            lambda: self.client.create_batch(body),
            lambda: self._find_aitb(key),
        )

    def _ensure_group(self, name: str, description: str) -> str:
        if name in self._groups:
            return self._groups[name]

        def find() -> str | None:
            for group in self.client.iter_groups(self.workspace_id):
                if group.name == name:
                    return group.id
            return None

        group_id = self._create_once(
            f"participant group {name!r}",
            lambda: (
                self.client.create_group(
                    GroupCreate(name=name, workspace_id=self.workspace_id, description=description)
                ).id
            ),
            find,
        )
        self._groups[name] = group_id
        return group_id

    def _context(self, batch: BatchRef) -> _Batch:
        cached = self._batches.get(batch.external_id)
        if cached is not None:
            return cached
        ref = batch.external_id
        if _STUDY_ID.fullmatch(ref):  # a BatchRef from before batches were AITB ids
            key = self.client.get_study(ref).internal_name
            legacy = self._find_aitb(key) if key else None
            if legacy is None:
                raise NotFound(self.name, f"no AI Task Builder batch for study {ref}")
            ref = legacy.id
        aitb = self.client.get_batch(ref)
        if not aitb.datasets:
            raise GarbledResponse(self.name, f"AI Task Builder batch {aitb.id} has no dataset")
        dataset = aitb.datasets[0]
        template = _Template.decode(dataset.name)
        if template is None:
            template = _Template.decode(self.client.get_dataset(dataset.id).name)
        if template is None or template.key != aitb.name:
            raise GarbledResponse(
                self.name, f"AI Task Builder batch {aitb.id} is not one crowdloop created"
            )
        exclusion = None
        name = _exclusion_group_name(template.key)
        for group in self.client.iter_groups(self.workspace_id):
            if group.name == name:
                exclusion = group.id
                break
        details = aitb.task_details
        ctx = _Batch(
            aitb_id=aitb.id,
            key=template.key,
            dataset_id=dataset.id,
            template=template,
            name=details.task_name if details else template.key,
            description=details.task_introduction if details else template.key,
            exclusion_group=exclusion,
        )
        self._batches[batch.external_id] = ctx
        return ctx

    def _study_id(self, ctx: _Batch) -> str | None:
        if ctx.study_id is None:
            ctx.study_id = self._find_study_id(ctx.key)
        return ctx.study_id

    def _study(self, ctx: _Batch) -> WireStudy | None:
        study_id = self._study_id(ctx)
        return self.client.get_study(study_id) if study_id is not None else None

    def _ensure_study(self, ctx: _Batch) -> WireStudy:
        """The batch's study, created (draft) the first time its batch is READY, in the
        configured project so that it is paid from the workspace's funds."""
        study = self._study(ctx)
        if study is not None:
            return study
        block = self._ensure_group(self.block_group, "crowdloop: workers blocked by quality checks")
        filters = []
        if ctx.template.qualification:
            allowed = self._qualification_group(ctx.template.qualification)
            filters.append(
                StudyFilter(filter_id="participant_group_allowlist", selected_values=[allowed])
            )
        blocked = [block] + ([ctx.exclusion_group] if ctx.exclusion_group else [])
        body = StudyCreate(
            name=ctx.name,
            internal_name=ctx.key,
            description=ctx.description,
            data_collection_id=ctx.aitb_id,
            data_collection_metadata={"annotators_per_task": 1},
            reward=ctx.template.reward,
            total_available_places=1,
            estimated_completion_time=self.estimated_minutes,
            device_compatibility=self.devices,
            completion_codes=[
                CompletionCode(
                    code=_completion_code(ctx.key), actions=[{"action": "MANUALLY_REVIEW"}]
                )
            ],
            filters=[
                *filters,
                StudyFilter(filter_id="participant_group_blocklist", selected_values=blocked),
            ],
            submissions_config=(
                SubmissionsConfig(
                    max_submissions_per_participant=self.max_submissions_per_participant
                )
                if self.max_submissions_per_participant is not None
                else None
            ),
            project=self.project_id,
        )
        study_id = self._create_once(
            f"study {ctx.key!r}",
            lambda: self.client.create_study(body).id,
            lambda: self._find_study_id(ctx.key),
        )
        ctx.study_id = study_id
        return self.client.get_study(study_id)

    def _load(self, ctx: _Batch, records: list[dict[str, str]], key: str) -> None:
        """Put records into the dataset. The first load is a file upload, which makes the
        import job setup requires for a V4 dataset (docs: setup-task-builder-batch,
        uploading-data); later loads append (at most 1000 records a request, an identical
        record is not written twice; docs: appending-data, append-dataset-datapoints)."""
        imports = self.client.get_dataset(ctx.dataset_id).imports
        running = [job for job in imports if job.status in IMPORT_RUNNING and job.id]
        for job in running:
            if job.status != "uninitialised":  # an upload URL never used holds no data
                self._wait_import(ctx.dataset_id, job.id or "")
        imports = self.client.get_dataset(ctx.dataset_id).imports
        if not any(job.status in IMPORT_LOADED for job in imports):
            payload = "".join(
                json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records
            )
            upload = self.client.upload_url(ctx.dataset_id, f"{_slug(key)}.jsonl")
            self.client.put_upload(upload, payload.encode())
            job = self._wait_import(ctx.dataset_id, upload.import_id)
            if job.status != "complete":
                raise InvalidRequest(
                    self.name,
                    f"add_items {key}: import {upload.import_id} ended {job.status}: "
                    f"{job.reason or json.dumps(job.errors[:3], default=str)[:500]}",
                    details=job.errors or job.reason,
                )
            return
        for start in range(0, len(records), APPEND_LIMIT):
            chunk = records[start : start + APPEND_LIMIT]

            def append(chunk: list[dict[str, str]] = chunk) -> AppendResult:
                return self.client.append_datapoints(ctx.dataset_id, chunk)

            result = self._busy_retry(append)
            if result.rejected_count or result.errors:
                raise InvalidRequest(
                    self.name,
                    f"add_items {key}: Prolific rejected {result.rejected_count} "
                    f"datapoint(s): {json.dumps(result.errors[:3], default=str)[:500]}",
                    details=result.errors,
                )

    def _wait_import(self, dataset_id: str, import_id: str) -> ImportJob:
        polls = 0
        while True:
            job = self.client.import_status(dataset_id, import_id)
            if job.status not in IMPORT_RUNNING:
                return job
            self._poll_wait(polls, f"import {import_id} of dataset {dataset_id}")
            polls += 1

    def _create_once(self, what: str, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Create an object Prolific does not dedupe, at most once (the client sends the
        create without transport retries; see `create_once`)."""
        return create_once(self.client.seam, what, create, find, attempts=self.create_attempts)

    def _busy_retry(self, call: Callable[[], T]) -> T:
        """Retry a call Prolific refuses with 409 while a dataset import or sync runs."""
        attempts = max(1, int(self.poll_timeout_s / max(self.poll_interval_s, 0.001)))
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except AlreadyExists as exc:
                if attempt == attempts:
                    raise TransientError(self.name, f"dataset stayed busy: {exc.message}") from exc
                self.client.sleep(self.poll_interval_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def _materialise(self, ctx: _Batch) -> int:
        """Turn appended datapoints into tasks (setup the first time, sync after); task count."""
        status = self._wait_settled(ctx.aitb_id)
        if status == "UNINITIALISED":
            self._busy_retry(
                lambda: self.client.setup_batch(
                    ctx.aitb_id,
                    SetupRequest(dataset_id=ctx.dataset_id, tasks_per_group=self.tasks_per_group),
                )
            )
            status = self._wait_settled(ctx.aitb_id)
        elif status == "READY":
            job = self._busy_retry(lambda: self.client.sync_batch(ctx.aitb_id))
            polls = 0
            while job.status in ("queued", "processing"):
                if not job.sync_id:  # the CLI refuses to poll without one too
                    raise GarbledResponse(
                        self.name, f"sync of batch {ctx.aitb_id} is {job.status} with no sync_id"
                    )
                self._poll_wait(polls, f"sync {job.sync_id} of batch {ctx.aitb_id}")
                polls += 1
                job = self.client.sync_status(ctx.aitb_id, job.sync_id)
            if job.status == "failed":
                raise InvalidRequest(self.name, f"sync of batch {ctx.aitb_id} failed: {job.reason}")
        if status != "READY":
            raise InvalidRequest(self.name, f"AI Task Builder batch {ctx.aitb_id} is {status}")
        return self.client.get_batch(ctx.aitb_id).total_task_count

    def _wait_settled(self, aitb_id: str) -> str:
        polls = 0
        while True:
            status = self.client.batch_status(aitb_id)
            if status != "PROCESSING":
                return status
            self._poll_wait(polls, f"setup of batch {aitb_id}")
            polls += 1

    def _poll_wait(self, polls: int, what: str) -> None:
        if (polls + 1) * self.poll_interval_s > self.poll_timeout_s:
            raise TransientError(
                self.name, f"{what} still running after {self.poll_timeout_s:.0f}s; retry later"
            )
        self.client.sleep(self.poll_interval_s)

    def _submission_statuses(self, study_id: str) -> dict[str, str]:
        statuses: dict[str, str] = {}
        offset = 0
        while True:
            page = self.client.submissions_page(study_id, offset=offset, limit=self.page_limit)
            for raw in page.results:
                if isinstance(raw.get("id"), str) and isinstance(raw.get("status"), str):
                    statuses[raw["id"]] = raw["status"]
            offset += len(page.results)
            if not page.results or page.next_href is None:
                return statuses


class _ResponseIndex:
    """A batch's responses by Prolific submission id, fetched lazily and refreshed once."""

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]]) -> None:
        self._fetch = fetch
        self._index: dict[str, list[dict[str, Any]]] | None = None
        self._refreshed = False

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        index: dict[str, list[dict[str, Any]]] = {}
        for raw in self._fetch():
            submission = raw.get("submission_id") if isinstance(raw, dict) else None
            index.setdefault(submission if isinstance(submission, str) else "", []).append(raw)
        return index

    def for_submission(self, submission_id: str) -> list[dict[str, Any]]:
        if self._index is None:
            self._index = self._load()
        found = self._index.get(submission_id, [])
        if not found and not self._refreshed:
            # It may have been answered after we read the list: read it once more.
            self._refreshed = True
            self._index = self._load()
            found = self._index.get(submission_id, [])
        return found


# --- mapping -------------------------------------------------------------------------------


def _record(item: TaskItem, replica: int) -> dict[str, str]:
    """One datapoint: the task's content plus our bookkeeping (deterministic, so re-sending
    the same item appends an identical record that Prolific does not write twice)."""
    payload = item.payload
    record = {
        "crowdloop_key": item.key,
        "crowdloop_group": item.group,
        "crowdloop_kind": payload.kind,
        "crowdloop_replica": str(replica),
        "instruction": payload.instruction,
    }
    if isinstance(payload, CompareTask):
        record.update(prompt=payload.prompt, left=payload.left, right=payload.right)
    elif isinstance(payload, VerifyTask):
        record.update(prompt=payload.prompt, text=payload.text)
    elif isinstance(payload, WritePromptTask):
        record.update(topic=payload.topic)
    elif isinstance(payload, WriteResponseTask):
        record.update(prompt=payload.prompt)
    return record


def _read_response(sub: WireSubmission, raw: dict[str, Any]) -> Submission | Quarantined:
    """Map one task response to a Submission, or say why it cannot be read."""
    external_id = f"{sub.id}:{raw.get('id', '?')}"
    metadata = raw.get("metadata")
    found = metadata.get("crowdloop_key") if isinstance(metadata, dict) else None
    key = found if isinstance(found, str) else None

    quarantine = quarantine_for(external_id, raw, task_key=key, worker_id=sub.worker)

    try:
        wire = WireResponse.model_validate(raw)
    except ValidationError as exc:
        return quarantine(f"unreadable response: {first_error(exc)}")
    if not key:
        return quarantine("response has no crowdloop_key metadata: not a crowdloop task")
    kind = wire.metadata.get("crowdloop_kind")
    expected = ANSWER_KIND_FOR_TASK.get(kind) if isinstance(kind, str) else None
    if expected is None:
        return quarantine(f"unknown task kind {kind!r}")
    if sub.worker and sub.worker != wire.participant_id:
        return quarantine(
            f"response participant {wire.participant_id} is not the submission's ({sub.worker})"
        )
    body = wire.response
    if expected == "text":
        if body.type not in ("free_text", "free_text_with_unit"):
            return quarantine(f"a {kind} task got a {body.type!r} response")
        text = body.free_text()
        if not text:
            return quarantine("free-text response carries no text (neither text nor answer)")
        value: dict[str, Any] = {"kind": "text", "text": text}
    else:
        if body.type not in ("multiple_choice", "multiple_choice_with_free_text"):
            return quarantine(f"a {kind} task got a {body.type!r} response")
        picked = [a.value for a in body.answer or []]
        if len(picked) != 1:
            return quarantine(f"expected one option picked, got {len(picked)}")
        if picked[0] not in CHOICES[expected]:
            return quarantine(f"option {picked[0]!r} is not one of {sorted(CHOICES[expected])}")
        field = "choice" if expected == "preference" else "verdict"
        value = {"kind": expected, field: picked[0]}
    try:
        answer = _ANSWER.validate_python(value)
    except ValidationError as exc:
        return quarantine(
            f"bad {expected} answer for a {kind} task: {first_error(exc, tagged_union=True)}"
        )
    return Submission(
        external_id=external_id,
        task_key=key,
        worker_id=wire.participant_id,
        answer=answer,
        submitted_at=wire.created_at,
    )


def _task_id(ctx: _Batch, key: str) -> str:
    return f"{ctx.aitb_id}:{key}"


def _parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(cursor)
    except ValueError:
        raise InvalidRequest(
            CONNECTOR_NAME, f"not a Prolific submissions cursor: {cursor!r}"
        ) from None
    if offset < 0:
        raise InvalidRequest(CONNECTOR_NAME, f"negative submissions cursor: {cursor!r}")
    return offset


def _minor_units(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _completion_code(key: str) -> str:
    return "CL" + hashlib.sha256(key.encode()).hexdigest()[:8].upper()


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-")[:80] or "datapoints"


def _exclusion_group_name(key: str) -> str:
    return f"crowdloop exclusions {key}"


def _rejection_message(comment: str) -> str:
    base = comment.strip() or "Your answer did not meet the quality bar for this task."
    note = (
        " This decision comes from the quality checks of this annotation project, which compare "
        "answers with known-good reference tasks."
    )
    message = base if len(base) >= MIN_REJECT_MESSAGE else base + note
    return message[:2000]
