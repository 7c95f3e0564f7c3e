"""The judge's answer ledger: batches, tasks and each task's answer, in a database.

A chat-completions API keeps nothing for us, so this ledger is the "marketplace" side of
the contract: a batch or task created with a key is found again by that key, and a task's
answer is asked for once and kept, so a rerun (or another process) reads it instead of
paying for it again. Answers are numbered in the order they were recorded; a cursor is the
number of the last answer read.

Where it lives (`AIJudgeOptions.store`): by default in crowdloop's own database (the one
`CROWDLOOP_DATABASE_URL` names, which every Prefect worker of a deployment shares), in
tables of its own (`aijudge_batch`, `aijudge_task`, `aijudge_answer`) that the connector
creates and crowdloop's migrations leave alone; so a flow rerun on another machine finds
what the judge already answered. Or in a SQLite file of its own (tables `batch`, `task`,
`answer`, as before the database store existed, so an existing file keeps its answers).

Answer numbers must follow commit order, or a reader could page past an answer committed
late with a lower number: each answer is recorded in a transaction that first locks its
batch's row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has one writer at a time), so
the answers of one batch commit one after another.

Keys are crowdloop's, which embed the campaign id, so campaigns sharing a ledger do not
collide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, ProgrammingError

from crowdloop.db import get_engine, insert_ignore, redacted_url, unmigrated_engine

# Tables in crowdloop's database carry the connector's name; a file of its own keeps the
# plain names it always had.
DATABASE_PREFIX = "aijudge_"
# The answer column added with ranking tasks; a ledger created before it gets it on open.
DETAIL = "detail"


@dataclass(frozen=True)
class StoredBatch:
    id: str
    key: str
    campaign_id: str
    name: str
    state: str  # draft | open | paused | stopped


@dataclass(frozen=True)
class StoredTask:
    id: str
    batch_id: str
    key: str
    group: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredAnswer:
    seq: int
    task_id: str
    task_key: str
    worker: str
    choice: str | None  # None: quarantined, see reason
    confidence: float | None
    consistent: bool | None  # None: asked in one order only
    reason: str | None
    raw: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    currency: str
    answered_at: datetime
    # Kind-specific fields of a readable answer (a ranking's places and its two orders'
    # agreement; connectors/aijudge/kinds.py); None for a pair, whose fit the columns above.
    detail: dict[str, Any] | None = None
    task_kind: str = "compare"  # the task payload's kind (which JudgeKind reads the row)


def _tables(prefix: str) -> tuple[MetaData, Table, Table, Table]:
    meta = MetaData()
    batch = Table(
        f"{prefix}batch",
        meta,
        Column("id", String(200), primary_key=True),
        Column("key", String(300), nullable=False, unique=True),
        Column("campaign_id", String(200), nullable=False),
        Column("name", Text, nullable=False),
        Column("state", String(16), nullable=False),
        Column("created_at", String(40), nullable=False),
    )
    task = Table(
        f"{prefix}task",
        meta,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("id", String(200), nullable=False, unique=True),
        Column("batch_id", String(200), nullable=False),
        Column("key", String(300), nullable=False),
        Column("grp", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        UniqueConstraint("batch_id", "key"),
    )
    answer = Table(
        f"{prefix}answer",
        meta,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("task_id", String(200), nullable=False, unique=True),
        Column("batch_id", String(200), nullable=False),
        Column("worker", String(200), nullable=False),
        Column("choice", String(16)),
        Column("confidence", Float),
        Column("consistent", Integer),
        Column("reason", Text),
        Column("raw", Text, nullable=False),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("cost", String(40), nullable=False),
        Column("currency", String(3), nullable=False),
        Column("answered_at", String(40), nullable=False),
        Column(DETAIL, Text),
        Index(f"ix_{prefix}answer_batch", "batch_id", "seq"),
    )
    return meta, batch, task, answer


class AnswerStore:
    """The ledger in crowdloop's database (`path` None) or in a SQLite file of its own."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._engine: Engine = get_engine()
            self._own_engine = False
            self.where = redacted_url()
            prefix = DATABASE_PREFIX
        else:
            path = path.expanduser()
            self._engine = unmigrated_engine(f"sqlite:///{path}")
            self._own_engine = True
            self.where = str(path)
            prefix = ""
        meta, self._batch, self._task, self._answer = _tables(prefix)
        meta.create_all(self._engine, checkfirst=True)
        self._add_detail_column()

    def _add_detail_column(self) -> None:
        """A ledger written before rankings (no `detail` column) keeps its answers and
        gains the column: the connector owns these tables, crowdloop's migrations do not
        touch them. Two processes opening an old ledger at once may both try; the loser's
        error is harmless, so the column is looked up again instead of trusted."""
        name = self._answer.name
        if DETAIL in {c["name"] for c in inspect(self._engine).get_columns(name)}:
            return
        try:
            with self._tx() as conn:
                conn.execute(text(f'ALTER TABLE "{name}" ADD COLUMN {DETAIL} TEXT'))
        except (OperationalError, ProgrammingError):
            if DETAIL not in {c["name"] for c in inspect(self._engine).get_columns(name)}:
                raise

    def close(self) -> None:
        if self._own_engine:
            self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    # --- batches -----------------------------------------------------------------------

    def _batch_where(self, conn: Connection, clause: Any) -> StoredBatch | None:
        b = self._batch.c
        row = conn.execute(select(b.id, b.key, b.campaign_id, b.name, b.state).where(clause))
        found = row.first()
        return StoredBatch(*found) if found else None

    def batch_by_key(self, key: str) -> StoredBatch | None:
        with self._tx() as conn:
            return self._batch_where(conn, self._batch.c.key == key)

    def batch(self, batch_id: str) -> StoredBatch | None:
        with self._tx() as conn:
            return self._batch_where(conn, self._batch.c.id == batch_id)

    def add_batch(self, batch: StoredBatch) -> tuple[StoredBatch, bool]:
        """The batch for `batch.key`, and whether this call created it."""
        with self._tx() as conn:
            row = {
                "id": batch.id,
                "key": batch.key,
                "campaign_id": batch.campaign_id,
                "name": batch.name,
                "state": batch.state,
                "created_at": _now(),
            }
            created = insert_ignore(conn, self._batch, [row], ["key"]) == 1
            found = self._batch_where(conn, self._batch.c.key == batch.key)
        assert found is not None
        return found, created

    def set_state(self, batch_id: str, state: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(self._batch).where(self._batch.c.id == batch_id).values(state=state)
            )

    # --- tasks -------------------------------------------------------------------------

    def add_tasks(self, tasks: list[StoredTask]) -> dict[str, str]:
        """Insert tasks not there yet (by batch and key); key -> task id for all of them."""
        if not tasks:
            return {}
        rows = [
            {
                "id": t.id,
                "batch_id": t.batch_id,
                "key": t.key,
                "grp": t.group,
                "payload": json.dumps(t.payload, sort_keys=True),
            }
            for t in tasks
        ]
        with self._tx() as conn:
            insert_ignore(conn, self._task, rows, ["batch_id", "key"])
        return self.find_tasks(tasks[0].batch_id, [t.key for t in tasks])

    def find_tasks(self, batch_id: str, keys: list[str]) -> dict[str, str]:
        t = self._task.c
        found: dict[str, str] = {}
        with self._tx() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = conn.execute(
                    select(t.key, t.id).where(t.batch_id == batch_id, t.key.in_(chunk))
                )
                found.update({str(k): str(i) for k, i in rows})
        return found

    def unanswered(self, batch_id: str) -> list[StoredTask]:
        t, a = self._task.c, self._answer.c
        with self._tx() as conn:
            rows = conn.execute(
                select(t.id, t.batch_id, t.key, t.grp, t.payload)
                .outerjoin(self._answer, a.task_id == t.id)
                .where(t.batch_id == batch_id, a.seq.is_(None))
                .order_by(t.seq)
            ).all()
        return [StoredTask(i, b, k, g, json.loads(p)) for i, b, k, g, p in rows]

    def counts(self, batch_id: str | None = None) -> tuple[int, int, int]:
        """(batches, tasks, answers), in one batch or overall."""

        def count(table: Table, by_batch: bool) -> Any:
            query = select(func.count()).select_from(table)
            return query.where(table.c.batch_id == batch_id) if by_batch else query

        with self._tx() as conn:
            if batch_id is None:
                b = conn.execute(count(self._batch, False)).scalar_one()
                t = conn.execute(count(self._task, False)).scalar_one()
                a = conn.execute(count(self._answer, False)).scalar_one()
            else:
                b = 1
                t = conn.execute(count(self._task, True)).scalar_one()
                a = conn.execute(count(self._answer, True)).scalar_one()
        return int(b), int(t), int(a)

    # --- answers -----------------------------------------------------------------------

    def record(self, task: StoredTask, answer: dict[str, Any]) -> bool:
        """Keep a task's answer; False when it already had one (kept as it was)."""
        consistent = answer.get("consistent")
        row = {
            "task_id": task.id,
            "batch_id": task.batch_id,
            "worker": answer["worker"],
            "choice": answer.get("choice"),
            "confidence": answer.get("confidence"),
            "consistent": None if consistent is None else int(consistent),
            "reason": answer.get("reason"),
            "raw": answer["raw"],
            "prompt_tokens": answer["prompt_tokens"],
            "completion_tokens": answer["completion_tokens"],
            "cost": str(answer["cost"]),
            "currency": answer["currency"],
            "answered_at": _now(),
            DETAIL: None if answer.get("detail") is None else json.dumps(answer["detail"]),
        }
        with self._tx() as conn:
            if conn.dialect.name != "sqlite":
                # The batch's row first: its answers commit in the order they are numbered.
                # (SQLite has one writer at a time; a read first there would only risk a
                # failed lock upgrade.)
                conn.execute(
                    select(self._batch.c.id)
                    .where(self._batch.c.id == task.batch_id)
                    .with_for_update()
                )
            return insert_ignore(conn, self._answer, [row], ["task_id"]) == 1

    def answers_after(self, batch_id: str, after: int, limit: int) -> list[StoredAnswer]:
        a, t = self._answer.c, self._task.c
        with self._tx() as conn:
            rows = conn.execute(
                select(
                    a.seq,
                    a.task_id,
                    t.key,
                    a.worker,
                    a.choice,
                    a.confidence,
                    a.consistent,
                    a.reason,
                    a.raw,
                    a.prompt_tokens,
                    a.completion_tokens,
                    a.cost,
                    a.currency,
                    a.answered_at,
                    a.detail,
                    t.payload,
                )
                .join(self._task, t.id == a.task_id)
                .where(a.batch_id == batch_id, a.seq > after)
                .order_by(a.seq)
                .limit(limit)
            ).all()
        return [
            StoredAnswer(
                seq=int(r[0]),
                task_id=r[1],
                task_key=r[2],
                worker=r[3],
                choice=r[4],
                confidence=r[5],
                consistent=None if r[6] is None else bool(r[6]),
                reason=r[7],
                raw=r[8],
                prompt_tokens=int(r[9]),
                completion_tokens=int(r[10]),
                cost=Decimal(r[11]),
                currency=r[12],
                answered_at=datetime.fromisoformat(r[13]),
                detail=None if r[14] is None else json.loads(r[14]),
                task_kind=str(json.loads(r[15]).get("kind", "compare")),
            )
            for r in rows
        ]

    def has_more(self, batch_id: str, after: int) -> bool:
        a = self._answer.c
        with self._tx() as conn:
            row = conn.execute(
                select(a.seq).where(a.batch_id == batch_id, a.seq > after).limit(1)
            ).first()
        return row is not None

    def cost(self, batch_id: str) -> tuple[Decimal, str | None]:
        a = self._answer.c
        with self._tx() as conn:
            rows = conn.execute(select(a.cost, a.currency).where(a.batch_id == batch_id)).all()
        total = sum((Decimal(c) for c, _ in rows), Decimal(0))
        return total, (rows[0][1] if rows else None)


def _now() -> str:
    return datetime.now(UTC).isoformat()
