"""Golden-set checks: score workers on control tasks, block and exclude the untrusted.

Judgments of a blocked worker stay in the database, marked `excluded` with the reason,
so aggregation can be rerun with another policy and the evidence is never lost.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import ConnectorError
from crowdloop.db import session_scope
from crowdloop.models.domain import BlockScope, Capability, ReviewDecision, Stage
from crowdloop.models.spec import QualitySpec
from crowdloop.models.tables import (
    Item,
    Judgment,
    JudgmentStatus,
    WorkerRecord,
    WorkerStatus,
    utcnow,
)
from crowdloop.quality import GoldenPolicy, assess_worker
from crowdloop.stages.plan import load_spec
from crowdloop.stages.sync import batch_ref

logger = logging.getLogger(__name__)


@dataclass
class QualityResult:
    workers: int = 0
    newly_blocked: list[str] = field(default_factory=list)
    excluded_judgments: int = 0
    warnings: list[str] = field(default_factory=list)


def policy_from(spec: QualitySpec) -> GoldenPolicy:
    return GoldenPolicy(
        prior_correct=spec.prior_correct,
        prior_incorrect=spec.prior_incorrect,
        min_golden=spec.min_golden,
        min_accuracy=spec.min_accuracy,
        block_confidence=spec.block_confidence,
        warn_confidence=spec.warn_confidence,
    )


def check_workers(campaign_id: str, connector: Connector) -> QualityResult:
    """Re-assess every worker on all golden answers so far; block and exclude as needed."""
    result = QualityResult()
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        policy = policy_from(spec.quality)
        rows = s.exec(
            select(Judgment.worker_id, Judgment.label, Item.golden_answer)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                Judgment.campaign_id == campaign_id,
                Judgment.status == JudgmentStatus.VALID,
                col(Item.is_golden).is_(True),
            )
        ).all()
        golden: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for worker, label, answer in rows:
            if worker is None:
                continue
            golden[worker][0] += int(label == answer)
            golden[worker][1] += 1
        counts = dict(
            s.exec(
                select(Judgment.worker_id, func.count())
                .where(Judgment.campaign_id == campaign_id)
                .group_by(col(Judgment.worker_id))
            ).all()
        )
        records = {
            r.worker_id: r
            for r in s.exec(
                select(WorkerRecord).where(WorkerRecord.campaign_id == campaign_id)
            ).all()
        }
        for worker, n in counts.items():
            if worker is None:
                continue
            correct, total = golden.get(worker, [0, 0])
            verdict = assess_worker(correct, total, policy)
            rec = records.get(worker) or WorkerRecord(campaign_id=campaign_id, worker_id=worker)
            rec.golden_correct, rec.golden_total = correct, total
            rec.accuracy, rec.p_below = float(verdict.accuracy), float(verdict.p_below)
            rec.judgments = int(n)
            # A block is final for the campaign: a later lucky streak does not undo it.
            if rec.status != WorkerStatus.BLOCKED:
                rec.status = WorkerStatus(verdict.status)
                if rec.status == WorkerStatus.BLOCKED:
                    rec.blocked_at = utcnow()
                    rec.block_reason = (
                        f"golden accuracy {rec.accuracy:.2f} ({correct}/{total} correct); "
                        f"P(accuracy < {policy.min_accuracy}) = {rec.p_below:.2f}"
                    )
                    result.newly_blocked.append(worker)
            s.add(rec)
        result.workers = len(counts)
        blocked = {
            w: r.block_reason for w, r in records.items() if r.status == WorkerStatus.BLOCKED
        }
        for w in result.newly_blocked:
            fresh = s.get(WorkerRecord, (campaign_id, w))
            if fresh is not None:
                blocked[w] = fresh.block_reason
        for worker, reason in blocked.items():
            res = s.execute(
                update(Judgment)
                .where(
                    col(Judgment.campaign_id) == campaign_id,
                    col(Judgment.worker_id) == worker,
                    col(Judgment.excluded).is_(False),
                )
                .values(excluded=True, exclusion_reason=f"worker blocked: {reason}")
            )
            result.excluded_judgments += max(0, res.rowcount or 0)  # type: ignore[attr-defined]
    if result.newly_blocked and spec.quality.block_on_marketplace:
        if Capability.BLOCK_WORKER in connector.capabilities:
            for worker in result.newly_blocked:
                # Idempotent on the marketplace: a rerun that blocks again changes nothing.
                connector.block_worker(
                    worker, scope=BlockScope.CAMPAIGN, reason="failed golden (control) tasks"
                )
        else:
            result.warnings.append(
                f"{connector.name} cannot block workers; {len(result.newly_blocked)} untrusted "
                "worker(s) are excluded on our side only"
            )
    if result.newly_blocked:
        logger.info("%s: blocked %d worker(s)", campaign_id, len(result.newly_blocked))
    return result


def review_submissions(campaign_id: str, stages: list[Stage], connector: Connector) -> int:
    """Accept trusted work and reject a blocked worker's, once per submission."""
    if Capability.REVIEW not in connector.capabilities:
        return 0
    reviewed = 0
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    for stage in stages:
        found = batch_ref(campaign_id, stage)
        if found is None:
            continue
        _, ref, _ = found
        with session_scope() as s:
            pending = s.exec(
                select(Judgment.external_id, Judgment.excluded, Judgment.status)
                .join(Item, col(Item.id) == col(Judgment.item_id))
                .where(
                    Judgment.campaign_id == campaign_id,
                    Item.stage == stage.value,
                    col(Judgment.review).is_(None),
                )
            ).all()
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            decisions = [
                ReviewDecision(
                    submission_id=ext,
                    accept=not (excluded and spec.quality.reject_blocked_work),
                    comment="" if not excluded else "failed control tasks",
                )
                for ext, excluded, status in chunk
                if status == JudgmentStatus.VALID
            ]
            try:
                connector.review(ref, decisions)
            except ConnectorError as exc:
                logger.warning("%s: review failed, will retry next round: %s", campaign_id, exc)
                return reviewed
            outcome = {
                "accepted": [d.submission_id for d in decisions if d.accept],
                "rejected": [d.submission_id for d in decisions if not d.accept],
                # Unreadable answers are left to a person: the worker may not be at fault.
                "skipped": [ext for ext, _, st in chunk if st != JudgmentStatus.VALID],
            }
            with session_scope() as s:
                for review, ids in outcome.items():
                    if ids:
                        s.execute(
                            update(Judgment)
                            .where(
                                col(Judgment.connector) == connector.name,
                                col(Judgment.external_id).in_(ids),
                            )
                            .values(review=review)
                        )
            reviewed += len(decisions)
    return reviewed
