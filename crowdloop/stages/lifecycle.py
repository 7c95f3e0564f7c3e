"""A campaign's lifecycle: the states an operator reads and acts on, the legal moves
between them (here and nowhere else), and the marketplace batches kept in step.

The campaign's status is the desired state; `reconcile_batches` drives every marketplace
batch of the campaign towards what that status wants (open, paused or stopped), one
ledgered, idempotent call per batch, and records what the marketplace confirmed. Whoever
changes the status (a flow, its failure hook, `crowdloop pause`, an ops deployment) calls
it, and a run that starts calls it again, so a crash between the two heals on the next run.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotFound
from crowdloop.db import session_scope
from crowdloop.events import emit
from crowdloop.models.domain import BatchRef, Capability
from crowdloop.models.tables import (
    Batch,
    BatchControl,
    Campaign,
    CampaignEvent,
    CampaignStatus,
    LedgerState,
    PushLedger,
    utcnow,
)
from crowdloop.stages import ledger

logger = logging.getLogger(__name__)

S = CampaignStatus

# The legal moves. A rerun of a failed or cancelled campaign is a restart (-> running);
# a complete campaign stays complete.
TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    S.AWAITING_APPROVAL: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.PAUSED, S.AWAITING_APPROVAL, S.COMPLETE, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.AWAITING_APPROVAL, S.CANCELLED, S.FAILED}),
    S.FAILED: frozenset({S.RUNNING, S.CANCELLED}),
    S.CANCELLED: frozenset({S.RUNNING}),
    S.COMPLETE: frozenset(),
}

# What each status wants of the campaign's marketplace batches. A failed campaign's
# batches are left as they are: a crash is not a decision to stop paying for work.
BATCH_TARGET: dict[CampaignStatus, str | None] = {
    S.AWAITING_APPROVAL: "paused",
    S.RUNNING: "open",
    S.PAUSED: "paused",
    S.FAILED: None,
    S.CANCELLED: "stopped",
    S.COMPLETE: "stopped",
}


def _event_name(old: CampaignStatus | None, new: CampaignStatus) -> str:
    if new == S.RUNNING:
        return "crowdloop.campaign.resumed" if old == S.PAUSED else "crowdloop.campaign.started"
    return {
        S.AWAITING_APPROVAL: "crowdloop.campaign.awaiting-approval",
        S.PAUSED: "crowdloop.campaign.paused",
        S.CANCELLED: "crowdloop.campaign.cancelled",
        S.FAILED: "crowdloop.campaign.failed",
        S.COMPLETE: "crowdloop.campaign.completed",
    }[new]


class IllegalTransition(RuntimeError):
    """The campaign cannot move from its status to the one asked for."""


class UnknownCampaign(LookupError):
    pass


class CampaignHalted(RuntimeError):
    """Raised inside a run when an operator (or the budget) stopped the campaign."""

    def __init__(self, campaign_id: str, status: CampaignStatus, reason: str) -> None:
        super().__init__(f"campaign {campaign_id!r} is {status.value}: {reason}")
        self.campaign_id = campaign_id
        self.status = status
        self.reason = reason


def actor_cli() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"cli {user}@{socket.gethostname()}"


def actor_flow_run(flow_run_id: str | None) -> str:
    return f"flow-run {flow_run_id}" if flow_run_id else f"process {os.getpid()}"


def status_of(campaign_id: str) -> CampaignStatus:
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise UnknownCampaign(campaign_id)
        return CampaignStatus(campaign.status)


def last_reason(s: Session, campaign_id: str) -> str:
    event = s.exec(
        select(CampaignEvent)
        .where(CampaignEvent.campaign_id == campaign_id)
        .order_by(col(CampaignEvent.id).desc())
    ).first()
    return event.reason if event else ""


def transition(
    campaign_id: str,
    new: CampaignStatus,
    *,
    reason: str,
    actor: str,
    flow_run_id: str | None = None,
    allowed_from: frozenset[CampaignStatus] | None = None,
) -> bool:
    """Move the campaign to `new`; False when it already is there (a no-op).

    The row is locked while the move is checked (PostgreSQL: FOR UPDATE; SQLite
    serialises writers), so two operators racing cannot both move it. `allowed_from`
    narrows the legal sources further (a hook that only turns a running campaign failed).
    """
    with session_scope() as s:
        campaign = s.exec(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        ).first()
        if campaign is None:
            raise UnknownCampaign(campaign_id)
        old = CampaignStatus(campaign.status)
        if old == new:
            return False
        if new not in TRANSITIONS[old] or (allowed_from is not None and old not in allowed_from):
            raise IllegalTransition(
                f"campaign {campaign_id!r} is {old.value}; it cannot become {new.value}"
            )
        campaign.status = new
        campaign.updated_at = utcnow()
        s.add(campaign)
        s.add(
            CampaignEvent(
                campaign_id=campaign_id,
                old_status=old.value,
                new_status=new.value,
                reason=reason,
                actor=actor,
                flow_run_id=flow_run_id,
            )
        )
    logger.info("campaign %s: %s -> %s (%s; %s)", campaign_id, old, new, reason, actor)
    emit(
        _event_name(old, new),
        campaign_id,
        {"from": old.value, "to": new.value, "reason": reason, "actor": actor},
    )
    return True


def record_start(campaign_id: str, *, actor: str, flow_run_id: str | None) -> CampaignStatus:
    """A run takes the campaign: failed, cancelled or paused ones restart (an operator who
    reruns a campaign means it), awaiting approval stays until approved. Returns the status."""
    status = status_of(campaign_id)
    if status in (S.FAILED, S.CANCELLED, S.PAUSED):
        transition(
            campaign_id,
            S.RUNNING,
            reason=f"rerun ({status.value} before)",
            actor=actor,
            flow_run_id=flow_run_id,
        )
        return S.RUNNING
    if status == S.RUNNING:
        # Already running by the record (a crashed run left it so): log who took it over.
        with session_scope() as s:
            s.add(
                CampaignEvent(
                    campaign_id=campaign_id,
                    old_status=status.value,
                    new_status=status.value,
                    reason="run started",
                    actor=actor,
                    flow_run_id=flow_run_id,
                )
            )
        emit("crowdloop.campaign.started", campaign_id, {"actor": actor})
    return status


def check_running(campaign_id: str) -> None:
    """Raise CampaignHalted unless the campaign may go on publishing and waiting."""
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise UnknownCampaign(campaign_id)
        status = CampaignStatus(campaign.status)
        if status != S.RUNNING:
            raise CampaignHalted(campaign_id, status, last_reason(s, campaign_id))


# --- batches --------------------------------------------------------------------------------


@dataclass
class BatchMove:
    stage: str
    external_id: str
    old: str
    new: str
    note: str = ""


@dataclass
class BatchReport:
    moves: list[BatchMove] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _batch_states(s: Session, campaign_id: str) -> list[tuple[Batch, str]]:
    batches = list(
        s.exec(select(Batch).where(Batch.campaign_id == campaign_id).order_by(col(Batch.id))).all()
    )
    ids = [b.id for b in batches if b.id is not None]
    controls = dict(
        s.exec(
            select(BatchControl.batch_id, BatchControl.state).where(
                col(BatchControl.batch_id).in_(ids)
            )
        ).all()
    )
    return [
        (b, controls.get(b.id or -1, "stopped" if b.closed else "open"))
        for b in batches
        if b.external_id is not None and b.started
    ]


def batch_states(campaign_id: str) -> dict[str, str]:
    """Stage -> the state the marketplace last confirmed (open, paused, stopped)."""
    with session_scope() as s:
        return {b.stage: state for b, state in _batch_states(s, campaign_id)}


def reconcile_batches(campaign_id: str, connector: Connector) -> BatchReport:
    """Bring every started batch of the campaign to the state its status wants."""
    report = BatchReport()
    with session_scope() as s:
        status = CampaignStatus(s.get(Campaign, campaign_id).status)  # type: ignore[union-attr]
        states = [
            (b.id, b.stage, b.external_id, b.idempotency_key, st)
            for b, st in _batch_states(s, campaign_id)
        ]
    target = BATCH_TARGET[status]
    if target is None:
        return report
    can_pause = Capability.PAUSE in connector.capabilities
    for batch_id, stage, external_id, key, state in states:
        assert batch_id is not None and external_id is not None
        if state == target or (state == "stopped" and target == "paused"):
            continue
        ref = BatchRef(connector=connector.name, external_id=external_id)
        if target == "paused" and not can_pause:
            report.warnings.append(
                f"{connector.name} cannot pause a batch: {stage} batch {external_id} keeps "
                "handing out the work already published; crowdloop publishes nothing more"
            )
            _confirm(batch_id, "paused")
            report.moves.append(BatchMove(stage, external_id, state, "paused", "ours only"))
            continue
        if target == "open" and state == "paused" and not can_pause:
            _confirm(batch_id, "open")
            report.moves.append(BatchMove(stage, external_id, state, "open", "ours only"))
            continue
        action = {
            ("open", "paused"): "pause_batch",
            ("paused", "open"): "resume_batch",
            ("stopped", "open"): "reopen_batch",
        }.get((state, target), "stop_batch")
        ledger_key = _control_intent(campaign_id, connector.name, key, action)
        try:
            if action == "pause_batch":
                connector.pause(ref)
            elif action == "resume_batch":
                connector.resume(ref)
            elif action == "reopen_batch":
                connector.start(ref)
            else:
                connector.stop(ref, reason=f"campaign {campaign_id} {status.value}")
        except NotFound as exc:
            raise BatchGone(campaign_id, stage, external_id, str(exc)) from exc
        with session_scope() as s:
            ledger.mark_done(s, ledger_key)
            s.execute(
                update(Batch).where(col(Batch.id) == batch_id).values(closed=(target == "stopped"))
            )
        _confirm(batch_id, target)
        report.moves.append(BatchMove(stage, external_id, state, target))
    for w in report.warnings:
        logger.warning(w)
    return report


class BatchGone(RuntimeError):
    """A batch we created is unknown to the marketplace (deleted there, or another account)."""

    def __init__(self, campaign_id: str, stage: str, external_id: str, detail: str) -> None:
        super().__init__(
            f"campaign {campaign_id!r}: the marketplace no longer knows its {stage} batch "
            f"{external_id!r} ({detail}); check the connector's account and project, or "
            "cancel the campaign"
        )


def _control_intent(campaign_id: str, connector: str, batch_key: str, action: str) -> str:
    """Record the call before it is made; an open intent for the same move is reused.

    Two reconcilers (the flow and an operator's command, or two workers) may record the
    same move at once: the second insert of `...:N` violates the key, and a fresh read
    then finds the first one's intent and reuses it."""
    prefix = f"{batch_key}:{action}:"
    for _ in range(5):
        try:
            with session_scope() as s:
                rows = s.exec(
                    select(PushLedger.key, PushLedger.state).where(
                        col(PushLedger.key).startswith(prefix)
                    )
                ).all()
                for key, state in rows:
                    if state == LedgerState.INTENT:
                        s.execute(
                            update(PushLedger)
                            .where(col(PushLedger.key) == key)
                            .values(calls=PushLedger.calls + 1, updated_at=utcnow())
                        )
                        return key
                key = f"{prefix}{len(rows) + 1}"
                s.add(
                    PushLedger(
                        key=key,
                        campaign_id=campaign_id,
                        connector=connector,
                        action=action,
                        target=batch_key,
                        calls=1,
                    )
                )
            return key
        except IntegrityError:
            continue  # recorded by a concurrent reconciler: read again
    raise RuntimeError(f"could not record {action} for batch {batch_key!r}: the key kept colliding")


def _confirm(batch_id: int, state: str) -> None:
    with session_scope() as s:
        row = s.get(BatchControl, batch_id)
        if row is None:
            s.add(BatchControl(batch_id=batch_id, state=state))
        else:
            row.state = state
            row.updated_at = utcnow()
            s.add(row)


def events(campaign_id: str, limit: int = 20) -> list[CampaignEvent]:
    with session_scope() as s:
        rows = s.exec(
            select(CampaignEvent)
            .where(CampaignEvent.campaign_id == campaign_id)
            .order_by(col(CampaignEvent.id).desc())
            .limit(limit)
        ).all()
        return list(reversed(rows))
