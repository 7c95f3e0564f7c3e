"""Text signatures for the duplicate check against earlier campaigns.

Revision ID: 0009
Revises: 0008
Created: 2026-12-06

- `textsignature`: per accepted crowd text (kind, id) its campaign, topic (prompts), the
  normalised text's hash and its MinHash signature;
- `textband`: the signature's LSH band keys, the lookup index for near copies.
Texts accepted before this revision are signed here, in chunks, with the same function
the application uses (crowdloop.textcheck.signature): without them a copy of a text from
an earlier campaign would no longer be caught once the check stopped loading every text.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHUNK = 500


def upgrade() -> None:
    op.create_table(
        "textsignature",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text_id", sa.String(length=80), nullable=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=True),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("minhash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("kind", "text_id"),
    )
    op.create_index("ix_textsignature_kind_digest", "textsignature", ["kind", "digest"])
    op.create_table(
        "textband",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("text_id", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", "text_id"),
    )
    _sign_accepted_texts()


def _sign_accepted_texts() -> None:
    from crowdloop.textcheck import signature

    bind = op.get_bind()
    signatures = sa.table(
        "textsignature",
        sa.column("kind"), sa.column("text_id"), sa.column("campaign_id"), sa.column("scope"),
        sa.column("digest"), sa.column("minhash"),
    )  # fmt: skip
    bands = sa.table("textband", sa.column("kind"), sa.column("key"), sa.column("text_id"))
    queries = {
        "prompt": "SELECT id, campaign_id, text, topic FROM prompt",
        "response": "SELECT id, campaign_id, text, NULL FROM response",
    }
    for kind, query in queries.items():
        rows = bind.execute(
            sa.text(f"{query} WHERE source = 'crowd' AND verdict = 'accept' ORDER BY id")
        )
        while chunk := rows.fetchmany(CHUNK):
            signed = [(row, signature(row[2])) for row in chunk]
            bind.execute(
                signatures.insert(),
                [
                    {
                        "kind": kind,
                        "text_id": row[0],
                        "campaign_id": row[1],
                        "scope": row[3],
                        "digest": sig.digest,
                        "minhash": sig.minhash,
                    }
                    for row, sig in signed
                ],
            )
            band_rows = {
                (key, row[0]): {"kind": kind, "key": key, "text_id": row[0]}
                for row, sig in signed
                for key in sig.bands
            }
            bind.execute(bands.insert(), list(band_rows.values()))


def downgrade() -> None:
    op.drop_table("textband")
    op.drop_index("ix_textsignature_kind_digest", table_name="textsignature")
    op.drop_table("textsignature")
