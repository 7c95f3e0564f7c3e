"""The round loop every campaign stage runs, and each of its steps, written once.

A round: push, wait and sync, check workers, settle, then advance (demonstrations) or
extend unsure pairs (preferences), until no work is open. Each step below is one function
of (campaign, its arguments, a connector, a logger); it logs and emits what an operator
should see. Two drivers call them:

- the Prefect flows (`crowdloop.flows.stages`): one task per step, which opens a
  connector, hands the step Prefect's run logger and returns its result;
- `bare_ops`: the same steps as plain calls on one long-lived connector, for benchmarks,
  scripts and tests that want the same work without an orchestrator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from functools import partial
from typing import Any, TypeAlias

from crowdloop.connectors.base import Connector
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.events import emit
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.stages import (
    demonstrations,
    exam,
    lease,
    ledger,
    lifecycle,
    preferences,
    quality_check,
    routing,
    sync,
)
from crowdloop.stages.plan import load_spec

# The Prefect tasks pass their run logger (a LoggerAdapter); plain calls log here.
Log: TypeAlias = "logging.Logger | logging.LoggerAdapter[Any]"
logger = logging.getLogger(__name__)

# Enough for prompt -> verify -> response -> verify with re-collections and re-queues.
MAX_ROUNDS = 40


@dataclass(frozen=True)
class RoundOps:
    push: Callable[[str, Stage], Any]
    wait_and_sync: Callable[[str, list[Stage]], Any]
    check_workers: Callable[[str, list[Stage]], Any]
    settle: Callable[[str], Any]
    advance: Callable[[str], Any]  # demonstrations: turn collected work into next work
    extend: Callable[[str], Any]  # preferences: dynamic overlap
    # Before each round's push: grade the exam and qualify passers (stages/exam.py); the
    # first call waits for enough passers. None: no exam step.
    exam: Callable[[str, list[Stage]], Any] | None = None
    # Before each round's push: AI-first routing of unseen comparisons or ranking sets
    # (stages/routing.py).
    # None: every comparison goes to the crowd.
    route: Callable[[str], Any] | None = None


def guard(campaign_id: str) -> None:
    """Stop a run whose campaign may not go on: paused, cancelled or awaiting approval
    (CampaignHalted), or driven by someone else since this run lost its lease (LeaseLost)."""
    lease.check_active(campaign_id)
    lifecycle.check_running(campaign_id)


def run_rounds(
    campaign_id: str,
    stages: list[Stage],
    ops: RoundOps,
    *,
    advance: bool,
    on_round: Callable[[int], object] | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> int:
    """Run rounds until the stages have no open work; returns the number of rounds.

    Nothing is published once the campaign stops running: `guard` is checked before every
    round and every push (and by the wait, between polls).
    """
    for round_no in range(1, max_rounds + 1):
        guard(campaign_id)
        if ops.exam is not None:
            ops.exam(campaign_id, stages)
        if ops.route is not None and ({Stage.COMPARE, Stage.RANK, Stage.RATE} & set(stages)):
            ops.route(campaign_id)
        for stage in stages:
            guard(campaign_id)
            ops.push(campaign_id, stage)
        ops.wait_and_sync(campaign_id, stages)
        ops.check_workers(campaign_id, stages)
        ops.settle(campaign_id)
        if advance:
            ops.advance(campaign_id)
        else:
            ops.extend(campaign_id)
        if on_round:
            on_round(round_no)
        if demonstrations.open_work(campaign_id, stages) == 0:
            return round_no
    raise RuntimeError(
        f"{campaign_id}: work still open after {max_rounds} rounds; rerun to continue"
    )


@contextmanager
def connector_for(campaign_id: str) -> Iterator[Connector]:
    spec = campaign_spec(campaign_id)
    with build_connector(
        spec.connector.name, spec.connector.options, spec.connector.credentials_block
    ) as connector:
        yield connector


def campaign_spec(campaign_id: str) -> CampaignSpec:
    with session_scope() as s:
        return load_spec(s, campaign_id)


# --- the steps ------------------------------------------------------------------------


def push_step(
    campaign_id: str, stage: Stage, connector: Connector, log: Log = logger
) -> dict[str, int]:
    """Publish the stage's pending work through the ledger (stages/ledger.py)."""
    result = ledger.push_pending(campaign_id, stage, connector)
    if result.tasks_published or result.reconciled:
        log.info(
            "%s: published %d task(s) (%d assignments), reconciled %d",
            stage.value,
            result.tasks_published,
            result.assignments,
            result.reconciled,
        )
    return asdict(result)


def wait_and_sync_step(
    campaign_id: str, stages: list[Stage], connector: Connector, log: Log = logger
) -> dict[str, int]:
    """Sync until the stages' published work is answered, the stage timeout runs out, or
    the campaign may not go on (`guard`, between polls); a quiet spell is reported."""
    spec = campaign_spec(campaign_id)

    def progress(received: int, left: int) -> None:
        if left:
            log.info("received %d submission(s); %d assignment(s) outstanding", received, left)

    def stalled(seconds: float, left: int) -> None:
        log.warning("no new submission for %.0f s; %d assignment(s) outstanding", seconds, left)
        emit(
            "crowdloop.campaign.stalled",
            campaign_id,
            {"quiet_seconds": round(seconds), "outstanding": left},
        )

    result = sync.wait_and_sync(
        campaign_id,
        stages,
        connector,
        poll_interval_s=spec.poll_interval_s,
        timeout_s=spec.stage_timeout_s,
        on_progress=progress,
        check=lambda: guard(campaign_id),
        stall_after_s=spec.stall_after_s,
        on_stall=stalled,
    )
    return asdict(result)


