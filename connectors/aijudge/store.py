"""The judge's answer ledger: batches, tasks and each task's answer, in a SQLite file.

A chat-completions API keeps nothing for us, so this file is the "marketplace" side of
the contract: a batch or task created with a key is found again by that key, and a task's
answer is asked for once and kept, so a rerun (or another process) reads it instead of
paying for it again. Answers are numbered in the order they were recorded; a cursor is the
number of the last answer read. WAL mode and short transactions let the threads that ask
the model write while a reader pages.

One file is shared by every campaign that names it; keys are crowdloop's, which embed the
campaign id, so campaigns do not collide.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, campaign_id TEXT NOT NULL,
    name TEXT NOT NULL, state TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, batch_id TEXT NOT NULL,
    key TEXT NOT NULL, grp TEXT NOT NULL, payload TEXT NOT NULL, UNIQUE (batch_id, key));
CREATE TABLE IF NOT EXISTS answer (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL UNIQUE,
    batch_id TEXT NOT NULL, worker TEXT NOT NULL, choice TEXT, confidence REAL,
    consistent INTEGER, reason TEXT, raw TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost TEXT NOT NULL, currency TEXT NOT NULL,
    answered_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_answer_batch ON answer (batch_id, seq);
"""


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


class AnswerStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- batches -----------------------------------------------------------------------

    def batch_by_key(self, key: str) -> StoredBatch | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, key, campaign_id, name, state FROM batch WHERE key = ?", (key,)
            ).fetchone()
        return StoredBatch(*row) if row else None

    def batch(self, batch_id: str) -> StoredBatch | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, key, campaign_id, name, state FROM batch WHERE id = ?", (batch_id,)
            ).fetchone()
        return StoredBatch(*row) if row else None

    def add_batch(self, batch: StoredBatch) -> tuple[StoredBatch, bool]:
        """The batch for `batch.key`, and whether this call created it."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, key, campaign_id, name, state FROM batch WHERE key = ?", (batch.key,)
            ).fetchone()
            if row:
                return StoredBatch(*row), False
            db.execute(
                "INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?)",
                (batch.id, batch.key, batch.campaign_id, batch.name, batch.state, _now()),
            )
        return batch, True

    def set_state(self, batch_id: str, state: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE batch SET state = ? WHERE id = ?", (state, batch_id))

    # --- tasks -------------------------------------------------------------------------

    def add_tasks(self, tasks: list[StoredTask]) -> dict[str, str]:
        """Insert tasks not there yet (by batch and key); key -> task id for all of them."""
        with self._tx() as db:
            for t in tasks:
                db.execute(
                    "INSERT OR IGNORE INTO task (id, batch_id, key, grp, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (t.id, t.batch_id, t.key, t.group, json.dumps(t.payload, sort_keys=True)),
                )
        if not tasks:
            return {}
        return self.find_tasks(tasks[0].batch_id, [t.key for t in tasks])

    def find_tasks(self, batch_id: str, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, id FROM task WHERE batch_id = ? AND key IN ({marks})",
                    (batch_id, *chunk),
                ).fetchall()
                found.update({str(k): str(i) for k, i in rows})
        return found

    def unanswered(self, batch_id: str) -> list[StoredTask]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t.id, t.batch_id, t.key, t.grp, t.payload FROM task t "
                "LEFT JOIN answer a ON a.task_id = t.id "
                "WHERE t.batch_id = ? AND a.seq IS NULL ORDER BY t.seq",
                (batch_id,),
            ).fetchall()
        return [StoredTask(i, b, k, g, json.loads(p)) for i, b, k, g, p in rows]

    def counts(self, batch_id: str | None = None) -> tuple[int, int, int]:
        """(batches, tasks, answers), in one batch or overall."""
        with self._lock:
            if batch_id is None:
                b = self._db.execute("SELECT COUNT(*) FROM batch").fetchone()[0]
                t = self._db.execute("SELECT COUNT(*) FROM task").fetchone()[0]
                a = self._db.execute("SELECT COUNT(*) FROM answer").fetchone()[0]
            else:
                b = 1
                t = self._db.execute(
                    "SELECT COUNT(*) FROM task WHERE batch_id = ?", (batch_id,)
                ).fetchone()[0]
                a = self._db.execute(
                    "SELECT COUNT(*) FROM answer WHERE batch_id = ?", (batch_id,)
                ).fetchone()[0]
        return int(b), int(t), int(a)

    # --- answers -----------------------------------------------------------------------

    def record(self, task: StoredTask, answer: dict[str, Any]) -> bool:
        """Keep a task's answer; False when it already had one (kept as it was)."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO answer (task_id, batch_id, worker, choice, confidence, "
                "consistent, reason, raw, prompt_tokens, completion_tokens, cost, currency, "
                "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    task.batch_id,
                    answer["worker"],
                    answer.get("choice"),
                    answer.get("confidence"),
                    None if answer.get("consistent") is None else int(answer["consistent"]),
                    answer.get("reason"),
                    answer["raw"],
                    answer["prompt_tokens"],
                    answer["completion_tokens"],
                    str(answer["cost"]),
                    answer["currency"],
                    _now(),
                ),
            )
            return cursor.rowcount == 1

    def answers_after(self, batch_id: str, after: int, limit: int) -> list[StoredAnswer]:
        with self._lock:
            rows = self._db.execute(
                "SELECT a.seq, a.task_id, t.key, a.worker, a.choice, a.confidence, a.consistent, "
                "a.reason, a.raw, a.prompt_tokens, a.completion_tokens, a.cost, a.currency, "
                "a.answered_at FROM answer a JOIN task t ON t.id = a.task_id "
                "WHERE a.batch_id = ? AND a.seq > ? ORDER BY a.seq LIMIT ?",
                (batch_id, after, limit),
            ).fetchall()
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
            )
            for r in rows
        ]

    def has_more(self, batch_id: str, after: int) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM answer WHERE batch_id = ? AND seq > ? LIMIT 1", (batch_id, after)
            ).fetchone()
        return row is not None

    def cost(self, batch_id: str) -> tuple[Decimal, str | None]:
        with self._lock:
            rows = self._db.execute(
                "SELECT cost, currency FROM answer WHERE batch_id = ?", (batch_id,)
            ).fetchall()
        total = sum((Decimal(c) for c, _ in rows), Decimal(0))
        return total, (rows[0][1] if rows else None)


def _now() -> str:
    return datetime.now(UTC).isoformat()
