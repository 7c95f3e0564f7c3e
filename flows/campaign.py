"""The campaign flows: demonstrations (SFT data) and preferences (reward-model data).

Each flow is a loop of stage tasks — push, wait-and-sync, check workers, settle, advance —
that reads and writes crowdloop's database, so any run can stop anywhere and a rerun of
the same flow continues from what the database says.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from crowdloop.db import session_scope
from crowdloop.flows import stages as t
from crowdloop.flows.trigger import trigger_retraining
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec, load_campaign
from crowdloop.models.tables import Campaign, CampaignStatus, ItemState
from crowdloop.stages.demonstrations import DEMO_STAGES
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.rounds import RoundOps, run_rounds


def _progress(campaign_id: str, stages: list[Stage]) -> float:
    from sqlalchemy import func
    from sqlmodel import col, select

    from crowdloop.models.tables import Item

    with session_scope() as s:
        rows = s.exec(
            select(Item.state, func.count())
            .where(
                Item.campaign_id == campaign_id,
                col(Item.stage).in_([x.value for x in stages]),
            )
            .group_by(col(Item.state))
        ).all()
    total = sum(n for _, n in rows) or 1
    finished = sum(
        n
        for state, n in rows
        if state in (ItemState.COLLECTED, ItemState.DONE, ItemState.EXHAUSTED)
    )
    return round(100.0 * finished / total, 1)


TASK_OPS = RoundOps(
    push=t.push_stage,
    wait_and_sync=t.wait_and_sync,
    check_workers=t.check_workers,
    settle=t.settle_items,
    advance=t.advance_demonstrations,
    extend=t.extend_uncertain,
)


def _run_rounds(
    campaign_id: str, stages: list[Stage], advance: bool, ops: RoundOps = TASK_OPS
) -> int:
    progress_id = create_progress_artifact(
        progress=0.0,
        key=t.artifact_key(campaign_id, "progress-" + stages[0].value),
        description=f"{campaign_id}: share of {', '.join(s.value for s in stages)} items finished",
    )
    return run_rounds(
        campaign_id,
        stages,
        ops,
        advance=advance,
        on_round=lambda _: update_progress_artifact(
            cast(UUID, progress_id), _progress(campaign_id, stages)
        ),
    )


@flow(name="collect-demonstrations")
def collect_demonstrations(campaign_id: str) -> dict[str, Any]:
    """Prompts and responses written by the crowd, verified by other workers, exported as SFT."""
    rounds = _run_rounds(campaign_id, DEMO_STAGES, advance=True)
    exported = t.export_sft(campaign_id)
    return {"rounds": rounds, "sft": exported}


@flow(name="collect-preferences")
def collect_preferences(campaign_id: str) -> dict[str, Any]:
    """Pairwise comparisons with golden pairs mixed in; BT scores; TRL preference export.

    With an exam (`quality.exam`) each round first grades it and qualifies passers, and
    production comparisons go only to qualified workers; the exam closes at the end.
    """
    has_exam = t.campaign_spec(campaign_id).quality.exam is not None
    ops = replace(TASK_OPS, exam=t.exam_round) if has_exam else TASK_OPS
    rounds = _run_rounds(campaign_id, [Stage.COMPARE], advance=False, ops=ops)
    out: dict[str, Any] = {"rounds": rounds}
    if has_exam:
        out["exam"] = t.close_exam(campaign_id)
    out["aggregate"] = t.aggregate_preferences(campaign_id)
    out["preferences"] = t.export_preferences(campaign_id)
    out["retraining"] = trigger_retraining(campaign_id)
    return out


def _set_status(campaign_id: str, status: CampaignStatus) -> None:
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is not None:
            campaign.status = status
            s.add(campaign)


def register(spec: CampaignSpec) -> str:
    with session_scope() as s:
        return register_campaign(s, spec).id


@flow(name="run-campaign")
def run_campaign(campaign_file: str) -> dict[str, Any]:
    """Run a whole campaign file: demonstrations, then preferences, then the report."""
    spec = load_campaign(Path(campaign_file))
    campaign_id = register(spec)
    logger = get_run_logger()
    logger.info("campaign %s on connector %s", campaign_id, spec.connector.name)
    t.check_capabilities(campaign_id)
    out: dict[str, Any] = {"campaign": campaign_id}
    if spec.demonstrations:
        out["demonstrations"] = collect_demonstrations(campaign_id)
    if spec.preferences:
        out["preferences"] = collect_preferences(campaign_id)
    t.record_spend(campaign_id)
    _set_status(campaign_id, CampaignStatus.COMPLETE)
    out["report"] = t.publish_report(campaign_id)
    return out
