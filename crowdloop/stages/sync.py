"""Pull submissions: at-least-once in, exactly-once stored.

Each page is stored in one transaction together with the cursor that follows it; every
submission is keyed by (connector, external id), so a page read twice counts once and a
crash between reading and storing loses nothing (the cursor did not move).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from crowdloop import collector
from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotFound
from crowdloop.db import insert_ignore, session_scope
from crowdloop.faults import crash_point
from crowdloop.models.domain import (
    ANSWER_KIND_FOR_TASK,
    Answer,
    BatchRef,
    PreferenceAnswer,
    RankingAnswer,
    RatingAnswer,
    Stage,
    Submission,
    SubmissionPage,
    TextAnswer,
    VerdictAnswer,
)
from crowdloop.models.tables import (
    Batch,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    TaskRecord,
    utcnow,
)
from crowdloop.stages import ranking, rating
from crowdloop.stages.counts import answer_tallies, outstanding_counts, outstanding_total
from crowdloop.stages.graded import graded_spec
from crowdloop.stages.items import id_page, move_items
from crowdloop.stages.lifecycle import BatchGone

logger = logging.getLogger(__name__)

_TASKS: Table = TaskRecord.__table__  # type: ignore[attr-defined]
_ITEMS: Table = Item.__table__  # type: ignore[attr-defined]
# Pushed items the settle reads per page.
SETTLE_PAGE = 20_000

# A page's task keys -> their item and the item's kind, in one statement on the tables
# (plain rows, without the ORM's per-row loading). Built once with the keys as one
# expanding parameter: `in_(keys)` on a list coerced every key into a literal bind when
# the statement was built, ~1 us a submission.
_PAGE_TASKS = (
    sa_select(_TASKS.c.key, _TASKS.c.item_id, _ITEMS.c.kind)
    .join(_ITEMS, _ITEMS.c.id == _TASKS.c.item_id)
    .where(_TASKS.c.key.in_(bindparam("keys", expanding=True)))
)


@dataclass
class SyncResult:
    stored: int = 0
    quarantined: int = 0
    pages: int = 0


def batch_ref(campaign_id: str, stage: Stage) -> tuple[int, BatchRef, str | None] | None:
    with session_scope() as s:
        batch = s.exec(
            select(Batch).where(Batch.campaign_id == campaign_id, Batch.stage == stage.value)
        ).first()
        if batch is None or batch.external_id is None or batch.id is None:
            return None
        return (
            batch.id,
            BatchRef(connector=batch.connector, external_id=batch.external_id),
            (batch.cursor),
        )


def sync_stage(campaign_id: str, stage: Stage, connector: Connector) -> SyncResult:
    """Store every submission the marketplace has for the stage's batch, page by page."""
    result = SyncResult()
    found = batch_ref(campaign_id, stage)
    if found is None:
        return result
    batch_id, ref, cursor = found
    # Read once per sync, not per page: loading and validating the stored campaign file
    # cost ~6 ms a page (1,000 submissions).
    graded = graded_spec(campaign_id)
    levels = len(graded.levels) if graded else 0
    try:
        pages = connector.iter_submissions(ref, cursor=cursor)
        while _store_next(pages, campaign_id, connector, batch_id, result, levels):
            pass
    except NotFound as exc:
        # A batch the marketplace no longer knows would otherwise be waited on until the
        # stage times out; stop with its name instead.
        raise BatchGone(campaign_id, stage.value, ref.external_id, str(exc)) from exc
    if result.quarantined:
        logger.warning(
            "%s/%s: %d submission(s) quarantined (see the campaign report)",
            campaign_id,
            stage,
            result.quarantined,
        )
    return result


def _store_next(
    pages: Iterator[SubmissionPage],
    campaign_id: str,
    connector: Connector,
    batch_id: int,
    result: SyncResult,
    levels: int,
) -> bool:
    """Read and store the next page with the collector paused; False when there is none.
    The page's objects go with this frame, before any other allocation."""
    with collector.paused():
        page = next(pages, None)
        if page is None:
            return False
        _store_page(campaign_id, connector, batch_id, page, result, levels)
        return True


