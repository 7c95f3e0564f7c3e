"""Prefect tasks: one per stage and round, never one per crowd item.

Each round step is written once, in `crowdloop.stages.rounds`; a task here only opens
the campaign's connector, hands the step Prefect's run logger and returns its result
(what the bare loop, `rounds.bare_ops`, runs as plain calls).

A task run costs milliseconds and Prefect's event stream is not built for 10^5 runs per
campaign, so each task here moves a whole stage (thousands of items) and the per-item
state lives in crowdloop's database. Every task is safe to retry: pushes go through the
ledger, syncs resume from the stored cursor, and the rest recompute from stored data.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from crowdloop.models.domain import Stage
from crowdloop.stages import (
    budget,
    exam,
    export,
    preferences,
    preflight,
    quality_check,
    ranking,
    rating,
    report,
    rounds,
)
from crowdloop.stages.budget import BudgetPause
from crowdloop.stages.progress import live_progress, progress_markdown
from crowdloop.stages.rounds import campaign_spec, connector_for


def artifact_key(campaign_id: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    safe = "".join(c if c.isalnum() else "-" for c in campaign_id.lower())
    return f"{safe}-{what}"


@task(name="check-capabilities", retries=2, retry_delay_seconds=2)
def check_capabilities(campaign_id: str) -> list[str]:
    with connector_for(campaign_id) as c:
        warnings = preflight.check_capabilities(campaign_spec(campaign_id), c)
    for w in warnings:
        get_run_logger().warning(w)
    return warnings


def _retry_unless_waiting(_task: Any, _run: Any, state: Any) -> bool:
    """Retry a failed step, except one that waits for people: an exam wait that ran out
    (that wait was the retry) or a push or AI routing the budget refused (it waits for
    an operator)."""
    try:
        state.result()
    except (exam.ExamNotReady, BudgetPause):
        return False
    except Exception:
        return True
    return True


@task(name="push", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_unless_waiting)
def push_stage(campaign_id: str, stage: Stage) -> dict[str, int]:
    with connector_for(campaign_id) as c:
        return rounds.push_step(campaign_id, stage, c, get_run_logger())


@task(name="wait-and-sync", retries=3, retry_delay_seconds=5)
def wait_and_sync(campaign_id: str, stages: list[Stage]) -> dict[str, int]:
    with connector_for(campaign_id) as c:
        return rounds.wait_and_sync_step(campaign_id, stages, c, get_run_logger())


@task(name="check-workers", retries=2, retry_delay_seconds=5)
def check_workers(campaign_id: str, stages: list[Stage]) -> dict[str, Any]:
    with connector_for(campaign_id) as c:
        return rounds.check_workers_step(campaign_id, stages, c, get_run_logger())


@task(name="review-held", retries=2, retry_delay_seconds=5)
def review_held(campaign_id: str, stages: list[Stage]) -> int:
    """After the last round: review the work `quality.hold_unjudged_work` still holds."""
    with connector_for(campaign_id) as c:
        return quality_check.review_submissions(campaign_id, stages, c, final=True)


@task(name="exam", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_unless_waiting)
def exam_round(campaign_id: str, stages: list[Stage]) -> dict[str, Any] | None:
    """Grade the exam and qualify passers; the first call waits for enough passers."""
    if Stage.COMPARE not in stages:
        return None  # no connector opened for a step with nothing to do
    with connector_for(campaign_id) as c:
        return rounds.exam_step(campaign_id, stages, c, get_run_logger())


@task(
    name="route-to-ai", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_unless_waiting
)
def route_to_ai(campaign_id: str) -> dict[str, Any] | None:
    """AI-first routing of the round's unseen comparisons: one task for all of them."""
    return rounds.route_step(campaign_id, get_run_logger())


@task(name="close-exam", retries=2, retry_delay_seconds=5)
def close_exam(campaign_id: str) -> dict[str, Any] | None:
    with connector_for(campaign_id) as c:
        return rounds.close_exam_step(campaign_id, c)


@task(name="settle-items")
def settle_items(campaign_id: str) -> dict[str, int]:
    return rounds.settle_step(campaign_id)


