"""The one writer of an item's state: every move goes through `move_items`, which holds
it to the item state machine (`models.tables.ITEM_TRANSITIONS`).

Items are born PENDING (stages/plan.py inserts them); after that the push, the settle,
the demonstrations pipeline and dynamic overlap move them, thousands at a time. So the
check stays in bulk: the caller names the state(s) it moves items from, those moves are
checked against the table once per call, and the UPDATE itself touches only rows in one
of those states (`WHERE state IN (...)`), one statement per 1,000 ids, returning the ids
it moved. A row that was in another state is either an error (`strict`, the default: the
caller read the items in that state, so a mismatch is a bug or a second writer, and the
transaction is rolled back) or, with `strict=False`, left alone and not counted.
tests/test_item_states.py checks that no other module writes `Item.state`. The workers an
item is kept off after planning (`keep_off`) are written here too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, String, update
from sqlalchemy import cast as sa_cast
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select as SqlModelSelect

from crowdloop.db import note_bulk_write
from crowdloop.models.domain import Stage
from crowdloop.models.tables import ITEM_TRANSITIONS, IllegalTransition, Item, ItemState

CHUNK = 1000  # ids per statement: well under SQLite's and PostgreSQL's parameter limits

_Columns = TypeVarTuple("_Columns")


def id_page(
    s: Session, query: SqlModelSelect[str, *_Columns], after: str | None, size: int
) -> tuple[Sequence[tuple[str, *_Columns]], tuple[str, str] | None]:
    """One page of ``query``'s rows (items, their id the first column) in id order: the
    first ``size`` after the id ``after`` (None: from the start), and the page's first and
    last ids as the database orders them (None for an empty page), for counts over that
    id range (`counts.assignment_deficits`, `counts.answer_tallies`).

    The push and the settle read their items so, a page at a time (keyset paging):
    whole, the items and the counts keyed by every item's id were ~10^6 Python objects
    alive through a stage at 10^6 judgments, and when they went the heap stayed resident
    (fragmented) under every later stage's arrays (docs/at-scale.md, mem13)."""
    if after is not None:
        query = query.where(col(Item.id) > after)
    rows = s.exec(query.order_by(col(Item.id)).limit(size)).all()
    return rows, ((rows[0][0], rows[-1][0]) if rows else None)


def check_move(sources: Collection[ItemState], to: ItemState) -> None:
    """Raise IllegalTransition unless the state machine allows every `source -> to`."""
    illegal = sorted(src.value for src in sources if src != to and to not in ITEM_TRANSITIONS[src])
    if illegal:
        raise IllegalTransition(
            f"item state {' / '.join(illegal)} -> {to.value} is not allowed "
            f"(allowed: {_allowed(illegal)})"
        )


def move_items(
    s: Session,
    ids: Sequence[str],
    to: ItemState,
    *,
    from_: ItemState | Collection[ItemState],
    values: Mapping[str, Any] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    strict: bool = True,
) -> int:
    """Move the items `ids` that are in `from_` to `to` (and set `values` on them).

    `where` adds conditions (rows that fail them are not moved); it needs `strict=False`,
    since then fewer rows than ids may move by design. Returns the number moved.
    """
    sources = {from_} if isinstance(from_, ItemState) else set(from_)
    if not sources:
        raise ValueError("move_items needs the state(s) the items move from")
    check_move(sources, to)
    if where and strict:
        raise ValueError("move_items: extra `where` conditions need strict=False")
    unique = list(dict.fromkeys(ids))
    moved = 0
    for start in range(0, len(unique), CHUNK):
        part = unique[start : start + CHUNK]
        # RETURNING (SQLite >= 3.35, PostgreSQL): the rows left alone are known exactly,
        # and they still hold the state they had, for the error below.
        done = set(
            s.execute(
                update(Item)
                .where(col(Item.id).in_(part), col(Item.state).in_(sources), *where)
                .values(state=to, **(values or {}))
                .returning(col(Item.id))
            )
            .scalars()
            .all()
        )
        moved += len(done)
        if strict and len(done) != len(part):
            _raise_for_strays(s, [i for i in part if i not in done], sources, to)
    # The planner's idea of how many items are in each state (db.analyze_grown).
    note_bulk_write(s, Item, moved)
    return moved


def ask_again(s: Session, by_overlap: Mapping[int, Sequence[str]]) -> int:
    """Collected items asked again: each group back to pending at its new overlap (the
    total answers it should end with), one more extension counted. Items no longer
    collected (still out, or settled meanwhile) are left alone. Returns items moved."""
    return sum(
        move_items(
            s,
            ids,
            ItemState.PENDING,
            from_=ItemState.COLLECTED,
            values={"overlap": overlap, "extensions": Item.extensions + 1},
            strict=False,
        )
        for overlap, ids in sorted(by_overlap.items())
    )


def _raise_for_strays(
    s: Session, strays: list[str], sources: set[ItemState], to: ItemState
) -> None:
    expected = " / ".join(sorted(src.value for src in sources))
    found = s.exec(select(Item.id, Item.state).where(col(Item.id).in_(strays))).first()
    if found is None:
        raise LookupError(f"move to {to.value}: item {strays[0]} does not exist")
    item_id, state = found
    raise IllegalTransition(
        f"item {item_id}: is {ItemState(state).value}, not {expected}, so it cannot be moved "
        f"to {to.value} here"
    )


def _allowed(states: list[str]) -> str:
    return "; ".join(
        f"{st} -> {', '.join(sorted(t.value for t in ITEM_TRANSITIONS[ItemState(st)])) or 'none'}"
        for st in states
    )


def keep_off(s: Session, workers: Mapping[str, Sequence[str]]) -> None:
    """Each item's `exclude_also` set to its list of workers (its next push is kept off
    them); `lift_golden_keep_off` lifts it again."""
    for item_id, kept in workers.items():
        s.execute(update(Item).where(col(Item.id) == item_id).values(exclude_also=list(kept)))


def lift_golden_keep_off(s: Session, campaign_id: str) -> None:
    """Empty the lists `keep_off` gave the campaign's golden comparison pairs.

    Only the pairs that carry one: planning gives every golden pair an empty list, and
    rewriting them all at every quality check would be ~50k rows at 10^6 judgments."""
    s.execute(
        update(Item)
        .where(
            col(Item.campaign_id) == campaign_id,
            col(Item.stage) == Stage.COMPARE.value,
            col(Item.is_golden).is_(True),
            col(Item.exclude_also).is_not(None),
            sa_cast(col(Item.exclude_also), String).not_in(["[]", "null"]),
        )
        .values(exclude_also=[])
    )
