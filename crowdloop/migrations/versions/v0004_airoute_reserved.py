"""The AI judge's reservation per pair: its worst-case cost, held against a budget's cap.

Revision ID: 0004
Revises: 0003
Created: 2026-12-06

- `airoute.reserved`: the most asking the judge about the pair can cost (Decimal as
  text), counted against the campaign's cap while the pair waits for its answer. Null for
  pairs asked before budgets covered the judge, and for campaigns without a budget.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("airoute", sa.Column("reserved", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("airoute", "reserved")
