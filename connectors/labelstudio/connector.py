"""The connector for Label Studio (open source, 1.20+; checked against 1.23.2).

Label Studio is a labeling tool, not a marketplace: its annotators are the organization's
own users, nobody is paid, and there is no worker blocking. A crowdloop batch is one
Label Studio project; each of our tasks is one Label Studio task; each annotation is one
submission.

Endpoints (paths as in label_studio/*/urls.py):
- `POST /api/token/refresh/` - personal access token -> access token (auth, below)
- `POST /api/projects/` - create a project (title, description, label_config,
  expert_instruction, maximum_annotations, is_published)
- `GET /api/projects/?title=..&page=..&page_size=..` - find a project by our key (title
  filter is `icontains`, ProjectFilterSet in projects/api.py)
- `GET|PATCH /api/projects/{id}/` - counters for `get_status`; `maximum_annotations`
  (overlap) and `is_published` (start / stop)
- `POST /api/projects/{id}/import?return_task_ids=true` - import tasks; the Community
  edition imports synchronously and answers with the new task ids in input order
  (ImportAPI.sync_import in data_import/api.py)
- `GET /api/tasks/?project=..&page=..&page_size=..&fields=task_only|all` - the data manager
  task list (`{"tasks": [...], "total": n}`), with annotations when `fields=all`

Labeling configs (one per stage; our task's fields are the `$variables`):
- compare: the prompt and answers A / B as `<Text>`, and `<Choices name="preference">` with
  aliases `left` / `right` / `tie`. `<Pairwise>` was not used: its result has no tie.
- writing: `<TextArea name="answer">` under the topic or the prompt.
- verify: `<Choices name="verdict">` with aliases `accept` / `reject`.
- rank: the prompt as `<Text>`, the answers as a `<List name="answers">` (task data `items`:
  `{id, title, body}` per answer, ids "0".."K-1" in the order shown) and a
  `<Ranker name="ranking" toName="answers">`; the result is
  `{"value": {"ranker": {"ranking": [ids, best first]}}, "type": "ranker", ...}`
  (https://labelstud.io/tags/ranker). A reordered list has no ties, so ranking tasks
  that allow ties are refused (Capability.RANKING_TIES is not declared).
A choice's alias replaces its label in the annotation result, so results carry our words.

Auth: a personal access token (a JWT refresh token) is exchanged at `/api/token/refresh/`
for a 5-minute access token sent as `Authorization: Bearer`, renewed before it expires and
once on a 401 to a token that is not brand new; a legacy token is sent as
`Authorization: Token <token>` (the organization must have legacy tokens enabled). The
scheme is picked from the token's shape unless the credentials name it. Details in
`client.py`.

Pagination: DRF page numbers (`page`, `page_size`) on projects and tasks; the task list
answers `total`, read until `page * page_size >= total`.

Rate limits: the open-source server has none; a 429 or 5xx from a proxy in front of it is
retried by HttpSeam for reads and PATCH (honouring Retry-After), and by the reconciling
loops below for the two creates.

Idempotency: Label Studio deduplicates neither projects nor imported tasks, so:
- a project carries our key: its title ends in `cl-<digest of the key>` (titles are at
  most 50 characters) and its description holds `crowdloop-key: <key>`. `create_batch`
  and `find_batch` look the key up first; the create itself is sent once (`retry=False`)
  and after a transient failure the key is looked up again before sending again.
- a task carries our key in `data.crowdloop_key`. `add_items` lists the project's tasks
  and imports only the keys that are missing; after a transient failure it lists again
  and imports only what is still missing, so a retried or replayed call imports nothing
  twice.

Submissions: every scan lists all tasks with `fields=all` and keeps annotations with an
id above the cursor (an annotation-id high-water mark). Annotation ids grow with creation,
but an annotation committed late could appear below one already read; so only annotations
created at least `settle_s` seconds before the server's `Date` on the first page are
emitted, in id order, stopping at the first that is younger. A skipped task
(`was_cancelled`) and an unreadable result are quarantined with the raw JSON. Annotations
edited after they were read are not read again. `worker_id` is the annotator's user id
(`completed_by`).

Overlap: `maximum_annotations` is the project's overlap (every task gets it as its
`overlap`); Label Studio has no per-task overlap on import, so `add_items` raises the
project's value to the largest overlap it is given and a task asking for less gets more.
A worker answers a task once, but two of our tasks with the same group are two Label
Studio tasks that one annotator may both answer: EXCLUDE_WORKERS is not declared.

Capabilities: PAIRWISE and FREE_TEXT. Not REVIEW (reviews are Label Studio Enterprise),
not BLOCK_WORKER (no such API in the open-source edition; an admin can deactivate a user
by hand), not SPEND_REPORT (nobody is paid), not IDEMPOTENT_CREATE (see above), not
QUALIFY_WORKERS (the open-source edition shows a project to every member; assigning
tasks to chosen annotators is Enterprise), not SANDBOX. A batch that requires a
qualification is refused rather than created open to everyone. Golden answers are never
sent: no ground-truth annotations are imported.
`start` / `stop` set `is_published`; the open-source edition shows every project of the
organization to its members whatever that flag says. So `stop` (a PATCH of the same value,
idempotent) is bookkeeping, and PAUSE is not declared: unpublishing hides nothing, so it
would not keep annotators off. `check` reads GET /api/projects/ (page_size 1) after the
token exchange: read-only.

Documented at (read for this connector):
- https://labelstud.io/guide/access_tokens and https://labelstud.io/guide/api.html -
  personal access tokens vs legacy tokens, Bearer vs Token headers, the refresh exchange
- https://api.labelstud.io/api-reference/api-reference/projects/import-tasks - import
- https://api.labelstud.io/api-reference/api-reference/tasks/create - task fields
- https://labelstud.io/tags/choice (alias), https://labelstud.io/tags/choices,
  https://labelstud.io/tags/textarea - labeling config tags
- HumanSignal/label-studio sources (1.23.2): projects/api.py, projects/models.py,
  projects/serializers.py, data_import/api.py, data_manager/api.py, tasks/api.py,
  tasks/serializers.py, jwt_auth/{urls,views,models,middleware}.py, core/settings/base.py
- HumanSignal/label-studio-sdk: src/label_studio_sdk/tokens/client_ext.py and
  core/client_wrapper.py (legacy-vs-JWT detection, access-token caching and refresh)
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self

from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import client_options, create_once
from crowdloop.connectors.answers import first_error, quarantine_for, quarantined
from crowdloop.connectors.base import CheckItem, CheckReport, Connector, probe
from crowdloop.connectors.errors import (
    NotSupported,
)
from crowdloop.connectors.labelstudio.client import LabelStudioClient
from crowdloop.connectors.labelstudio.models import (
    ProjectCreate,
    ProjectPatch,
    TaskData,
    TaskImport,
    WireAnnotation,
    WireProject,
    WireTask,
)
from crowdloop.connectors.labelstudio.options import (
    CONNECTOR_NAME,
    PAGE_SIZE,
    SETTLE_S,
    TASK_PAGE_SIZE,
    LabelStudioOptions,
)
from crowdloop.models.domain import (
    ANSWER_KIND_FOR_TASK,
    AddItemsResult,
    Answer,
    BatchRef,
    BatchSpec,
    BatchState,
    BatchStatus,
    Capability,
    FeeModel,
    Quarantined,
    Stage,
    Submission,
    SubmissionPage,
    TaskItem,
)

logger = logging.getLogger(__name__)

_ANSWER = TypeAdapter[Answer](Answer)
CREATE_ATTEMPTS = 4
KEY_LINE = "crowdloop-key: "
TITLE_MAX = 50

# --- labeling configs ------------------------------------------------------------------------

# Control tag names, read back from annotation results.
PREFERENCE, VERDICT, ANSWER = "preference", "verdict", "answer"
RANKING, ANSWERS = "ranking", "answers"

_COMPARE = f"""<View>
  <Header value="$instruction"/>
  <Text name="prompt" value="$prompt"/>
  <View style="display: flex; gap: 1em">
    <View style="flex: 1">
      <Header value="Answer A" size="5"/>
      <Text name="left" value="$left"/>
    </View>
    <View style="flex: 1">
      <Header value="Answer B" size="5"/>
      <Text name="right" value="$right"/>
    </View>
  </View>
  <Choices name="{PREFERENCE}" toName="prompt" choice="single-radio" required="true"
           showInline="true">
    <Choice value="A is better" alias="left"/>
    <Choice value="B is better" alias="right"/>
    <Choice value="About the same" alias="tie"/>
  </Choices>
