"""What an operator does to a campaign — pause, resume, cancel — written once for the CLI,
the operator deployments and the flow hooks: the status change (lifecycle rules), then
the marketplace batches brought in line with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from crowdloop.events import emit
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import budget, lifecycle
from crowdloop.stages.budget import BudgetPause
from crowdloop.stages.rounds import connector_for


@dataclass
class OperatorResult:
    campaign_id: str
    status: str
    changed: bool
    batches: list[str] = field(default_factory=list)  # "compare: open -> paused", ...
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (
            f"campaign {self.campaign_id} is now {self.status}"
            if self.changed
            else f"campaign {self.campaign_id} was already {self.status}"
        )
        moves = f"; batches: {', '.join(self.batches)}" if self.batches else ""
        return head + moves


def _apply(
    campaign_id: str,
    new: CampaignStatus,
    *,
    actor: str,
    reason: str,
    flow_run_id: str | None = None,
) -> OperatorResult:
    changed = lifecycle.transition(
        campaign_id, new, reason=reason, actor=actor, flow_run_id=flow_run_id
    )
    if not lifecycle.batch_states(campaign_id):  # nothing published: no marketplace call
        return OperatorResult(campaign_id, new.value, changed)
    with connector_for(campaign_id) as connector:
        report = lifecycle.reconcile_batches(campaign_id, connector)
    return OperatorResult(
        campaign_id,
        new.value,
        changed,
        [
            f"{m.stage}: {m.old} -> {m.new}" + (f" ({m.note})" if m.note else "")
            for m in report.moves
        ],
        report.warnings,
    )


def pause(campaign_id: str, *, actor: str, reason: str = "paused by an operator") -> OperatorResult:
    return _apply(campaign_id, CampaignStatus.PAUSED, actor=actor, reason=reason)


def resume(
    campaign_id: str, *, actor: str, reason: str = "resumed by an operator"
) -> OperatorResult:
    if lifecycle.status_of(campaign_id) == CampaignStatus.AWAITING_APPROVAL:
        raise lifecycle.IllegalTransition(
            f"campaign {campaign_id!r} waits for budget approval, not for a resume: "
            f"approve it (crowdloop approve {campaign_id} [--cap AMOUNT]) or reject it"
        )
    return _apply(campaign_id, CampaignStatus.RUNNING, actor=actor, reason=reason)


def cancel(
    campaign_id: str,
    *,
    actor: str,
    reason: str = "cancelled by an operator",
    flow_run_id: str | None = None,
) -> OperatorResult:
    return _apply(
        campaign_id, CampaignStatus.CANCELLED, actor=actor, reason=reason, flow_run_id=flow_run_id
    )


# --- money ----------------------------------------------------------------------------------

BUDGET_EVENT = {
    "pause": "crowdloop.budget.threshold",
    "cap": "crowdloop.budget.exhausted",
}


def hold_for_budget(pause: BudgetPause, *, actor: str, flow_run_id: str | None = None) -> None:
    """A push was refused by the budget: the campaign waits for approval with its batches
    paused, and operators are told (approval requested; threshold or cap reached)."""
    campaign_id = pause.campaign_id
    lifecycle.transition(
        campaign_id,
        CampaignStatus.AWAITING_APPROVAL,
        reason=str(pause),
        actor=actor,
        flow_run_id=flow_run_id,
    )
    payload = {
        "reason": pause.reason,
        "needed": str(pause.needed),
        "committed": str(pause.committed),
        "approved": str(pause.approved),
        "cap": str(pause.cap),
        "currency": pause.currency,
    }
    if pause.reason in BUDGET_EVENT:
        emit(BUDGET_EVENT[pause.reason], campaign_id, payload)
    emit("crowdloop.budget.approval-requested", campaign_id, payload)
    if lifecycle.batch_states(campaign_id):
        with connector_for(campaign_id) as connector:
            lifecycle.reconcile_batches(campaign_id, connector)


def approve(
    campaign_id: str,
    *,
    actor: str,
    new_cap: Decimal | None = None,
    note: str | None = None,
) -> OperatorResult:
    """Approve the estimate or the next stretch of spending (raising the cap first when
    given) and let the campaign run again."""
    if new_cap is not None:
        budget.raise_cap(campaign_id, new_cap, by=actor, note=note)
    status = budget.budget_status(campaign_id, refresh=False)
    if new_cap is None or status.awaiting_approval:
        budget.approve(campaign_id, by=actor, note=note)
    what = f"cap raised to {new_cap}" if new_cap is not None else "spending approved"
    return _apply(
        campaign_id,
        CampaignStatus.RUNNING,
        actor=actor,
        reason=f"{what} by {actor}" + (f": {note}" if note else ""),
    )


def reject(campaign_id: str, *, actor: str, note: str | None = None) -> OperatorResult:
    """Refuse the spending asked for: the campaign is cancelled (a rerun asks again)."""
    return cancel(
        campaign_id, actor=actor, reason="budget rejected" + (f": {note}" if note else "")
    )
