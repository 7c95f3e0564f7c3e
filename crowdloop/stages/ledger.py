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

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic import TypeAdapter
from sqlalchemy import Text, bindparam, cast, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import insert_ignore, session_scope
from crowdloop.faults import crash_point
from crowdloop.ids import digest
from crowdloop.models.domain import BatchRef, BatchSpec, Stage, TaskItem, TaskPayload
from crowdloop.models.tables import (
    Batch,
    Item,
    ItemState,
    LedgerState,
    PushLedger,
    TaskRecord,
    utcnow,
)
from crowdloop.stages import budget
from crowdloop.stages.counts import PendingItem, assignment_deficits
from crowdloop.stages.items import id_page, move_items
from crowdloop.stages.plan import load_spec
from crowdloop.stages.preflight import require_qualifications
from crowdloop.stages.terms import batch_qualification, stage_instruction, stage_reward

logger = logging.getLogger(__name__)

_PAYLOAD: TypeAdapter[TaskPayload] = TypeAdapter(TaskPayload)
# Pending items read per page by the push (a multiple of the usual chunk sizes).
PUSH_PAGE = 20_000


@dataclass(frozen=True)
class PushResult:
    tasks_published: int
    assignments: int
    reconciled: int


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
            mark_done(s, key)
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
        mark_done(s, key)


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
    chunk = min(spec.batch_size, connector.max_items_per_call)
    # The pending items a page at a time, in id order (ids are hashes: golden items land
    # mixed in), with the answer and assignment counts of that page's id range only
    # (`items.id_page`). The chunks are the same as from the whole list: what does not
    # fill one waits for the next page.
    todo: list[tuple[PendingItem, int]] = []
    after: str | None = None
    pending = select(Item.id, Item.pushes, Item.overlap).where(
        Item.campaign_id == campaign_id,
        Item.stage == stage.value,
        Item.state == ItemState.PENDING,
    )
    while True:
        with session_scope() as s:
            # Only the columns the push needs: whole ORM items (payloads, identity map)
            # held ~3 KB per pending item at once, the campaign's largest allocation.
            rows, within = id_page(s, pending, after, PUSH_PAGE)
            items = [PendingItem(*row) for row in rows]
            deficits = assignment_deficits(s, campaign_id, items, within=within)
        last_page = len(items) < PUSH_PAGE
        if within is not None:
            after = within[1]
        todo += [(item, need) for item, need in zip(items, deficits, strict=True) if need > 0]
        sent = 0
        while len(todo) - sent >= chunk or (last_page and sent < len(todo)):
            part = todo[sent : sent + chunk]
            sent += len(part)
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
        del todo[:sent]
        # Items that needed nothing more (answers outstanding already) are simply pushed.
        with session_scope() as s:
            no_need = [item.id for item, need in zip(items, deficits, strict=True) if need <= 0]
            move_items(s, no_need, ItemState.PUSHED, from_=ItemState.PENDING)
        if last_page:
            break
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
    part: Sequence[tuple[PendingItem, int]],
    unit_cost: Decimal,
    currency: str,
) -> tuple[str | None, Sequence[tuple[PendingItem, int]], budget.BudgetPause | None]:
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
    part: Sequence[tuple[PendingItem, int]],
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
    move_items(
        s,
        [item.id for item, _ in part],
        ItemState.PUSHED,
        from_=ItemState.PENDING,
        values={"pushes": Item.pushes + 1},
    )
    return ledger_key


