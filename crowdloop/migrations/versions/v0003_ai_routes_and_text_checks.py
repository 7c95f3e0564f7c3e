"""AI-first routing (airoute, aijudgebatch), text checks and re-collection exclusions.

Revision ID: 0003
Revises: 0002
Created: 2026-12-06

- `airoute`: where each pair went (the judge, humans, an audit) and the judge's verdict;
  `aijudgebatch`: the judge's batch per campaign (key, cursor, spend).
- `prompt.check_failure`, `response.check_failure`: why the text checks rejected a text
  before verification (None: it passed them).
- `item.exclude_also`: more workers kept off a task (writers who failed the slot).
All new columns are nullable, so rows written before keep their meaning.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROUTE = sa.Enum("ASKED", "AI", "HUMAN", "AUDIT", name="airoutestate")


def upgrade() -> None:
    op.create_table(
        "aijudgebatch",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("spend", sa.String(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    op.create_table(
        "airoute",
        sa.Column("item_id", sa.String(length=80), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("route", ROUTE, nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("choice", sa.String(length=16), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("position_consistent", sa.Boolean(), nullable=True),
        sa.Column("submission_id", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_airoute_campaign_route", "airoute", ["campaign_id", "route"])
    # Plain ALTERs (no batch rebuild): SQLite adds a nullable column in place, and a rebuild
    # of `item` would trip the foreign keys that point at it.
    op.add_column("item", sa.Column("exclude_also", sa.JSON(), nullable=True))
    op.add_column("prompt", sa.Column("check_failure", sa.String(length=300), nullable=True))
    op.add_column("response", sa.Column("check_failure", sa.String(length=300), nullable=True))


def downgrade() -> None:
    op.drop_column("response", "check_failure")
    op.drop_column("prompt", "check_failure")
    op.drop_column("item", "exclude_also")
    op.drop_index("ix_airoute_campaign_route", table_name="airoute")
    op.drop_table("airoute")
    op.drop_table("aijudgebatch")
    # PostgreSQL keeps the enum type after its table is gone; a later upgrade recreates it.
    ROUTE.drop(op.get_bind(), checkfirst=True)