@task(name="advance-demonstrations")
def advance_demonstrations(campaign_id: str) -> dict[str, int]:
    return rounds.advance_step(campaign_id)


@task(name="extend-uncertain-pairs")
def extend_uncertain(campaign_id: str) -> int:
    return rounds.extend_step(campaign_id, get_run_logger())


@task(name="aggregate-preferences")
def aggregate_preferences(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.preferences is not None
    result = preferences.aggregate_preferences(campaign_id, spec.preferences.aggregation)
    return asdict(result)


@task(name="export-sft")
def export_sft(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.demonstrations is not None
    rows, path = export.export_sft(campaign_id, spec.demonstrations.export.path)
    get_run_logger().info("exported %d SFT row(s) to %s", rows, path)
    return {"rows": rows, "path": str(path)}


@task(name="export-preferences")
def export_preferences(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.preferences is not None
    rows, path = export.export_preferences(
        campaign_id, spec.preferences.export.path, spec.preferences.min_confidence
    )
    get_run_logger().info("exported %d preference pair(s) to %s", rows, path)
    return {"rows": rows, "path": str(path)}


@task(name="aggregate-rankings")
def aggregate_rankings(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.ranking is not None
    return asdict(ranking.aggregate_rankings(campaign_id, spec.ranking))


@task(name="export-rankings")
def export_rankings(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.ranking is not None
    written = ranking.export_rankings(campaign_id, spec.ranking)
    for kind, (rows, path) in written.items():
        get_run_logger().info("exported %d %s row(s) to %s", rows, kind.replace("_", " "), path)
    return {kind: {"rows": rows, "path": str(path)} for kind, (rows, path) in written.items()}


@task(name="aggregate-ratings")
def aggregate_ratings(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.rating is not None
    return asdict(rating.aggregate_ratings(campaign_id, spec.rating))


@task(name="export-ratings")
def export_ratings(campaign_id: str) -> dict[str, Any]:
    spec = campaign_spec(campaign_id)
    assert spec.rating is not None
    rows, path = rating.export_ratings(campaign_id, spec.rating)
    get_run_logger().info("exported %d rating row(s) to %s", rows, path)
    return {"rows": rows, "path": str(path)}


@task(name="record-spend", retries=2, retry_delay_seconds=5)
def record_spend(campaign_id: str) -> str:
    with connector_for(campaign_id) as c:
        return str(report.record_spend(campaign_id, c))


def publish_estimate(campaign_id: str) -> None:
    """The cost estimate, before anything is created (and again on every rerun)."""
    try:
        estimate = budget.estimate_for_campaign(campaign_id)
    except (LookupError, ValueError, OSError) as exc:
        get_run_logger().warning("no cost estimate: %s", exc)
        return
    create_markdown_artifact(
        key=artifact_key(campaign_id, "estimate"),
        markdown=estimate.markdown(),
        description=f"Cost estimate of campaign {campaign_id}",
    )


def publish_progress(campaign_id: str) -> None:
    """The live view an operator watches: items done/total per stage, judgments, cost so
    far and the worker table, as artifacts updated every round (same keys: the UI shows
    the latest version, the history keeps the rest)."""
    progress = live_progress(campaign_id)
    create_markdown_artifact(
        key=artifact_key(campaign_id, "progress"),
        markdown=progress_markdown(progress),
        description=f"Live progress of campaign {campaign_id}",
    )
    table = report.worker_table(campaign_id)
    if table:
        create_table_artifact(
            key=artifact_key(campaign_id, "workers"),
            table=table,
            description="Worker quality on golden tasks (updated every round)",
        )


@task(name="publish-report")
def publish_report(campaign_id: str) -> dict[str, Any]:
    """The artifacts the ops team reads in the Prefect UI, and the same report on disk."""
    data, md = report.write_report(campaign_id)
    create_markdown_artifact(
        key=artifact_key(campaign_id, "summary"), markdown=md, description="Campaign summary"
    )
    if data["worker_table"]:
        create_table_artifact(
            key=artifact_key(campaign_id, "workers"),
            table=data["worker_table"],
            description="Worker quality on golden tasks",
        )
    return report.run_summary(campaign_id, data)
