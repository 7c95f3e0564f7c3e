"""The spend ledger and the hard cap: no create call is sent that could take a campaign past it.

Every add-items call reserves its worst-case cost (assignments x reward x (1 + fee)) in the
transaction that commits its push-ledger intent (stages/ledger.py). Before writing it, the
push locks the campaign's budget row (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite a
write to the row, which takes the database's one write lock) and checks

    committed + this call <= approved_to <= cap

where committed = open reservations + actual cost of settled ones + whatever the
marketplace reports above our own accounting + the AI judge's spend and the worst case of
the pairs it was asked about and has not answered (stages/routing.py reserves them the
same way, through `fit`). Two processes pushing one campaign queue on
that lock, so they cannot both pass. A call that does not fit is not written, not sent:
the push sends the part that fits and raises `BudgetPause`, which the flows turn into a
paused campaign waiting for approval. A crash after the reservation leaves an intent with
its reservation; the rerun reconciles that intent without reserving again.

`approved_to` starts at `pause_at` x cap, or at 0 when the estimate's worst case is above
`approval_threshold` (approval before anything is created); `approve` moves it to the next
checkpoint (the pause point, then the cap), `raise_cap` moves the cap. Both are recorded
with who did it (`BudgetEvent`).

A reservation is settled once every assignment it published is answered (or its batch was
closed): its actual cost is our accounting of the paid work (submissions not rejected x
unit cost), and the rest is released. Where the connector reports spend
(Capability.SPEND_REPORT), the report is kept beside our accounting per batch
(`SpendCheck`); a difference is reported, and a batch the marketplace charges more for
than everything we committed for it counts at the marketplace's figure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import case, func, update
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import insert_ignore, session_scope
from crowdloop.models.domain import (
    BatchRef,
    Capability,
    CompareTask,
    Money,
    RankTask,
    RateTask,
    Stage,
)
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    AIJudgeBatch,
    AIRoute,
    AIRouteState,
    Batch,
    BudgetEvent,
    CampaignBudget,
    Item,
    LedgerState,
    PushLedger,
    ReservationState,
    SpendCheck,
    SpendReservation,
    TaskRecord,
    utcnow,
)
from crowdloop.stages.estimate import (
    Estimate,
    WorkCounts,
    connector_fee,
    estimate,
    quote_ai_judge,
)
from crowdloop.stages.plan import load_spec

logger = logging.getLogger(__name__)

PauseReason = Literal["approval", "pause", "cap"]
ZERO = Decimal(0)
CENT = Decimal("0.01")


class BudgetPause(RuntimeError):
    """A create call was refused: it would take the campaign past what is approved.

    `reason`: "approval" — the estimate needs approval before anything is created
    (`approve`); "pause" — committed spend reached `pause_at` x cap (`approve` to go on to
    the cap); "cap" — the hard cap (`raise_cap`). Nothing refused was written or sent;
    work that fitted before it was. `needed` is the worst-case cost of the refused work,
    `committed` what was committed (settled + reserved) when it was refused.
    """

    def __init__(
        self,
        campaign_id: str,
        reason: PauseReason,
        needed: Decimal,
        cap: Decimal,
        approved: Decimal,
        committed: Decimal,
        currency: str,
        stage: str | None = None,
    ) -> None:
        self.campaign_id = campaign_id
        self.reason: PauseReason = reason
        self.needed = needed
        self.cap = cap
        self.approved = approved
        self.committed = committed
        self.currency = currency
        self.stage = stage
        what = {
            "approval": "the estimate needs approval before anything is created",
            "pause": "committed spend reached the pause point; approve to go on to the cap",
            "cap": "the hard cap is reached; raise it to go on",
        }[reason]
        super().__init__(
            f"{campaign_id}: {what} ({stage or 'launch'}: {needed:.2f} {currency} more "
            f"needed, {committed:.2f} committed of {approved:.2f} approved, "
            f"cap {cap:.2f} {currency})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect may pickle a task's exception: rebuild it from its fields.
        return (
            type(self),
            (
                self.campaign_id,
                self.reason,
                self.needed,
                self.cap,
                self.approved,
                self.committed,
                self.currency,
                self.stage,
            ),
        )


@dataclass
class BudgetStatus:
    """Where a campaign's money stands. Amounts are Decimals in `currency`.

    `committed` = `actual` + `reserved` is what the cap is checked against; `paid` is our
    accounting of work submitted so far (settled or not), for display.
    """

    campaign_id: str
    currency: str
    cap: Decimal | None  # None: the campaign has no budget
    approved: Decimal | None
    pause_at: float | None
    reserved: Decimal  # open reservations (worst case of work still out)
    actual: Decimal  # settled reservations at their actual cost, plus reported surplus
    paid: Decimal
    awaiting_approval: bool = False
    expected: Decimal | None = None  # the estimate when the budget opened
    worst_case: Decimal | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def committed(self) -> Decimal:
        return self.actual + self.reserved

    @property
    def remaining(self) -> Decimal | None:
        return None if self.cap is None else self.cap - self.committed

    @property
    def share_used(self) -> float | None:
        return None if not self.cap else float(self.committed / self.cap)

    def to_json(self) -> dict[str, Any]:
        def m(d: Decimal | None) -> str | None:
            return None if d is None else str(d.quantize(CENT))

        out = asdict(self)
        out.update(
            {k: m(getattr(self, k)) for k in ("cap", "approved", "reserved", "actual", "paid")}
        )
        out.update(
            expected=m(self.expected),
            worst_case=m(self.worst_case),
            committed=m(self.committed),
            remaining=m(self.remaining),
            share_used=None if self.share_used is None else round(self.share_used, 4),
        )
        return out

    def summary(self) -> str:
        """One line for the progress artifact and `crowdloop status`."""
        cur = self.currency
        spent = (
            f"{self.committed:.2f} {cur} committed ({self.paid:.2f} paid, "
            f"{self.committed - self.paid:.2f} reserved for work out)"
        )
        if self.cap is None:
            return f"{spent}; no budget cap"
        assert self.approved is not None and self.share_used is not None
        text = f"{spent} of the {self.cap:.2f} {cur} cap ({self.share_used:.1%})"
        if self.awaiting_approval:
            return text + "; waiting for approval before anything is created"
        if self.approved < self.cap:
            text += f"; approved to {self.approved:.2f} {cur}, then it pauses"
        return text


# --- the budget row ---------------------------------------------------------------------------


def fee_rate_for(spec: CampaignSpec, connector_rate: Decimal | None) -> Decimal | None:
    """The fee rate reservations add: the campaign's `budget.fee_rate`, else the connector's."""
    if spec.budget is not None and spec.budget.fee_rate is not None:
        return spec.budget.fee_rate
    return connector_rate


def _connector_rate(name: str) -> Decimal | None:
    try:
        fee, _ = connector_fee(name)
    except LookupError:
        return None
    return fee.rate if fee is not None else None


def db_counts(s: Session, campaign_id: str) -> WorkCounts:
    """The work registration planned, counted from the campaign's items."""
    spec = load_spec(s, campaign_id)
    rows = s.exec(
        select(Item.stage, Item.is_golden, Item.attempt, func.count())
        .where(Item.campaign_id == campaign_id)
        .group_by(col(Item.stage), col(Item.is_golden), col(Item.attempt))
    ).all()
    n: dict[tuple[str, bool], int] = {}
    for stage, golden, attempt, count in rows:
        if stage == "prompts" and attempt != 0:
            continue
        n[(stage, bool(golden))] = n.get((stage, bool(golden)), 0) + int(count)
    demo = spec.demonstrations
    return WorkCounts(
        real_pairs=n.get(("compare", False), 0),
        golden_pairs=n.get(("compare", True), 0),
        exam_items=n.get(("exam", True), 0),
        writing_slots=n.get(("prompts", False), 0),
        golden_verifications=bool(demo and demo.golden_file and demo.golden_share > 0),
        rating_items=n.get(("rate", False), 0),
        golden_rating_items=n.get(("rate", True), 0),
    )


