"""Flow-run hooks and run identity: the campaign's record follows what happened to the
Prefect run that drove it (failed, crashed, cancelled from the UI), so a campaign never
stays "running" after its run is gone."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import lifecycle

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import State

logger = logging.getLogger(__name__)


def current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None


def current_deployment_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None or ctx.flow_run.deployment_id is None:
        return None
    return str(ctx.flow_run.deployment_id)


def driver_description() -> str:
    """What a second run is told about this one."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    where = f"{socket.gethostname()} pid {os.getpid()}"
    if ctx is not None and ctx.flow_run is not None:
        return f"flow run {ctx.flow_run.name!r} ({ctx.flow_run.id}) on {where}"
    return f"a run on {where}"


def campaign_of(parameters: dict[str, Any]) -> str | None:
    """The campaign a flow run drives, from its parameters."""
    if parameters.get("campaign_id"):
        return str(parameters["campaign_id"])
    if parameters.get("campaign_file"):
        from crowdloop.models.spec import load_campaign

        try:
            return load_campaign(Path(parameters["campaign_file"])).name
        except Exception:  # a file that does not load never registered a campaign
            return None
    return None


def mark_failed(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """A running campaign whose run failed or crashed becomes failed (a rerun continues it).

    A paused or cancelled campaign keeps its status: an operator's decision outranks the
    fate of the run that was waiting on it. So does a campaign another run (or the
    scheduled sync) drives: a run that failed because it could not take the lease (a
    second run of the campaign, on another worker or not) never drove it, and marking the
    campaign failed would halt the run that does at its next poll.
    """
    campaign_id = campaign_of(dict(flow_run.parameters or {}))
    if campaign_id is None:
        return
    if driven_by_another(campaign_id, str(flow_run.id)):
        return
    if state.is_crashed() and _cancelling(flow_run):
        # A worker stops a run it was told to cancel by killing it: to the run that is a
        # crash, to the operator who pressed Cancel it is a cancellation.
        mark_cancelled(flow, flow_run, state)
        return
    try:
        lifecycle.transition(
            campaign_id,
            CampaignStatus.FAILED,
            reason=f"flow run {flow_run.name!r} {state.type.value.lower()}: "
            f"{(state.message or '').strip()[:500]}",
            actor=lifecycle.actor_flow_run(str(flow_run.id)),
            flow_run_id=str(flow_run.id),
            allowed_from=frozenset({CampaignStatus.RUNNING}),
        )
    except (lifecycle.IllegalTransition, lifecycle.UnknownCampaign):
        pass
    except Exception as exc:  # a hook must not hide the run's own failure
        logger.warning("could not record the failure of %s: %s", campaign_id, exc)


def driven_by_another(campaign_id: str, flow_run_id: str) -> bool:
    """True while a live lease on the campaign belongs to someone other than this run
    (a dead holder's or an expired lease is nobody's: `lease.current`)."""
    from crowdloop.stages import lease

    try:
        holder = lease.current(campaign_id)
    except Exception as exc:  # the database is away: record the failure as before
        logger.warning("could not read the lease of %s: %s", campaign_id, exc)
        return False
    return holder is not None and holder.flow_run_id != flow_run_id


def _cancelling(flow_run: FlowRun) -> bool:
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run.id).state
    except Exception:
        return False
    return current is not None and (current.is_cancelling() or current.is_cancelled())


def mark_cancelled(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """Cancelled from the Prefect UI (or API): cancel the campaign and stop its batches."""
    campaign_id = campaign_of(dict(flow_run.parameters or {}))
    if campaign_id is None:
        return
    from crowdloop.stages.operate import cancel

    try:
        cancel(
            campaign_id,
            actor=lifecycle.actor_flow_run(str(flow_run.id)),
            reason=f"flow run {flow_run.name!r} was cancelled",
            flow_run_id=str(flow_run.id),
        )
    except Exception as exc:
        logger.warning("could not cancel campaign %s after its run: %s", campaign_id, exc)
