"""The exam: golden comparisons a worker must pass before production comparisons reach them.

Run before each push of the preferences round loop (`exam_round`):

1. The campaign's qualification (`crowdloop-<campaign>-exam`) is created on the marketplace
   once, ledger-guarded; the production compare batch requires it (ledger.ensure_batch).
2. The exam items, planned at registration from the golden file (plan.split_exam_rows), are
   published once in their own batch through the push ledger like any other work, each to
   up to `takers` workers.
3. Exam answers are synced like any others (stored exactly once as judgments) and graded
   here; the known answers never leave our database. A worker passes with `min_correct`
   right answers and fails once so many are wrong that a pass is out of reach; either
   decision is final (one attempt: a worker answers each exam pair once).
4. A pass is committed, then granted on the marketplace, then the grant is recorded: a
   crash in between grants again on the rerun (the call is idempotent), nothing is lost.
5. The first call waits until `min_passers` workers have passed, or raises `ExamNotReady`
   after `wait_s` (a rerun waits on), or `ExamStarved` at once when every exam seat is
   answered and too few passed: no exam answer can come any more, so no wait can help (a
   crowd larger than `takers` spreads each pair's seats over different workers, and a
   taker who met fewer than `min_correct` of the pairs cannot pass). Later calls grade and
   grant whoever finished in the meantime: the exam stays open while production runs, and
   a newly qualified worker is offered the production tasks still open. `close_exam` stops
   it when the campaign ends.

Exam answers are not production judgments: exam items are golden items of their own stage,
so aggregation and export never read them. They are evidence on the worker, though:
check_workers counts them with the golden answers of the worker's quality record, and the
report shows each worker's exam. Exam work is paid whatever the grade (review accepts it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.faults import crash_point
from crowdloop.models.domain import Stage
from crowdloop.models.tables import (
    Batch,
    ExamResult,
    ExamStatus,
    Item,
    ItemState,
    WorkerRecord,
    utcnow,
)
from crowdloop.stages import budget
from crowdloop.stages.counts import outstanding_total
from crowdloop.stages.ledger import ensure_qualification, push_pending
from crowdloop.stages.plan import load_spec
from crowdloop.stages.preflight import require_qualifications
from crowdloop.stages.quality_check import golden_tally, review_submissions
from crowdloop.stages.sync import batch_ref, sync_stage
from crowdloop.stages.terms import exam_qualification

logger = logging.getLogger(__name__)


class ExamNotReady(TimeoutError):
    """Too few workers passed the exam within `exam.wait_s`; a rerun keeps waiting."""


class ExamStarved(ExamNotReady):
    """Too few workers passed the exam and every exam seat is answered: no more can pass,
    so the campaign's production cannot start (a rerun raises it again at once)."""


@dataclass
class ExamProgress:
    published: int = 0  # exam tasks published by this call
    stored: int = 0  # exam answers stored by this call
    granted: int = 0  # qualifications granted by this call
    takers: int = 0  # workers with at least one exam answer, so far
    passed: int = 0
    failed: int = 0
    pending: int = 0
    ready: bool = False  # enough passers for production to go on


