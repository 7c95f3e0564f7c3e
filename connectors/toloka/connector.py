"""The Toloka connector: a crowdloop batch is one Toloka pool, a task is one Toloka task.

Sources read (facts only; the Toloka API reference is toloka.ai/docs/api, mirrored in the
github.com/Toloka/docs repository under en/api/concepts/; the SDK is toloka-kit 1.2.3,
github.com/Toloka/toloka-kit src/client/):

Auth and hosts
    `Authorization: ApiKey <key>` (toloka.ai/docs/guide/api-token) or the older
    `OAuth <token>` (toloka.ai/docs/api/access; access.md). Roots `https://toloka.dev/api`
    and, with the option `sandbox: true`, `https://sandbox.toloka.dev/api`; the old
    toloka.yandex.com hosts are switched off (api-migration.md; toloka-kit
    `TolokaClient.Environment`, which also picks ApiKey vs OAuth by the key's shape).

Endpoints used
    GET  /v1/projects/{id}            check the project's input/output spec (get-prj.md)
    POST /v1/pools                    create the batch's pool (create-pool.md)
    GET  /v1/pools?project_id=&sort=id&id_gt=&limit=   find a pool by our key (get-pool-list.md)
    GET  /v1/pools/{id}               pool status (get-pool.md)
    POST /v1/pools/{id}/open|close    async; 204 if already in that state (open-pool.md,
                                      close-pool.md)
    POST /v1/tasks?async_mode=true&operation_id=&allow_defaults=false&open_pool=
                                      publish tasks (create-task.md, create-tasks-batch.md)
    GET  /v1/operations/{id}          poll an async operation to SUCCESS/FAIL (get-operation.md)
    GET  /v1/operations/{id}/log      task ids created by an upload (get-operation-log.md)
    GET  /v1/tasks?pool_id=&sort=id&id_gt=&limit=      find tasks by our key (get-tasks-list.md)
    GET  /v1/assignments?pool_id=&status=SUBMITTED,ACCEPTED,REJECTED&sort=&limit= and
         submitted_gt / submitted_gte / submitted_lte / id_gt filters  (result.md; toloka-kit
         search_requests.AssignmentSearchRequest and AssignmentSortItems)
    GET  /v1/assignments/{id}, PATCH /v1/assignments/{id} {status, public_comment}
                                      accept / reject (get-assignment-id.md, accept.md)
    PUT  /v1/user-restrictions        block a Toloker (ban-create.md; toloka-kit
                                      `set_user_restriction` uses PUT, not POST)
    GET  /v1/skills?name=&sort=id&id_gt=   find a qualification's skill by name
                                      (get-skill-list.md; toloka-kit SkillSearchRequest.name,
                                      `get_skills(name=...)`)
    POST /v1/skills {name, private_comment, hidden}   create it (create-skill.md;
                                      toloka-kit skill.py `Skill`, `create_skill`)
    PUT  /v1/user-skills {skill_id, user_id, value}   grant it (toloka.ai/docs/api/set-skill;
                                      toloka-kit user_skill.py `SetUserSkillRequest`,
                                      `set_user_skill` uses PUT)

Projects
    The project is NOT created by crowdloop: `project_id` (or `project_ids` per stage) is an
    option. A Toloka project carries the task interface (view spec), instructions and
    quality setup that an operator designs once; project creation is not idempotent, is
    capped at 20/min and 100/day, and compare and writing stages need different output
    specs anyway. Each project's input spec must declare `crowdloop_key` (string, hidden),
    `kind`, `instruction` and the payload fields of its stage (`models.INPUT_FIELDS`); its
    output spec the answer field (`choice` left|right|tie, `text`, or `verdict`
    accept|reject). `create_batch` checks this once per project (option `check_project`).

Idempotency
    Pools: Toloka has no idempotency key for POST /v1/pools, so the batch key is written
    into the pool's `metadata` (`crowdloop_key`, a dict of string lists, toloka-kit
    `Pool.metadata`) and `private_comment`. Pools cannot be filtered by either, so
    `find_batch` pages through the project's pools (300 per page) and matches the
    metadata. `create_batch` looks the key up first, sends the POST once (`retry=False`),
    and after a 5xx/timeout looks it up again before re-sending; a 429 (not processed) is
    waited out (Retry-After, else the quota window Toloka names in `payload.interval`,
    else backoff) and re-sent. So IDEMPOTENT_CREATE is not
    declared: tasks are deduped natively, pools are reconciled.
    Tasks: each chunk is uploaded as one async operation whose `operation_id` is a UUIDv5
    of our idempotency key and the chunk's task keys; Toloka performs an operation id once
    and answers a repeat with OPERATION_ALREADY_EXISTS (toloka-kit 1.2.3
    `_async_create_objects_idempotent`), which is read as "poll that operation". Task ids
    come from the operation log, else from a pool scan. `TaskItem.key` travels in the
    `crowdloop_key` input value (tasks have no metadata field), which is how `find_tasks`
    and the submission reader recover it.
    Known solutions (control tasks) exist in Toloka, but crowdloop keeps golden answers on
    its own side and never sends them: golden items are published as ordinary tasks.

Tasks, overlap, exclusions
    `overlap` is set per task (allow_defaults=false); `TaskItem.exclude_workers` becomes the
    task's `unavailable_for` (create-task.md), hence EXCLUDE_WORKERS. Toloka cannot express
    "a worker answers a group at most once" across different tasks of one group; crowdloop
    dedupes such answers on its side. A pool's `mixer_config.real_tasks_count`
    (option `tasks_per_suite`) puts several tasks into one assignment; the reward per
    assignment is the per-task reward times that count. Toloka refuses to open an empty
    pool, so `start` on an empty pool is a no-op and `add_items` uploads with
    `open_pool=true` (unless the pool was closed by `stop`), which also reopens a pool that
    closed itself after finishing its tasks when a later round adds work.

Submissions and pagination
    An assignment is one Toloker's answers to a task suite; each (assignment, task) pair is
    one Submission with external id `<assignment id>:<task index>`, review maps it back to
    the assignment. Keyset pagination with `has_more`. The cursor is `<submitted>|<id>` of
    the last assignment read, not the bare assignment id: ids are handed out when a suite
    is issued, so a suite issued early and submitted late has a smaller id than ones read
    already and `id_gt` would skip it; `submitted` never changes once set. Each step reads
    the rest of the cursor's `submitted` instant by id (`submitted_gte=submitted_lte=t`,
    `id_gt`, `sort=id`), then what came later (`submitted_gt=t`, `sort=submitted,id`).
    Garbled answers (missing output field, value out of range, no crowdloop key) are
    Quarantined with the raw assignment/task/solution JSON.

Review and blocking
    PATCH status ACCEPTED / REJECTED with `public_comment`; several decisions for one
    assignment collapse into one PATCH (any reject rejects the suite). A 400/409 answer is
    checked against the assignment's status: already in the wanted state is a no-op;
    ACCEPTED cannot be rejected any more (Toloka only allows SUBMITTED->ACCEPTED/REJECTED and
    REJECTED->ACCEPTED), which is logged and skipped. BlockScope ACCOUNT -> scope
    ALL_PROJECTS, CAMPAIGN -> PROJECT (each configured project), BATCH -> not supported
    (the call carries no pool).

Rate limits
    300 requests a second overall, plus per-method quotas (pool creation: 20 a minute,
    100 a day; skills: 10 a minute) answered with 429 and the window in the error body,
    `{"code": "TOO_MANY_REQUESTS", "payload": {"interval": "MIN"}}` (API reference
    "Rate limiting" and "HTTP status codes", github.com/Toloka/docs
    en/api/reference/parts/api/info-description.md). `client.quota_wait` maps the window to
    a wait for `HttpSeam` as toloka-kit's TolokaRetry does (src/client/primitives/retry.py:
    MIN = 60 s, waited out; HOUR / DAY are not waited out and fail as RateLimited).

Qualifications (QUALIFY_WORKERS)
    One Toloka skill per crowdloop qualification, named exactly like it (hidden from
    Tolokers). Skill creation has no idempotency key either, so `ensure_qualification`
    looks the name up first, sends POST /v1/skills once (`retry=False`) and after a
    5xx/timeout looks the name up again before re-sending; the lowest-id skill of that name
    is the one used, so every run settles on the same skill. The id is cached per connector.
    A grant is PUT /v1/user-skills with value 100 (skills range 0..100): a "set", so a
    repeated grant changes nothing. A batch with `required_qualification` is a pool whose
    `filter` (create-pool.md: a top-level pool field; filters.md, filter-skill.md) requires
    `{"category": "skill", "key": "<skill id>", "operator": "GTE", "value": 1}`, written
    as toloka-kit's FilterAnd serialises a lone condition (`{"and": [{"or": [<it>]}]}`,
    filter.py). The filter is matched against a Toloker's skills as they are when tasks
    are offered, which is what lets a skill earned later open a running pool (the same
    mechanism as Toloka's training-pool requirement); a value of 0 or a deleted user-skill
    (DELETE /v1/user-skills/{id}) takes the access away. An operator's own `filter` in `pool_extra`
    is kept: its `and` list gets the skill clause appended, an `or` filter or a lone
    condition is and-ed with it.

Spend
    Not reported: Toloka exposes the account balance (GET /v1/requester) and each
    assignment's reward, but no per-pool spend with fees, so SPEND_REPORT is not declared.

Rate limits (rate-limiting.md, toloka.ai/docs/api/rate-limiting)
    More than 300 requests/s answers 429; per-method quotas also answer 429 with the
    quota's interval in the body: pool creation 20/min and 100/day, task creation
    200,000/min and 4,000,000/day, skill creation 10/min and 100/day, skill values
    100,000/day (create-pool.md, create-task.md, create-skill.md, set-skill). HttpSeam honours
    Retry-After when sent and backs off otherwise; a daily quota will exhaust the retry
    budget and surface as RateLimited. Errors carry `{request_id, code, message, payload}`
    (errors.md): 401/403 AuthError, 404 NotFound, 409 conflict, 429 RateLimited, 5xx retried.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import client_options, create_once
from crowdloop.connectors.answers import first_error, quarantined
from crowdloop.connectors.base import CheckItem, CheckReport, Connector, probe
from crowdloop.connectors.errors import (
    ConnectorError,
    GarbledResponse,
    InvalidRequest,
    NotSupported,
    TransientError,
)
from crowdloop.connectors.toloka.client import POOL_PAGE_MAX, TolokaClient
from crowdloop.connectors.toloka.models import (
    INPUT_FIELDS,
    KEY_FIELD,
    KIND_FIELD,
    OUTPUT_FIELD,
    POOL_KEY_METADATA,
    AssignmentPatch,
    MixerConfig,
    PoolCreate,
    PoolDefaults,
    SkillCreate,
    TaskCreate,
    UserRestriction,
    UserSkillSet,
    WireAssignment,
    WireError,
    WireOperation,
    WireSkill,
)
from crowdloop.connectors.toloka.options import CONNECTOR_NAME, TolokaOptions
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
    TaskPayload,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)

logger = logging.getLogger(__name__)

_ANSWER = TypeAdapter[Answer](Answer)
STAGE_KIND: dict[Stage, str] = {
    Stage.COMPARE: "compare",
    Stage.PROMPTS: "write_prompt",
    Stage.RESPONSES: "write_response",
    Stage.VERIFY: "verify",
}
# An exam batch (where the domain has that stage) is a compare batch to the marketplace.
STAGE_KIND.update({stage: "compare" for stage in Stage if stage.value == "exam"})
# Operation ids are UUIDv5 in this namespace (RFC 4122, as create-task.md requires).
OPERATION_NAMESPACE = uuid.UUID("6f1c1f5e-2d0b-5b7e-9a35-3c8f4b1de0a7")
COMMENT_MAX = 2048  # assignment public_comment (accept.md)
RESTRICTION_COMMENT_MAX = 499  # user restriction private_comment (ban-create.md)
TOLOKA_TIME = "%Y-%m-%dT%H:%M:%S"
# A grant sets the skill to this value (skills range 0..100, set-skill); a gated pool admits
# Tolokers whose value is at least SKILL_REQUIRED, so 0 revokes.
SKILL_GRANTED = 100
SKILL_REQUIRED = 1

T = TypeVar("T")


@dataclass(frozen=True)
class _Position:
    """Where a submission read stopped: the last assignment's `submitted` and id."""

    submitted: str
    assignment_id: str

    def __str__(self) -> str:
        return f"{self.submitted}|{self.assignment_id}"

    @classmethod
    def parse(cls, cursor: str) -> _Position:
        submitted, sep, assignment_id = cursor.partition("|")
        if not sep or not submitted or not assignment_id or _parse_time(submitted) is None:
            raise InvalidRequest(CONNECTOR_NAME, f"not a Toloka submission cursor: {cursor!r}")
        return cls(submitted, assignment_id)

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> _Position | None:
        submitted, assignment_id = raw.get("submitted"), raw.get("id")
        if isinstance(submitted, str) and isinstance(assignment_id, str):
            return cls(submitted, assignment_id)
        return None

    def before(self, other: _Position) -> bool:
        mine, theirs = _parse_time(self.submitted), _parse_time(other.submitted)
        if mine is None or theirs is None:
            return True  # cannot tell: keep the item rather than lose it
        return (mine, self.assignment_id) < (theirs, other.assignment_id)


class TolokaConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = TolokaOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PAIRWISE,
            Capability.FREE_TEXT,
            Capability.BLOCK_WORKER,
            Capability.REVIEW,
            Capability.EXCLUDE_WORKERS,
            Capability.PAUSE,
            Capability.SANDBOX,
            Capability.QUALIFY_WORKERS,
        }
    )
    # Toloka adds a commission to the rewards it pays, but we found no published rate to
    # cite (pricing is sales-led; the API reports no per-pool spend, see "Spend" above), so
    # the fee is not priced here: set the campaign's `budget.fee_rate` to your rate.
    fee: ClassVar[FeeModel | None] = None
    # One async upload operation per chunk; Toloka advises at most 10,000 tasks per call.
    max_items_per_call: ClassVar[int] = 1000

    def __init__(
        self,
        client: TolokaClient,
        options: TolokaOptions,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.options = options
        self._now = now
        self._checked: set[tuple[str, str]] = set()
        self._skill_ids: dict[str, str] = {}  # our qualification name -> Toloka skill id

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from crowdloop.connectors.credentials import resolve_credentials
        from crowdloop.connectors.toloka.credentials import TolokaCredentials

        opts = TolokaOptions.model_validate(dict(options))
        credentials = resolve_credentials(TolokaCredentials, credentials_block)
        client = credentials.get_client(
            base_url=credentials.root_url(sandbox=opts.sandbox), **client_options(opts.model_dump())
        )
        return cls(client, opts)

    def close(self) -> None:
        self.client.close()

    # --- creates (keyed) ---------------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        project_id = self.options.project_for(spec.stage)
        self._check_project(project_id, STAGE_KIND[spec.stage])

        @functools.cache  # built once, after the first look: a resend carries the same body
        def body() -> PoolCreate:
            skill = spec.required_qualification
            skill_id = self._skill_id(skill) if skill else None
            return self._pool_body(spec, project_id, idempotency_key, skill_id=skill_id)

        return self._create_once(
            f"pool for {idempotency_key}",
            lambda: self.batch_ref(self.client.create_pool(body()).id),
            lambda: self.find_batch(idempotency_key),
        )

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        for project_id in self.options.projects():
            for pool in self.client.iter_pools(project_id, limit=POOL_PAGE_MAX):
                if idempotency_key in (pool.metadata or {}).get(POOL_KEY_METADATA, []):
                    return self.batch_ref(pool.id)
        return None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        if not items:
            return AddItemsResult(external_ids={})
        pool = self.client.get_pool(batch.external_id)
        # A pool closed by `stop` stays closed; any other closed pool opens with its tasks.
        open_pool = not (pool.status == "CLOSED" and pool.last_close_reason == "MANUAL")
        ids: dict[str, str] = {}
        for start in range(0, len(items), self.max_items_per_call):
            chunk = items[start : start + self.max_items_per_call]
            keys = [item.key for item in chunk]
            operation_id = uuid.uuid5(OPERATION_NAMESPACE, "\n".join([idempotency_key, *keys]))
            operation = self.client.create_tasks(
                [self._task_wire(pool.id, item) for item in chunk],
                operation_id=operation_id,
                open_pool=open_pool,
            )
            operation = self._wait(operation, f"task upload to pool {pool.id}")
            if operation.status == "FAIL":
                raise InvalidRequest(
                    self.name,
                    f"task upload {operation.id} to pool {pool.id} failed: "
                    f"{self._log_errors(operation.id)}",
                    details=operation.details,
                )
            ids.update(self._created_ids(operation.id, batch, set(keys)))
        return self.added(items, ids)

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        wanted = set(task_keys)
        found: dict[str, str] = {}
        if not wanted:
            return found
        for page in self.client.iter_task_pages(
            batch.external_id, limit=self.options.task_page_limit
        ):
            for raw in page.items:
                inputs = raw.get("input_values")
                key = inputs.get(KEY_FIELD) if isinstance(inputs, dict) else None
                task_id = raw.get("id")
                if key in wanted and isinstance(task_id, str):
                    found.setdefault(cast(str, key), task_id)
            if len(found) == len(wanted):
                break
        return found

    # --- batch control -------------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        result = self.client.open_pool(batch.external_id)
        if result is None:
            return  # open already
        if isinstance(result, WireError):
            if result.code == "EMPTY_POOL":
                logger.info(
                    "toloka: pool %s has no tasks yet; add_items opens it", batch.external_id
                )
                return
            raise InvalidRequest(
                self.name,
                f"pool {batch.external_id} cannot be opened: {result.code}: {result.message}",
                details=result.payload,
                request_id=result.request_id,
            )
        self._check_done(self._wait(result, f"opening pool {batch.external_id}"))

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        """Close the pool. Toloka answers 204 to closing a closed pool (close-pool.md), so a
        repeated stop changes nothing; a pool closed by hand stays closed when later items
        are added (`add_items` opens only pools that closed themselves)."""
        # Toloka's close takes no reason; it is logged here and the pool records MANUAL.
        logger.info("toloka: closing pool %s: %s", batch.external_id, reason)
        self._close(batch)

    def pause(self, batch: BatchRef) -> None:
        """Close the pool (reversible: `resume` opens it again). Tolokers finish the task
        suites they hold; no new ones are handed out (close-pool.md, open-pool.md)."""
        logger.info("toloka: pausing (closing) pool %s", batch.external_id)
        self._close(batch)

    def resume(self, batch: BatchRef) -> None:
        """Open the pool again; an open pool answers 204, so resuming twice is a no-op.
        Toloka has one closed state for a pause and a stop, so resuming a stopped pool
        would reopen it: the campaign lifecycle never resumes a stopped batch."""
        self.start(batch)

    def _close(self, batch: BatchRef) -> None:
        operation = self.client.close_pool(batch.external_id)
        if operation is not None:
            self._check_done(self._wait(operation, f"closing pool {batch.external_id}"))

    def check(self) -> CheckReport:
        """Read-only: the key and balance (GET /v1/requester) and each configured project
        (GET /v1/projects/{id}, with its input/output spec checked as `create_batch` does)."""

        def requester() -> str:
            who = self.client.get_requester()
            name = next(iter(who.public_name.values()), "")
            return f"key accepted: requester {who.id} {name}".rstrip()

        def balance() -> str:
            who = self.client.get_requester()
            if who.balance is None:
                return "balance not reported"
            if who.balance <= 0:
                raise InvalidRequest(self.name, f"the account balance is {who.balance} USD")
            return f"balance {who.balance} USD"

        def project(project_id: str, kinds: set[str]) -> Callable[[], str]:
            def read() -> str:
                spec = self.client.get_project(project_id).task_spec
                fits, misses = [], []
                for kind in sorted(kinds):
                    missing = [
                        f
                        for f in (KEY_FIELD, KIND_FIELD, "instruction", *INPUT_FIELDS[kind])
                        if f not in spec.input_spec
                    ]
                    if missing or OUTPUT_FIELD[kind] not in spec.output_spec:
                        misses.append(kind)
                    else:
                        fits.append(kind)
                if not fits:
                    raise InvalidRequest(
                        self.name,
                        f"project {project_id} fits none of {sorted(kinds)}: its input/output "
                        "spec lacks crowdloop's fields (see the module docstring, Projects)",
                    )
                return f"project {project_id} fits {', '.join(fits)}" + (
                    f" (not {', '.join(misses)})" if misses else ""
                )

            return read

        kinds: dict[str, set[str]] = {}
        for stage, kind in STAGE_KIND.items():
            try:
                kinds.setdefault(self.options.project_for(stage), set()).add(kind)
            except InvalidRequest:
                continue  # no project for this stage: a campaign using it is refused later
        return CheckReport(
            self.name,
            (
                probe("credentials", requester),
                probe("balance", balance),
                *(probe(f"project {pid}", project(pid, ks)) for pid, ks in kinds.items()),
                CheckItem(
                    "per-minute quotas",
                    None,
                    "not readable through the API; waited out when hit (see Rate limits)",
                ),
            ),
        )

    def get_status(self, batch: BatchRef) -> BatchStatus:
        pool = self.client.get_pool(batch.external_id)
        tasks = total = 0
        for page in self.client.iter_task_pages(
            batch.external_id, limit=self.options.task_page_limit
        ):
            for raw in page.items:
                tasks += 1
                overlap = raw.get("overlap")
                total += overlap if isinstance(overlap, int) else 0
        submitted = sum(
            len(raw.get("tasks") or []) for raw in self._iter_answered(batch.external_id)
        )
        return BatchStatus(
            state=BatchState.OPEN if pool.status == "OPEN" else BatchState.CLOSED,
            tasks=tasks,
            assignments_total=total,
            assignments_submitted=submitted,
        )

    # --- results -------------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        pool_id = batch.external_id
        limit = self.options.page_limit
        position = _Position.parse(cursor) if cursor else None
        in_tie = position is not None  # first finish the cursor's own `submitted` instant
        while True:
            if position is None:
                page = self.client.list_assignments(pool_id, limit=limit, sort="submitted,id")
            elif in_tie:
                page = self.client.list_assignments(
                    pool_id,
                    limit=limit,
                    sort="id",
                    submitted_gte=position.submitted,
                    submitted_lte=position.submitted,
                    id_gt=position.assignment_id,
                )
            else:
                page = self.client.list_assignments(
                    pool_id, limit=limit, sort="submitted,id", submitted_gt=position.submitted
                )
            last = position
            for raw in reversed(page.items):
                last = _Position.of(raw)
                if last is not None:
                    break
            if page.items and last is None:
                raise GarbledResponse(
                    self.name, f"assignments of pool {pool_id} carry no id/submitted to page on"
                )
            fresh = [
                raw
                for raw in page.items
                if position is None or (p := _Position.of(raw)) is None or position.before(p)
            ]
            finished = not in_tie and not page.has_more
            if fresh or finished:
                read = [r for raw in fresh for r in _read_assignment(raw)]
                yield SubmissionPage(
                    submissions=tuple(r for r in read if isinstance(r, Submission)),
                    quarantined=tuple(r for r in read if isinstance(r, Quarantined)),
                    cursor=str(last) if last is not None else cursor,
                    has_more=not finished,
                )
            if finished:
                return
            # After a full page the next one may continue the same `submitted` instant; once
            # that instant is exhausted, read what was submitted later.
            in_tie = page.has_more
            position = last

    # --- money and workers ---------------------------------------------------------------------

    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        by_assignment: dict[str, list[ReviewDecision]] = {}
        for decision in decisions:
            by_assignment.setdefault(_assignment_id(decision.submission_id), []).append(decision)
        for assignment_id, group in by_assignment.items():
            accept = all(d.accept for d in group)  # any reject rejects the whole suite
            deciding = [d for d in group if d.accept == accept]
            comment = "; ".join(dict.fromkeys(d.comment for d in deciding if d.comment))
            target = "ACCEPTED" if accept else "REJECTED"
            patch = AssignmentPatch(
                status=target,
                public_comment=(comment or ("Accepted" if accept else "Rejected"))[:COMMENT_MAX],
            )
            refused = self.client.patch_assignment(assignment_id, patch)
            if refused is not None:
                self._reconcile_review(assignment_id, target, refused)

    def block_worker(self, worker_id: str, *, scope: BlockScope, reason: str) -> None:
        comment = (reason or "blocked by crowdloop")[:RESTRICTION_COMMENT_MAX]
        if scope is BlockScope.ACCOUNT:
            bodies = [
                UserRestriction(scope="ALL_PROJECTS", user_id=worker_id, private_comment=comment)
            ]
        elif scope is BlockScope.CAMPAIGN:
            bodies = [
                UserRestriction(
                    scope="PROJECT", user_id=worker_id, project_id=project, private_comment=comment
                )
                for project in self.options.projects()
            ]
        else:
            raise NotSupported(self.name, f"{Capability.BLOCK_WORKER.value} scope {scope.value}")
        for body in bodies:
            self.client.set_user_restriction(body)

    # spend(): the base class answers None; Toloka reports no per-pool spend.

    # --- qualifications ------------------------------------------------------------------------

    def ensure_qualification(self, qualification: str) -> None:
        self._skill_id(qualification)

    def grant_qualification(self, worker_id: str, qualification: str) -> None:
        body = UserSkillSet(
            skill_id=self._skill_id(qualification), user_id=worker_id, value=SKILL_GRANTED
        )
        self.client.set_user_skill(body)

    # --- helpers -------------------------------------------------------------------------------

    def _create_once(self, what: str, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Create what Toloka cannot dedupe (the client sends it once, `retry=False`). A 429
        is a quota refusal, not processed (see "Rate limits" above), so it is waited out
        without a look; after a 5xx/timeout the object is looked up before sending again."""
        return create_once(self.client.seam, what, create, find, rate_limit_refused=True)

    def _find_skill(self, name: str) -> WireSkill | None:
        """The lowest-id skill called exactly `name` (ids ascend, so the first match)."""
        return next((s for s in self.client.iter_skills(name) if s.name == name), None)

    def _skill_id(self, name: str) -> str:
        """The Toloka skill id of our named qualification, created on first use."""
        if name not in self._skill_ids:
            body = SkillCreate(name=name, private_comment=f"crowdloop qualification {name}")
            skill = self._create_once(
                f"skill {name!r}",
                lambda: self.client.create_skill(body),
                lambda: self._find_skill(name),
            )
            self._skill_ids[name] = skill.id
        return self._skill_ids[name]

    def _sleep(self, seconds: float) -> None:
        self.client.seam.sleep(seconds)

    def _check_project(self, project_id: str, kind: str) -> None:
        if not self.options.check_project or (project_id, kind) in self._checked:
            return
        spec = self.client.get_project(project_id).task_spec
        missing_in = [
            name
            for name in (KEY_FIELD, KIND_FIELD, "instruction", *INPUT_FIELDS[kind])
            if name not in spec.input_spec
        ]
        problems = [f"input fields {missing_in}"] if missing_in else []
        if OUTPUT_FIELD[kind] not in spec.output_spec:
            problems.append(f"output field {OUTPUT_FIELD[kind]!r}")
        if problems:
            raise InvalidRequest(
                self.name,
                f"project {project_id} cannot carry {kind} tasks: its task_spec lacks "
                + " and ".join(problems),
            )
        self._checked.add((project_id, kind))

    def _pool_body(
        self, spec: BatchSpec, project_id: str, key: str, *, skill_id: str | None = None
    ) -> PoolCreate:
        if spec.reward.currency != "USD":
            raise InvalidRequest(
                self.name, f"Toloka pays rewards in USD, not {spec.reward.currency}"
            )
        per_suite = spec.reward.amount * self.options.tasks_per_suite
        expires = self._now().astimezone(UTC) + timedelta(days=self.options.pool_lifetime_days)
        ours: dict[str, Any] = {
            "project_id": project_id,
            "private_name": spec.name,
            "private_comment": f"crowdloop batch {key}",
            "public_description": spec.instruction,
            "may_contain_adult_content": self.options.may_contain_adult_content,
            "will_expire": expires.strftime(TOLOKA_TIME),
            "reward_per_assignment": float(per_suite),
            "assignment_max_duration_seconds": self.options.assignment_max_duration_s,
            "auto_accept_solutions": False,  # crowdloop reviews
            "auto_accept_period_day": self.options.auto_accept_period_days,
            "defaults": PoolDefaults(),
            "mixer_config": MixerConfig(real_tasks_count=self.options.tasks_per_suite),
            "metadata": {
                POOL_KEY_METADATA: [key],
                "crowdloop_campaign": [spec.campaign_id],
                "crowdloop_stage": [spec.stage.value],
            },
        }
        if skill_id is not None:
            ours["filter"] = _with_skill(self.options.pool_extra.get("filter"), skill_id)
        return PoolCreate.model_validate({**self.options.pool_extra, **ours})

    def _task_wire(self, pool_id: str, item: TaskItem) -> TaskCreate:
        return TaskCreate(
            pool_id=pool_id,
            input_values=_input_values(item.key, item.payload),
            overlap=item.overlap,
            unavailable_for=list(item.exclude_workers),
        )

    def _wait(self, operation: WireOperation, what: str) -> WireOperation:
        """Poll an async operation until SUCCESS or FAIL (bounded by operation_timeout_s)."""
        waited, delay = 0.0, self.options.operation_poll_s
        polled = False
        while not operation.done:
            if polled:
                if waited >= self.options.operation_timeout_s:
                    raise TransientError(
                        self.name,
                        f"{what}: operation {operation.id} still {operation.status} "
                        f"after {waited:.0f}s",
                    )
                self._sleep(delay)
                waited += delay
                delay = min(delay * 1.5, 10.0)
            operation = self.client.get_operation(operation.id)
            polled = True
        return operation

    def _check_done(self, operation: WireOperation) -> None:
        if operation.status == "FAIL":
            raise InvalidRequest(
                self.name,
                f"operation {operation.id} ({operation.type}) failed",
                details=operation.details,
            )

    def _log_errors(self, operation_id: str) -> str:
        try:
            log = self.client.get_operation_log(operation_id)
        except ConnectorError as exc:
            return f"(log unavailable: {exc.message})"
        errors = [json.dumps(item.output, sort_keys=True) for item in log if not item.success]
        return "; ".join(errors[:3]) or "no details in the operation log"

    def _created_ids(self, operation_id: str, batch: BatchRef, keys: set[str]) -> dict[str, str]:
        ids: dict[str, str] = {}
        try:
            for item in self.client.get_operation_log(operation_id):
                inputs = item.input.get("input_values")
                key = inputs.get(KEY_FIELD) if isinstance(inputs, dict) else None
                task_id = item.output.get("task_id")
                if item.success and key in keys and isinstance(task_id, str):
                    ids[cast(str, key)] = task_id
        except ConnectorError as exc:  # e.g. logs older than a month are archived
            logger.info("toloka: operation log %s unavailable (%s); scanning", operation_id, exc)
        missing = [key for key in keys if key not in ids]
        if missing:
            ids.update(self.find_tasks(batch, missing))
        return ids

    def _iter_answered(self, pool_id: str) -> Iterator[dict[str, Any]]:
        id_gt: str | None = None
        while True:
            filters = {"sort": "id"} | ({"id_gt": id_gt} if id_gt else {})
            page = self.client.list_assignments(pool_id, limit=self.options.page_limit, **filters)
            yield from page.items
            last = page.items[-1].get("id") if page.items else None
            if not page.has_more or not isinstance(last, str):
                return
            id_gt = last

    def _reconcile_review(self, assignment_id: str, target: str, refused: WireError) -> None:
        current = self.client.get_assignment(assignment_id).status
        if current == target:
            return  # the decision was applied already
        if current == "ACCEPTED" and target == "REJECTED":
            logger.warning(
                "toloka: assignment %s is ACCEPTED already and can no longer be rejected",
                assignment_id,
            )
            return
        raise InvalidRequest(
            self.name,
            f"PATCH /v1/assignments/{assignment_id} to {target} refused "
            f"({refused.code}: {refused.message}); it is {current}",
            details=refused.payload,
            request_id=refused.request_id,
        )


# --- wire <-> domain ---------------------------------------------------------------------------


def _input_values(key: str, payload: TaskPayload) -> dict[str, str]:
    values = {KEY_FIELD: key, KIND_FIELD: payload.kind, "instruction": payload.instruction}
    if isinstance(payload, CompareTask):
        values |= {"prompt": payload.prompt, "left": payload.left, "right": payload.right}
    elif isinstance(payload, WritePromptTask):
        values |= {"topic": payload.topic}
    elif isinstance(payload, WriteResponseTask):
        values |= {"prompt": payload.prompt}
    elif isinstance(payload, VerifyTask):
        values |= {"target": payload.target, "prompt": payload.prompt, "text": payload.text}
    return values


def _with_skill(operator_filter: Any, skill_id: str) -> dict[str, Any]:
    """The pool filter admitting holders of the skill, and-ed with the operator's own."""
    clause = {
        "or": [{"category": "skill", "key": skill_id, "operator": "GTE", "value": SKILL_REQUIRED}]
    }
    if operator_filter is None:
        return {"and": [clause]}
    if not isinstance(operator_filter, dict):
        raise InvalidRequest(CONNECTOR_NAME, "pool_extra.filter must be a Toloka filter object")
    if isinstance(operator_filter.get("and"), list) and len(operator_filter) == 1:
        return {"and": [*operator_filter["and"], clause]}
    if "or" in operator_filter:
        return {"and": [operator_filter, clause]}
    return {"and": [{"or": [operator_filter]}, clause]}  # a lone condition


def _assignment_id(submission_id: str) -> str:
    head, sep, index = submission_id.rpartition(":")
    return head if sep and index.isdigit() else submission_id


def _parse_time(value: str) -> datetime | None:
    """Toloka times are UTC without an offset: `YYYY-MM-DDThh:mm:ss[.sss]`."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _read_assignment(raw: dict[str, Any]) -> list[Submission | Quarantined]:
    """One Submission per (assignment, task), or the reason each piece cannot be read."""
    try:
        wire = WireAssignment.model_validate(raw)
    except ValidationError as exc:
        return [
            quarantined(
                str(raw.get("id", "")),
                f"unreadable assignment: {first_error(exc)}",
                raw,
                worker_id=raw.get("user_id"),
            )
        ]
    submitted_at = _parse_time(wire.submitted)
    return [
        _read_piece(
            wire,
            index,
            task,
            wire.solutions[index] if index < len(wire.solutions) else None,
            submitted_at,
        )
        for index, task in enumerate(wire.tasks)
    ]


def _read_piece(
    wire: WireAssignment,
    index: int,
    task: dict[str, Any],
    solution: dict[str, Any] | None,
    submitted_at: datetime | None,
) -> Submission | Quarantined:
    quarantine = functools.partial(_quarantine_piece, wire, index, task, solution)

    inputs = task.get("input_values")
    key = inputs.get(KEY_FIELD) if isinstance(inputs, dict) else None
    kind = inputs.get(KIND_FIELD) if isinstance(inputs, dict) else None
    if submitted_at is None:
        return quarantine(f"unreadable submitted time {wire.submitted!r}")
    if not isinstance(key, str) or not key:
        return quarantine(f"task has no {KEY_FIELD} input value (not a crowdloop task)")
    expected = ANSWER_KIND_FOR_TASK.get(kind) if isinstance(kind, str) else None
    if expected is None or not isinstance(kind, str):
        return quarantine(f"unknown task kind {kind!r}")
    outputs = solution.get("output_values") if isinstance(solution, dict) else None
    if not isinstance(outputs, dict):
        return quarantine(f"no solution output_values for task {index}")
    field = OUTPUT_FIELD[kind]
    if field not in outputs:
        return quarantine(f"output field {field!r} missing for a {kind} task")
    try:
        answer = _ANSWER.validate_python({"kind": expected, field: outputs[field]})
    except ValidationError as exc:
        problem = first_error(exc, tagged_union=True)
        return quarantine(f"bad {expected} answer for a {kind} task: {problem}")
    return Submission(
        external_id=f"{wire.id}:{index}",
        task_key=key,
        worker_id=wire.user_id,
        answer=answer,
        submitted_at=submitted_at,
    )


def _quarantine_piece(
    wire: WireAssignment, index: int, task: Any, solution: Any, reason: str
) -> Quarantined:
    inputs = task.get("input_values") if isinstance(task, dict) else None
    key = inputs.get(KEY_FIELD) if isinstance(inputs, dict) else None
    piece = {
        "assignment_id": wire.id,
        "user_id": wire.user_id,
        "status": wire.status,
        "submitted": wire.submitted,
        "task_index": index,
        "task": task,
        "solution": solution,
    }
    return quarantined(f"{wire.id}:{index}", reason, piece, task_key=key, worker_id=wire.user_id)
