"""Schema migrations: every database crowdloop opens is brought to the schema of this code.

`ensure_schema` runs when a process first opens a database (crowdloop.db.get_engine):

- already at `HEAD`: one query, nothing else (alembic is not even imported);
- empty (none of our tables): `create_all` of the models, stamped `HEAD`; alembic's recipe
  for a new database, equivalent to running every revision (tests/test_migrations.py
  checks that the revisions and the models agree);
- tables but no `alembic_version` (made by `create_all` before migrations existed): the
  baseline revision adopts them, then later revisions upgrade them;
- behind `HEAD`: `alembic upgrade head`.

Whatever it does happens in one transaction under a lock, so two processes opening one
database at once (several Prefect workers) never both migrate it: a PostgreSQL advisory
lock held until the transaction ends (DDL is transactional there too), or an exclusive
SQLite transaction. The second process waits, then finds the database at `HEAD`.

This module imports no alembic at import time: `crowdloop status` pays for it only when a
database actually needs migrating.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

# The newest revision in versions/. Written here so the common case (a database already at
# head) needs no scan of the revision scripts; tests check it against the scripts.
HEAD = "0014"
BASELINE = "0001"
MIGRATIONS_DIR = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
# How long an opener waits for another process's migration of the same SQLite file.
SQLITE_LOCK_WAIT_S = 600.0
# pg_advisory_xact_lock key: crowdloop's migration lock on a PostgreSQL database (any fixed
# 64-bit number no other application on that database uses; this is "crowdloop" in ASCII).
PG_LOCK_KEY = 0x63726F77646C6F6F


class SchemaError(RuntimeError):
    """The database cannot be brought to this code's schema; the message is one line."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our revision scripts (there is no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    # Revision files are named v<rev>_<slug>.py: importable names for mypy and ruff.
    cfg.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def stamped_revision(connection: Connection) -> str | None:
    """The revision recorded in the database; None when there is no version table."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def known_revisions() -> set[str]:
    """Every revision in versions/ (loads the scripts)."""
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return stamped_revision(conn)


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock; commits on
    success, rolls back (and so changes nothing) on error."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            from sqlalchemy import text

            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            # pysqlite opens transactions lazily and only for DML; take the write lock now,
            # before reading the version, so the read and the migration are one step.
            _begin_exclusive(conn)
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _begin_exclusive(conn: Connection) -> None:
    """Take SQLite's write lock, waiting for another process's migration however long it
    runs (up to `SQLITE_LOCK_WAIT_S`): one busy_timeout (30 s) is less than a migration of
    a large database takes, and an opener that gives up then would fail a flow run that
    only had to wait. Each attempt blocks in SQLite's own busy handler, so this loop does
    not spin."""
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
    while True:
        try:
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or time.monotonic() >= deadline:
                raise


def ensure_schema(engine: Engine) -> str:
    """Bring the database to `HEAD` (see the module docstring); returns what was done:
    "current", "created", "adopted" or "upgraded".

    On SQLite the whole step is tried again while the database is locked, up to
    `SQLITE_LOCK_WAIT_S`: not only the write lock (`_begin_exclusive`) but the opener's
    first read and its connection's pragmas can meet another process's migration, and one
    of three processes opening a database at once failed so in a loaded CI run ("database
    is locked", once in seven runs). A failed attempt changed nothing (the migration is one
    transaction), so trying again is safe."""
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
    while True:
        try:
            if current_revision(engine) == HEAD:
                return "current"
            with locked(engine) as conn:
                return _migrate(conn, describe=_describe(engine))
        except OperationalError as exc:
            sqlite_lock = engine.dialect.name == "sqlite" and "locked" in str(exc.orig)
            if not sqlite_lock or time.monotonic() >= deadline:
                raise
            # A lock SQLite reports without waiting in its busy handler (a WAL recovery,
            # a snapshot) would otherwise be retried at once, again and again.
            time.sleep(0.1)


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _our_tables() -> set[str]:
    from sqlmodel import SQLModel

    from crowdloop.models import tables  # noqa: F401 - registers the tables

    return set(SQLModel.metadata.tables)


def _migrate(conn: Connection, *, describe: str) -> str:
    from sqlalchemy import inspect

    rev = stamped_revision(conn)  # again, under the lock: another process may have done it
    if rev == HEAD:
        return "current"
    if rev is None and not (set(inspect(conn).get_table_names()) & _our_tables()):
        from sqlmodel import SQLModel

        SQLModel.metadata.create_all(conn)
        _stamp_head(conn)
        return "created"
    from alembic import command
    from alembic.util.exc import CommandError

    cfg = alembic_config(conn)
    if rev is not None and rev not in known_revisions():
        raise SchemaError(
            f"database {describe} is at schema revision {rev}, which this crowdloop does not "
            f"know (its newest is {HEAD}): it was migrated by a newer crowdloop; upgrade "
            "crowdloop to use it"
        )
    try:
        command.upgrade(cfg, "head")
    except CommandError as exc:
        raise SchemaError(f"database {describe}: migration failed: {exc}") from exc
    except RuntimeError as exc:
        if type(exc).__name__ == "LegacySchemaError":  # raised by the baseline revision
            raise SchemaError(f"database {describe}: {exc}") from None
        raise
    return "adopted" if rev is None else "upgraded"


def _stamp_head(conn: Connection) -> None:
    """Record `HEAD` in the table alembic keeps (its definition, copied from
    alembic.runtime.migration), without loading alembic and the revision scripts: a new
    database then costs `create_all` and one insert. Tests read it back through alembic."""
    import sqlalchemy as sa

    version = sa.Table(
        VERSION_TABLE,
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    version.create(conn)
    conn.execute(version.insert().values(version_num=HEAD))


# Tables a connector keeps in crowdloop's database for itself (the AI judge's answer ledger,
# connectors/aijudge/store.py): not crowdloop's schema, so never compared nor dropped.
CONNECTOR_TABLE_PREFIXES = ("aijudge_",)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate's filter (env.py): everything but a connector's own tables."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not str(table or "").startswith(CONNECTOR_TABLE_PREFIXES)


def schema_diff(conn: Connection) -> list[object]:
    """What alembic's autogenerate finds between the database and the models (empty when
    they agree), compared as a revision script would be written (env.py's options)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    _our_tables()  # registers the tables
    ctx = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include_object}
    )
    return list(compare_metadata(ctx, SQLModel.metadata))


def new_revision(message: str, workdir: Path) -> Path:
    """For contributors: write the next revision script from the difference between the
    models and the revisions so far, as alembic autogenerates it (to be read and adjusted
    before committing). Compared on SQLite, in a scratch database under `workdir`."""
    from alembic import command
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{workdir / 'revision.db'}")
    try:
        with locked(engine) as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, "head")
            if not schema_diff(conn):
                raise SchemaError("the models and the migrations agree: no revision to write")
            script = command.revision(
                cfg, message=message, autogenerate=True, rev_id=f"{int(HEAD) + 1:04d}"
            )
    finally:
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
