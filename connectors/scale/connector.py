"""The Scale AI connector (Scale's v1 REST API, https://api.scale.com/v1).

Sources read (facts only, nothing copied):
  [auth]   https://scale.com/docs/api-reference/authentication
  [errors] https://scale.com/docs/api-reference/errors
  [dedupe] https://docs.scale.com/reference/idempotent-requests ("Avoiding Duplicate Tasks")
  [tasks]  https://scale.com/docs/api-reference/tasks
  [batch]  https://scale.com/docs/api-reference/batches, https://docs.scale.com/reference/studio-batches
  [text]   https://docs.scale.com/reference/text-collection,
           https://docs.scale.com/reference/textcollection-callback-format,
           https://docs.scale.com/reference/categoryfield,
           https://scale.com/docs/api-reference/generative-ai-reference
  [cb]     https://scale.com/docs/api-reference/callbacks
  [sdk]    github.com/scaleapi/scaleapi-python-client: scaleapi/__init__.py (endpoints, list
           params, audit_task, batch status keys), scaleapi/api.py (Basic auth, retry on
           408/429/5xx, 409-after-500 resolved by GET /v1/tasks?unique_id=), scaleapi/tasks.py
  [cmp]    github.com/scaleapi/scaleapi-ruby: spec/cassettes/comparison.yml (comparison body and
           `response.choice`); the legacy comparison fields (attachments, attachment_type,
           choices, fields) are also listed by the scaleapi npm client

Auth: HTTP Basic, API key as the username, empty password [auth]; see credentials.py.

Endpoints:
  POST /v1/projects                      create a missing project (option create_projects;
                                         409 = it exists) [sdk]
  GET  /v1/projects/{name}               check(): key and project, read-only [sdk get_project]
  POST /v1/batches                       create a batch; names are unique per customer, 409
                                         if taken [batch]
  GET  /v1/batches/{name}                find_batch, and resolving a 409 [batch]
  POST /v1/batches/{name}/finalize       start(): only while the batch is `staging` [batch]
  GET  /v1/batches/{name}/status         get_status(): task counts by status [sdk]
  POST /v1/task/textcollection           every task by default: writing, verify and compare
                                         (a `category` field left/right/tie) [text]
  POST /v1/task/comparison               CompareTask only with compare_task_type=comparison,
                                         the legacy endpoint (attachments = the two answers,
                                         choices) [cmp]; its newest public evidence is the
                                         2019 cassette, so it is opt-in
  GET  /v1/tasks                         results and lookups: batch, status, unique_id (repeated),
                                         completed_after/before, limit 1..100, next_token [sdk]
  GET  /v1/task/{id}                     review(): current customer_review_status [tasks]
  POST /v1/task/{id}/cancel              stop(): pending tasks only; unique_id kept [sdk]
  POST /v1/task/{id}/audit               review(): {accepted, comments} [sdk audit_task]

Overlap: Scale returns one response per task and has no per-task overlap for customers,
so a TaskItem with overlap n becomes n Scale tasks (slots 0..n-1), each one judgment.

Idempotency (IDEMPOTENT_CREATE, native): a batch's name is derived from our key
(slug + sha256 prefix) and a task's unique_id is `<batch name>/<our key>#<slot>`
(our key is replaced by `sha256:<hex>` if the id would exceed 200 characters; no limit is
documented, so we stay conservative). unique_id is global to the account [dedupe], which
the batch prefix scopes. A repeated create answers 409; we then look the object up
(GET /v1/batches/{name}, GET /v1/tasks?unique_id=...) and return it if it is ours
(metadata `crowdloop_key`, same batch), else raise AlreadyExists. Creates are therefore
sent with retry on: a create that happened behind a 5xx resolves as a 409 on retry, as
the SDK does [sdk api.py]. add_items looks the unique_ids up first, so a replay POSTs
nothing. Our key, group, kind, slot and overlap go in each task's `metadata` [tasks];
find_tasks reports a key only when all of its slots exist (slot 0's task id is the
external id), so a half-published item is re-sent and its missing slots filled in.

Results (pagination and the cursor): GET /v1/tasks?batch=&status=completed with a
`completed_after` / `completed_before` window, `limit` (page_limit, max 100) and
`next_token` [sdk]. The order of results is not documented, so a watermark can only move
after a whole window is read: a scan reads the window [lo, hi) with hi = now - settle_s
(completions still in flight and clock skew land in the next window); each page's cursor
is {lo, hi, next_token} to continue the scan, and the last page's is {lo: hi}. Bounds are
applied again client-side (half-open), so the API treating them as inclusive or exclusive
does not matter, and windows never overlap. If a saved next_token is refused (its expiry
is undocumented) the window is re-read from its start: at-least-once, the sync stage
dedupes by task id. A task Scale recalls and completes again is not re-read (its id was
stored); a fixed audit response is not re-imported.

Workers: Scale gives customers no worker ids. Each submission's worker_id is
`scale:<task_id>`, a pseudo-worker with one judgment, so golden-set checks never collect
enough evidence about a person to warn, exclude or block; golden items still measure the
accuracy of Scale's workforce as a whole. Hence no BLOCK_WORKER and no EXCLUDE_WORKERS
(an item carrying exclude_workers is refused with NotSupported); crowdloop's preflight
therefore refuses demonstration campaigns (they need EXCLUDE_WORKERS) on Scale.

Review: POST /v1/task/{id}/audit accepts or rejects a completed task with comments [sdk];
a decision already recorded (customer_review_status) is skipped. A rejection is quality
feedback (Scale may redo the task), not a withheld payment; billing is per contract.
Spend: the API reports no prices, so no SPEND_REPORT; Scale prices work per contract, so
BatchSpec.reward is only recorded in the batch's metadata. Sandbox: test-mode API keys run
against Scale's separate test environment, where tasks are not done by people [auth].

Rate limits: Scale answers 429 when requests come too fast [errors]; HttpSeam waits out
Retry-After when sent, else backs off exponentially (408 and 5xx likewise) and maps 401/403
to AuthError at once. Callbacks are optional (option callback_url, sent as the task's
callback_url / the batch's callback [cb]); crowdloop polls and does not need them.

Rapid / Studio projects: no task may be added to a finalized batch [batch]; crowdloop
starts a batch before publishing and publishes requeued items into the same batch, so
use a Pro project (where finalize does nothing and returns 200 [batch]).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Self, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import client_options
from crowdloop.connectors.answers import first_error, quarantine_for
from crowdloop.connectors.base import CheckItem, CheckReport, Connector, probe
from crowdloop.connectors.errors import (
    AlreadyExists,
    GarbledResponse,
    InvalidRequest,
    NotFound,
    NotSupported,
)
from crowdloop.connectors.scale.client import MAX_PAGE, ScaleClient
from crowdloop.connectors.scale.models import (
    AuditRequest,
    BatchCreate,
    ComparisonTaskCreate,
    CrowdloopMeta,
    ProjectCreate,
    TaskType,
    TextAttachment,
    TextCollectionTaskCreate,
    WireTask,
)
from crowdloop.connectors.scale.options import CONNECTOR_NAME, ScaleOptions
from crowdloop.models.domain import (
    ANSWER_KIND_FOR_TASK,
    AddItemsResult,
    Answer,
    BatchRef,
    BatchSpec,
    BatchState,
    BatchStatus,
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
MAX_UNIQUE_ID = 200
_MS = timedelta(milliseconds=1)

# What a worker picks in a comparison task -> our preference. Attachment 1 is "A" (left).
COMPARE_CHOICES: dict[str, str] = {
    "Response A is better": "left",
    "Response B is better": "right",
    "They are about equally good": "tie",
}
VERDICT_CHOICES: dict[str, str] = {"Acceptable": "accept", "Not acceptable": "reject"}
TEXT_FIELD = "text"
VERDICT_FIELD = "verdict"
PREFERENCE_FIELD = "preference"


@dataclass(frozen=True)
class _Cursor:
    """Resume point: the window [lo, hi) being scanned and the token inside it."""

    lo: datetime | None = None
    hi: datetime | None = None
    token: str | None = None

    def encode(self) -> str:
        return json.dumps(
            {"v": 1, "lo": _iso(self.lo), "hi": _iso(self.hi), "tok": self.token},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != 1:
                raise ValueError(f"version {data.get('v')!r}")
            return cls(
                lo=_parse_iso(data.get("lo")),
                hi=_parse_iso(data.get("hi")),
                token=data.get("tok") or None,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"scale: unreadable results cursor {text!r}: {exc}") from exc


class ScaleConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = ScaleOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PAIRWISE,
            Capability.FREE_TEXT,
            Capability.IDEMPOTENT_CREATE,
            Capability.REVIEW,
            Capability.SANDBOX,
        }
    )
    # Scale prices work per contract and its API reports no prices (see above): the reward
    # is not what Scale bills, so neither reward nor fee can be priced here.
    fee: ClassVar[FeeModel | None] = None
    # Scale's v1 API creates one task per request and each item fans out into `overlap`
    # tasks: keep one add_items call (one ledger chunk) to a bounded number of requests.
    max_items_per_call: ClassVar[int] = 100

    def __init__(
        self,
        client: ScaleClient,
        options: ScaleOptions,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from crowdloop.connectors.credentials import resolve_credentials
        from crowdloop.connectors.scale.credentials import ScaleCredentials

        parsed = ScaleOptions.model_validate(dict(options))
        credentials = resolve_credentials(ScaleCredentials, credentials_block)
        return cls(credentials.get_client(**client_options(parsed.model_dump())), parsed)

    def close(self) -> None:
        self.client.close()

    # --- naming ----------------------------------------------------------------------------

    def batch_name(self, idempotency_key: str) -> str:
        """The Scale batch name for a crowdloop batch key (deterministic, URL-safe)."""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
        name = f"{_slug(idempotency_key)[:80]}-{digest}"
        namespace = _slug(self.options.namespace)
        return f"{namespace}-{name}" if namespace else name

    @staticmethod
    def unique_id(batch_name: str, key: str, slot: int) -> str:
        uid = f"{batch_name}/{key}#{slot}"
        if len(uid) > MAX_UNIQUE_ID:
            uid = f"{batch_name}/sha256:{hashlib.sha256(key.encode()).hexdigest()[:40]}#{slot}"
        return uid

    def _task_type(self, stage: Stage) -> TaskType:
        # An exam batch reaches a marketplace as a compare batch; accept either.
        comparing = stage.value in ("compare", "exam")
        return self.options.compare_task_type if comparing else "textcollection"

    def _project(self, task_type: TaskType) -> str:
        if task_type == "textcollection" and self.options.textcollection_project:
            return self.options.textcollection_project
        return self.options.project

    # --- creates (keyed) -----------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        if spec.required_qualification is not None:
            # Scale offers customers no worker qualifications to gate a batch on.
            raise NotSupported(self.name, Capability.QUALIFY_WORKERS.value)
        task_type = self._task_type(spec.stage)
        project = self._project(task_type)
        if self.options.create_projects:
            created = self.client.create_project(ProjectCreate(type=task_type, name=project))
            if created:
                logger.info("scale: created %s project %r", task_type, project)
        name = self.batch_name(idempotency_key)
        body = BatchCreate(
            project=project,
            name=name,
            callback=self.options.callback_url,
            metadata={
                "crowdloop_key": idempotency_key,
                "crowdloop_campaign": spec.campaign_id,
                "crowdloop_stage": spec.stage.value,
                "crowdloop_title": spec.name,
                "crowdloop_reward": str(spec.reward),
            },
        )
        try:
            self.client.create_batch(body)
        except AlreadyExists:
            existing = self.client.get_batch(name)
            owner = existing.metadata.get("crowdloop_key")
            if owner is not None and owner != idempotency_key:
                raise AlreadyExists(
                    self.name,
                    f"batch name {name!r} is taken by a batch created for key {owner!r}",
                ) from None
        return self.batch_ref(name)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        name = self.batch_name(idempotency_key)
        try:
            batch = self.client.get_batch(name)
        except NotFound:
            return None
        owner = batch.metadata.get("crowdloop_key")
        if owner is not None and owner != idempotency_key:
            return None
        return self.batch_ref(name)

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        # The call's key is not needed: every task is keyed by its own unique_id.
        for item in items:
            if item.exclude_workers:
                raise NotSupported(self.name, Capability.EXCLUDE_WORKERS.value)
        name = batch.external_id
        plan = [
            (item, slot, self.unique_id(name, item.key, slot))
            for item in items
            for slot in range(item.overlap)
        ]
        existing = self.client.find_by_unique_ids([uid for _, _, uid in plan], batch=name)
        ids: dict[str, str] = {}
        for item, slot, uid in plan:
            raw = existing.get(uid)
            task_id = self._own_task_id(raw, name, uid) if raw else None
            if task_id is None:
                task_id = self._create_task(name, item, slot, uid)
            if slot == 0:
                ids[item.key] = task_id
        return AddItemsResult(external_ids=ids)

    def _create_task(self, batch: str, item: TaskItem, slot: int, uid: str) -> str:
        task_type, body = self._task_body(batch, item, slot, uid)
        try:
            return self.client.create_task(task_type, body).task_id
        except AlreadyExists:
            # Created by an earlier attempt (perhaps behind a 5xx): look it up by unique_id.
            raw = self.client.find_by_unique_ids([uid]).get(uid)
            task_id = self._own_task_id(raw, batch, uid) if raw else None
            if task_id is None:
                raise AlreadyExists(
                    self.name, f"unique_id {uid!r} is in use by a task outside batch {batch!r}"
                ) from None
            return task_id

    def _own_task_id(self, raw: dict[str, Any], batch: str, uid: str) -> str | None:
        """The task's id if it is the one we create under `uid` in `batch`, else None."""
        try:
            task = WireTask.model_validate(raw)
        except ValidationError as exc:
            raise GarbledResponse(self.name, f"unreadable task for {uid!r}: {exc}") from exc
        if task.batch is not None and task.batch != batch:
            return None
        return task.task_id

    def _task_body(
        self, batch: str, item: TaskItem, slot: int, uid: str
    ) -> tuple[TaskType, BaseModel]:
        payload = item.payload
        meta = CrowdloopMeta(
            crowdloop_key=item.key,
            crowdloop_group=item.group,
            crowdloop_kind=payload.kind,
            crowdloop_slot=slot,
            crowdloop_overlap=item.overlap,
        ).model_dump()
        common: dict[str, Any] = {
            "batch": batch,
            "unique_id": uid,
            "metadata": meta,
            "callback_url": self.options.callback_url,
        }
        if isinstance(payload, CompareTask):
            if self.options.compare_task_type == "comparison":
                return "comparison", ComparisonTaskCreate(
                    instruction=(
                        f"{payload.instruction}\n\n**Prompt**\n\n{payload.prompt}\n\n"
                        "The first attachment is Response A, the second is Response B."
                    ),
                    attachments=[payload.left, payload.right],
                    choices=list(COMPARE_CHOICES),
                    **common,
                )
            return "textcollection", TextCollectionTaskCreate(
                instruction=payload.instruction,
                attachments=[
                    TextAttachment(content=f"**Prompt**\n\n{payload.prompt}"),
                    TextAttachment(content=f"**Response A**\n\n{payload.left}"),
                    TextAttachment(content=f"**Response B**\n\n{payload.right}"),
                ],
                fields=[
                    _category_field(PREFERENCE_FIELD, "Which response is better?", COMPARE_CHOICES)
                ],
                **common,
            )
        if isinstance(payload, WritePromptTask):
            attachments = [TextAttachment(content=f"**Topic**\n\n{payload.topic}")]
            fields = [_text_field("Write the prompt")]
        elif isinstance(payload, WriteResponseTask):
            attachments = [TextAttachment(content=f"**Prompt**\n\n{payload.prompt}")]
            fields = [_text_field("Write your response")]
        else:
            assert isinstance(payload, VerifyTask)
            attachments = [
                TextAttachment(content=f"**Prompt**\n\n{payload.prompt}"),
                TextAttachment(
                    content=f"**{payload.target.capitalize()} to judge**\n\n{payload.text}"
                ),
            ]
            fields = [
                _category_field(
                    VERDICT_FIELD, f"Is this {payload.target} acceptable?", VERDICT_CHOICES
                )
            ]
        return "textcollection", TextCollectionTaskCreate(
            instruction=payload.instruction, attachments=attachments, fields=fields, **common
        )

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        name = batch.external_id
        first = {key: self.unique_id(name, key, 0) for key in task_keys}
        found = self.client.find_by_unique_ids(list(first.values()), batch=name)
        complete: dict[str, str] = {}
        others: dict[str, list[str]] = {}
        for key, uid in first.items():
            raw = found.get(uid)
            task_id = self._own_task_id(raw, name, uid) if raw else None
            if task_id is None:
                continue
            overlap = _overlap(raw or {})
            if overlap > 1:
                others[key] = [self.unique_id(name, key, s) for s in range(1, overlap)]
            complete[key] = task_id
        if others:
            rest = self.client.find_by_unique_ids(
                [uid for uids in others.values() for uid in uids], batch=name
            )
            for key, uids in others.items():
                # Only an item whose every slot exists counts: a partial one is re-sent.
                if not all(uid in rest and self._own_task_id(rest[uid], name, uid) for uid in uids):
                    del complete[key]
        return complete

    # --- batch control -------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        current = self.client.get_batch(batch.external_id)
        if current.status == "staging":
            self.client.finalize_batch(batch.external_id)

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        """Cancel every task no one has started; Scale refuses to cancel the others.

        Idempotent: a second stop finds no pending task and sends nothing; a cancel Scale
        refuses (already canceled or taken) is counted, not raised [sdk cancel_task].
        Scale documents no reversible pause for a batch or task, so PAUSE is not declared.
        """
        pending = [
            raw["task_id"]
            for raw in self.client.iter_tasks(
                {"batch": batch.external_id, "status": "pending", "limit": MAX_PAGE}
            )
            if isinstance(raw.get("task_id"), str)
        ]
        refused = 0
        for task_id in pending:
            try:
                self.client.cancel_task(task_id)
            except (InvalidRequest, NotFound, AlreadyExists):
                refused += 1
        logger.info(
            "scale: stopped batch %s (%s): %d task(s) canceled, %d already in work",
            batch.external_id,
            reason,
            len(pending) - refused,
            refused,
        )

    def check(self) -> CheckReport:
        """Read-only: the key and each project (GET /v1/projects/{name}, the SDK's
        `get_project`). Scale reports no balance through the API (per-contract billing)."""
        names = [self.options.project]
        if self.options.textcollection_project not in (None, self.options.project):
            names.append(str(self.options.textcollection_project))

        def project(name: str) -> Callable[[], str]:
            def read() -> str:
                try:
                    found = self.client.get_project(name)
                except NotFound:
                    if self.options.create_projects:
                        return f"project {name!r} does not exist yet; created on first use"
                    raise
                return f"project {name!r} ({found.get('type', '?')}) is readable"

            return read

        items = [probe(f"credentials and project {name!r}", project(name)) for name in names]
        items.append(
            CheckItem("balance", None, "Scale bills per contract; the API reports no balance")
        )
        return CheckReport(self.name, tuple(items))

    def get_status(self, batch: BatchRef) -> BatchStatus:
        counts = self.client.batch_status(batch.external_id)
        return BatchStatus(
            # A staging batch is not worked on yet (Rapid/Studio); to a flow it is idle. Scale
            # has no "closed" batch: one is open while it holds work (pending tasks), so a
            # stopped batch (pending tasks canceled) reads as closed.
            state=(
                BatchState.OPEN
                if counts.status == "in_progress" and counts.pending > 0
                else BatchState.CLOSED
            ),
            tasks=counts.pending + counts.completed + counts.error + counts.canceled,
            # Canceled and errored tasks will never be answered: they are not outstanding.
            assignments_total=counts.pending + counts.completed,
            assignments_submitted=counts.completed,
        )

    # --- results -------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        saved = _Cursor.decode(cursor)
        lo, hi, token = saved.lo, saved.hi, saved.token
        if hi is None:  # a new window: everything completed from lo until settle_s ago
            hi = _floor_ms(self.clock() - timedelta(seconds=self.options.settle_s))
            if lo is not None and hi < lo:
                hi = lo
            token = None
        while True:
            params: dict[str, str | int] = {
                "batch": batch.external_id,
                "status": "completed",
                "limit": self.options.page_limit,
                "completed_before": _iso_required(hi),
            }
            if lo is not None:
                params["completed_after"] = _iso_required(lo - _MS)
            if token:
                params["next_token"] = token
            try:
                page = self.client.list_tasks(params)
            except InvalidRequest:
                if not token:
                    raise
                logger.warning(
                    "scale: next_token refused for batch %s; re-reading the window from its "
                    "start (the sync stage drops repeats)",
                    batch.external_id,
                )
                token = None
                continue
            submissions: list[Submission] = []
            quarantined: list[Quarantined] = []
            for raw in page.docs:
                if not _in_window(raw, lo, hi):
                    continue
                read = _read_task(raw)
                if isinstance(read, Submission):
                    submissions.append(read)
                else:
                    quarantined.append(read)
            more = page.has_more
            if more and not page.next_token:
                raise GarbledResponse(self.name, "GET /v1/tasks: has_more without a next_token")
            following = _Cursor(lo, hi, page.next_token) if more else _Cursor(lo=hi)
            yield SubmissionPage(
                submissions=tuple(submissions),
                quarantined=tuple(quarantined),
                cursor=following.encode(),
                has_more=more,
            )
            if not more:
                return
            token = page.next_token

    # --- money and workers ---------------------------------------------------------------

    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        for decision in decisions:
            wanted = "accepted" if decision.accept else "rejected"
            task = self.client.get_task(decision.submission_id)
            if task.customer_review_status == wanted:
                continue
            self.client.audit_task(
                decision.submission_id,
                AuditRequest(accepted=decision.accept, comments=decision.comment or None),
            )