def _store_page(
    campaign_id: str,
    connector: Connector,
    batch_id: int,
    page: SubmissionPage,
    result: SyncResult,
    levels: int,
) -> None:
    """`levels`: the campaign's graded scale (0: plain comparisons)."""
    crash_point("sync:page-read")
    with session_scope() as s:
        keys = {sub.task_key for sub in page.submissions} | {
            q.task_key for q in page.quarantined if q.task_key
        }
        found = s.execute(_PAGE_TASKS, {"keys": list(keys)}).all()
        task_items = {key: item_id for key, item_id, _ in found}
        kinds = {item_id: kind for _, item_id, kind in found}
        # A ranking is checked against the task it answers (places per response, ties),
        # and a rating against its task's aspects and scales.
        ranked = [i for i, kind in kinds.items() if kind in (ranking.KIND, rating.KIND)]
        payloads = (
            dict(s.exec(select(Item.id, Item.payload).where(col(Item.id).in_(ranked))).all())
            if ranked
            else {}
        )
        # One receipt time for the page: it is stored in one transaction (a clock read
        # per row was ~0.5 us of each judgment's row).
        now = utcnow()
        rows = []
        for sub in page.submissions:
            rows.append(
                _row(campaign_id, connector.name, sub, task_items, kinds, payloads, levels, now)
            )
        for q in page.quarantined:
            rows.append(
                _quarantine_row(
                    campaign_id,
                    connector.name,
                    q.external_id,
                    q.task_key,
                    q.worker_id,
                    task_items.get(q.task_key or ""),
                    q.reason,
                    q.raw,
                    now,
                )
            )
        unique = ["connector", "external_id"]
        valid = [r for r in rows if r["status"] == JudgmentStatus.VALID]
        bad = [r for r in rows if r["status"] == JudgmentStatus.QUARANTINED]
        # Counted from what was inserted: a page read twice adds nothing.
        result.stored += insert_ignore(s, Judgment, valid, unique)
        result.quarantined += insert_ignore(s, Judgment, bad, unique)
        s.execute(update(Batch).where(col(Batch.id) == batch_id).values(cursor=page.cursor))
    result.pages += 1


def _row(
    campaign_id: str,
    connector: str,
    sub: Submission,
    task_items: dict[str, str],
    kinds: dict[str, str],
    payloads: Mapping[str, Mapping[str, Any]],
    levels: int = 0,
    received_at: datetime | None = None,
) -> dict[str, object]:
    """`levels`: the campaign's graded scale (0: plain comparisons)."""
    item_id = task_items.get(sub.task_key)

    def quarantine(item: str | None, reason: str) -> dict[str, object]:
        # Only a quarantined row keeps the raw submission; serialising every one cost
        # ~15 µs per judgment for nothing.
        return _quarantine_row(
            campaign_id,
            connector,
            sub.external_id,
            sub.task_key,
            sub.worker_id,
            item,
            reason,
            sub.model_dump_json(),
            received_at,
        )

    if item_id is None:
        return quarantine(None, f"task key {sub.task_key!r} is not one of ours")
    expected = ANSWER_KIND_FOR_TASK[kinds[item_id]]
    if sub.answer.kind != expected:
        return quarantine(item_id, f"a {kinds[item_id]} task got a {sub.answer.kind!r} answer")
    # A ranking is checked against its task (places per response, ties); a graded answer
    # against the campaign's scale.
    problem = (
        ranking.ranking_problem(payloads[item_id], sub.answer.ranks)
        if isinstance(sub.answer, RankingAnswer)
        else rating.rating_problem(payloads[item_id], sub.answer.scores)
        if isinstance(sub.answer, RatingAnswer)
        else level_problem(sub.answer, levels)
    )
    if problem:
        return quarantine(item_id, problem)
    return judgment_row(campaign_id, connector, sub, item_id, received_at)


def level_problem(answer: Answer, levels: int) -> str | None:
    """Why a comparison answer does not fit the campaign's scale (None: it does)."""
    if not isinstance(answer, PreferenceAnswer):
        return None
    if levels == 0:
        return None if answer.level is None else "a level on a plain comparison"
    if answer.choice != "tie" and answer.level is None:
        return "a graded comparison answered without a level"
    if answer.level is not None and answer.level > levels:
        return f"level {answer.level} is not on the campaign's {levels}-level scale"
    return None


