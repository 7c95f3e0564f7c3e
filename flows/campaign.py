"""The campaign flows: demonstrations (SFT data) and preferences (reward-model data).

Each flow is a loop of stage tasks — push, wait-and-sync, check workers, settle, advance —
that reads and writes crowdloop's database, so any run can stop anywhere and a rerun of
the same flow continues from what the database says.

A run drives its campaign only while it holds the campaign's lease (one driver per
campaign) and only while the campaign is running: a pause or an approval request from an
operator or the budget halts it between two polls, and the run waits for the operator
(suspended, infrastructure released, when it came from a deployment). Completion closes
the campaign's marketplace batches; the failure, crash and cancellation hooks record what
happened so the campaign never stays "running" after its run is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Cancelled, State

from crowdloop.db import session_scope
from crowdloop.flows import hooks
from crowdloop.flows import stages as t
from crowdloop.flows.operator import wait_for_operator
from crowdloop.flows.trigger import trigger_retraining
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec, load_campaign
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import budget, lease, lifecycle, operate
from crowdloop.stages.budget import BudgetPause
from crowdloop.stages.demonstrations import DEMO_STAGES
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.rounds import RoundOps, campaign_spec, connector_for, run_rounds

TASK_OPS = RoundOps(
    push=t.push_stage,
    wait_and_sync=t.wait_and_sync,
    check_workers=t.check_workers,
    settle=t.settle_items,
    advance=t.advance_demonstrations,
    extend=t.extend_uncertain,
)


def _run_rounds(campaign_id: str, stages: list[Stage], advance: bool, ops: RoundOps) -> int:
    t.publish_progress(campaign_id)
    return run_rounds(
        campaign_id,
        stages,
        ops,
        advance=advance,
        on_round=lambda _: t.publish_progress(campaign_id),
    )


def _demonstrations(campaign_id: str) -> dict[str, Any]:
    rounds = _run_rounds(campaign_id, DEMO_STAGES, advance=True, ops=TASK_OPS)
    exported = t.export_sft(campaign_id)
    return {"rounds": rounds, "sft": exported}


def _preferences(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    has_exam = spec.quality.exam is not None
    ops = RoundOps(**{**TASK_OPS.__dict__, "exam": t.exam_round}) if has_exam else TASK_OPS
    if spec.routing is not None:
        ops = RoundOps(**{**ops.__dict__, "route": t.route_to_ai})
    rounds = _run_rounds(campaign_id, [Stage.COMPARE], advance=False, ops=ops)
    out: dict[str, Any] = {"rounds": rounds}
    out["reviewed_at_close"] = t.review_held(campaign_id, [Stage.COMPARE])
    if has_exam:
        out["exam"] = t.close_exam(campaign_id)
    out["aggregate"] = t.aggregate_preferences(campaign_id)
    out["preferences"] = t.export_preferences(campaign_id)
    out["retraining"] = trigger_retraining(campaign_id)
    return out


def _ranking(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    ops = RoundOps(**{**TASK_OPS.__dict__, "route": t.route_to_ai}) if spec.routing else TASK_OPS
    rounds = _run_rounds(campaign_id, [Stage.RANK], advance=False, ops=ops)
    return {
        "rounds": rounds,
        "aggregate": t.aggregate_rankings(campaign_id),
        "export": t.export_rankings(campaign_id),
    }


def _rating(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    ops = RoundOps(**{**TASK_OPS.__dict__, "route": t.route_to_ai}) if spec.routing else TASK_OPS
    rounds = _run_rounds(campaign_id, [Stage.RATE], advance=False, ops=ops)
    return {
        "rounds": rounds,
        "aggregate": t.aggregate_ratings(campaign_id),
        "export": t.export_ratings(campaign_id),
    }


def _drive(campaign_id: str, parts: list[str], out: dict[str, Any]) -> State | None:
    """Run the parts in order; on a halt wait for the operator, then go on where it stopped.

    Returns a Cancelled state when the campaign was cancelled, None when the parts finished.
    """
    run = {
        "demonstrations": _demonstrations,
        "preferences": _preferences,
        "ranking": _ranking,
        "rating": _rating,
    }
    while True:
        try:
            budget.launch_gate(campaign_id)  # an estimate above the threshold asks first
            for part in parts:
                if part not in out:
                    out[part] = run[part](campaign_id)
            return None
        except BudgetPause as pause:
            # Nothing over the approved amount was sent: wait for approval, batches paused.
            flow_run_id = hooks.current_flow_run_id()
            operate.hold_for_budget(
                pause, actor=lifecycle.actor_flow_run(flow_run_id), flow_run_id=flow_run_id
            )
            t.publish_progress(campaign_id)
            wait_for_operator(
                campaign_id,
                lifecycle.CampaignHalted(campaign_id, CampaignStatus.AWAITING_APPROVAL, str(pause)),
            )
        except lifecycle.CampaignHalted as halted:
            if halted.status == CampaignStatus.CANCELLED:
                t.publish_progress(campaign_id)
                return Cancelled(message=f"campaign {campaign_id} cancelled: {halted.reason}")
            if halted.status not in (CampaignStatus.PAUSED, CampaignStatus.AWAITING_APPROVAL):
                raise
            t.publish_progress(campaign_id)
            wait_for_operator(campaign_id, halted)


@contextmanager
def _driving(campaign_id: str, lease_wait_s: float) -> Iterator[None]:
    """Hold the campaign's lease for the block, take the campaign for this run and bring
    its batches in line (a rerun after a cancel or a crash reopens them)."""
    flow_run_id = hooks.current_flow_run_id()
    with lease.held(
        campaign_id,
        description=hooks.driver_description(),
        flow_run_id=flow_run_id,
        wait_s=lease_wait_s,
    ):
        lifecycle.record_start(
            campaign_id, actor=lifecycle.actor_flow_run(flow_run_id), flow_run_id=flow_run_id
        )
        if lifecycle.status_of(campaign_id) == CampaignStatus.RUNNING:
            with connector_for(campaign_id) as c:
                lifecycle.reconcile_batches(campaign_id, c)
        yield


def _finish(campaign_id: str) -> None:
    """Complete: close every marketplace batch, then record it."""
    lifecycle.transition(
        campaign_id,
        CampaignStatus.COMPLETE,
        reason="all work collected and exported",
        actor=lifecycle.actor_flow_run(hooks.current_flow_run_id()),
        flow_run_id=hooks.current_flow_run_id(),
    )
    with connector_for(campaign_id) as c:
        lifecycle.reconcile_batches(campaign_id, c)


def _drive_one(campaign_id: str, part: str, lease_wait_s: float) -> dict[str, Any] | State:
    with _driving(campaign_id, lease_wait_s):
        if lifecycle.status_of(campaign_id) == CampaignStatus.COMPLETE:
            # Nothing is published for a complete campaign; `crowdloop export` re-exports.
            get_run_logger().info("campaign %s is already complete", campaign_id)
            return {"status": "complete"}
        out: dict[str, Any] = {}
        cancelled = _drive(campaign_id, [part], out)
        return cancelled if cancelled is not None else out[part]


@flow(
    name="collect-demonstrations",
    on_failure=[hooks.mark_failed],
    on_crashed=[hooks.mark_failed],
    on_cancellation=[hooks.mark_cancelled],
)
def collect_demonstrations(campaign_id: str, lease_wait_s: float = 0.0) -> Any:
    """Prompts and responses written by the crowd, verified by other workers, exported as SFT."""
    return _drive_one(campaign_id, "demonstrations", lease_wait_s)


@flow(
    name="collect-preferences",
    on_failure=[hooks.mark_failed],
    on_crashed=[hooks.mark_failed],
    on_cancellation=[hooks.mark_cancelled],
)
def collect_preferences(campaign_id: str, lease_wait_s: float = 0.0) -> Any:
    """Pairwise comparisons with golden pairs mixed in; BT scores; TRL preference export.

    With an exam (`quality.exam`) each round first grades it and qualifies passers, and
    production comparisons go only to qualified workers; the exam closes at the end.
    """
    return _drive_one(campaign_id, "preferences", lease_wait_s)


def register(spec: CampaignSpec, *, update: bool = False) -> str:
    with session_scope() as s:
        return register_campaign(s, spec, update=update).id


@flow(
    name="run-campaign",
    on_failure=[hooks.mark_failed],
    on_crashed=[hooks.mark_failed],
    on_cancellation=[hooks.mark_cancelled],
)
def run_campaign(campaign_file: str, update: bool = False, lease_wait_s: float = 0.0) -> Any:
    """Run a whole campaign file: demonstrations, then preferences, then the report.

    `update` applies changes to fields that may change in place (polling, timeouts,
    connector options, retraining, budget) to an existing campaign; other changes need a
    new campaign name. `lease_wait_s` waits that long for another run driving the same
    campaign to finish instead of stopping at once.
    """
    spec = load_campaign(Path(campaign_file))
    campaign_id = register(spec, update=update)
    logger = get_run_logger()
    logger.info("campaign %s on connector %s", campaign_id, spec.connector.name)
    out: dict[str, Any] = {"campaign": campaign_id}
    with _driving(campaign_id, lease_wait_s):
        if lifecycle.status_of(campaign_id) == CampaignStatus.COMPLETE:
            logger.info("campaign %s is already complete; publishing its report", campaign_id)
            out["report"] = t.publish_report(campaign_id)
            return out
        t.check_capabilities(campaign_id)
        t.publish_estimate(campaign_id)
        parts = [
            p for p in ("demonstrations", "preferences", "ranking", "rating") if getattr(spec, p)
        ]
        cancelled = _drive(campaign_id, parts, out)
        if cancelled is not None:
            return cancelled
        t.record_spend(campaign_id)
        _finish(campaign_id)
        t.publish_progress(campaign_id)
        out["report"] = t.publish_report(campaign_id)
    return out


__all__ = [
    "collect_demonstrations",
    "collect_preferences",
    "register",
    "run_campaign",
]
