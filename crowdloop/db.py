"""Engine and sessions for the campaign database; one URL selects SQLite or PostgreSQL."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Table, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from crowdloop.migrations import ensure_schema
from crowdloop.models import tables  # noqa: F401 - registers the tables on SQLModel.metadata
from crowdloop.settings import get_settings

logger = logging.getLogger(__name__)


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


# The configured URL and the CROWDLOOP_ variables it was read from. Settings() parses
# the environment anew (~0.14 ms), and every session asks: ~12,000 sessions in a campaign
# of 10^6 judgments. Reading the variables to compare costs ~0.03 ms; any change to them
# (a test's monkeypatch, `settings.use_database`) reads the settings again.
_CONFIGURED: tuple[tuple[tuple[str, str], ...], str] | None = None


def configured_url() -> str:
    """`get_settings().database_url`, read again only when a CROWDLOOP_ variable changed."""
    global _CONFIGURED
    # pydantic-settings matches the prefix in any case (case_sensitive is off).
    env = tuple((k, v) for k, v in os.environ.items() if k[:10].lower() == "crowdloop_")
    known = _CONFIGURED
    if known is not None and known[0] == env:
        return known[1]
    url = get_settings().database_url
    _CONFIGURED = (env, url)
    return url


def get_engine(url: str | None = None) -> Engine:
    url = url or configured_url()
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
    return make_url(url or configured_url()).render_as_string(hide_password=True)


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
        grown = session.info.pop(_GROWN, None)
        if grown:
            analyze_grown(session, grown)


# session.info key: rows this session added or changed in bulk, per table (PostgreSQL).
_GROWN = "crowdloop_grown"


def note_bulk_write(session: Session, model: type[SQLModel] | Table, rows: int) -> None:
    """Count `rows` added or changed in `model`'s table by this session, so that
    `session_scope` considers analyzing the table after the commit (`analyze_grown`).
    Inserts through `insert_ignore` are counted by it; bulk state changes
    (`stages.items.move_items`) call this. A no-op off PostgreSQL."""
    if rows <= 0 or session.get_bind().dialect.name != "postgresql":
        return
    table = model if isinstance(model, Table) else model.__table__  # type: ignore[attr-defined]
    session.info.setdefault(_GROWN, Counter())[table] += rows


# ANALYZE a table once it changed by this many rows plus this share of its size at its
# last ANALYZE: autovacuum's default rule (autovacuum_analyze_threshold / _scale_factor).
ANALYZE_ROWS = 1_000
ANALYZE_SHARE = 0.1


def analyze_grown(session: Session, grown: Counter[Table]) -> None:
    """ANALYZE the tables this committed session changed a lot, on PostgreSQL.

    A campaign's tables grow from nothing to millions of rows within one run, much faster
    than autovacuum analyzes them (every `autovacuum_naptime`, 1 min by default, and not
    at all where autovacuum is off, as on this project's test server). With the statistics
    of a near-empty table the planner picks plans that read the whole campaign per call: the
    review's keyset chunk (`id > last ORDER BY id LIMIT 500`) took 0.87 s at 100k
    judgments through a bitmap scan of every judgment of the campaign, where the (campaign,
    id) index answers it in milliseconds; at 10^6 judgments that is hours. Changed rows
    matter as much as new ones: with items analyzed when all were pending, the planner
    expects one collected item, and the re-queue of items that lost answers
    (`quality_check.requeue_lost`) ran a nested loop re-reading the excluded judgments per
    collected item (minutes at 100k judgments). So after a commit that added or moved rows
    in bulk, a table whose changes since its last ANALYZE (the server's count, or this
    session's own when the server's has not caught up) pass autovacuum's threshold is
    analyzed here (a sample of 30,000 rows: ~0.1-0.3 s at 10^6). Its own short
    transaction; a failure is logged, never raised (the data is committed already)."""
    try:
        for table, added in grown.items():
            name = session.get_bind().dialect.identifier_preparer.format_table(table)
            tuples, changed = session.execute(
                text(
                    "SELECT c.reltuples, coalesce(s.n_mod_since_analyze, 0)"
                    " FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
                    " WHERE c.oid = to_regclass(:name)"
                ),
                {"name": name},
            ).one()
            # reltuples is -1 before the first ANALYZE.
            if max(changed, added) > ANALYZE_ROWS + ANALYZE_SHARE * max(tuples, 0):
                session.execute(text(f"ANALYZE {name}"))
            session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.warning("ANALYZE after a bulk insert failed (plans may be slow): %s", exc)


def insert_ignore(
    session: Session | Connection,
    model: type[SQLModel] | Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
) -> int:
    """Bulk insert, skipping rows whose unique `keys` already exist; returns rows inserted.

    Into a model's table in a session, or into a plain table (a connector's own ledger,
    connectors/aijudge/store.py) on a connection. Every row has the same keys."""
    if not rows:
        return 0
    table = model if isinstance(model, Table) else model.__table__  # type: ignore[attr-defined]
    bind = session if isinstance(session, Connection) else session.get_bind()
    if bind.dialect.name == "postgresql":
        inserted = _insert_ignore_pg(session, table, rows, keys)
        if isinstance(session, Session):
            note_bulk_write(session, table, inserted)
        return inserted
    return _insert_ignore_sqlite(session, table, rows, keys)


# Rows per executemany on SQLite: bounds the bound-parameter tuples built at once.
SQLITE_INSERT_CHUNK = 5_000


def _insert_ignore_sqlite(
    session: Session | Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> int:
    """`insert_ignore` on SQLite: one prepared `INSERT ... ON CONFLICT (keys) DO NOTHING`
    run by the driver's executemany over tuples of bound values.

    SQLAlchemy's insert of dicts built its parameters row by row in Python
    (`construct_params` and a bind processor call per cell, with RETURNING to count):
    ~40% of storing a judgment. Here each column's bind processor (datetimes, enums, JSON,
    the same ones SQLAlchemy applies, so the stored values are the same) runs over plain
    tuples, and the count is the cursor's rowcount, which sqlite3 sums over an executemany
    (a row left out by DO NOTHING changes nothing, so it is not counted)."""
    if isinstance(session, Session):
        if session.autoflush:
            # session.execute would flush pending ORM objects first (a ledger row the new
            # rows' foreign keys point to); a driver-level statement does not.
            session.flush()
        conn = session.connection()
    else:
        conn = session
    dialect = conn.dialect
    names = list(rows[0])
    # Columns the rows leave out get their Python-side default, as SQLAlchemy's insert
    # would: a callable one per row, a scalar once.
    defaults = [
        (c.name, c.default)
        for c in table.columns
        if c.name not in rows[0] and c.default is not None and not c.default.is_sequence
    ]
    columns = [table.c[name] for name in names] + [table.c[name] for name, _ in defaults]
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)}"
        f" ({', '.join(quote(c.name) for c in columns)})"
        f" VALUES ({', '.join('?' for _ in columns)})"
        f" ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO NOTHING"
    )
    scalar = {
        name: default.arg  # type: ignore[attr-defined]
        for name, default in defaults
        if not default.is_callable
    }
    callables = {
        name: default.arg  # type: ignore[attr-defined]
        for name, default in defaults
        if default.is_callable
    }
    inserted = 0
    for start in range(0, len(rows), SQLITE_INSERT_CHUNK):
        chunk = rows[start : start + SQLITE_INSERT_CHUNK]
        # Column by column: one pass of a processor over a column's values.
        values: list[list[Any]] = []
        for name in names:
            values.append([row[name] for row in chunk])
        for name, _ in defaults:
            if name in callables:
                values.append([callables[name](None) for _ in chunk])
            else:
                values.append([scalar[name]] * len(chunk))
        for i, process in enumerate(processors):
            if process is not None:
                values[i] = _processed(process, values[i])
        result = conn.exec_driver_sql(sql, list(zip(*values, strict=True)))
        inserted += result.rowcount
    return inserted


_UNSET = object()


def _processed(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """`process` applied to each value, once per run of the same object: a synced page's
    rows share one receipt time, one status and one `excluded` flag, and SQLite's datetime
    processor (UTC conversion, then a formatted string) cost ~1.5 us a call. Bind
    processors are functions of the value alone, so a repeated object gets the same result."""
    out = []
    last: Any = _UNSET
    done: Any = None
    for value in values:
        if value is not last:
            last, done = value, process(value)
        out.append(done)
    return out


# Rows per statement on PostgreSQL: one array per column, so the statement's size does
# not grow with it; the bound is on the arrays the driver builds at once.
PG_INSERT_CHUNK = 5_000


def _pg_column_values(param: str, type_: Any) -> Any:
    """A set-returning expression of one column's values for `_insert_ignore_pg`, from the
    list bound to `param`; several of them in one SELECT list run in step, row by row.

    A JSON column goes as one JSON document, the list of its values, taken apart by the
    server (json_array_elements): as a json[] array every value would be text-escaped by
    psycopg, a backslash per quote of the JSON, a regular-expression substitution with
    a Python callback per match (~1.4 ms per item payload of ~3 KB). A None value is JSON
    null, as the column's own bind processing stores it."""
    from sqlalchemy import JSON, bindparam, func
    from sqlalchemy.dialects import postgresql

    if isinstance(type_, postgresql.JSONB):
        return func.jsonb_array_elements(bindparam(param, type_=type_))
    if isinstance(type_, JSON):
        return func.json_array_elements(bindparam(param, type_=type_))
    # dimensions=1: a value that is itself a list would otherwise be read as a sub-array.
    return func.unnest(bindparam(param, type_=postgresql.ARRAY(type_, dimensions=1)))


