"""The counting queries the push and the sync share: answers per item, assignments
published but unanswered, and from those what each item still needs published; and the
golden items the golden tallies (quality checks, ranking, rating) read the answers of.

Each is one GROUP BY over the campaign (never a query per item).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, case, func
from sqlalchemy import Select as SaSelect
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from crowdloop.models.domain import Stage
from crowdloop.models.tables import Batch, Item, Judgment, JudgmentStatus, TaskRecord


class PendingItem(NamedTuple):
    """What the push reads of an item waiting to be published (three columns, not the row)."""

    id: str
    pushes: int
    overlap: int


def assignment_deficits(
    s: Session,
    campaign_id: str,
    items: Sequence[PendingItem],
    *,
    within: tuple[str, str] | None = None,
) -> list[int]:
    """Assignments still to publish per item: overlap - trusted answers - outstanding.

    ``within``: count only the items whose ids lie in that inclusive range, as the
    database orders them (the first and last id of a page read in id order; Python's
    string order is not every PostgreSQL collation's). The push reads its items a page
    at a time: counts of every item of the campaign were three dicts of ~340k ids each at
    10^6 judgments, per page of 20,000 items."""
    if not items:
        return []
    answered, trusted = answer_tallies(s, campaign_id, within=within)
    outstanding = outstanding_counts(s, campaign_id, answered=answered, within=within)
    return [i.overlap - trusted.get(i.id, 0) - outstanding.get(i.id, 0) for i in items]


def _trusted() -> ColumnElement[bool]:
    """A judgment that counts: valid, from a worker whose answers are not excluded."""
    return and_(col(Judgment.status) == JudgmentStatus.VALID, col(Judgment.excluded).is_(False))


def _answers(
    campaign_id: str, *, trusted_only: bool, within: tuple[str, str] | None = None
) -> Select[str | None, int]:
    stmt = select(col(Judgment.item_id), func.count().label("n")).where(
        Judgment.campaign_id == campaign_id, *_item_range(col(Judgment.item_id), within)
    )
    if trusted_only:
        stmt = stmt.where(_trusted())
    return stmt.group_by(col(Judgment.item_id))


def _item_range(item_id: Mapped[Any], within: tuple[str, str] | None) -> list[ColumnElement[bool]]:
    """``item_id BETWEEN lo AND hi`` for ``within = (lo, hi)``; nothing for None. On the
    judgments, a range of the (campaign, item) index; on the task records, of theirs."""
    return [] if within is None else [item_id.between(*within)]


def _published(
    campaign_id: str, stages: Sequence[Stage] | None, within: tuple[str, str] | None = None
) -> Select[str, int]:
    """Assignments published per item, by the campaign's (and stages') batches.

    A task record's batch is its item's stage's batch in its item's campaign (one batch
    per campaign and stage; `ledger._write_intent`, the one writer of task records,
    publishes a stage's items into that stage's batch), so the batches select the same
    records as the items would. Joined to the items instead, SQLite read every item row of
    the campaign (~3 KB each, its payload inline) to find their ids: 0.17 against 0.12 s
    a call at ~123k judgments, and more at 10^6 (the push, the settle and every exact
    count of the sync ask)."""
    stmt = (
        select(col(TaskRecord.item_id), func.sum(TaskRecord.overlap).label("published"))
        .join(Batch, col(Batch.id) == col(TaskRecord.batch_id))
        .where(Batch.campaign_id == campaign_id, *_item_range(col(TaskRecord.item_id), within))
    )
    if stages is not None:
        stmt = stmt.where(col(Batch.stage).in_([st.value for st in stages]))
    return stmt.group_by(col(TaskRecord.item_id))


def answer_counts(
    s: Session, campaign_id: str, *, trusted_only: bool, within: tuple[str, str] | None = None
) -> dict[str, int]:
    """Answers per item; with `trusted_only`, valid answers from workers not excluded.
    ``within``: only the items whose ids are in that (inclusive) range."""
    rows = s.exec(_answers(campaign_id, trusted_only=trusted_only, within=within)).all()
    return {str(k): int(v) for k, v in rows if k is not None}


def answer_tallies(
    s: Session, campaign_id: str, *, within: tuple[str, str] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """`answer_counts` of every answer and of the trusted ones, from one GROUP BY.

    The trusted count reads every judgment row of the campaign (its filter is not in an
    index); counting all answers in the same pass spares the push and the settle a second
    walk of the campaign's judgments (0.15 s of 0.36 s at ~123k judgments). ``within``:
    only the items whose ids are in that (inclusive) range."""
    trusted = func.sum(case((_trusted(), 1), else_=0))
    rows = s.exec(
        select(col(Judgment.item_id), func.count(), trusted)
        .where(Judgment.campaign_id == campaign_id, *_item_range(col(Judgment.item_id), within))
        .group_by(col(Judgment.item_id))
    ).all()
    answered = {str(k): int(n) for k, n, _ in rows if k is not None}
    # Items without a trusted answer are left out, as `answer_counts` leaves them.
    counted = {str(k): int(t) for k, _, t in rows if k is not None and t}
    return answered, counted


def outstanding_counts(
    s: Session,
    campaign_id: str,
    stages: Sequence[Stage] | None = None,
    *,
    answered: dict[str, int] | None = None,
    within: tuple[str, str] | None = None,
) -> dict[str, int]:
    """Assignments published but not yet answered (a quarantined answer counts as answered).

    `stages` limits it to those stages' items (the exam's stay open while production runs).
    `answered`: every answer per item, when the caller has counted them already
    (`answer_tallies`, over the same ``within``). ``within``: only the items whose ids are
    in that (inclusive) range.
    """
    published = s.exec(_published(campaign_id, stages, within)).all()
    if answered is None:
        answered = answer_counts(s, campaign_id, trusted_only=False, within=within)
    out = {}
    for item_id, total in published:
        left = int(total) - answered.get(item_id, 0)
        if left > 0:
            out[item_id] = left
    return out


def golden_item_ids(campaign_id: str, kind: str | None = None) -> SaSelect[str]:
    """The ids of the campaign's golden items (of one kind), for ``Judgment.item_id.in_``:
    the golden tallies read their answers through the (campaign, item) index, where SQLite
    walked every judgment of the campaign and looked its item up (measured at 123k
    judgments: 0.28 s against 0.14 s for the comparisons' tally, and 0.27-0.36 s each for
    the ranking and rating tallies of a campaign that has neither, against ~0)."""
    query = sa_select(col(Item.id)).where(
        col(Item.campaign_id) == campaign_id, col(Item.is_golden).is_(True)
    )
    return query if kind is None else query.where(col(Item.kind) == kind)


def outstanding_total(s: Session, campaign_id: str, stages: Sequence[Stage] | None = None) -> int:
    """The sum of `outstanding_counts`, added up in the database: the sync asks for it after
    every quiet poll, and fetching two rows per item for one number cost ~2 µs an item."""
    published = _published(campaign_id, stages).subquery()
    answered = _answers(campaign_id, trusted_only=False).subquery()
    left = published.c.published - func.coalesce(answered.c.n, 0)
    total = s.exec(
        select(func.sum(case((left > 0, left), else_=0))).select_from(
            published.outerjoin(answered, answered.c.item_id == published.c.item_id)
        )
    ).one()
    return int(total or 0)
