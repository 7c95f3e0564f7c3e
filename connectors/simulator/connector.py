"""The connector for crowdloop's built-in simulated marketplace.

Pools are batches, tasks carry our keys (the server dedupes by key within a pool, which is
what makes a retried or replayed `add_items` safe), assignments are submissions.
Qualifications are server objects found and created by name (POST /qualifications is keyed
by name, so a retried create is safe) and referred to by id: a pool's
`required_qualification` and a grant (PUT .../workers/{id}, idempotent) use the id, which
the connector resolves from our name once per connector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Self

from pydantic import BaseModel, TypeAdapter, ValidationError

from crowdloop.connectors._http import client_options
from crowdloop.connectors.answers import first_error, quarantine_for
from crowdloop.connectors.base import Connector
from crowdloop.connectors.simulator.client import SimulatorClient
from crowdloop.connectors.simulator.models import (
    BlockRequest,
    PoolCreate,
    QualificationCreate,
    TaskCreate,
    TasksAdd,
    WireAssignment,
    WireMoney,
)
from crowdloop.connectors.simulator.options import CONNECTOR_NAME, PAGE_LIMIT, SimulatorOptions
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
    FeeModel,
    Money,
    Quarantined,
    ReviewDecision,
    Submission,
    SubmissionPage,
    TaskItem,
)

_ANSWER = TypeAdapter[Answer](Answer)
REVIEW_CHUNK = 500


class SimulatorConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = SimulatorOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability) - {Capability.SANDBOX}
    max_items_per_call: ClassVar[int] = 500
    # The simulated marketplace charges the reward of every submission it did not see
    # rejected and nothing on top (crowdloop/simulator/state.py, MarketplaceState.spend).
    fee: ClassVar[FeeModel | None] = FeeModel(
        rate=Decimal(0), source="crowdloop/simulator/state.py MarketplaceState.spend"
    )

    def __init__(self, client: SimulatorClient, *, page_limit: int = PAGE_LIMIT) -> None:
        self.client = client
        self.page_limit = page_limit
        self._qualification_ids: dict[str, str] = {}  # our name -> server id

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from crowdloop.connectors.credentials import resolve_credentials
        from crowdloop.connectors.simulator.credentials import SimulatorCredentials

        opts = SimulatorOptions.model_validate(dict(options))
        credentials = resolve_credentials(SimulatorCredentials, credentials_block)
        return cls(
            credentials.get_client(**client_options(opts.model_dump())),
            page_limit=opts.page_limit,
        )

    def close(self) -> None:
        self.client.close()

    # --- creates (keyed) -----------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        body = PoolCreate(
            name=spec.name,
            stage=spec.stage.value,
            instruction=spec.instruction,
            reward=WireMoney(amount=str(spec.reward.amount), currency=spec.reward.currency),
            campaign_id=spec.campaign_id,
            idempotency_key=idempotency_key,
            required_qualification=(
                self._qualification_id(spec.required_qualification)
                if spec.required_qualification
                else None
            ),
        )
        pool, _ = self.client.create_pool(body)
        return self.batch_ref(pool.id)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        pools = self.client.find_pools(idempotency_key)
        return self.batch_ref(pools[0].id) if pools else None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        ids: dict[str, str] = {}
        for start in range(0, len(items), self.max_items_per_call):
            chunk = items[start : start + self.max_items_per_call]
            # Derived from the call's key, so a replay of the call sends the same chunk keys.
            chunk_key = f"{idempotency_key}:{start}" if start else idempotency_key
            body: TasksAdd = {
                "idempotency_key": chunk_key,
                "tasks": [_task_wire(i) for i in chunk],
            }
            added = self.client.add_tasks(batch.external_id, body)
            ids.update({t.key: t.id for t in added.tasks})
        return self.added(items, ids)

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        return {t.key: t.id for t in self.client.find_tasks(batch.external_id, task_keys)}

    # --- batch control -------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        self.client.open_pool(batch.external_id)

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        self.client.close_pool(batch.external_id, reason)

    # The simulated marketplace, like Toloka, reopens a closed pool: a pause is a close
    # that `resume` undoes. Closing or opening twice changes nothing.
    def pause(self, batch: BatchRef) -> None:
        self.client.close_pool(batch.external_id, "paused by the operator")

    def resume(self, batch: BatchRef) -> None:
        self.client.open_pool(batch.external_id)

    def get_status(self, batch: BatchRef) -> BatchStatus:
        pool = self.client.get_pool(batch.external_id)
        return BatchStatus(
            # A draft pool hands out nothing yet; to a flow it is as idle as a closed one.
            state=BatchState.OPEN if pool.status == "open" else BatchState.CLOSED,
            tasks=pool.tasks,
            assignments_total=pool.assignments_total,
            assignments_submitted=pool.assignments_submitted,
        )

    # --- results -------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        for page in self.client.iter_assignment_pages(
            batch.external_id, cursor=cursor, limit=self.page_limit
        ):
            submissions: list[Submission] = []
            quarantined: list[Quarantined] = []
            for raw in page.items:
                read = _read_assignment(raw)
                if isinstance(read, Submission):
                    submissions.append(read)
                else:
                    quarantined.append(read)
            cursor = page.next_cursor or cursor
            yield SubmissionPage(
                submissions=tuple(submissions),
                quarantined=tuple(quarantined),
                cursor=cursor,
                has_more=page.has_more,
            )

    # --- money and workers ---------------------------------------------------------------

    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        for start in range(0, len(decisions), REVIEW_CHUNK):
            chunk = decisions[start : start + REVIEW_CHUNK]
            self.client.review(
                {
                    "decisions": [
                        {
                            "id": d.submission_id,
                            "status": "accepted" if d.accept else "rejected",
                            "comment": d.comment,
                        }
                        for d in chunk
                    ]
                }
            )

    def block_worker(self, worker_id: str, *, scope: BlockScope, reason: str) -> None:
        self.client.block_worker(worker_id, BlockRequest(scope=scope.value, reason=reason))

    def spend(self, batch: BatchRef) -> Money:
        wire = self.client.get_spend(batch.external_id)
        return Money(amount=Decimal(wire.amount), currency=wire.currency)

    # --- qualifications ------------------------------------------------------------------

    def ensure_qualification(self, qualification: str) -> None:
        self._qualification_id(qualification)

    def grant_qualification(self, worker_id: str, qualification: str) -> None:
        self.client.grant_qualification(self._qualification_id(qualification), worker_id)

    def _qualification_id(self, name: str) -> str:
        """The server id of our named qualification, created on first use."""
        if name not in self._qualification_ids:
            found = self.client.find_qualifications(name)
            wire = (
                found[0]
                if found
                else self.client.create_qualification(QualificationCreate(name=name))
            )
            self._qualification_ids[name] = wire.id
        return self._qualification_ids[name]


def _task_wire(item: TaskItem) -> TaskCreate:
    # From a validated TaskItem: the payload model itself, serialised with the body.
    return {
        "key": item.key,
        "group": item.group,
        "payload": item.payload,
        "overlap": item.overlap,
        "exclude_workers": list(item.exclude_workers),
    }


def _read_assignment(raw: dict[str, Any]) -> Submission | Quarantined:
    """Map one wire assignment to a Submission, or say why it cannot be read."""
    read = _read_readable(raw)
    if read is not None:
        return read
    # Something in the record is wrong: read it step by step, for the reason.
    quarantine = quarantine_for(
        str(raw.get("id", "")), raw, task_key=raw.get("task_key"), worker_id=raw.get("worker_id")
    )

    try:
        wire = WireAssignment.model_validate(raw)
    except ValidationError as exc:
        return quarantine(f"unreadable assignment: {first_error(exc)}")
    expected = ANSWER_KIND_FOR_TASK.get(wire.task_kind)
    if expected is None:
        return quarantine(f"unknown task kind {wire.task_kind!r}")
    if not isinstance(wire.answer, dict):
        return quarantine(f"answer is not an object: {type(wire.answer).__name__}")
    try:
        answer = _ANSWER.validate_python({**wire.answer, "kind": expected})
    except ValidationError as exc:
        problem = first_error(exc, tagged_union=True)
        return quarantine(f"bad {expected} answer for a {wire.task_kind} task: {problem}")
    # Every field was just validated (the wire record, then the answer): constructing
    # without a third validation saves ~10 µs per submission.
    return Submission.model_construct(
        external_id=wire.id,
        task_key=wire.task_key,
        worker_id=wire.worker_id,
        answer=answer,
        submitted_at=wire.submitted_at,
    )


def _read_readable(raw: dict[str, Any]) -> Submission | None:
    """A record that reads cleanly, validated in one pydantic call straight into the
    `Submission` (its answer as the task kind's model); None if anything in it is wrong,
    and `_read_assignment` then reads it step by step to name what.

    The same checks as the step-by-step read: the fields `WireAssignment` requires (its
    `task_id` is only checked, as there), a known task kind, an object for the answer,
    and the answer under its task's kind. Validating the wire record, then the answer,
    then constructing the submission cost ~15 us a submission; this one call ~6 us, and
    the quarantine record is no longer prepared for every record."""
    kind = raw.get("task_kind")
    answer = raw.get("answer")
    if not (
        isinstance(kind, str) and isinstance(answer, dict) and isinstance(raw.get("task_id"), str)
    ):
        return None
    expected = ANSWER_KIND_FOR_TASK.get(kind)
    if expected is None:
        return None
    try:
        return Submission.model_validate(
            {
                "external_id": raw.get("id"),
                "task_key": raw.get("task_key"),
                "worker_id": raw.get("worker_id"),
                "answer": {**answer, "kind": expected},
                "submitted_at": raw.get("submitted_at"),
            }
        )
    except ValidationError:
        return None
