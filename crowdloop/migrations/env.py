"""Alembic's environment for crowdloop's schema.

crowdloop runs migrations itself (crowdloop.migrations.ensure_schema, `crowdloop db upgrade`)
and hands its locked connection over in `config.attributes["connection"]`.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from crowdloop.migrations import include_object
from crowdloop.models import tables  # noqa: F401 - registers the tables on SQLModel.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render SQLModel's column types as plain SQLAlchemy ones, so a revision script does not
    depend on SQLModel's internals (the database sees the same VARCHAR and TIMESTAMP)."""
    if type_ == "type" and isinstance(obj, AutoString):
        length = getattr(obj.impl, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters most columns only by rebuilding the table: batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        include_object=include_object,
    )


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        # One way in, so every migration runs under crowdloop's lock (two workers opening
        # one database never both migrate it).
        raise RuntimeError("run crowdloop's migrations with `crowdloop db upgrade`")
    configure(connection)
    # The caller owns the transaction (and the lock taken in it); nothing commits here.
    with context.begin_transaction():
        context.run_migrations()


run()
