"""A campaign's live progress: what an operator needs while it runs, cheap to compute
every round (a few GROUP BYs, no aggregation), for the progress artifact and
`crowdloop status`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.tables import (
    Campaign,
    CampaignLease,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.stages.budget import budget_status
from crowdloop.stages.lifecycle import batch_states, last_reason
from crowdloop.text import md_escape

FINISHED = (ItemState.COLLECTED, ItemState.DONE, ItemState.EXHAUSTED)


@dataclass
class StageProgress:
    stage: str
    done: int
    total: int
    batch: str  # open | paused | stopped | not published

    @property
    def share(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class Progress:
    campaign_id: str
    status: str
    reason: str
    connector: str
    driver: str | None
    stages: list[StageProgress] = field(default_factory=list)
    judgments_valid: int = 0
    judgments_excluded: int = 0
    judgments_quarantined: int = 0
    cost_so_far: Decimal = Decimal(0)  # our accounting of work submitted so far
    currency: str = "USD"
    spend: str = ""  # committed spend against the budget cap, one line
    workers: int = 0
    workers_blocked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "status": self.status,
            "reason": self.reason,
            "connector": self.connector,
            "driver": self.driver,
            "stages": [
                {"stage": s.stage, "done": s.done, "total": s.total, "batch": s.batch}
                for s in self.stages
            ],
            "judgments": {
                "valid": self.judgments_valid,
                "excluded": self.judgments_excluded,
                "quarantined": self.judgments_quarantined,
            },
            "cost_so_far": str(self.cost_so_far),
            "spend": self.spend,
            "currency": self.currency,
            "workers": self.workers,
            "workers_blocked": self.workers_blocked,
        }


def live_progress(campaign_id: str) -> Progress:
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise LookupError(f"no campaign named {campaign_id!r}")
        lease = s.get(CampaignLease, campaign_id)
        progress = Progress(
            campaign_id=campaign_id,
            status=str(campaign.status.value),
            reason=last_reason(s, campaign_id),
            connector=campaign.connector,
            driver=(lease.description or lease.holder) if lease else None,
        )
        rows = s.exec(
            select(Item.stage, Item.state, func.count())
            .where(Item.campaign_id == campaign_id)
            .group_by(col(Item.stage), col(Item.state))
        ).all()
        per_stage: dict[str, list[int]] = {}
        for stage, state, n in rows:
            done_total = per_stage.setdefault(stage, [0, 0])
            done_total[1] += n
            if state in FINISHED:
                done_total[0] += n
        judged = s.exec(
            select(Judgment.status, Judgment.excluded, func.count())
            .where(Judgment.campaign_id == campaign_id)
            .group_by(col(Judgment.status), col(Judgment.excluded))
        ).all()
        workers = s.exec(
            select(WorkerRecord.status, func.count())
            .where(WorkerRecord.campaign_id == campaign_id)
            .group_by(col(WorkerRecord.status))
        ).all()
    batches = batch_states(campaign_id)
    order = [st.value for st in Stage]
    for stage in sorted(per_stage, key=lambda x: order.index(x) if x in order else 99):
        done, total = per_stage[stage]
        progress.stages.append(
            StageProgress(stage, done, total, batches.get(stage, "not published"))
        )
    for status, excluded, n in judged:
        if status == JudgmentStatus.QUARANTINED:
            progress.judgments_quarantined += n
        elif excluded:
            progress.judgments_excluded += n
        else:
            progress.judgments_valid += n
    money = budget_status(campaign_id, refresh=False)
    progress.cost_so_far, progress.currency = money.paid, money.currency
    progress.spend = money.summary()
    for status, n in workers:
        progress.workers += n
        if status == WorkerStatus.BLOCKED:
            progress.workers_blocked += n
    return progress


def _bar(share: float, width: int = 20) -> str:
    filled = round(share * width)
    return "█" * filled + "░" * (width - filled)


def progress_markdown(p: Progress) -> str:
    lines = [
        f"# Campaign {md_escape(p.campaign_id)}: {p.status.replace('_', ' ')}",
        "",
    ]
    if p.reason:
        lines += [f"*{md_escape(p.reason)}*", ""]
    lines += [
        f"Connector **{md_escape(p.connector)}**; "
        + (f"driven by {md_escape(p.driver)}." if p.driver else "no run is driving it now."),
        "",
        "| stage | done | total | % | marketplace batch |",
        "|---|---:|---:|---|---|",
    ]
    for st in p.stages:
        lines.append(
            f"| {st.stage} | {st.done} | {st.total} | {_bar(st.share)} {100 * st.share:.0f}% "
            f"| {st.batch} |"
        )
    lines += [
        "",
        f"**Judgments:** {p.judgments_valid} trusted, {p.judgments_excluded} excluded, "
        f"{p.judgments_quarantined} quarantined.  ",
        f"**Cost so far:** {p.cost_so_far:.2f} {p.currency} (submissions × reward; the "
        "marketplace's own figure replaces it in the final report where it has one).  ",
        f"**Budget:** {md_escape(p.spend)}.  ",
        f"**Workers:** {p.workers} seen, {p.workers_blocked} blocked.",
    ]
    return "\n".join(lines) + "\n"
