"""Engine and sessions for the campaign database; one URL selects SQLite or PostgreSQL."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, create_engine

from crowdloop.migrations import ensure_schema
from crowdloop.models import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from crowdloop.settings import get_settings


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # busy_timeout rides out short locks; it comes first, so that even switching to WAL
    # waits for a process that holds the write lock (a migration) instead of failing at
    # once. WAL lets the ops CLI read while a flow writes.
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # A page of 1,000 judgments lands on ~1,000 different index pages (items are hashes).
    # With the default checkpoint every 1,000 WAL pages each such page was copied into the
    # database file at nearly every commit; a checkpoint every 10,000 pages (~40 MB of WAL
    # on disk) gave about half of the saving measured with a 16 MiB page cache as well
    # (raw inserts ~45 to ~25 us a row). The larger cache is left out: it cost ~30 MiB of
    # peak RSS a campaign (one per pooled connection), against issue 11's memory bound.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


def unmigrated_engine(url: str) -> Engine:
    """An engine that leaves the schema as it is (`crowdloop db current` looks, never
    changes); everything else goes through `get_engine`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


# One engine per database URL in this process, made (and migrated) on first use.
_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_LOCK = threading.RLock()  # re-entrant: a signal handler may open the database
_KEEP_ENGINES = 8  # the oldest is forgotten beyond this (tests open many databases)


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = unmigrated_engine(url)
            # Brought to this code's schema once per process and database
            # (crowdloop/migrations); under the lock, so threads do not race to do it.
            ensure_schema(engine)
            _ENGINES[url] = engine
            while len(_ENGINES) > _KEEP_ENGINES:
                _ENGINES.popitem(last=False)
        else:
            _ENGINES.move_to_end(url)
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of this process's engine for `url`, if it made one."""
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


def redacted_url(url: str | None = None) -> str:
    """The database URL with any password hidden, for logs and reports."""
    return make_url(url or get_settings().database_url).render_as_string(hide_password=True)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_ignore(
    session: Session | Connection,
    model: type[SQLModel] | Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
) -> int:
    """Bulk insert, skipping rows whose unique `keys` already exist; returns rows inserted.

    Into a model's table in a session, or into a plain table (a connector's own ledger,
    connectors/aijudge/store.py) on a connection."""
    if not rows:
        return 0
    from sqlalchemy.dialects import postgresql, sqlite  # here: `status` need not load them

    table = model if isinstance(model, Table) else model.__table__  # type: ignore[attr-defined]
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING counts what was really inserted on both backends; rowcount of an
    # executemany is not reliable on PostgreSQL.
    stmt = (
        builder(table)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(*table.primary_key.columns)
    )
    inserted = 0
    # Chunk to stay under SQLite's bound-parameter limit.
    per_chunk = max(1, 30_000 // max(1, len(rows[0])))
    for start in range(0, len(rows), per_chunk):
        chunk = list(rows[start : start + per_chunk])
        result = session.execute(
            stmt, chunk, execution_options={"insertmanyvalues_page_size": 1000}
        )
        inserted += len(result.all())
    return inserted
