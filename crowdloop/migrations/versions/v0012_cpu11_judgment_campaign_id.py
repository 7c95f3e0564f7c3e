"""An index on judgment (campaign_id, id).

Revision ID: 0012
Revises: 0011
Created: 2026-12-06

`review_submissions` reads a campaign's unreviewed judgments 500 at a time in id order
(`id > last`). With only (campaign_id, item_id) to go by, SQLite read every judgment of
the campaign and sorted them for each chunk: quadratic in the campaign's size (~0.1 s
per chunk at 61k judgments). With this index each chunk continues the walk where the
last one stopped.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_judgment_campaign_id", "judgment", ["campaign_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_judgment_campaign_id", table_name="judgment")