# --- helpers -----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _text_field(title: str) -> dict[str, Any]:
    return {"type": "text", "field_id": TEXT_FIELD, "title": title, "required": True}


def _category_field(field_id: str, title: str, choices: Mapping[str, str]) -> dict[str, Any]:
    return {
        "type": "category",
        "field_id": field_id,
        "title": title,
        "choices": [{"label": label, "value": value} for label, value in choices.items()],
        "min_choices": 1,
        "max_choices": 1,
        "required": True,
    }


def _overlap(raw: dict[str, Any]) -> int:
    meta = raw.get("metadata")
    value = meta.get("crowdloop_overlap") if isinstance(meta, dict) else None
    return value if isinstance(value, int) and value >= 1 else 1


def _floor_ms(when: datetime) -> datetime:
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else _iso_required(when)


def _iso_required(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _parse_iso(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"timestamp is a {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _in_window(raw: dict[str, Any], lo: datetime | None, hi: datetime) -> bool:
    """Whether a listed task belongs to [lo, hi); one we cannot date is kept (quarantined)."""
    try:
        when = _parse_iso(raw.get("completed_at"))
    except (TypeError, ValueError):
        return True
    if when is None:
        return True
    return (lo is None or when >= lo) and when < hi


_Kind = Literal["write_prompt", "write_response", "verify", "compare"]


def _read_task(raw: dict[str, Any]) -> Submission | Quarantined:
    """Map one completed Scale task to a Submission, or say why it cannot be read."""
    raw_id = raw.get("task_id")
    task_id = raw_id if isinstance(raw_id, str) else None
    raw_meta = raw.get("metadata")
    raw_key = raw_meta.get("crowdloop_key") if isinstance(raw_meta, dict) else None
    key = raw_key if isinstance(raw_key, str) else None

    worker = f"scale:{task_id}" if task_id else None
    quarantine = quarantine_for(task_id or "", raw, task_key=key, worker_id=worker)

    try:
        task = WireTask.model_validate(raw)
    except ValidationError as exc:
        return quarantine(f"unreadable task: {first_error(exc)}")
    try:
        ours = CrowdloopMeta.model_validate(task.metadata)
    except ValidationError as exc:
        return quarantine(f"not a crowdloop task (metadata {first_error(exc)})")
    if task.completed_at is None:
        return quarantine("completed task without completed_at")
    expected = ANSWER_KIND_FOR_TASK.get(ours.crowdloop_kind)
    if expected is None:
        return quarantine(f"unknown task kind {ours.crowdloop_kind!r}")
    try:
        value = _answer_value(cast(_Kind, ours.crowdloop_kind), task.type, task.response)
    except ValueError as exc:
        return quarantine(f"bad {task.type} response for a {ours.crowdloop_kind} task: {exc}")
    try:
        answer = _ANSWER.validate_python({**value, "kind": expected})
    except ValidationError as exc:
        problem = first_error(exc, tagged_union=True)
        return quarantine(f"bad {expected} answer for a {ours.crowdloop_kind} task: {problem}")
    return Submission(
        external_id=task.task_id,
        task_key=ours.crowdloop_key,
        worker_id=f"scale:{task.task_id}",
        answer=answer,
        submitted_at=task.completed_at,
    )


def _answer_value(kind: _Kind, task_type: str, response: Any) -> dict[str, str]:
    """The answer's fields from a task's `response` (raises ValueError when unreadable)."""
    if not isinstance(response, dict):
        raise ValueError(f"response is not an object: {type(response).__name__}")
    if task_type == "comparison":
        if kind != "compare":
            raise ValueError("a comparison task answers only compare items")
        choice = response.get("choice")
        if choice not in COMPARE_CHOICES:
            raise ValueError(f"choice {choice!r} is not one of ours")
        return {"choice": COMPARE_CHOICES[choice]}
    if task_type != "textcollection":
        raise ValueError(f"unexpected task type {task_type!r}")
    annotations = response.get("annotations")
    if not isinstance(annotations, dict):
        raise ValueError("no annotations object")
    if kind == "compare":
        return {"choice": _single(annotations, PREFERENCE_FIELD)}
    if kind == "verify":
        return {"verdict": _single(annotations, VERDICT_FIELD)}
    return {"text": _single(annotations, TEXT_FIELD)}


def _single(annotations: dict[str, Any], field_id: str) -> str:
    """One string annotation; a CategoryField answers with a list of selected values."""
    value = annotations.get(field_id)
    if isinstance(value, list):
        if len(value) != 1:
            raise ValueError(f"{field_id}: expected one value, got {len(value)}")
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"{field_id}: expected a string, got {type(value).__name__}")
    return value
