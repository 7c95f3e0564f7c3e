"""campaign.spec_version: the version of the stored campaign spec's shape.

Revision ID: 0002
Revises: 0001
Created: 2026-12-06

Rows written before it are version 1 (crowdloop.models.stored_spec upgrades them when read).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ALTER on both backends: SQLite adds a NOT NULL column with a default in place.
    op.add_column(
        "campaign", sa.Column("spec_version", sa.Integer(), nullable=False, server_default="1")
    )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (a batch rebuild would drop `campaign`, which
    # the foreign keys of every other table forbid while they are enforced).
    op.drop_column("campaign", "spec_version")