</View>"""

_WRITE_PROMPT = f"""<View>
  <Header value="$instruction"/>
  <Text name="topic" value="$topic"/>
  <TextArea name="{ANSWER}" toName="topic" rows="6" required="true" maxSubmissions="1"
            editable="true"/>
</View>"""

_WRITE_RESPONSE = f"""<View>
  <Header value="$instruction"/>
  <Text name="prompt" value="$prompt"/>
  <TextArea name="{ANSWER}" toName="prompt" rows="10" required="true" maxSubmissions="1"
            editable="true"/>
</View>"""

_VERIFY = f"""<View>
  <Header value="$instruction"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Text to check" size="5"/>
  <Text name="text" value="$text"/>
  <Choices name="{VERDICT}" toName="text" choice="single-radio" required="true"
           showInline="true">
    <Choice value="Acceptable" alias="accept"/>
    <Choice value="Not acceptable" alias="reject"/>
  </Choices>
</View>"""

_RANK = f"""<View>
  <Header value="$instruction"/>
  <Text name="prompt" value="$prompt"/>
  <List name="{ANSWERS}" value="$items" title="Answers: drag the best to the top"/>
  <Ranker name="{RANKING}" toName="{ANSWERS}"/>
</View>"""

LABEL_CONFIGS: dict[Stage, str] = {
    Stage.COMPARE: _COMPARE,
    Stage.PROMPTS: _WRITE_PROMPT,
    Stage.RESPONSES: _WRITE_RESPONSE,
    Stage.VERIFY: _VERIFY,
    Stage.EXAM: _COMPARE,  # to a marketplace an exam is a batch of comparisons
    Stage.RANK: _RANK,
}

# What each choice may come back as: the alias, or the label if a config lost its aliases.
_PREFERENCES = {
    "left": "left",
    "right": "right",
    "tie": "tie",
    "A is better": "left",
    "B is better": "right",
    "About the same": "tie",
}
_VERDICTS = {"accept": "accept", "reject": "reject", "Acceptable": "accept",
             "Not acceptable": "reject"}  # fmt: skip


class LabelStudioConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = LabelStudioOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.PAIRWISE, Capability.FREE_TEXT, Capability.RANKING}
    )
    # Open-source Label Studio is software, not a marketplace: in-house annotators are paid
    # (if at all) outside it, and it charges no fee.
    fee: ClassVar[FeeModel | None] = FeeModel(rate=Decimal(0), source="https://labelstud.io")
    max_items_per_call: ClassVar[int] = 500

    def __init__(
        self,
        client: LabelStudioClient,
        *,
        page_size: int = PAGE_SIZE,
        task_page_size: int = TASK_PAGE_SIZE,
        settle_s: float = SETTLE_S,
        create_attempts: int = CREATE_ATTEMPTS,
    ) -> None:
        self.client = client
        self.page_size = page_size
        self.task_page_size = task_page_size
        self.settle_s = settle_s
        self.create_attempts = create_attempts

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from crowdloop.connectors.credentials import resolve_credentials
        from crowdloop.connectors.labelstudio.credentials import LabelStudioCredentials

        opts = LabelStudioOptions.model_validate(dict(options))
        credentials = resolve_credentials(LabelStudioCredentials, credentials_block)
        return cls(
            credentials.get_client(**client_options(opts.model_dump())),
            page_size=opts.page_size,
            task_page_size=opts.task_page_size,
            settle_s=opts.settle_s,
        )

    def close(self) -> None:
        self.client.close()

    # --- creates (keyed, reconciled) -------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        if spec.required_qualification is not None:
            # An ungated project would let every annotator in: refuse rather than pretend.
            raise NotSupported(self.name, Capability.QUALIFY_WORKERS.value)
        body = ProjectCreate(
            title=project_title(spec.name, idempotency_key),
            description=f"{spec.instruction}\n\n{KEY_LINE}{idempotency_key}",
            label_config=LABEL_CONFIGS[spec.stage],
            expert_instruction=f"<p>{html.escape(spec.instruction)}</p>",
            maximum_annotations=1,
        )
        # Label Studio may create a project and still fail the call: look before resending.
        return create_once(
            self.client.seam,
            f"project for {idempotency_key}",
            lambda: self.batch_ref(self.client.create_project(body).id),
            lambda: self.find_batch(idempotency_key),
            attempts=self.create_attempts,
        )

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        token = key_token(idempotency_key)
        line = f"{KEY_LINE}{idempotency_key}"
        matches = [
            p.id
            for p in self.client.iter_projects(title=token)
            if line in (p.description or "").splitlines()
        ]
        return self.batch_ref(min(matches)) if matches else None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        if not items:
            return AddItemsResult(external_ids={})
        self._ensure_overlap(batch, max(i.overlap for i in items))
        ids = self.find_tasks(batch, [i.key for i in items])
        missing = [i for i in items if i.key not in ids]
        for start in range(0, len(missing), self.max_items_per_call):
            ids.update(self._import(batch, missing[start : start + self.max_items_per_call]))
        return self.added(items, ids)

    def _import(self, batch: BatchRef, chunk: Sequence[TaskItem]) -> dict[str, str]:
        pending = list(chunk)
        found: dict[str, str] = {}

        def send() -> dict[str, str]:
            result = self.client.import_tasks(batch.external_id, [task_import(i) for i in pending])
            if len(result.task_ids) == len(pending):
                # Community imports synchronously and lists the new ids in input order.
                found.update({i.key: str(t) for i, t in zip(pending, result.task_ids, strict=True)})
            else:  # an edition that imports in the background: look the keys up instead
                found.update(self.find_tasks(batch, [i.key for i in pending]))
            return found

        def landed() -> dict[str, str] | None:
            # An import that failed late may have landed, whole or in part: list again and
            # send only what is still missing.
            now = self.find_tasks(batch, [i.key for i in pending])
            found.update(now)
            pending[:] = [i for i in pending if i.key not in now]
            return None if pending else found

        # add_items has just listed the batch: no look before the first import.
        return create_once(
            self.client.seam,
            f"{len(chunk)} task(s) of project {batch.external_id}",
            send,
            landed,
            attempts=self.create_attempts,
            find_first=False,
        )

    def _ensure_overlap(self, batch: BatchRef, overlap: int) -> None:
        project = self.client.get_project(batch.external_id)
        if project.maximum_annotations < overlap:
            self.client.patch_project(batch.external_id, ProjectPatch(maximum_annotations=overlap))

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        wanted = set(task_keys)
        found: dict[str, int] = {}
        for page, _ in self.client.iter_task_pages(
            batch.external_id, page_size=self.task_page_size, with_annotations=False
        ):
            for raw in page.tasks:
                data = raw.get("data")
                key = data.get("crowdloop_key") if isinstance(data, dict) else None
                task_id = raw.get("id")
                if key in wanted and isinstance(task_id, int):
                    # Two tasks with one key (a hand-made import): the older one stands.
                    found[key] = min(task_id, found.get(key, task_id))
        return {key: str(task_id) for key, task_id in found.items()}

    # --- batch control ---------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        self.client.patch_project(batch.external_id, ProjectPatch(is_published=True))

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        logger.info("%s: unpublishing project %s: %s", self.name, batch.external_id, reason)
        self.client.patch_project(batch.external_id, ProjectPatch(is_published=False))

    def check(self) -> CheckReport:
        """Read-only: the token (the refresh exchange for a personal access token, then
        GET /api/projects/ with page_size=1). Nobody is paid, so there is no balance."""

        def projects() -> str:
            first = next(iter(self.client.iter_projects(title="", page_size=1)), None)
            return "token accepted; " + (
                f"projects are readable (e.g. {first.id})" if first else "no project yet"
            )

        return CheckReport(
            self.name,
            (
                probe("credentials and project access", projects),
                CheckItem("balance", None, "Label Studio pays nobody: no balance to check"),
            ),
        )

    def get_status(self, batch: BatchRef) -> BatchStatus:
        project = self.client.get_project(batch.external_id)
        return project_status(project)

    # --- results ---------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        after = parse_cursor(cursor)
        newer: dict[int, tuple[WireAnnotation, dict[str, Any], dict[str, Any]]] = {}
        unreadable: list[Quarantined] = []
        cut: datetime | None = None
        for page, response in self.client.iter_task_pages(
            batch.external_id, page_size=self.task_page_size, with_annotations=True
        ):
            if cut is None:
                cut = server_time(response.headers.get("date")) - timedelta(seconds=self.settle_s)
            for raw_task in page.tasks:
                for raw, task, annotation in _annotations(raw_task, unreadable):
                    if annotation.id > after:
                        newer[annotation.id] = (annotation, raw, task)
        assert cut is not None  # iter_task_pages yields at least one page
        ready: list[tuple[WireAnnotation, dict[str, Any], dict[str, Any]]] = []
        for annotation_id in sorted(newer):
            annotation, raw, task = newer[annotation_id]
            if annotation.created_at > cut:
                break  # younger ones wait, so the cursor never passes one committed late
            ready.append((annotation, raw, task))
        chunks = [
            ready[start : start + self.page_size] for start in range(0, len(ready), self.page_size)
        ] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            submissions: list[Submission] = []
            quarantined: list[Quarantined] = list(unreadable) if last else []
            for annotation, raw, task in chunk:
                read = read_annotation(annotation, raw, task)
                if isinstance(read, Submission):
                    submissions.append(read)
                else:
                    quarantined.append(read)
            if chunk:
                cursor = str(chunk[-1][0].id)
            yield SubmissionPage(
                submissions=tuple(submissions),
                quarantined=tuple(quarantined),
                cursor=cursor,
                has_more=not last,
            )


# --- mapping helpers (pure) ---------------------------------------------------------------------


def key_token(idempotency_key: str) -> str:
    """The short, searchable stand-in for our key in a project title."""
    return "cl-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]


def project_title(name: str, idempotency_key: str) -> str:
    token = key_token(idempotency_key)
    room = TITLE_MAX - len(token) - 1
    head = " ".join(name.split())[:room].rstrip() or "crowdloop"
    return f"{head} {token}"


def task_import(item: TaskItem) -> TaskImport:
    payload = item.payload.model_dump(mode="json")
    kind = payload.pop("kind")
    data = {
        "crowdloop_key": item.key,
        "crowdloop_group": item.group,
        "crowdloop_kind": kind,
        **payload,
    }
    if kind == "rank":
        # The List tag shows `items`; the Ranker answers with their ids in the new order.
        data["items"] = [
            {"id": str(i), "title": f"Answer {i + 1}", "body": text}
            for i, text in enumerate(payload["responses"])
        ]
    return TaskImport(data=data, meta={"crowdloop_key": item.key, "crowdloop_group": item.group})


def project_status(project: WireProject) -> BatchStatus:
    tasks = project.task_number or 0
    total = tasks * max(project.maximum_annotations, 1)
    done = (project.total_annotations_number or 0) + (project.skipped_annotations_number or 0)
    return BatchStatus(
        state=BatchState.OPEN if project.is_published else BatchState.CLOSED,
        tasks=tasks,
        assignments_total=total,
        assignments_submitted=min(done, total),
    )


def parse_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(cursor)
    except ValueError as exc:
        raise ValueError(f"not a Label Studio cursor (an annotation id): {cursor!r}") from exc


def server_time(date_header: str | None) -> datetime:
    """The server's clock from its `Date` header (our own clock if it sent none)."""
    if date_header:
        try:
            return email.utils.parsedate_to_datetime(date_header).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _annotations(
    raw_task: Any, unreadable: list[Quarantined]
) -> Iterator[tuple[dict[str, Any], dict[str, Any], WireAnnotation]]:
    """A task's readable annotations; one without an id or a time is quarantined instead."""
    try:
        task = WireTask.model_validate(raw_task)
    except ValidationError:
        logger.warning("labelstudio: skipping an unreadable task: %.200s", raw_task)
        return
    for index, raw in enumerate(task.annotations):
        try:
            annotation = WireAnnotation.model_validate(raw)
        except ValidationError as exc:
            # With no usable id it cannot be placed under the cursor; it is reported on
            # every read (the store keeps it once, by this stable id).
            unreadable.append(
                quarantined(
                    f"task-{task.id}-annotation-{raw.get('id', index)}",
                    f"unreadable annotation: {first_error(exc)}",
                    raw,
                    task_key=task.data.get("crowdloop_key"),
                )
            )
            continue
        yield raw, task.data, annotation