def estimate_for_campaign(campaign_id: str) -> Estimate:
    """The estimate of a registered campaign, from the work its registration planned."""
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        counts = db_counts(s, campaign_id)
        # What AI-first routing asks the judge about: real pairs, ranking sets or ratings.
        routed_stage, payload_type = (
            (Stage.RANK, RankTask)
            if spec.ranking is not None
            else (Stage.RATE, RateTask)
            if spec.rating is not None
            else (Stage.COMPARE, CompareTask)
        )
        pairs: list[CompareTask | RankTask | RateTask] = (
            [
                payload_type.model_validate(payload)
                for payload in s.exec(
                    select(Item.payload).where(
                        Item.campaign_id == campaign_id,
                        Item.stage == routed_stage.value,
                        col(Item.is_golden).is_(False),
                    )
                ).all()
            ]
            if spec.routing is not None
            else []
        )
    try:
        fee, source = connector_fee(spec.connector.name)
    except LookupError:
        fee, source = None, ""
    return estimate(spec, counts, fee, fee_source=source, ai=quote_ai_judge(spec, pairs))


def open_budget(campaign_id: str) -> CampaignBudget | None:
    """The campaign's budget row, created from its spec on first use; None without a budget.

    Opening computes the estimate: a worst case above `approval_threshold` opens the
    budget approved to 0 (approval before anything is created).
    """
    with session_scope() as s:
        row = s.get(CampaignBudget, campaign_id)
        if row is not None:
            return row
        spec = load_spec(s, campaign_id)
    budget = spec.budget
    if budget is None:
        return None
    est = estimate_for_campaign(campaign_id)
    cap = budget.cap.amount
    threshold = budget.approval_threshold.amount if budget.approval_threshold else None
    needs = threshold is not None and est.worst > threshold
    approved = ZERO if needs else _pause_point(cap, budget.pause_at)
    rate = fee_rate_for(spec, _connector_rate(spec.connector.name))
    with session_scope() as s:
        created = insert_ignore(
            s,
            CampaignBudget,
            [
                {
                    "campaign_id": campaign_id,
                    "cap": str(cap),
                    "currency": budget.cap.currency,
                    "pause_at": budget.pause_at,
                    "approved_to": str(approved),
                    "approval_threshold": None if threshold is None else str(threshold),
                    "fee_rate": None if rate is None else str(rate),
                    "expected": str(est.expected.quantize(CENT)),
                    "worst_case": str(est.worst.quantize(CENT)),
                    "launch_approval": needs,
                    "version": 0,
                    "created_at": utcnow(),
                    "updated_at": utcnow(),
                }
            ],
            ["campaign_id"],
        )
        if created:
            s.add(
                BudgetEvent(
                    campaign_id=campaign_id,
                    kind="opened",
                    by="campaign file",
                    cap=str(cap),
                    approved_to=str(approved),
                    committed="0",
                    detail=(
                        f"estimate: expected {est.expected:.2f}, worst case {est.worst:.2f} "
                        f"{est.currency}"
                        + (f"; above the approval threshold {threshold}" if needs else "")
                    ),
                )
            )
    with session_scope() as s:
        return s.get(CampaignBudget, campaign_id)


