"""Waiting for an operator, the Prefect way: a run from a deployment suspends (its
infrastructure is released) with a form in the Prefect UI; a local run (`crowdloop run`)
waits in place, watching the campaign's status, for `crowdloop resume` from another shell.
"""

from __future__ import annotations

import time

from prefect import get_run_logger
from prefect.input import RunInput

from crowdloop.flows import hooks
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import lifecycle
from crowdloop.stages.plan import load_spec
from crowdloop.text import md_escape


class ResumeInput(RunInput):
    """The form the Prefect UI shows on a paused campaign's suspended run."""

    note: str = ""


def _halt_key(campaign_id: str) -> str:
    events = lifecycle.events(campaign_id, limit=1)
    return f"halt-{events[-1].id if events else 0}"


def wait_for_operator(campaign_id: str, halted: lifecycle.CampaignHalted) -> None:
    """Return once the campaign runs again; raise CampaignHalted if it was cancelled."""
    logger = get_run_logger()
    from crowdloop.db import session_scope

    with session_scope() as s:
        timeout_s = load_spec(s, campaign_id).stage_timeout_s
    if hooks.current_deployment_id() is not None and halted.status == CampaignStatus.PAUSED:
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
    logger.warning(
        "campaign %s is %s (%s); waiting for `crowdloop resume %s` or a cancel",
        campaign_id,
        halted.status.value,
        halted.reason,
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
        time.sleep(min(5.0, max(0.2, load_poll(campaign_id))))
    raise TimeoutError(
        f"campaign {campaign_id} stayed {halted.status.value} for {timeout_s:.0f}s; "
        "rerun it once it is resumed"
    )


def load_poll(campaign_id: str) -> float:
    from crowdloop.db import session_scope

    with session_scope() as s:
        return load_spec(s, campaign_id).poll_interval_s