def read_annotation(
    annotation: WireAnnotation, raw: dict[str, Any], data: dict[str, Any]
) -> Submission | Quarantined:
    """Map one Label Studio annotation to a Submission, or say why it cannot be read."""
    worker = _worker_id(annotation.completed_by)
    task_key = _str(data.get("crowdloop_key"))

    quarantine = quarantine_for(str(annotation.id), raw, task_key=task_key, worker_id=worker)

    try:
        fields = TaskData.model_validate(data)
    except ValidationError as exc:
        return quarantine(f"task {annotation.task} is not a crowdloop task: {first_error(exc)}")
    if worker is None:
        return quarantine("annotation has no completed_by user")
    if annotation.was_cancelled:
        return quarantine("the annotator skipped the task (was_cancelled)")
    expected = ANSWER_KIND_FOR_TASK.get(fields.crowdloop_kind)
    if expected is None:
        return quarantine(f"unknown task kind {fields.crowdloop_kind!r}")
    if not isinstance(annotation.result, list):
        return quarantine(f"result is not a list: {type(annotation.result).__name__}")
    try:
        answer = _answer(expected, annotation.result, len(data.get("items") or ()))
    except ValueError as exc:
        return quarantine(f"bad {expected} answer for a {fields.crowdloop_kind} task: {exc}")
    return Submission(
        external_id=str(annotation.id),
        task_key=fields.crowdloop_key,
        worker_id=worker,
        answer=answer,
        submitted_at=annotation.created_at,
    )