def _insert_ignore_pg(
    session: Session | Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> int:
    """`insert_ignore` on PostgreSQL: INSERT ... SELECT FROM unnest(one array per column)
    ON CONFLICT DO NOTHING, one statement per `PG_INSERT_CHUNK` rows.

    A multi-row VALUES statement (SQLAlchemy's insertmanyvalues) has a placeholder per
    cell, and psycopg parses every such statement's text with a regular expression, uncached
    (too long for its cache): ~0.1 s of client CPU per 1,000 item rows, most of the CPU
    of registering and storing judgments on PostgreSQL, and the server parses and plans
    each such statement anew. With arrays the statement has one placeholder per column,
    psycopg caches its parse and the server plans a small statement. The statement's
    rowcount is what was inserted (one statement, not an executemany)."""
    from sqlalchemy import bindparam, select
    from sqlalchemy.dialects import postgresql

    names = list(rows[0])
    # Columns the rows leave out get their Python-side default as SQLAlchemy would apply
    # it, once per statement (a timestamp default is the same for the rows of one chunk).
    defaults = {
        c.name: c.default
        for c in table.columns
        if c.name not in rows[0] and c.default is not None and not c.default.is_sequence
    }
    columns = [_pg_column_values(f"c{i}", table.c[name].type) for i, name in enumerate(names)]
    columns += [bindparam(f"d{i}", type_=table.c[name].type) for i, name in enumerate(defaults)]
    stmt = (
        postgresql.insert(table)
        .from_select([*names, *defaults], select(*columns))
        .on_conflict_do_nothing(index_elements=list(keys))
        # SQLAlchemy keeps the cursor's rowcount of an INSERT only when asked.
        .execution_options(preserve_rowcount=True)
    )
    inserted = 0
    for start in range(0, len(rows), PG_INSERT_CHUNK):
        chunk = rows[start : start + PG_INSERT_CHUNK]
        params: dict[str, Any] = {
            f"c{i}": [row[name] for row in chunk] for i, name in enumerate(names)
        }
        for i, default in enumerate(defaults.values()):
            arg = default.arg  # type: ignore[attr-defined]
            params[f"d{i}"] = arg(None) if default.is_callable else arg
        result = session.execute(stmt, params)
        inserted += result.rowcount  # type: ignore[attr-defined]
    return inserted


# Rows per fetch of `driver_rows`.
DRIVER_CHUNK = 10_000


def driver_rows(s: Session, statement: Executable) -> Iterator[Sequence[Any]]:
    """The statement's rows, `DRIVER_CHUNK` at a time, as the driver's tuples.

    On SQLite straight from the DBAPI cursor (which steps the statement as rows are
    fetched): SQLAlchemy's rows cost more than the fetch itself (measured at 123k answers,
    the ORM's partitions 1.9 s of CPU, Core rows 1.4 s, the driver's tuples 0.7 s). The
    columns read here need no result processing there (text and integers). Elsewhere
    through `yield_per`, a server-side cursor on PostgreSQL, so that the whole result is
    never held by the driver at once."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        # No stream_results: its buffered fetch strategy would take a first row from the
        # cursor before the loop below saw it.
        with conn.execute(statement) as result:
            cursor = result.cursor
            while rows := cursor.fetchmany(DRIVER_CHUNK):
                yield rows
    else:
        with conn.execute(statement.execution_options(yield_per=DRIVER_CHUNK)) as result:
            yield from result.partitions()
