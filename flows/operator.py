"""Waiting for an operator, the Prefect way: a run from a deployment suspends (its
infrastructure is released) with a form in the Prefect UI; a local run (`crowdloop run`)
waits in place, watching the campaign's status, for `crowdloop resume` from another shell.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Literal

from prefect import get_run_logger
from prefect.input import RunInput
from pydantic import Field

from crowdloop.flows import hooks
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import budget, lifecycle, operate
from crowdloop.stages.rounds import campaign_spec
from crowdloop.text import md_escape


class ResumeInput(RunInput):
    """The form the Prefect UI shows on a paused campaign's suspended run."""

    note: str = ""


class ApprovalInput(RunInput):
    """The form the Prefect UI shows when a campaign waits for budget approval."""

    decision: Literal["approve", "reject"] = "approve"
    new_cap: float | None = Field(
        default=None, ge=0, description="Raise the hard cap to this amount (campaign currency)."
    )
    note: str = ""


def approval_description(campaign_id: str, reason: str) -> str:
    status = budget.budget_status(campaign_id, refresh=False)
    lines = [
        f"## Campaign {md_escape(campaign_id)} waits for budget approval",
        "",
        md_escape(reason),
        "",
        f"**Spend:** {md_escape(status.summary())}",
        "",
    ]
    try:
        lines.append(budget.estimate_for_campaign(campaign_id).markdown())
    except (LookupError, ValueError, OSError) as exc:
        lines.append(f"(no estimate: {md_escape(exc)})")
    lines += [
        "",
        "**approve** goes on (to the next checkpoint, or to `new_cap` if given); "
        "**reject** cancels the campaign and stops its marketplace batches.",
    ]
    return "\n".join(lines)


def apply_approval(campaign_id: str, decision: ApprovalInput, actor: str) -> None:
    """What the operator chose in the form; raises CampaignHalted when rejected."""
    if decision.decision == "reject":
        operate.reject(campaign_id, actor=actor, note=decision.note or None)
        raise lifecycle.CampaignHalted(
            campaign_id, CampaignStatus.CANCELLED, "budget rejected in the Prefect UI"
        )
    if lifecycle.status_of(campaign_id) == CampaignStatus.AWAITING_APPROVAL:
        new_cap = None if decision.new_cap is None else Decimal(str(decision.new_cap))
        operate.approve(campaign_id, actor=actor, new_cap=new_cap, note=decision.note or None)


def _halt_key(campaign_id: str) -> str:
    events = lifecycle.events(campaign_id, limit=1)
    return f"halt-{events[-1].id if events else 0}"


def wait_for_operator(campaign_id: str, halted: lifecycle.CampaignHalted) -> None:
    """Return once the campaign runs again; raise CampaignHalted if it was cancelled."""
    logger = get_run_logger()
    spec = campaign_spec(campaign_id)
    timeout_s = spec.stage_timeout_s
    deployed = hooks.current_deployment_id() is not None
    if deployed and halted.status == CampaignStatus.AWAITING_APPROVAL:
        from prefect.flow_runs import suspend_flow_run

        logger.info("campaign %s waits for budget approval; suspending this run", campaign_id)
        decision = suspend_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(
                description=approval_description(campaign_id, halted.reason)
            ),
            key=_halt_key(campaign_id),
            timeout=int(timeout_s),
        )
        apply_approval(
            campaign_id,
            decision,
            actor=f"Prefect UI (flow run {hooks.current_flow_run_id()})",
        )
        return
    if deployed and halted.status == CampaignStatus.PAUSED:
        from prefect.flow_runs import suspend_flow_run

        description = (
            f"**Campaign {md_escape(campaign_id)} is paused**: {md_escape(halted.reason)}\n\n"
            "Resuming this run resumes the campaign: its marketplace batches reopen and "
            "publishing goes on where it stopped. To stop it for good instead, run the "
            f"`cancel-campaign` deployment or `crowdloop cancel {md_escape(campaign_id)}`."
        )
        logger.info("campaign %s paused; suspending this run until it is resumed", campaign_id)
        note = suspend_flow_run(
            wait_for_input=ResumeInput.with_initial_data(description=description),
            key=_halt_key(campaign_id),
            timeout=int(timeout_s),
        )
        # Reached on the rerun after a resume from the UI (the rerun's start normally
        # resumed the campaign already; this covers a resume given without a rerun).
        lifecycle.transition(
            campaign_id,
            CampaignStatus.RUNNING,
            reason=f"resumed in the Prefect UI: {note.note}" if note.note else "resumed",
            actor=lifecycle.actor_flow_run(hooks.current_flow_run_id()),
        )
        return
    command = "approve" if halted.status == CampaignStatus.AWAITING_APPROVAL else "resume"
    logger.warning(
        "campaign %s is %s (%s); waiting for `crowdloop %s %s` or a cancel",
        campaign_id,
        halted.status.value.replace("_", " "),
        halted.reason,
        command,
        campaign_id,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = lifecycle.status_of(campaign_id)
        if status == CampaignStatus.RUNNING:
            logger.info("campaign %s resumed", campaign_id)
            from crowdloop.stages.rounds import connector_for

            with connector_for(campaign_id) as c:
                lifecycle.reconcile_batches(campaign_id, c)
            return
        if status != halted.status:
            raise lifecycle.CampaignHalted(campaign_id, status, "changed while waiting")
        time.sleep(min(5.0, max(0.2, spec.poll_interval_s)))
    raise TimeoutError(
        f"campaign {campaign_id} stayed {halted.status.value} for {timeout_s:.0f}s; "
        "rerun it once it is resumed"
    )
