"""Graded preferences and rationales (graded12).

Revision ID: 0006
Revises: 0005
Created: 2026-12-06

- `judgment.level`: a graded comparison's level (1-based, weakest first);
  `judgment.rationale`: a worker's optional free-text reason, kept with the answer.
- `item.golden_level`: a graded golden pair's level.
- `pairoutcome.level`: the aggregated level of a graded pair.
All new columns are nullable, so rows written before keep their meaning.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("judgment", sa.Column("level", sa.Integer(), nullable=True))
    op.add_column("judgment", sa.Column("rationale", sa.Text(), nullable=True))
    op.add_column("item", sa.Column("golden_level", sa.Integer(), nullable=True))
    op.add_column("pairoutcome", sa.Column("level", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("pairoutcome", "level")
    op.drop_column("item", "golden_level")
    op.drop_column("judgment", "rationale")
    op.drop_column("judgment", "level")