def exam_round(
    campaign_id: str,
    connector: Connector,
    *,
    wait: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ExamProgress | None:
    """Publish the exam (once), grade what came back, qualify passers; None without an exam.

    With `wait`, polls until `min_passers` workers have passed or `wait_s` runs out
    (`sleep` and `clock` together, so a test can run the wait on its own time).
    """
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    exam = spec.quality.exam
    if exam is None:
        return None
    require_qualifications(connector)
    budget.launch_gate(campaign_id)  # nothing is created before a launch approval
    ensure_qualification(campaign_id, connector, exam_qualification(campaign_id))
    progress = ExamProgress(
        published=push_pending(campaign_id, Stage.EXAM, connector).tasks_published
    )
    deadline = clock() + exam.wait_s
    while True:
        progress.stored += sync_stage(campaign_id, Stage.EXAM, connector).stored
        grade_exams(campaign_id)
        progress.granted += grant_passes(campaign_id, connector)
        review_submissions(campaign_id, [Stage.EXAM], connector)
        summary = exam_summary(campaign_id)
        progress.takers = summary["takers"]
        progress.passed = summary["passed"]
        progress.failed = summary["failed"]
        progress.pending = summary["pending"]
        progress.ready = progress.passed >= exam.min_passers
        if progress.ready or not wait:
            return progress
        if _exam_exhausted(campaign_id):
            raise ExamStarved(_starved_reason(campaign_id, summary, exam.min_passers))
        if clock() > deadline:
            raise ExamNotReady(
                f"{campaign_id}: {progress.passed} worker(s) passed the exam after "
                f"{exam.wait_s:.0f}s, {exam.min_passers} needed before production starts "
                f"({progress.failed} failed, {progress.pending} still answering); the exam "
                "stays open: rerun to keep waiting, or lower quality.exam.min_passers"
            )
        sleep(spec.poll_interval_s)


def grade_exams(campaign_id: str) -> int:
    """Grade every exam taker on the answers stored so far; returns workers newly decided."""
    decided = 0
    with session_scope() as s:
        exam = load_spec(s, campaign_id).quality.exam
        assert exam is not None
        items = _exam_items(s, campaign_id)
        tally = golden_tally(s, campaign_id, Stage.EXAM)
        records = {
            r.worker_id: r
            for r in s.exec(select(ExamResult).where(ExamResult.campaign_id == campaign_id)).all()
        }
        allowed_wrong = items - exam.min_correct
        for worker, (correct, answered) in sorted(tally.items()):
            rec = records.get(worker) or ExamResult(campaign_id=campaign_id, worker_id=worker)
            if (rec.correct, rec.answered) == (correct, answered) and worker in records:
                continue
            rec.correct, rec.answered = correct, answered
            if rec.status == ExamStatus.PENDING:
                if correct >= exam.min_correct:
                    rec.status = ExamStatus.PASSED
                elif answered - correct > allowed_wrong:
                    rec.status = ExamStatus.FAILED
                if rec.status != ExamStatus.PENDING:
                    rec.graded_at = utcnow()
                    decided += 1
            s.add(rec)
    return decided


def grant_passes(campaign_id: str, connector: Connector) -> int:
    """Grant the qualification to every passer the marketplace has not confirmed yet."""
    name = exam_qualification(campaign_id)
    with session_scope() as s:
        todo = list(
            s.exec(
                select(ExamResult.worker_id)
                .where(
                    ExamResult.campaign_id == campaign_id,
                    ExamResult.status == ExamStatus.PASSED,
                    col(ExamResult.granted).is_(False),
                )
                .order_by(col(ExamResult.worker_id))
            ).all()
        )
    for worker in todo:
        connector.grant_qualification(worker, name)
        crash_point("exam:granted")
        with session_scope() as s:
            s.execute(
                update(ExamResult)
                .where(
                    col(ExamResult.campaign_id) == campaign_id,
                    col(ExamResult.worker_id) == worker,
                )
                .values(granted=True, granted_at=utcnow())
            )
    if todo:
        logger.info("%s: %d exam passer(s) qualified on %s", campaign_id, len(todo), name)
    return len(todo)


def _exam_exhausted(campaign_id: str) -> bool:
    """Whether no exam answer can come any more: every exam item is published and every
    published seat answered (a quarantined answer counts; exam work is never rejected, so
    no seat reopens)."""
    with session_scope() as s:
        unpublished = s.exec(
            select(func.count())
            .select_from(Item)
            .where(
                Item.campaign_id == campaign_id,
                Item.stage == Stage.EXAM.value,
                Item.state == ItemState.PENDING,
            )
        ).one()
        return unpublished == 0 and outstanding_total(s, campaign_id, [Stage.EXAM]) == 0


def _starved_reason(campaign_id: str, summary: dict[str, Any], needed: int) -> str:
    """One line: which stage, how many passed against how many needed, and why no more can."""
    with session_scope() as s:
        exam = load_spec(s, campaign_id).quality.exam
        answers = s.exec(
            select(func.coalesce(func.sum(ExamResult.answered), 0)).where(
                ExamResult.campaign_id == campaign_id
            )
        ).one()
    assert exam is not None
    items, takers = summary["items"], summary["takers"]
    met = f"{answers / takers:.1f}" if takers else "0"
    return (
        f"{campaign_id}: exam starved: {summary['passed']} worker(s) passed, {needed} needed "
        f"before production starts, and all {items} x {exam.takers} exam seats are answered: "
        f"{takers} taker(s) met {met} of the {items} pairs on average, {summary['failed']} "
        f"failed, {summary['pending']} met too few to reach {exam.min_correct} right; no more "
        "can pass, so production cannot start (under a new campaign name: a lower "
        "quality.exam.min_passers or min_correct, or takers nearer the crowd's size)"
    )


def _exam_items(s: Session, campaign_id: str) -> int:
    return int(
        s.exec(
            select(func.count())
            .select_from(Item)
            .where(Item.campaign_id == campaign_id, Item.stage == Stage.EXAM.value)
        ).one()
    )


def exam_summary(campaign_id: str) -> dict[str, Any]:
    """Takers, passes, fails and grants so far (for the flow and the report)."""
    with session_scope() as s:
        items = _exam_items(s, campaign_id)
        results = list(
            s.exec(select(ExamResult).where(ExamResult.campaign_id == campaign_id)).all()
        )
    by_status = {st: sum(1 for r in results if r.status == st) for st in ExamStatus}
    decided = by_status[ExamStatus.PASSED] + by_status[ExamStatus.FAILED]
    return {
        "qualification": exam_qualification(campaign_id),
        "items": items,
        "takers": len(results),
        "passed": by_status[ExamStatus.PASSED],
        "failed": by_status[ExamStatus.FAILED],
        "pending": by_status[ExamStatus.PENDING],
        "granted": sum(1 for r in results if r.granted),
        "pass_rate": round(by_status[ExamStatus.PASSED] / decided, 3) if decided else None,
    }


def exam_report(campaign_id: str) -> dict[str, Any] | None:
    """The summary and every taker's exam beside their quality record; None without one."""
    with session_scope() as s:
        if load_spec(s, campaign_id).quality.exam is None:
            return None
        rows = s.exec(
            select(ExamResult, WorkerRecord)
            .join(
                WorkerRecord,
                (col(WorkerRecord.campaign_id) == col(ExamResult.campaign_id))
                & (col(WorkerRecord.worker_id) == col(ExamResult.worker_id)),
                isouter=True,
            )
            .where(ExamResult.campaign_id == campaign_id)
            .order_by(col(ExamResult.worker_id))
        ).all()
    return {
        **exam_summary(campaign_id),
        "workers": [
            {
                "worker": r.worker_id,
                "exam": f"{r.correct}/{r.answered}",
                "result": r.status.value,
                "qualified": r.granted,
                # The record counts exam answers as golden answers, with production's.
                "golden": f"{w.golden_correct}/{w.golden_total}" if w else None,
                "status": w.status.value if w else None,
            }
            for r, w in rows
        ],
    }


def close_exam(campaign_id: str, connector: Connector) -> ExamProgress | None:
    """A last grading pass, then stop the exam batch (production is over)."""
    progress = exam_round(campaign_id, connector, wait=False)
    found = batch_ref(campaign_id, Stage.EXAM)
    if progress is None or found is None:
        return progress
    batch_id, ref, _ = found
    with session_scope() as s:
        batch = s.get(Batch, batch_id)
        if batch is None or batch.closed:
            return progress
    connector.stop(ref, reason="campaign finished")
    with session_scope() as s:
        s.execute(update(Batch).where(col(Batch.id) == batch_id).values(closed=True))
    return progress
