"""Operator actions as flows, so ops can start them from the Prefect UI (deployments
`pause-campaign`, `resume-campaign`, `cancel-campaign`), and the Prefect side of each
action for the CLI: a paused campaign's suspended run is resumed, a cancelled campaign's
suspended run is cancelled. A running driver needs nothing: it sees the new status
between two polls and pauses or ends itself."""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger

from crowdloop.flows import hooks
from crowdloop.stages import lifecycle, operate


def _suspended_runs(campaign_id: str) -> list[UUID]:
    """Flow runs that drove the campaign and now wait suspended for an operator."""
    from prefect import get_client

    ids = {e.flow_run_id for e in lifecycle.events(campaign_id, limit=50) if e.flow_run_id}
    ids.discard(hooks.current_flow_run_id())
    waiting: list[UUID] = []
    with get_client(sync_client=True) as client:
        for run_id in ids:
            try:
                run = client.read_flow_run(UUID(run_id))
            except Exception:
                continue
            if run.state is not None and run.state.is_paused():
                waiting.append(run.id)
    return waiting


def follow_up(campaign_id: str, action: str) -> list[str]:
    """The Prefect side of an operator action; what was done, as lines to print."""
    if hooks.current_flow_run_id() is None and not os.environ.get("PREFECT_API_URL"):
        return []  # no server to talk to: a local run watches the database itself
    done: list[str] = []
    for run_id in _suspended_runs(campaign_id):
        if action in ("resume", "approve"):
            from prefect.flow_runs import resume_flow_run

            # The input the run's form asks for (flows/operator.py); the decision itself
            # is already applied, so the resumed run simply goes on.
            run_input = (
                {"decision": "approve", "note": "approved by an operator"}
                if action == "approve"
                else {"note": "resumed by an operator"}
            )
            resume_flow_run(run_id, run_input=run_input)
            done.append(f"resumed suspended flow run {run_id}")
        elif action in ("cancel", "reject"):
            from prefect import get_client
            from prefect.states import Cancelled

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(
                    run_id, Cancelled(message="campaign cancelled"), force=True
                )
            done.append(f"cancelled suspended flow run {run_id}")
    return done


def _act(campaign_id: str, action: str, reason: str) -> dict[str, Any]:
    actor = lifecycle.actor_flow_run(hooks.current_flow_run_id())
    result = {"pause": operate.pause, "resume": operate.resume, "cancel": operate.cancel}[action](
        campaign_id, actor=actor, reason=reason
    )
    logger = get_run_logger()
    logger.info(result.summary())
    for w in result.warnings:
        logger.warning(w)
    runs = follow_up(campaign_id, action)
    for line in runs:
        logger.info(line)
    return {
        "status": result.status,
        "changed": result.changed,
        "batches": result.batches,
        "runs": runs,
    }


@flow(name="pause-campaign")
def pause_campaign(campaign_id: str, reason: str = "paused from the Prefect UI") -> dict[str, Any]:
    """Pause: nothing more is published and the marketplace batches stop handing out work."""
    return _act(campaign_id, "pause", reason)


@flow(name="resume-campaign")
def resume_campaign(
    campaign_id: str, reason: str = "resumed from the Prefect UI"
) -> dict[str, Any]:
    """Resume a paused campaign: batches reopen and its waiting run goes on."""
    return _act(campaign_id, "resume", reason)


@flow(name="cancel-campaign")
def cancel_campaign(
    campaign_id: str, reason: str = "cancelled from the Prefect UI"
) -> dict[str, Any]:
    """Cancel: every marketplace batch is stopped; a rerun of the campaign restarts it."""
    return _act(campaign_id, "cancel", reason)