def check_workers_step(
    campaign_id: str, stages: list[Stage], connector: Connector, log: Log = logger
) -> dict[str, Any]:
    """Re-assess workers on golden evidence, act on the untrusted, review submissions."""
    result = quality_check.check_workers(campaign_id, connector)
    reviewed = quality_check.review_submissions(campaign_id, stages, connector)
    for w in result.warnings:
        log.warning(w)
    policy = campaign_spec(campaign_id).quality.on_fail if result.newly_blocked else None
    for worker in result.newly_blocked:
        emit(
            "crowdloop.worker.blocked",
            campaign_id,
            {"worker": worker, "policy": policy},
            related=[
                {
                    "prefect.resource.id": f"crowdloop.worker.{worker}",
                    "prefect.resource.role": "worker",
                }
            ],
        )
    if result.newly_blocked:
        log.info(
            "blocked %d worker(s) on golden tasks; %d judgment(s) excluded",
            len(result.newly_blocked),
            result.excluded_judgments,
        )
    return {**asdict(result), "reviewed": reviewed}


def exam_step(
    campaign_id: str, stages: list[Stage], connector: Connector, log: Log = logger
) -> dict[str, Any] | None:
    """Grade the exam and qualify passers; the first call waits for enough passers.

    The exam gates comparisons only: a no-op for other stages and without an exam."""
    if Stage.COMPARE not in stages:
        return None
    progress = exam.exam_round(campaign_id, connector)
    if progress is None:
        return None
    if progress.published or progress.granted:
        log.info(
            "exam: %d task(s) published, %d worker(s) qualified; %d passed, %d failed, "
            "%d still answering",
            progress.published,
            progress.granted,
            progress.passed,
            progress.failed,
            progress.pending,
        )
    return asdict(progress)


def route_step(campaign_id: str, log: Log = logger) -> dict[str, Any] | None:
    """AI-first routing of the round's unseen comparisons (stages/routing.py); the AI
    judge's connector is built from the campaign's `routing.ai`. None without routing."""
    result = routing.route_pending(campaign_id, between=partial(guard, campaign_id))
    if result is None:
        return None
    if result.asked or result.decided:
        log.info("AI judge: %d item(s) asked; decided %s", result.asked, result.decided or "none")
    if result.golden_retired:
        log.info("AI judge: %d unpublished golden item(s) retired", result.golden_retired)
    return asdict(result)


def close_exam_step(campaign_id: str, connector: Connector) -> dict[str, Any] | None:
    progress = exam.close_exam(campaign_id, connector)
    return asdict(progress) if progress else None


def settle_step(campaign_id: str) -> dict[str, int]:
    return sync.settle_items(campaign_id, campaign_spec(campaign_id).quality.max_requeue_rounds)


def advance_step(campaign_id: str) -> dict[str, int]:
    """Demonstrations: turn collected texts and verdicts into the next work."""
    return asdict(demonstrations.advance(campaign_id))


def extend_step(campaign_id: str, log: Log = logger) -> int:
    """Preferences: ask again about pairs still unsure (dynamic overlap); 0 without it."""
    spec = campaign_spec(campaign_id)
    if spec.preferences is None or spec.preferences.dynamic_overlap is None:
        return 0
    extended = preferences.extend_uncertain(
        campaign_id, spec.preferences.dynamic_overlap, spec.preferences.aggregation
    )
    if extended:
        golden = quality_check.reask_golden(
            campaign_id,
            extended,
            spec.preferences.golden_share,
            by_unjudged=spec.preferences.dynamic_overlap.golden_reask == "unjudged",
        )
        log.info(
            "dynamic overlap: asking again about %d unsure pair(s), %d golden pair(s)",
            extended,
            golden,
        )
    return extended


def bare_ops(connector: Connector, log: Log = logger) -> RoundOps:
    """The same round as the flows, as plain calls on one long-lived connector (no Prefect)."""
    return RoundOps(
        push=partial(push_step, connector=connector, log=log),
        wait_and_sync=partial(wait_and_sync_step, connector=connector, log=log),
        check_workers=partial(check_workers_step, connector=connector, log=log),
        settle=settle_step,
        advance=advance_step,
        extend=partial(extend_step, log=log),
        exam=partial(exam_step, connector=connector, log=log),
        route=partial(route_step, log=log),
    )


def run_bare(spec: CampaignSpec) -> Decimal:
    """A whole campaign without Prefect (benchmarks, budget tests): register it (or find
    it), run every stage's rounds with plain calls, close the exam, record the spend."""
    from crowdloop.stages.plan import register_campaign
    from crowdloop.stages.report import record_spend

    with session_scope() as s:
        register_campaign(s, spec)
    with connector_for(spec.name) as connector:
        ops = bare_ops(connector)
        if spec.demonstrations:
            run_rounds(spec.name, demonstrations.DEMO_STAGES, ops, advance=True)
        if spec.preferences:
            run_rounds(spec.name, [Stage.COMPARE], ops, advance=False)
            if spec.quality.exam:
                close_exam_step(spec.name, connector)
        if spec.ranking:
            run_rounds(spec.name, [Stage.RANK], ops, advance=False)
        if spec.rating:
            run_rounds(spec.name, [Stage.RATE], ops, advance=False)
        return record_spend(spec.name, connector)
