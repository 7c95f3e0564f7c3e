"""Push work to a marketplace exactly once: intent -> call -> outcome, through the ledger.

1. Before a create call, its ledger row (the idempotency key, and for tasks the task rows
   it will publish) is committed in state `intent`.
2. The call carries that key (and each task its own key).
3. The outcome (external ids) is committed and the row becomes `done`.
A crash between 1 and 3 leaves an `intent` row; the next push first reconciles it by
asking the marketplace what exists under those keys, records what it finds and re-sends
only the rest, with the same keys. So a retry or a rerun never pays the crowd twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotSupported
from crowdloop.db import insert_ignore, session_scope
from crowdloop.faults import crash_point
from crowdloop.ids import digest
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    Capability,
    Money,
    Stage,
    TaskItem,
)
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    Batch,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    LedgerState,
    PushLedger,
    TaskRecord,
    utcnow,
)
from crowdloop.stages import budget
from crowdloop.stages.plan import load_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    tasks_published: int
    assignments: int
    reconciled: int


def stage_reward(spec: CampaignSpec, stage: Stage) -> Money:
    if stage == Stage.EXAM and spec.quality.exam and spec.quality.exam.reward:
        return spec.quality.exam.reward
    if stage in (Stage.COMPARE, Stage.EXAM):
        assert spec.preferences is not None
        return spec.preferences.reward
    assert spec.demonstrations is not None
    return (
        spec.demonstrations.verify_reward if stage == Stage.VERIFY else spec.demonstrations.reward
    )


def stage_instruction(spec: CampaignSpec, stage: Stage) -> str:
    if stage in (Stage.COMPARE, Stage.EXAM):
        assert spec.preferences is not None
        return spec.preferences.instruction
    demo = spec.demonstrations
    assert demo is not None
    return {
        Stage.PROMPTS: demo.prompt_instruction,
        Stage.RESPONSES: demo.response_instruction,
        Stage.VERIFY: demo.verify_instruction,
    }[stage]


def required_capabilities(spec: CampaignSpec) -> set[Capability]:
    need: set[Capability] = set()
    if spec.preferences:
        need.add(Capability.PAIRWISE)
    if spec.demonstrations:
        need |= {Capability.FREE_TEXT, Capability.EXCLUDE_WORKERS}
    if spec.quality.exam:
        need.add(Capability.QUALIFY_WORKERS)
    return need


def exam_qualification(campaign_id: str) -> str:
    """The marketplace qualification that exam passers get and production requires."""
    return f"crowdloop-{campaign_id}-exam"


def batch_qualification(spec: CampaignSpec, stage: Stage) -> str | None:
    """The qualification a stage's batch requires: with an exam, comparisons need a pass.

    Verification tasks stay open to all: a pairwise exam says little about judging texts,
    and demonstrations run before preferences, so they would wait on the exam.
    """
    return exam_qualification(spec.name) if spec.quality.exam and stage == Stage.COMPARE else None


def require_qualifications(connector: Connector) -> None:
    """Refuse an exam on a platform that cannot keep unqualified workers off a batch."""
    if Capability.QUALIFY_WORKERS not in connector.capabilities:
        refused = NotSupported(connector.name, Capability.QUALIFY_WORKERS.value)
        refused.args = (
            f"{refused}: the campaign has an exam (quality.exam), which needs "
            f"{Capability.QUALIFY_WORKERS.value} to offer production tasks only to workers "
            "who passed; remove the exam or use a connector that declares it",
        )
        raise refused


def check_capabilities(spec: CampaignSpec, connector: Connector) -> list[str]:
    """Refuse early what the platform cannot do; return warnings for what degrades."""
    if spec.quality.exam:
        require_qualifications(connector)
    for cap in sorted(required_capabilities(spec)):
        connector.require(cap)
    warnings = []
    if spec.quality.on_fail == "block" and Capability.BLOCK_WORKER not in connector.capabilities:
        warnings.append(
            f"{connector.name} cannot block workers: untrusted workers' answers will be "
            "excluded, but they may keep taking tasks"
        )
    if Capability.REVIEW not in connector.capabilities:
        warnings.append(f"{connector.name} has no review API: every submission will be paid")
    return warnings


def ensure_batch(campaign_id: str, stage: Stage, connector: Connector) -> BatchRef:
    """The stage's marketplace batch, created once (ledger-guarded) and started."""
    key = f"crowdloop:{campaign_id}:{stage.value}:batch"
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        batch = s.exec(
            select(Batch).where(Batch.campaign_id == campaign_id, Batch.stage == stage.value)
        ).first()
        if batch is None:
            batch = Batch(
                campaign_id=campaign_id,
                stage=stage.value,
                connector=connector.name,
                idempotency_key=key,
            )
            s.add(batch)
            _ledger_intent(s, key, campaign_id, connector.name, "create_batch", None)
        external_id = batch.external_id
        started = batch.started
    crash_point("batch:intent-recorded")
    if external_id is None:
        ref = connector.find_batch(key)
        if ref is None:
            qualification = batch_qualification(spec, stage)
            if qualification is not None:
                ensure_qualification(campaign_id, connector, qualification)
            ref = connector.create_batch(
                BatchSpec(
                    name=f"{campaign_id} / {stage.value}",
                    # To the marketplace an exam is a batch of comparisons.
                    stage=Stage.COMPARE if stage == Stage.EXAM else stage,
                    instruction=stage_instruction(spec, stage),
                    reward=stage_reward(spec, stage),
                    campaign_id=campaign_id,
                    required_qualification=qualification,
                ),
                idempotency_key=key,
            )
        crash_point("batch:created")
        with session_scope() as s:
            s.execute(
                update(Batch)
                .where(col(Batch.idempotency_key) == key)
                .values(external_id=ref.external_id)
            )
            _ledger_done(s, key, ref.external_id)
        external_id = ref.external_id
    ref = BatchRef(connector=connector.name, external_id=external_id)
    if not started:
        connector.start(ref)
        with session_scope() as s:
            s.execute(update(Batch).where(col(Batch.idempotency_key) == key).values(started=True))
    return ref