def _send_chunk(campaign_id: str, connector: Connector, ref: BatchRef, ledger_key: str) -> int:
    with session_scope() as s:
        # Columns, not ORM rows: the chunk's tasks and what each item shows the crowd, in
        # one statement (the items were a second one with an IN list of the chunk's ids).
        # The payload comes as its stored JSON text and is validated from it in one step
        # (json.loads and then validating the dict took ~5 us a task more). The kept-off
        # workers come as text too, decoded only when there are any: most items have none,
        # and the JSON type's decoding of every row's "[]" was ~6 % of the push. Run on the
        # connection: plain column rows need none of the ORM's result handling.
        rows = (
            s.connection()
            .execute(
                sa_select(
                    col(TaskRecord.key),
                    col(TaskRecord.item_id),
                    col(TaskRecord.overlap),
                    col(TaskRecord.external_id),
                    col(Item.group),
                    cast(col(Item.payload), Text),
                    col(Item.exclude_worker),
                    cast(col(Item.exclude_also), Text),
                )
                .join(Item, col(Item.id) == col(TaskRecord.item_id))
                .where(col(TaskRecord.ledger_key) == ledger_key)
            )
            .all()
        )
        records = [(key, item_id, overlap, ext) for key, item_id, overlap, ext, *_ in rows]
        items = {
            item_id: (group, payload, _excluded(author, also))
            for _, item_id, _, _, group, payload, author, also in rows
        }
        # Counted and read in one statement, committed before the call: a second sender of
        # this key (a crash's rerun, a concurrent reconciler) always sees a count above 1.
        calls = s.execute(
            update(PushLedger)
            .where(col(PushLedger.key) == ledger_key)
            .values(calls=PushLedger.calls + 1, updated_at=utcnow())
            .returning(col(PushLedger.calls))
        ).scalar_one()
    missing = [(key, item_id, overlap) for key, item_id, overlap, ext in records if ext is None]
    if not missing:
        with session_scope() as s:
            mark_done(s, ledger_key)
        return 0
    # Ask first when an earlier call under this key may have succeeded without our hearing
    # back. On the first call nothing can exist yet, and the lookup is not free: its keys
    # travel in query strings, ~4 requests per 500 tasks, a third of the push's CPU.
    found = connector.find_tasks(ref, [key for key, _, _ in missing]) if calls > 1 else {}
    to_send = [(key, item_id, overlap) for key, item_id, overlap in missing if key not in found]
    external = dict(found)
    if to_send:
        tasks = [
            TaskItem(
                key=key,
                group=items[item_id][0],
                payload=_PAYLOAD.validate_json(items[item_id][1]),
                overlap=overlap,
                exclude_workers=items[item_id][2],
            )
            for key, item_id, overlap in to_send
        ]
        result = connector.add_items(ref, tasks, idempotency_key=ledger_key)
        external.update(result.external_ids)
        crash_point("tasks:sent")
    unknown = [key for key, _, _ in missing if key not in external]
    if unknown:
        raise RuntimeError(
            f"{connector.name} did not return ids for {len(unknown)} task(s), e.g. {unknown[0]}"
        )
    with session_scope() as s:
        # One executemany, not a statement per task; on the table, not the ORM entity,
        # whose bulk update by primary key did per-row work that took twice as long.
        s.execute(
            _SET_EXTERNAL_ID,
            [{"task_key": key, "task_external_id": external[key]} for key, _, _ in missing],
        )
        mark_done(s, ledger_key)
    return len(to_send)


_TASKS = TaskRecord.__table__  # type: ignore[attr-defined]
_SET_EXTERNAL_ID = (
    update(_TASKS)
    .where(_TASKS.c.key == bindparam("task_key"))
    .values(external_id=bindparam("task_external_id"))
)


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


def mark_done(s: Session, key: str) -> None:
    """The call under `key` is known to have happened: its outcome is recorded."""
    s.execute(
        update(PushLedger)
        .where(col(PushLedger.key) == key)
        .values(state=LedgerState.DONE, updated_at=utcnow())
    )


def _excluded(author: str | None, also: str | None) -> tuple[str, ...]:
    """The author and every other worker kept off an item (order kept, no repeats);
    `also` is the stored JSON text of `Item.exclude_also` (a list, null or NULL)."""
    first = (author,) if author else ()
    if also is None or also in _NO_WORKERS:
        return first
    return tuple(dict.fromkeys((*first, *(json.loads(also) or ()))))


_NO_WORKERS = frozenset(("[]", "null"))
