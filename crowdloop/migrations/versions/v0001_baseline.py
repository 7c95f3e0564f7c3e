"""Baseline: the schema of release eac0f8e, the last one built by `create_all` alone.

Revision ID: 0001
Revises:
Created: 2026-12-06

A database that release (or an earlier one) created has these tables but no
`alembic_version`: upgrading it runs this revision too, which creates only the tables and
indexes it lacks (as `create_all` did at every start), adds the enum members it lacks on
PostgreSQL, and leaves existing tables and their data alone. A table missing a column of
this schema cannot be adopted this way: the upgrade stops, names the columns, and changes
nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The tables as `SQLModel.metadata.create_all` created them at eac0f8e, frozen here: later
# model changes go into later revisions, never into this one.
_BASELINE = sa.MetaData()

sa.Table(
    "campaign",
    _BASELINE,
    sa.Column("id", sa.String(length=80), nullable=False),
    sa.Column("spec", sa.JSON(), nullable=False),
    sa.Column("spec_hash", sa.String(length=64), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column(
        "status",
        sa.Enum(
            "AWAITING_APPROVAL",
            "RUNNING",
            "PAUSED",
            "CANCELLED",
            "FAILED",
            "COMPLETE",
            name="campaignstatus",
        ),
        nullable=False,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
)

sa.Table(
    "batch",
    _BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("stage", sa.String(length=16), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column("idempotency_key", sa.String(length=200), nullable=False),
    sa.Column("external_id", sa.String(length=200), nullable=True),
    sa.Column("started", sa.Boolean(), nullable=False),
    sa.Column("closed", sa.Boolean(), nullable=False),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("campaign_id", "stage"),
    sa.UniqueConstraint("idempotency_key"),
    sa.Index("ix_batch_campaign_id", "campaign_id"),
)

sa.Table(
    "budgetevent",
    _BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("by", sa.String(length=200), nullable=True),
    sa.Column("cap", sa.String(), nullable=False),
    sa.Column("approved_to", sa.String(), nullable=False),
    sa.Column("committed", sa.String(), nullable=False),
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_budgetevent_campaign_id", "campaign_id"),
)

sa.Table(
    "campaignbudget",
    _BASELINE,
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("cap", sa.String(), nullable=False),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.Column("pause_at", sa.Float(), nullable=False),
    sa.Column("approved_to", sa.String(), nullable=False),
    sa.Column("approval_threshold", sa.String(), nullable=True),
    sa.Column("fee_rate", sa.String(), nullable=True),
    sa.Column("expected", sa.String(), nullable=False),
    sa.Column("worst_case", sa.String(), nullable=False),
    sa.Column("launch_approval", sa.Boolean(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("campaign_id"),
)

sa.Table(
    "campaignevent",
    _BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("old_status", sa.String(length=32), nullable=True),
    sa.Column("new_status", sa.String(length=32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("actor", sa.String(length=200), nullable=False),
    sa.Column("flow_run_id", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_campaignevent_campaign", "campaign_id", "id"),
    sa.Index("ix_campaignevent_flow_run_id", "flow_run_id"),
)

sa.Table(
    "campaignlease",
    _BASELINE,
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("holder", sa.String(length=200), nullable=False),
    sa.Column("description", sa.String(length=300), nullable=False),
    sa.Column("flow_run_id", sa.String(length=64), nullable=True),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("campaign_id"),
)

sa.Table(
    "candidatescore",
    _BASELINE,
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("response_id", sa.String(length=80), nullable=False),
    sa.Column("prompt_id", sa.String(length=80), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("method", sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("campaign_id", "response_id"),
    sa.Index("ix_candidatescore_prompt_id", "prompt_id"),
)

sa.Table(
    "examresult",
    _BASELINE,
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("worker_id", sa.String(length=200), nullable=False),
    sa.Column("answered", sa.Integer(), nullable=False),
    sa.Column("correct", sa.Integer(), nullable=False),
    sa.Column("status", sa.Enum("PENDING", "PASSED", "FAILED", name="examstatus"), nullable=False),
    sa.Column("graded_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("granted", sa.Boolean(), nullable=False),
    sa.Column("granted_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("campaign_id", "worker_id"),
)

sa.Table(
    "exportrecord",
    _BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("path", sa.String(), nullable=False),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_exportrecord_campaign_id", "campaign_id"),
)

sa.Table(
    "item",
    _BASELINE,
    sa.Column("id", sa.String(length=80), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("stage", sa.String(length=16), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column(
        "state",
        sa.Enum("PENDING", "PUSHED", "COLLECTED", "DONE", "EXHAUSTED", name="itemstate"),
        nullable=False,
    ),
    sa.Column("overlap", sa.Integer(), nullable=False),
    sa.Column("subject_id", sa.String(length=80), nullable=True),
    sa.Column("left_id", sa.String(length=80), nullable=True),
    sa.Column("right_id", sa.String(length=80), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("pushes", sa.Integer(), nullable=False),
    sa.Column("extensions", sa.Integer(), nullable=False),
    sa.Column("is_golden", sa.Boolean(), nullable=False),
    sa.Column("golden_answer", sa.String(length=16), nullable=True),
    sa.Column("group", sa.String(length=80), nullable=False),
    sa.Column("exclude_worker", sa.String(length=200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_item_campaign_stage_state", "campaign_id", "stage", "state"),
    sa.Index("ix_item_subject_id", "subject_id"),
)

sa.Table(
    "judgment",
    _BASELINE,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column("external_id", sa.String(length=200), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("item_id", sa.String(length=80), nullable=True),
    sa.Column("task_key", sa.String(length=120), nullable=True),
    sa.Column("worker_id", sa.String(length=200), nullable=True),
    sa.Column("status", sa.Enum("VALID", "QUARANTINED", name="judgmentstatus"), nullable=False),
    sa.Column("label", sa.String(length=16), nullable=True),
    sa.Column("text", sa.Text(), nullable=True),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("raw", sa.Text(), nullable=True),
    sa.Column("excluded", sa.Boolean(), nullable=False),
    sa.Column("exclusion_reason", sa.String(length=300), nullable=True),
    sa.Column("review", sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("connector", "external_id"),
    sa.Index("ix_judgment_campaign_item", "campaign_id", "item_id"),
    sa.Index("ix_judgment_campaign_worker", "campaign_id", "worker_id"),
)

sa.Table(
    "pairoutcome",
    _BASELINE,
    sa.Column("item_id", sa.String(length=80), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("prompt_id", sa.String(length=80), nullable=False),
    sa.Column("winner", sa.String(length=16), nullable=False),
    sa.Column("n_left", sa.Float(), nullable=False),
    sa.Column("n_right", sa.Float(), nullable=False),
    sa.Column("n_tie", sa.Float(), nullable=False),
    sa.Column("p_left_better", sa.Float(), nullable=False),
    sa.Column("confidence", sa.Float(), nullable=False),
    sa.Column("margin", sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("item_id"),
    sa.Index("ix_pairoutcome_campaign_id", "campaign_id"),
)

sa.Table(
    "prompt",
    _BASELINE,
    sa.Column("id", sa.String(length=80), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("source", sa.String(length=16), nullable=False),
    sa.Column("topic", sa.String(), nullable=True),
    sa.Column("author", sa.String(length=200), nullable=True),
    sa.Column("origin_item", sa.String(length=80), nullable=True),
    sa.Column("verdict", sa.String(length=16), nullable=True),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_prompt_campaign_id", "campaign_id"),
)

sa.Table(
    "pushledger",
    _BASELINE,
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("connector", sa.String(length=64), nullable=False),
    sa.Column("action", sa.String(length=32), nullable=False),
    sa.Column("state", sa.Enum("INTENT", "DONE", name="ledgerstate"), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=True),
    sa.Column("calls", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("key"),
    sa.Index("ix_pushledger_campaign_id", "campaign_id"),
    sa.Index("ix_pushledger_state", "state"),
)

sa.Table(
    "triggerrecord",
    _BASELINE,
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("pairs_total", sa.Integer(), nullable=False),
    sa.Column("new_pairs", sa.Integer(), nullable=False),
    sa.Column("target", sa.String(length=200), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("flow_run_id", sa.String(length=64), nullable=True),
    sa.Column("result", sa.JSON(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("key"),
    sa.Index("ix_triggerrecord_campaign_id", "campaign_id"),
)

sa.Table(
    "workerrecord",
    _BASELINE,
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("worker_id", sa.String(length=200), nullable=False),
    sa.Column("golden_total", sa.Integer(), nullable=False),
    sa.Column("golden_correct", sa.Integer(), nullable=False),
    sa.Column("written_total", sa.Integer(), nullable=False),
    sa.Column("written_accepted", sa.Integer(), nullable=False),
    sa.Column("accuracy", sa.Float(), nullable=False),
    sa.Column("p_below", sa.Float(), nullable=False),
    sa.Column(
        "status",
        sa.Enum("PROBATION", "TRUSTED", "WARNED", "EXCLUDED", "BLOCKED", name="workerstatus"),
        nullable=False,
    ),
    sa.Column("judgments", sa.Integer(), nullable=False),
    sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("blocked_on_marketplace", sa.Boolean(), nullable=False),
    sa.Column("block_reason", sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("campaign_id", "worker_id"),
)

sa.Table(
    "batchcontrol",
    _BASELINE,
    sa.Column("batch_id", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
    sa.PrimaryKeyConstraint("batch_id"),
)

sa.Table(
    "response",
    _BASELINE,
    sa.Column("id", sa.String(length=80), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("prompt_id", sa.String(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("source", sa.String(length=16), nullable=False),
    sa.Column("model", sa.String(length=200), nullable=True),
    sa.Column("author", sa.String(length=200), nullable=True),
    sa.Column("origin_item", sa.String(length=80), nullable=True),
    sa.Column("verdict", sa.String(length=16), nullable=True),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.ForeignKeyConstraint(["prompt_id"], ["prompt.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.Index("ix_response_campaign_id", "campaign_id"),
    sa.Index("ix_response_prompt_id", "prompt_id"),
)

sa.Table(
    "spendcheck",
    _BASELINE,
    sa.Column("batch_id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("reported", sa.String(), nullable=False),
    sa.Column("accounted", sa.String(), nullable=False),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("batch_id"),
    sa.Index("ix_spendcheck_campaign_id", "campaign_id"),
)

sa.Table(
    "spendrecord",
    _BASELINE,
    sa.Column("batch_id", sa.Integer(), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("amount", sa.String(), nullable=False),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.Column("source", sa.String(length=16), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("batch_id"),
    sa.Index("ix_spendrecord_campaign_id", "campaign_id"),
)

sa.Table(
    "spendreservation",
    _BASELINE,
    sa.Column("key", sa.String(length=200), nullable=False),
    sa.Column("campaign_id", sa.String(), nullable=False),
    sa.Column("batch_id", sa.Integer(), nullable=False),
    sa.Column("stage", sa.String(length=16), nullable=False),
    sa.Column("assignments", sa.Integer(), nullable=False),
    sa.Column("unit_cost", sa.String(), nullable=False),
    sa.Column("amount_reserved", sa.String(), nullable=False),
    sa.Column("amount_actual", sa.String(), nullable=True),
    sa.Column("currency", sa.String(length=3), nullable=False),
    sa.Column("state", sa.Enum("RESERVED", "SETTLED", name="reservationstate"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
    sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
    sa.PrimaryKeyConstraint("key"),
    sa.Index("ix_spendreservation_batch_id", "batch_id"),
    sa.Index("ix_spendreservation_campaign_id", "campaign_id"),
    sa.Index("ix_spendreservation_state", "state"),
)

sa.Table(
    "taskrecord",
    _BASELINE,
    sa.Column("key", sa.String(length=120), nullable=False),
    sa.Column("item_id", sa.String(), nullable=False),
    sa.Column("batch_id", sa.Integer(), nullable=False),
    sa.Column("ledger_key", sa.String(length=200), nullable=False),
    sa.Column("overlap", sa.Integer(), nullable=False),
    sa.Column("external_id", sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
    sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
    sa.PrimaryKeyConstraint("key"),
    sa.Index("ix_taskrecord_batch_id", "batch_id"),
    sa.Index("ix_taskrecord_item_id", "item_id"),
    sa.Index("ix_taskrecord_ledger_key", "ledger_key"),
)


class LegacySchemaError(RuntimeError):
    """An existing table lacks columns the baseline has; adopting it would break later."""


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    missing_columns: list[str] = []
    for table in _BASELINE.sorted_tables:
        if table.name not in existing:
            table.create(bind)  # with its indexes (and, on PostgreSQL, its enum types)
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing_columns += [f"{table.name}.{c.name}" for c in table.columns if c.name not in have]
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
    if bind.dialect.name == "postgresql":
        _add_enum_labels(bind, inspector)
    if missing_columns:
        raise LegacySchemaError(
            "its tables predate the baseline schema (no column "
            f"{', '.join(missing_columns[:8])}{' …' if len(missing_columns) > 8 else ''}); "
            "read it with the crowdloop release that created it, or start a new database"
        )


def _add_enum_labels(bind: sa.Connection, inspector: sa.Inspector) -> None:
    """Earlier releases added members to the status enums (campaign statuses, worker
    statuses, ...); on PostgreSQL these are enum types create_all never altered, so a
    database made before a member existed cannot store it. Add what is missing (allowed in
    a transaction since PostgreSQL 12; nothing here uses the new labels before commit)."""
    from sqlalchemy.dialects.postgresql.base import PGInspector

    assert isinstance(inspector, PGInspector)
    have = {e["name"]: set(e["labels"]) for e in inspector.get_enums()}
    seen: set[str] = set()
    for table in _BASELINE.sorted_tables:
        for column in table.columns:
            kind = column.type
            if not isinstance(kind, sa.Enum):
                continue
            name = kind.name
            if name is None or name not in have or name in seen:
                continue
            seen.add(name)
            for label in kind.enums:
                if label not in have[name]:
                    op.execute(f"ALTER TYPE {name} ADD VALUE IF NOT EXISTS '{label}'")


def downgrade() -> None:
    bind = op.get_bind()
    # Drops the enum types on PostgreSQL too.
    _BASELINE.drop_all(bind)