def ensure_qualification(campaign_id: str, connector: Connector, name: str) -> None:
    """Create the campaign's qualification on the marketplace once (ledger-guarded)."""
    key = f"crowdloop:{campaign_id}:qualification"
    with session_scope() as s:
        row = s.get(PushLedger, key)
        if row is not None and row.state == LedgerState.DONE:
            return
        _ledger_intent(s, key, campaign_id, connector.name, "ensure_qualification", name)
    require_qualifications(connector)
    connector.ensure_qualification(name)  # idempotent: found by name on a rerun
    with session_scope() as s:
        _ledger_done(s, key, None)


def push_pending(
    campaign_id: str,
    stage: Stage,
    connector: Connector,
) -> PushResult:
    """Publish tasks for every PENDING item of the stage (after reconciling old intents).

    Every add-items call first reserves its worst-case cost (stages/budget.py); work that
    does not fit under what the campaign's budget approves is not sent, and
    `budget.BudgetPause` is raised after the work that fitted was.
    """
    with session_scope() as s:
        has_pending = (
            s.exec(
                select(func.count())
                .select_from(Item)
                .where(
                    Item.campaign_id == campaign_id,
                    Item.stage == stage.value,
                    Item.state == ItemState.PENDING,
                )
            ).one()
            > 0
        )
        has_intent = _open_intents(s, campaign_id, stage) != []
    if not has_pending and not has_intent:
        return PushResult(0, 0, 0)
    if has_pending:
        # Nothing is created before a launch approval the estimate needs.
        budget.launch_gate(campaign_id)
    ref = ensure_batch(campaign_id, stage, connector)
    reconciled = reconcile(campaign_id, stage, connector, ref)
    published = assignments = 0
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    # Release what finished work no longer needs; a budgeted campaign also reads the
    # marketplace's spend report, so a marketplace charging more counts against the cap.
    budget.refresh_spend(campaign_id, connector if spec.budget is not None else None)
    reward = stage_reward(spec, stage)
    rate = budget.fee_rate_for(spec, connector.fee.rate if connector.fee else None)
    unit = reward.amount * (1 + (rate or Decimal(0)))
    with session_scope() as s:
        batch_id = _batch_id(s, campaign_id, stage)
        items = list(
            s.exec(
                select(Item)
                .where(
                    Item.campaign_id == campaign_id,
                    Item.stage == stage.value,
                    Item.state == ItemState.PENDING,
                )
                .order_by(col(Item.id))  # ids are hashes: golden items land mixed in
            ).all()
        )
        deficits = _deficits(s, campaign_id, items)
    chunk = min(spec.batch_size, connector.max_items_per_call)
    todo = [(item, need) for item, need in zip(items, deficits, strict=True) if need > 0]
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        ledger_key, fitted, pause = _record_intent(
            campaign_id, stage, connector.name, batch_id, part, unit, reward.currency
        )
        if ledger_key is not None:
            crash_point("budget:reserved")
            crash_point("tasks:intent-recorded")
            published += _send_chunk(campaign_id, connector, ref, ledger_key)
            assignments += sum(need for _, need in fitted)
        if pause is not None:
            budget.record_pause(pause)
            raise pause
    # Items that needed nothing more (answers outstanding already) are simply pushed.
    with session_scope() as s:
        no_need = [item.id for item, need in zip(items, deficits, strict=True) if need <= 0]
        for start in range(0, len(no_need), 1000):
            s.execute(
                update(Item)
                .where(col(Item.id).in_(no_need[start : start + 1000]))
                .values(state=ItemState.PUSHED)
            )
    return PushResult(published, assignments, reconciled)


