"""The round loop every campaign stage runs: push, wait and sync, check workers, settle,
then advance (demonstrations) or extend unsure pairs (preferences), until no work is open.

It is written once and driven two ways: by the Prefect flows, whose `RoundOps` are task
calls, and by `bare_ops`, plain function calls for benchmarks and scripts that want the
same work without an orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from crowdloop.connectors.base import Connector
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.stages import (
    demonstrations,
    exam,
    lease,
    lifecycle,
    preferences,
    push,
    quality_check,
    routing,
    sync,
)
from crowdloop.stages.plan import load_spec

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
    # Before each round's push: AI-first routing of unseen comparisons (stages/routing.py).
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
        if ops.route is not None and Stage.COMPARE in stages:
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
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    with build_connector(
        spec.connector.name, spec.connector.options, spec.connector.credentials_block
    ) as connector:
        yield connector


def bare_ops(connector: Connector) -> RoundOps:
    """The same round with plain calls and one long-lived connector (no Prefect)."""

    def wait(campaign_id: str, stages: list[Stage]) -> Any:
        with session_scope() as s:
            spec = load_spec(s, campaign_id)
        return sync.wait_and_sync(
            campaign_id,
            stages,
            connector,
            poll_interval_s=spec.poll_interval_s,
            timeout_s=spec.stage_timeout_s,
            check=lambda: guard(campaign_id),
        )

    def check(campaign_id: str, stages: list[Stage]) -> Any:
        quality_check.check_workers(campaign_id, connector)
        return quality_check.review_submissions(campaign_id, stages, connector)

    def settle(campaign_id: str) -> Any:
        with session_scope() as s:
            spec = load_spec(s, campaign_id)
        return sync.settle_items(campaign_id, spec.quality.max_requeue_rounds)

    def extend(campaign_id: str) -> Any:
        with session_scope() as s:
            spec = load_spec(s, campaign_id)
        if spec.preferences is None or spec.preferences.dynamic_overlap is None:
            return 0
        return preferences.extend_uncertain(
            campaign_id, spec.preferences.dynamic_overlap, spec.preferences.aggregation
        )

    def exam_step(campaign_id: str, stages: list[Stage]) -> Any:
        # The exam gates comparisons only; a no-op for a campaign without one.
        return exam.exam_round(campaign_id, connector) if Stage.COMPARE in stages else None

    return RoundOps(
        push=lambda campaign_id, stage: push.push_pending(campaign_id, stage, connector),
        wait_and_sync=wait,
        check_workers=check,
        settle=settle,
        advance=demonstrations.advance,
        extend=extend,
        exam=exam_step,
        route=routing.route_pending,
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
                exam.close_exam(spec.name, connector)
        return record_spend(spec.name, connector)
