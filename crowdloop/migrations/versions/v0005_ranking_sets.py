"""rankingset: what each k-wise ranking item shows (response ids in order, golden places).

Revision ID: 0005
Revises: 0004
Created: 2026-12-06

A new table only; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rankingset",
        sa.Column("item_id", sa.String(length=80), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("prompt_id", sa.String(length=80), nullable=False),
        sa.Column("shown", sa.JSON(), nullable=False),
        sa.Column("golden_ranks", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_rankingset_campaign_id", "rankingset", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_rankingset_campaign_id", table_name="rankingset")
    op.drop_table("rankingset")
