"""Drift: a worker blocked for turning careless keeps the answers before the change point.

Revision ID: 0011
Revises: 0010
Created: 2026-12-06

- `workerrecord.excluded_from`: the time of the first answer of the worker's careless
  stretch (the crowd assessment's change point); the quality check excludes only the
  answers given from then on. Nullable: null keeps the old meaning (every answer of an
  untrusted worker is excluded).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "workerrecord", sa.Column("excluded_from", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("workerrecord", "excluded_from")
