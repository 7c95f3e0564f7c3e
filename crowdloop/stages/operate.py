"""What an operator does to a campaign — pause, resume, cancel — written once for the CLI,
the operator deployments and the flow hooks: the status change (lifecycle rules), then
the marketplace batches brought in line with it."""

from __future__ import annotations

from dataclasses import dataclass, field

from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import lifecycle
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