def reconcile(campaign_id: str, stage: Stage, connector: Connector, ref: BatchRef) -> int:
    """Finish every add_items call whose outcome was never recorded."""
    with session_scope() as s:
        keys = _open_intents(s, campaign_id, stage)
    done = 0
    for ledger_key in keys:
        done += _send_chunk(campaign_id, connector, ref, ledger_key)
    if keys:
        logger.info("reconciled %d unrecorded push(es) for %s/%s", len(keys), campaign_id, stage)
    return done


def _open_intents(s: Session, campaign_id: str, stage: Stage) -> list[str]:
    return list(
        s.exec(
            select(PushLedger.key)
            .where(
                PushLedger.campaign_id == campaign_id,
                PushLedger.action == "add_items",
                PushLedger.state == LedgerState.INTENT,
                PushLedger.target == stage.value,
            )
            .order_by(col(PushLedger.created_at), col(PushLedger.key))
        ).all()
    )


def _record_intent(
    campaign_id: str,
    stage: Stage,
    connector: str,
    batch_id: int,
    part: Sequence[tuple[Item, int]],
    unit_cost: Decimal,
    currency: str,
) -> tuple[str | None, Sequence[tuple[Item, int]], budget.BudgetPause | None]:
    """Commit the task rows, their ledger row and its spend reservation before anything
    is sent, for the leading items whose worst-case cost fits the budget.

    Returns the ledger key (None if nothing fitted), the items recorded, and the pause to
    raise once they are sent (None if all fitted).
    """
    with session_scope() as s:
        # The budget row is locked first and stays locked until this commits, so the
        # check and the reservation are one step for every process pushing the campaign.
        taken, pause = budget.fit(
            s, campaign_id, [unit_cost * need for _, need in part], stage.value
        )
        part = part[:taken]
        if not part:
            return None, part, pause
        ledger_key = _write_intent(s, campaign_id, stage, connector, batch_id, part)
        budget.record_reservation(
            s,
            ledger_key=ledger_key,
            campaign_id=campaign_id,
            batch_id=batch_id,
            stage=stage.value,
            assignments=sum(need for _, need in part),
            unit_cost=unit_cost,
            currency=currency,
        )
    return ledger_key, part, pause


def _write_intent(
    s: Session,
    campaign_id: str,
    stage: Stage,
    connector: str,
    batch_id: int,
    part: Sequence[tuple[Item, int]],
) -> str:
    keys = [f"{item.id}.{item.pushes}" for item, _ in part]
    ledger_key = f"crowdloop:{campaign_id}:{stage.value}:tasks:{digest(*keys)}"
    rows = [
        {
            "key": key,
            "item_id": item.id,
            "batch_id": batch_id,
            "ledger_key": ledger_key,
            "overlap": need,
            "external_id": None,
        }
        for key, (item, need) in zip(keys, part, strict=True)
    ]
    _ledger_intent(s, ledger_key, campaign_id, connector, "add_items", stage.value)
    insert_ignore(s, TaskRecord, rows, ["key"])
    ids = [item.id for item, _ in part]
    s.execute(
        update(Item)
        .where(col(Item.id).in_(ids))
        .values(state=ItemState.PUSHED, pushes=Item.pushes + 1)
    )
    return ledger_key


