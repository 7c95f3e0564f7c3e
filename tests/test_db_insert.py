"""`insert_ignore` on both backends: the rows inserted, conflicts skipped and counted, the
values round-trip (JSON lists and objects, NULLs, timestamps, bytes), and the Python-side
defaults of left-out columns applied. On PostgreSQL it is one INSERT ... SELECT FROM unnest
per chunk (`db._insert_ignore_pg`), a path of its own."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlmodel import func
from sqlmodel import select as sm_select

from crowdloop import db
from crowdloop.db import get_engine, insert_ignore, session_scope
from crowdloop.models.tables import Campaign, Item, ItemState, utcnow
from crowdloop.stages.items import move_items


def _table() -> Table:
    return Table(
        "insert_ignore_probe",
        MetaData(),
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("a", String(20), nullable=False),
        Column("b", String(20), nullable=False),
        Column("doc", JSON, nullable=True),
        Column("blob", LargeBinary, nullable=True),
        Column("note", Text, nullable=True),
        Column("n", Integer, nullable=True),
        Column("kind", String(10), nullable=False, default="plain"),
        UniqueConstraint("a", "b"),
    )


def _row(i: int, **extra: Any) -> dict[str, Any]:
    doc: Any = [i, "x", {"k": [1, 2]}] if i % 2 else {"i": i, "nested": [None, "é"]}
    return {
        "a": f"a{i}",
        "b": "b",
        "doc": doc,
        "blob": bytes([i % 256, 0, 255]),
        "note": None if i % 3 == 0 else f"note {i} 'quoted' %s",
        "n": None if i % 4 == 0 else i,
        **extra,
    }


@pytest.mark.parametrize("chunk", [2, 5_000])
def test_insert_ignore_plain_table(
    db_url: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chunk=2: several statements per call on PostgreSQL (the first chunk's rows all new,
    # later chunks mixing new rows and conflicts).
    monkeypatch.setattr(db, "PG_INSERT_CHUNK", chunk)
    table = _table()
    engine = get_engine(db_url)
    table.create(engine)
    try:
        rows = [_row(i) for i in range(7)]
        with engine.begin() as conn:
            assert insert_ignore(conn, table, rows, ["a", "b"]) == 7
        # Again with three new rows among the old ones, and a duplicate inside the call.
        again = [_row(i) for i in range(3, 10)] + [_row(9)]
        with engine.begin() as conn:
            assert insert_ignore(conn, table, again, ["a", "b"]) == 3
            got = conn.execute(select(table).order_by(table.c.seq)).mappings().all()
        assert [r["a"] for r in got] == [f"a{i}" for i in range(10)]  # in the rows' order
        assert [r["seq"] for r in got] == sorted(r["seq"] for r in got)
        for i, r in enumerate(got):
            want = _row(i)
            assert {k: r[k] for k in want} == want
            assert r["kind"] == "plain"  # a left-out column's Python-side default
    finally:
        table.drop(engine)


def test_insert_ignore_model_defaults_and_timestamps(db_url: str) -> None:
    # Item rows that leave out columns with Python-side defaults (state, counters,
    # created_at from a callable), and a JSON list column that is NULL or a list.
    with session_scope(db_url) as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="x", connector="simulator"))
    rows = [
        {
            "id": f"i{i}",
            "campaign_id": "c1",
            "stage": "compare",
            "kind": "compare",
            "payload": {"prompt": f"p{i}", "scale": []},
            "group": f"g{i}",
            "exclude_also": None if i % 2 else ["w1", "w2"],
        }
        for i in range(4)
    ]
    before = utcnow()
    with session_scope(db_url) as s:
        assert insert_ignore(s, Item, rows, ["id"]) == 4
        assert insert_ignore(s, Item, rows[:2], ["id"]) == 0
    with session_scope(db_url) as s:
        items = s.exec(sm_select(Item).order_by(Item.id)).all()
        assert s.exec(sm_select(func.count()).select_from(Item)).one() == 4
    assert [it.exclude_also for it in items] == [["w1", "w2"], None, ["w1", "w2"], None]
    assert [it.payload for it in items] == [r["payload"] for r in rows]
    for it in items:
        assert (it.state, it.overlap, it.attempt, it.is_golden) == ("pending", 1, 0, False)
        assert it.created_at >= before.replace(microsecond=0)


def _item_rows(start: int, stop: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"i{i}",
            "campaign_id": "c1",
            "stage": "compare",
            "kind": "compare",
            "payload": {},
            "group": f"g{i}",
        }
        for i in range(start, stop)
    ]


def test_bulk_insert_analyzes_the_grown_table_on_postgres(postgres_url: str) -> None:
    # The planner's row estimate of a table a session filled is its real size once that
    # session commits (`db.analyze_grown`), not the near-empty table's; a small addition
    # after it does not analyze again.
    def reltuples() -> float:
        with session_scope(postgres_url) as s:
            return float(
                s.execute(text("SELECT reltuples FROM pg_class WHERE oid = 'item'::regclass"))
                .scalars()
                .one()
            )

    with session_scope(postgres_url) as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="x", connector="simulator"))
    assert reltuples() <= 0  # never analyzed (-1), or empty
    with session_scope(postgres_url) as s:
        assert insert_ignore(s, Item, _item_rows(0, 2_500), ["id"]) == 2_500
    assert reltuples() == 2_500
    with session_scope(postgres_url) as s:
        insert_ignore(s, Item, _item_rows(2_500, 2_600), ["id"])
    assert reltuples() == 2_500


def test_moving_items_in_bulk_analyzes_them_on_postgres(postgres_url: str) -> None:
    # Analyzed while every item was pending, the planner expected no pushed item; moving
    # them in bulk (`move_items`) updates what it knows of the states on commit.
    def states() -> str:
        with session_scope(postgres_url) as s:
            return str(
                s.execute(
                    text(
                        "SELECT most_common_vals::text FROM pg_stats"
                        " WHERE tablename = 'item' AND attname = 'state'"
                    )
                ).scalar_one()
            )

    with session_scope(postgres_url) as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="x", connector="simulator"))
    with session_scope(postgres_url) as s:
        insert_ignore(s, Item, _item_rows(0, 2_500), ["id"])
    assert states() == "{PENDING}"
    with session_scope(postgres_url) as s:
        ids = [f"i{i}" for i in range(2_000)]
        assert move_items(s, ids, ItemState.PUSHED, from_=ItemState.PENDING) == 2_000
    assert states() == "{PUSHED,PENDING}"


def test_chunked_reads_stream_from_a_server_side_cursor_on_postgres(postgres_url: str) -> None:
    # `yield_per` is how the big reads bound memory (judgments frame, comparison evidence,
    # exports); on PostgreSQL that holds only if SQLAlchemy gives psycopg a named
    # (server-side) cursor, which otherwise loads the whole result set into the client.
    import psycopg
    from sqlalchemy import event

    from crowdloop.stages.preferences import judgments_frame

    cursors: list[tuple[type, str]] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        cursors.append((type(cursor), statement))

    engine = get_engine(postgres_url)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert judgments_frame("no-such-campaign").empty
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [kind for kind, sql in cursors if "FROM item JOIN judgment" in sql]
    assert reads and all(issubclass(kind, psycopg.ServerCursor) for kind in reads)


def test_insert_ignore_flushes_pending_objects_first(db_url: str) -> None:
    # The parent row is only added to the session, not flushed: the insert must see it
    # (as session.execute's autoflush made it do), or the foreign key fails on SQLite.
    with session_scope(db_url) as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="x", connector="simulator"))
        assert insert_ignore(s, Item, _item_rows(0, 3), ["id"]) == 3
    with session_scope(db_url) as s:
        assert s.exec(sm_select(func.count()).select_from(Item)).one() == 3