def _pause_point(cap: Decimal, pause_at: float) -> Decimal:
    return (cap * Decimal(str(pause_at))).quantize(CENT) if pause_at < 1 else cap


def launch_gate(campaign_id: str) -> None:
    """Raise `BudgetPause("approval")` while a launch approval is outstanding.

    Call before anything is created on the marketplace; every push calls it too.
    """
    row = open_budget(campaign_id)
    if row is None or Decimal(row.approved_to) > 0 or not row.launch_approval:
        return
    with session_scope() as s:
        committed = _committed(s, campaign_id)
    pause = BudgetPause(
        campaign_id,
        "approval",
        Decimal(row.worst_case),
        Decimal(row.cap),
        ZERO,
        committed,
        row.currency,
    )
    _record_pause(pause)
    raise pause


# --- reserving --------------------------------------------------------------------------------


def _lock(s: Session, campaign_id: str) -> CampaignBudget | None:
    """Lock the campaign's budget row for the rest of the transaction (None: no budget)."""
    if s.get_bind().dialect.name == "sqlite":
        # A write first: SQLite takes its one write lock now, so the reads below see the
        # latest committed state and no other writer interleaves (BEGIN IMMEDIATE's effect).
        s.execute(
            update(CampaignBudget)
            .where(col(CampaignBudget.campaign_id) == campaign_id)
            .values(version=CampaignBudget.version + 1)
        )
    return s.exec(
        select(CampaignBudget)
        .where(CampaignBudget.campaign_id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _committed(s: Session, campaign_id: str) -> Decimal:
    """Open reservations + settled actuals, per batch at least what the marketplace reports.

    A batch whose reported spend is above everything we committed for it (open
    reservations cover work submitted but not yet synced) counts at the reported figure.
    """
    per_batch: dict[int, Decimal] = {}
    for batch_id, state, reserved, actual in s.exec(
        select(
            SpendReservation.batch_id,
            SpendReservation.state,
            SpendReservation.amount_reserved,
            SpendReservation.amount_actual,
        ).where(SpendReservation.campaign_id == campaign_id)
    ).all():
        settled = state == ReservationState.SETTLED and actual is not None
        amount = Decimal(actual) if settled and actual is not None else Decimal(reserved)
        per_batch[batch_id] = per_batch.get(batch_id, ZERO) + amount
    for batch_id, reported in s.exec(
        select(SpendCheck.batch_id, SpendCheck.reported).where(
            SpendCheck.campaign_id == campaign_id
        )
    ).all():
        per_batch[batch_id] = max(per_batch.get(batch_id, ZERO), Decimal(reported))
    return sum(per_batch.values(), ZERO) + _committed_to_ai(s, campaign_id)


def _committed_to_ai(s: Session, campaign_id: str) -> Decimal:
    """The AI judge's part (stages/routing.py): what it reported spending, plus the
    reservation of every pair asked and not yet read back. Routing records the spend before
    it marks answered pairs decided, so between the two an answer counts twice, never
    not at all."""
    spent = s.exec(
        select(AIJudgeBatch.spend).where(AIJudgeBatch.campaign_id == campaign_id)
    ).first()
    reserved = s.exec(
        select(AIRoute.reserved).where(
            AIRoute.campaign_id == campaign_id,
            AIRoute.route == AIRouteState.ASKED,
            col(AIRoute.reserved).is_not(None),
        )
    ).all()
    return Decimal(spent or 0) + sum((Decimal(r) for r in reserved if r is not None), ZERO)


def fit(
    s: Session, campaign_id: str, costs: Sequence[Decimal], stage: str
) -> tuple[int, BudgetPause | None]:
    """How many of these calls' costs fit under what is approved (locks the budget row).

    Returns the count of the leading costs that fit and, if not all do, the pause to raise
    after the fitting ones are sent. Without a budget everything fits.
    """
    row = _lock(s, campaign_id)
    if row is None:
        return len(costs), None
    cap, approved = Decimal(row.cap), Decimal(row.approved_to)
    committed = _committed(s, campaign_id)
    room = min(cap, approved) - committed
    taken, used = 0, ZERO
    for cost in costs:
        if used + cost > room:
            break
        used += cost
        taken += 1
    if taken == len(costs):
        return taken, None
    if approved >= cap:
        reason: PauseReason = "cap"
    elif approved == 0 and row.launch_approval:
        reason = "approval"
    else:
        reason = "pause"
    needed = sum(costs[taken:], ZERO)
    return taken, BudgetPause(
        campaign_id, reason, needed, cap, approved, committed + used, row.currency, stage
    )


def record_reservation(
    s: Session,
    *,
    ledger_key: str,
    campaign_id: str,
    batch_id: int,
    stage: str,
    assignments: int,
    unit_cost: Decimal,
    currency: str,
) -> None:
    """The reservation of one create call; in the caller's (the intent's) transaction."""
    if s.get(SpendReservation, ledger_key) is not None:
        return
    s.add(
        SpendReservation(
            key=ledger_key,
            campaign_id=campaign_id,
            batch_id=batch_id,
            stage=stage,
            assignments=assignments,
            unit_cost=str(unit_cost),
            amount_reserved=str(unit_cost * assignments),
            currency=currency,
        )
    )


def _record_pause(pause: BudgetPause) -> None:
    with session_scope() as s:
        s.add(
            BudgetEvent(
                campaign_id=pause.campaign_id,
                kind="paused",
                by=None,
                cap=str(pause.cap),
                approved_to=str(pause.approved),
                committed=str(pause.committed),
                detail=str(pause),
            )
        )


def record_pause(pause: BudgetPause) -> None:
    """Log and record a pause in the budget's audit trail (the push calls it)."""
    logger.warning("%s", pause)
    _record_pause(pause)


# --- settling and reconciling -------------------------------------------------------------------


def _paid_by_key(s: Session, campaign_id: str, open_only: bool) -> dict[str, tuple[int, int]]:
    """ledger key -> (answers, answers not rejected) for the campaign's reservations."""
    from crowdloop.models.tables import Judgment

    stmt = (
        select(
            TaskRecord.ledger_key,
            func.count(col(Judgment.id)),
            func.sum(case((col(Judgment.review) == "rejected", 0), else_=1)),
        )
        .join(TaskRecord, col(TaskRecord.key) == col(Judgment.task_key))
        .join(SpendReservation, col(SpendReservation.key) == col(TaskRecord.ledger_key))
        .where(SpendReservation.campaign_id == campaign_id, Judgment.campaign_id == campaign_id)
        .group_by(col(TaskRecord.ledger_key))
    )
    if open_only:
        stmt = stmt.where(SpendReservation.state == ReservationState.RESERVED)
    return {str(k): (int(n), int(paid or 0)) for k, n, paid in s.exec(stmt).all()}


def paid_by_key(campaign_id: str) -> dict[str, tuple[int, int]]:
    """ledger key -> (answers, answers not rejected) for all the campaign's reservations:
    what `settle(full=True)`, `check_reported` and `budget_status` each read, for a caller
    that runs several of them to read once (a GROUP BY over every judgment of the campaign:
    ~2 s of SQLite's CPU at 10^6 judgments, read four times at a campaign's end before)."""
    with session_scope() as s:
        return _paid_by_key(s, campaign_id, open_only=False)


def settle(
    campaign_id: str, *, full: bool = False, paid: dict[str, tuple[int, int]] | None = None
) -> int:
    """Settle every open reservation whose work is all answered or whose batch closed.

    With `full`, settled reservations' actual cost is recomputed too (a rejection after
    settling lowers it). ``paid``: `paid_by_key`'s map when the caller has read it. Returns
    how many were settled now. Database only.
    """
    settled = 0
    with session_scope() as s:
        open_rows = list(
            s.exec(
                select(SpendReservation).where(
                    SpendReservation.campaign_id == campaign_id,
                    SpendReservation.state == ReservationState.RESERVED,
                )
            ).all()
        )
        if not open_rows and not full:
            return 0
        if paid is None:
            paid = _paid_by_key(s, campaign_id, open_only=not full)
        keys = [r.key for r in open_rows]
        published: dict[str, int] = {}
        sent: set[str] = set()
        for start in range(0, len(keys), 1000):
            part = keys[start : start + 1000]
            published.update(
                {
                    str(k): int(v)
                    for k, v in s.exec(
                        select(TaskRecord.ledger_key, func.sum(TaskRecord.overlap))
                        .where(col(TaskRecord.ledger_key).in_(part))
                        .group_by(col(TaskRecord.ledger_key))
                    ).all()
                }
            )
            sent.update(
                s.exec(
                    select(PushLedger.key).where(
                        col(PushLedger.key).in_(part), PushLedger.state == LedgerState.DONE
                    )
                ).all()
            )
        closed = set(
            s.exec(
                select(Batch.id).where(Batch.campaign_id == campaign_id, col(Batch.closed))
            ).all()
        )
        now = utcnow()
        for row in open_rows:
            answers, ok = paid.get(row.key, (0, 0))
            done = row.key in sent and answers >= published.get(row.key, 0)
            if done or row.batch_id in closed:
                row.state = ReservationState.SETTLED
                row.amount_actual = str(Decimal(row.unit_cost) * ok)
                row.settled_at = now
                s.add(row)
                settled += 1
        if full:
            for row in s.exec(
                select(SpendReservation).where(
                    SpendReservation.campaign_id == campaign_id,
                    SpendReservation.state == ReservationState.SETTLED,
                )
            ).all():
                actual = str(Decimal(row.unit_cost) * paid.get(row.key, (0, 0))[1])
                if actual != row.amount_actual:
                    row.amount_actual = actual
                    s.add(row)
    return settled


def check_reported(
    campaign_id: str, connector: Connector, paid: dict[str, tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """Read the marketplace's own spend per batch and keep it beside our accounting.

    Only for connectors with Capability.SPEND_REPORT. Returns the batches whose figures
    differ by a cent or more (also logged; mid-run, answers submitted but not synced yet
    show here too); a batch reported above all we committed for it counts at the
    reported figure from now on. ``paid``: `paid_by_key`'s map when the caller has read it.
    """
    if Capability.SPEND_REPORT not in connector.capabilities:
        return []
    with session_scope() as s:
        batches = list(
            s.exec(
                select(Batch).where(
                    Batch.campaign_id == campaign_id, col(Batch.external_id).is_not(None)
                )
            ).all()
        )
        if paid is None:
            paid = _paid_by_key(s, campaign_id, open_only=False)
        accounted: dict[int, Decimal] = {}
        currency: dict[int, str] = {}
        for r in s.exec(
            select(SpendReservation).where(SpendReservation.campaign_id == campaign_id)
        ).all():
            amount = Decimal(r.unit_cost) * paid.get(r.key, (0, 0))[1]
            accounted[r.batch_id] = accounted.get(r.batch_id, ZERO) + amount
            currency[r.batch_id] = r.currency
    checks: list[tuple[str, SpendCheck]] = []
    for batch in batches:
        assert batch.id is not None and batch.external_id is not None
        reported = connector.spend(
            BatchRef(connector=batch.connector, external_id=batch.external_id)
        )
        if reported is None:
            continue
        checks.append(
            (
                batch.stage,
                SpendCheck(
                    batch_id=batch.id,
                    campaign_id=campaign_id,
                    reported=str(reported.amount),
                    accounted=str(accounted.get(batch.id, ZERO)),
                    currency=reported.currency,
                ),
            )
        )
    differences = []
    with session_scope() as s:
        for stage, check in checks:
            s.merge(check)
            diff = Decimal(check.reported) - Decimal(check.accounted)
            if abs(diff) >= CENT:
                differences.append(
                    {
                        "stage": stage,
                        "reported": check.reported,
                        "accounted": check.accounted,
                        "difference": str(diff),
                        "currency": check.currency,
                    }
                )
    for d in differences:
        logger.warning(
            "%s/%s: the marketplace reports %s %s spent, our accounting %s",
            campaign_id,
            d["stage"],
            d["reported"],
            d["currency"],
            d["accounted"],
        )
    return differences


def refresh_spend(
    campaign_id: str, connector: Connector | None = None, *, full: bool = False
) -> None:
    """Settle what can be settled; with a connector, reconcile with its spend report."""
    if connector is None:
        settle(campaign_id, full=full)
        return
    paid = paid_by_key(campaign_id)
    settle(campaign_id, full=True, paid=paid)
    check_reported(campaign_id, connector, paid)


# --- status and decisions ---------------------------------------------------------------------


def budget_status(campaign_id: str, *, refresh: bool = True) -> BudgetStatus:
    """Cap, approval, reserved, actual, paid and differences (settles first unless told not)."""
    paid_counts = paid_by_key(campaign_id)
    if refresh:
        settle(campaign_id, full=True, paid=paid_counts)
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        row = s.get(CampaignBudget, campaign_id)
        reserved = actual = ZERO
        currency = spec.budget.cap.currency if spec.budget else None
        units: dict[str, Decimal] = {}
        for r in s.exec(
            select(SpendReservation).where(SpendReservation.campaign_id == campaign_id)
        ).all():
            currency = currency or r.currency
            units[r.key] = Decimal(r.unit_cost)
            if r.state == ReservationState.SETTLED and r.amount_actual is not None:
                actual += Decimal(r.amount_actual)
            else:
                reserved += Decimal(r.amount_reserved)
        paid = sum((units[k] * ok for k, (_, ok) in paid_counts.items() if k in units), ZERO)
        # What the marketplace reports beyond everything committed counts as actual.
        actual += _committed(s, campaign_id) - (actual + reserved)
        differences = []
        for check in s.exec(select(SpendCheck).where(SpendCheck.campaign_id == campaign_id)):
            diff = Decimal(check.reported) - Decimal(check.accounted)
            if abs(diff) >= CENT:
                batch = s.get(Batch, check.batch_id)
                differences.append(
                    {
                        "stage": batch.stage if batch else str(check.batch_id),
                        "reported": check.reported,
                        "accounted": check.accounted,
                        "difference": str(diff),
                        "currency": check.currency,
                    }
                )
    if row is None:
        return BudgetStatus(
            campaign_id=campaign_id,
            currency=currency or "USD",
            cap=None,
            approved=None,
            pause_at=None,
            reserved=reserved,
            actual=actual,
            paid=paid,
            differences=differences,
        )
    approved = Decimal(row.approved_to)
    return BudgetStatus(
        campaign_id=campaign_id,
        currency=row.currency,
        cap=Decimal(row.cap),
        approved=approved,
        pause_at=row.pause_at,
        reserved=reserved,
        actual=actual,
        paid=paid,
        awaiting_approval=row.launch_approval and approved == 0,
        expected=Decimal(row.expected),
        worst_case=Decimal(row.worst_case),
        differences=differences,
    )


def _decide(
    campaign_id: str, kind: str, by: str, note: str | None, new_cap: Decimal | None
) -> None:
    if not by.strip():
        raise ValueError("an approval or a cap change must name who made it (`by`)")
    if open_budget(campaign_id) is None:
        raise LookupError(f"campaign {campaign_id!r} has no budget section")
    with session_scope() as s:
        row = _lock(s, campaign_id)
        assert row is not None
        cap, approved = Decimal(row.cap), Decimal(row.approved_to)
        pause_point = _pause_point(cap, row.pause_at)
        if kind == "approved":
            approved = pause_point if approved < pause_point else cap
        else:
            assert new_cap is not None
            if new_cap <= 0:
                raise ValueError("the cap must be more than 0")
            cap = new_cap
            if approved > 0 or not row.launch_approval:
                # Raising the cap approves up to its pause point (never less than before);
                # lowering it lowers the approval with it.
                approved = max(approved, _pause_point(cap, row.pause_at))
            approved = min(approved, cap)
        detail = f"{kind} by {by}: cap {row.cap} -> {cap}, approved {row.approved_to} -> {approved}"
        row.cap, row.approved_to, row.updated_at = str(cap), str(approved), utcnow()
        s.add(row)
        s.add(
            BudgetEvent(
                campaign_id=campaign_id,
                kind=kind,
                by=by,
                cap=str(cap),
                approved_to=str(approved),
                committed=str(_committed(s, campaign_id)),
                detail=detail + (f" ({note})" if note else ""),
            )
        )
    logger.info("%s: %s", campaign_id, detail)


def approve(campaign_id: str, by: str, note: str | None = None) -> BudgetStatus:
    """Approve spending to the next checkpoint: the pause point (`pause_at` x cap), then
    the cap. At launch this is the approval of the estimate. Recorded with `by`."""
    _decide(campaign_id, "approved", by, note, None)
    return budget_status(campaign_id)


def raise_cap(
    campaign_id: str, new_cap: Decimal | Money | str | float, by: str, note: str | None = None
) -> BudgetStatus:
    """Set a new hard cap (recorded with `by`); spending is then approved up to the new
    cap's pause point (to the cap itself with `pause_at` 1). A pending launch approval
    still needs `approve`. A lower cap lowers the approval with it."""
    if isinstance(new_cap, Money):
        with session_scope() as s:
            row = s.get(CampaignBudget, campaign_id)
        if row is not None and new_cap.currency != row.currency:
            raise ValueError(f"the cap is in {row.currency}, not {new_cap.currency}")
        amount = new_cap.amount
    else:
        amount = Decimal(str(new_cap))
    _decide(campaign_id, "cap_raised", by, note, amount)
    return budget_status(campaign_id)


def budget_events(campaign_id: str) -> list[dict[str, Any]]:
    """The budget's audit trail, oldest first."""
    with session_scope() as s:
        events = s.exec(
            select(BudgetEvent)
            .where(BudgetEvent.campaign_id == campaign_id)
            .order_by(col(BudgetEvent.id))
        ).all()
        return [e.model_dump(mode="json") for e in events]