def _send_chunk(campaign_id: str, connector: Connector, ref: BatchRef, ledger_key: str) -> int:
    with session_scope() as s:
        records = list(s.exec(select(TaskRecord).where(TaskRecord.ledger_key == ledger_key)).all())
        items = {
            i.id: i
            for i in s.exec(
                select(Item).where(col(Item.id).in_([r.item_id for r in records]))
            ).all()
        }
        s.execute(
            update(PushLedger)
            .where(col(PushLedger.key) == ledger_key)
            .values(calls=PushLedger.calls + 1, updated_at=utcnow())
        )
    missing = [r for r in records if r.external_id is None]
    if not missing:
        with session_scope() as s:
            _ledger_done(s, ledger_key, None)
        return 0
    # Ask first: a previous call may have succeeded without our hearing back.
    found = connector.find_tasks(ref, [r.key for r in missing])
    to_send = [r for r in missing if r.key not in found]
    external = dict(found)
    if to_send:
        tasks = [
            TaskItem(
                key=r.key,
                group=items[r.item_id].group,
                payload=items[r.item_id].payload,
                overlap=r.overlap,
                exclude_workers=_excluded(items[r.item_id]),
            )
            for r in to_send
        ]
        result = connector.add_items(ref, tasks, idempotency_key=ledger_key)
        external.update(result.external_ids)
        crash_point("tasks:sent")
    unknown = [r.key for r in missing if r.key not in external]
    if unknown:
        raise RuntimeError(
            f"{connector.name} did not return ids for {len(unknown)} task(s), e.g. {unknown[0]}"
        )
    with session_scope() as s:
        # One executemany (ORM bulk update by primary key), not a statement per task.
        s.execute(
            update(TaskRecord), [{"key": r.key, "external_id": external[r.key]} for r in missing]
        )
        _ledger_done(s, ledger_key, None)
    return len(to_send)


def _deficits(s: Session, campaign_id: str, items: Sequence[Item]) -> list[int]:
    """Assignments still to publish per item: overlap - trusted answers - outstanding."""
    if not items:
        return []
    trusted = answer_counts(s, campaign_id, trusted_only=True)
    outstanding = outstanding_counts(s, campaign_id)
    return [i.overlap - trusted.get(i.id, 0) - outstanding.get(i.id, 0) for i in items]


def answer_counts(s: Session, campaign_id: str, *, trusted_only: bool) -> dict[str, int]:
    """Answers per item; with `trusted_only`, valid answers from workers not excluded."""
    stmt = select(Judgment.item_id, func.count()).where(Judgment.campaign_id == campaign_id)
    if trusted_only:
        stmt = stmt.where(
            Judgment.status == JudgmentStatus.VALID, col(Judgment.excluded).is_(False)
        )
    rows = s.exec(stmt.group_by(col(Judgment.item_id))).all()
    return {str(k): int(v) for k, v in rows if k is not None}


def outstanding_counts(
    s: Session, campaign_id: str, stages: Sequence[Stage] | None = None
) -> dict[str, int]:
    """Assignments published but not yet answered (a quarantined answer counts as answered).

    `stages` limits it to those stages' items (the exam's stay open while production runs).
    """
    stmt = (
        select(TaskRecord.item_id, func.sum(TaskRecord.overlap))
        .join(Item, col(Item.id) == col(TaskRecord.item_id))
        .where(Item.campaign_id == campaign_id)
    )
    if stages is not None:
        stmt = stmt.where(col(Item.stage).in_([st.value for st in stages]))
    published = s.exec(stmt.group_by(col(TaskRecord.item_id))).all()
    answered = answer_counts(s, campaign_id, trusted_only=False)
    out = {}
    for item_id, total in published:
        left = int(total) - answered.get(item_id, 0)
        if left > 0:
            out[item_id] = left
    return out


def _batch_id(s: Session, campaign_id: str, stage: Stage) -> int:
    batch = s.exec(
        select(Batch).where(Batch.campaign_id == campaign_id, Batch.stage == stage.value)
    ).one()
    assert batch.id is not None
    return batch.id


def _ledger_intent(
    s: Session, key: str, campaign_id: str, connector: str, action: str, target: str | None
) -> None:
    if s.get(PushLedger, key) is None:
        s.add(
            PushLedger(
                key=key, campaign_id=campaign_id, connector=connector, action=action, target=target
            )
        )


def _ledger_done(s: Session, key: str, _external: str | None) -> None:
    s.execute(
        update(PushLedger)
        .where(col(PushLedger.key) == key)
        .values(state=LedgerState.DONE, updated_at=utcnow())
    )


def _excluded(item: Item) -> tuple[str, ...]:
    """The author and every other worker kept off this item (order kept, no repeats)."""
    first = (item.exclude_worker,) if item.exclude_worker else ()
    return tuple(dict.fromkeys((*first, *(item.exclude_also or ()))))
