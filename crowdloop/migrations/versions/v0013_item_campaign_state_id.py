"""An index on item (campaign_id, state, id).

Revision ID: 0013
Revises: 0012
Created: 2026-12-07

The push and the settle read a campaign's pending or pushed items a page at a time in id
order (`items.id_page`: `state = ? AND id > last ORDER BY id LIMIT n`). With only
(campaign_id, stage, state) to go by, SQLite read every item of the campaign and sorted
the page's state for each page: quadratic in the campaign's size (the settle took 17x the
CPU for 10x the judgments from 10^5 to 10^6). With this index each page continues the
walk where the last one stopped.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_item_campaign_state_id", "item", ["campaign_id", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_item_campaign_state_id", table_name="item")