def _answer(kind: str, result: list[Any], shown: int = 0) -> Answer:
    """The answer in an annotation's result; `shown`: the answers a rank task listed."""
    control = {"preference": PREFERENCE, "verdict": VERDICT, "text": ANSWER, "ranking": RANKING}[
        kind
    ]
    values = [
        r.get("value") for r in result if isinstance(r, dict) and r.get("from_name") == control
    ]
    if len(values) != 1 or not isinstance(values[0], dict):
        raise ValueError(f"expected one {control!r} result, found {len(values)}")
    value = values[0]
    if kind == "text":
        texts = value.get("text")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("value.text is not a list of strings")
        payload: dict[str, Any] = {"kind": "text", "text": "\n".join(texts).strip()}
    elif kind == "ranking":
        payload = {"kind": "ranking", "ranks": _places(value, shown)}
    else:
        choices = value.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], str):
            raise ValueError(f"value.choices must hold exactly one choice, got {choices!r}")
        table = _PREFERENCES if kind == "preference" else _VERDICTS
        if choices[0] not in table:
            raise ValueError(f"unknown choice {choices[0]!r}")
        field = "choice" if kind == "preference" else "verdict"
        payload = {"kind": kind, field: table[choices[0]]}
    try:
        return _ANSWER.validate_python(payload)
    except ValidationError as exc:
        raise ValueError(first_error(exc, tagged_union=True)) from exc


def _places(value: dict[str, Any], shown: int) -> list[int]:
    """Places (1 best) of the answers as listed, from the Ranker's ids in the new order."""
    ranker = value.get("ranker")
    order = ranker.get(RANKING) if isinstance(ranker, dict) else None
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(map(str, range(shown))):
        raise ValueError(f"value.ranker.{RANKING} must list each of the {shown} answers once")
    places = [0] * shown
    for place, item in enumerate(order, start=1):
        places[int(item)] = place
    return places


def _worker_id(completed_by: int | dict[str, Any] | None) -> str | None:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    return str(completed_by) if isinstance(completed_by, int) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