def judgment_row(
    campaign_id: str,
    connector: str,
    sub: Submission,
    item_id: str,
    received_at: datetime | None = None,
) -> dict[str, object]:
    """The Judgment row of a valid submission to one of our items (sync, and AI routing for
    the pairs its judge decides). `received_at`: the page's receipt time (default: now)."""
    answer = sub.answer
    # By answer type, not getattr with defaults: a missing attribute on a pydantic model
    # goes through its __getattr__ and an exception (~1.5 µs a miss, every row).
    label: str | None = None
    text: str | None = None
    level: int | None = None
    rationale: str | None = None
    if isinstance(answer, PreferenceAnswer):
        label, level, rationale = answer.choice, answer.level, answer.rationale
    elif isinstance(answer, VerdictAnswer):
        label, rationale = answer.verdict, answer.rationale
    elif isinstance(answer, TextAnswer):
        text = answer.text
    elif isinstance(answer, RankingAnswer):
        # The raw ranking stays on the judgment; aggregation derives its pairs from it.
        label, text = ranking.LABEL, json.dumps(list(answer.ranks))
    elif isinstance(answer, RatingAnswer):
        # The raw scores stay on the judgment, keyed by aspect; aggregation reads them.
        label, text = rating.LABEL, json.dumps(answer.scores, sort_keys=True)
        rationale = answer.rationale
    return _base(
        campaign_id,
        connector,
        sub.external_id,
        sub.task_key,
        sub.worker_id,
        item_id,
        received_at,
        status=JudgmentStatus.VALID,
        label=label,
        text=text,
        level=level,
        rationale=rationale,
        submitted_at=sub.submitted_at,
        reason=None,
        raw=None,
    )


def _quarantine_row(
    campaign_id: str,
    connector: str,
    external_id: str,
    task_key: str | None,
    worker_id: str | None,
    item_id: str | None,
    reason: str,
    raw: str,
    received_at: datetime | None = None,
) -> dict[str, object]:
    return _base(
        campaign_id,
        connector,
        external_id,
        task_key,
        worker_id,
        item_id,
        received_at,
        status=JudgmentStatus.QUARANTINED,
        label=None,
        text=None,
        level=None,
        rationale=None,
        submitted_at=None,
        reason=reason,
        raw=raw[:20_000],
    )


def _base(
    campaign_id: str,
    connector: str,
    external_id: str,
    task_key: str | None,
    worker_id: str | None,
    item_id: str | None,
    received_at: datetime | None,
    *,
    status: JudgmentStatus,
    label: str | None,
    text: str | None,
    level: int | None,
    rationale: str | None,
    submitted_at: datetime | None,
    reason: str | None,
    raw: str | None,
) -> dict[str, object]:
    """A Judgment row, in one dict literal (built and then updated it cost ~0.5 µs more a
    judgment, and merged from a `**fields` dict ~0.6 µs more)."""
    return {
        "connector": connector,
        "external_id": external_id,
        "campaign_id": campaign_id,
        "item_id": item_id,
        "task_key": task_key,
        "worker_id": worker_id,
        "received_at": received_at or utcnow(),
        "excluded": False,
        "exclusion_reason": None,
        "review": None,
        "status": status,
        "label": label,
        "text": text,
        "level": level,
        "rationale": rationale,
        "submitted_at": submitted_at,
        "reason": reason,
        "raw": raw,
    }


def outstanding(campaign_id: str, stages: list[Stage] | None = None) -> int:
    with session_scope() as s:
        return outstanding_total(s, campaign_id, stages)


