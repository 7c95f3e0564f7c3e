"""Multi-aspect ratings: what each rating item shows, and aggregated scores.

Revision ID: 0007
Revises: 0006
Created: 2026-12-06

- `ratingitem`: the response a rating item (kind `rate`) shows and, for a golden item,
  its known per-aspect scores and tolerance;
- `aspectscore`: one aggregated score per response and aspect.
New tables only; nothing existing changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratingitem",
        sa.Column("item_id", sa.String(length=80), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("prompt_id", sa.String(length=80), nullable=False),
        sa.Column("response_id", sa.String(length=80), nullable=False),
        sa.Column("golden_scores", sa.JSON(), nullable=True),
        sa.Column("golden_tolerance", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.PrimaryKeyConstraint("item_id"),
    )
    op.create_index("ix_ratingitem_campaign_id", "ratingitem", ["campaign_id"])
    op.create_table(
        "aspectscore",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("response_id", sa.String(length=80), nullable=False),
        sa.Column("aspect", sa.String(length=40), nullable=False),
        sa.Column("prompt_id", sa.String(length=80), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("sd", sa.Float(), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("mean_of_votes", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "response_id", "aspect"),
    )


def downgrade() -> None:
    op.drop_table("aspectscore")
    op.drop_index("ix_ratingitem_campaign_id", table_name="ratingitem")
    op.drop_table("ratingitem")
