"""AI-first routing of ranking sets (aijudge12).

Revision ID: 0008
Revises: 0007
Created: 2026-12-06

- `airoute.places`: the judge's ranking of a ranking set (places of the responses as
  shown, 1 best), kept beside the humans' for the audit's agreement; null for pairs.
- `airoute.order_agreement`: Kendall's tau-b between the judge's rankings of the set shown
  in order and reversed; null for pairs and for a judge asked in one order.
Both are nullable, so the routes of pairs written before keep their meaning.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("airoute", sa.Column("places", sa.JSON(), nullable=True))
    op.add_column("airoute", sa.Column("order_agreement", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("airoute", "order_agreement")
    op.drop_column("airoute", "places")
