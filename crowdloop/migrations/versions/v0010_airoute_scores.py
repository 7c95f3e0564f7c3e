"""AI-first routing of rating items.

Revision ID: 0010
Revises: 0009
Created: 2026-12-06

- `airoute.scores`: the judge's scores of a rating item (aspect name -> integer), kept
  beside the humans' for the audit's agreement (per-aspect mean absolute difference);
  null for pairs and ranking sets. Nullable, so the routes written before keep their
  meaning.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("airoute", sa.Column("scores", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("airoute", "scores")