def wait_and_sync(
    campaign_id: str,
    stages: list[Stage],
    connector: Connector,
    *,
    poll_interval_s: float,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
    stall_after_s: float | None = None,
    on_stall: Callable[[float, int], None] | None = None,
) -> SyncResult:
    """Sync the stages until none of their published assignments is unanswered, or time runs out.

    The exact count of unanswered assignments is a campaign-wide GROUP BY. It is taken from
    the database after the first poll, whenever a poll stored nothing new (so work stored by
    anyone else, such as the scheduled sync, is seen) and when the running estimate says the
    stages are done; between those, each poll's stored submissions are subtracted, so busy
    polls do not load the database. Not before the first poll: one count after it is taken
    in any case (the stages are done, or the estimate starts from it), and one before as
    well was 0.8 s of CPU a wait at 10^6 judgments. `check` runs before every poll and may
    raise to stop the wait (the campaign was paused or cancelled, the run lost its lease).
    After `stall_after_s` without a new submission `on_stall(seconds, outstanding)` is called
    once per quiet spell.
    """
    total = SyncResult()
    deadline = time.monotonic() + timeout_s
    estimate: int | None = None  # unknown until the first poll's exact count
    last_new = time.monotonic()
    stalled = False
    while True:
        if check is not None:
            check()
        new = 0
        for stage in stages:
            r = sync_stage(campaign_id, stage, connector)
            total.stored += r.stored
            total.quarantined += r.quarantined
            total.pages += r.pages
            new += r.stored + r.quarantined
        if estimate is None or new == 0 or estimate - new <= 0:
            left = outstanding(campaign_id, stages)
        else:
            left = estimate - new
        estimate = left
        if on_progress:
            on_progress(total.stored + total.quarantined, left)
        if left == 0:
            return total
        now = time.monotonic()
        if new:
            last_new, stalled = now, False
        elif stall_after_s is not None and not stalled and now - last_new >= stall_after_s:
            stalled = True
            if on_stall is not None:
                on_stall(now - last_new, left)
        if now > deadline:
            raise TimeoutError(
                f"{campaign_id}: {left} assignment(s) still unanswered after {timeout_s:.0f}s; "
                "everything collected so far is stored, rerun to continue"
            )
        sleep(poll_interval_s)


def settle_items(campaign_id: str, max_requeue_rounds: int) -> dict[str, int]:
    """Move PUSHED items whose answers are all in to COLLECTED, or back to PENDING.

    An item short of trusted answers (a blocked worker's were excluded, or an answer was
    quarantined) goes back to PENDING for another round, at most `max_requeue_rounds`.
    Exam items are left alone: the exam is published once and stays open (stages/exam.py).

    With the collector paused (`collector.paused`): the counts and the pushed items are a
    few rows per item, all alive until the moves are written, and with the collector on
    they set off full collections over the whole process (~1 s of ~8 s at 10^6 judgments).
    """
    moved = {"collected": 0, "requeued": 0, "exhausted": 0}
    after: str | None = None
    pushed = select(Item.id, Item.overlap, Item.pushes, Item.extensions).where(
        Item.campaign_id == campaign_id,
        Item.state == ItemState.PUSHED,
        Item.stage != Stage.EXAM.value,
    )
    with collector.paused(), session_scope() as s:
        # A page of pushed items at a time, in id order, with the counts of that page's id
        # range only (`items.id_page`, as the push reads its pending items): the counts of
        # every item were three dicts of ~340k ids at 10^6 judgments, beside the items.
        while True:
            items, within = id_page(s, pushed, after, SETTLE_PAGE)
            if within is None:
                break
            after = within[1]
            answered, trusted = answer_tallies(s, campaign_id, within=within)
            waiting = outstanding_counts(s, campaign_id, answered=answered, within=within)
            to_state: dict[ItemState, list[str]] = {
                ItemState.COLLECTED: [],
                ItemState.PENDING: [],
                ItemState.EXHAUSTED: [],
            }
            for item_id, overlap, pushes, extensions in items:
                if waiting.get(item_id, 0) > 0:
                    continue
                have = trusted.get(item_id, 0)
                if have >= overlap:
                    to_state[ItemState.COLLECTED].append(item_id)
                elif pushes - extensions <= max_requeue_rounds:
                    to_state[ItemState.PENDING].append(item_id)
                elif have > 0:
                    to_state[ItemState.COLLECTED].append(item_id)
                else:
                    to_state[ItemState.EXHAUSTED].append(item_id)
            for state, ids in to_state.items():
                move_items(s, ids, state, from_=ItemState.PUSHED)
            moved["collected"] += len(to_state[ItemState.COLLECTED])
            moved["requeued"] += len(to_state[ItemState.PENDING])
            moved["exhausted"] += len(to_state[ItemState.EXHAUSTED])
            if len(items) < SETTLE_PAGE:
                break
    return moved
