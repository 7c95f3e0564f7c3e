"""Keep a simulated marketplace's state in a file, so `crowdloop simulator serve` survives
a restart with its pools, tasks, assignments (answers and reviews), qualifications, blocked
workers, counters and clock.

The snapshot stores what cannot be recomputed; everything derived (a task's live
assignments and tried workers, a pool's per-group workers, pending heap, visible list and
counts, the key indexes) is rebuilt on restore exactly as the state's own methods build it,
so cursors handed out before the restart stay valid after it. The crowd is rebuilt from the
stored config and seed (its answers are a pure function of them).

Writes are atomic: a temporary file in the same folder, fsynced, then `os.replace`, so a
crash leaves the previous snapshot or the new one, never half of one.

This module reads and writes `MarketplaceState` internals under the state's own lock; it is
the state's persistence half and lives apart only to keep the state module about behaviour.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import threading
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from crowdloop.models.domain import TaskPayload
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.state import (
    Assignment,
    MarketplaceState,
    Pool,
    Qualification,
    Task,
)

FORMAT = "crowdloop-simulator-state"
VERSION = 1

_PAYLOAD = TypeAdapter[Any](TaskPayload)


class StateFileError(RuntimeError):
    """The state file exists but cannot be used (unreadable, another format, wrong seed)."""


def snapshot(state: MarketplaceState) -> dict[str, Any]:
    """The state as JSON-ready data (consistent: taken under the state's lock)."""
    with state._lock:
        pools = [
            {
                "id": p.id,
                "name": p.name,
                "stage": p.stage,
                "instruction": p.instruction,
                "reward": str(p.reward),
                "currency": p.currency,
                "campaign_id": p.campaign_id,
                "idempotency_key": p.idempotency_key,
                "created_at": p.created_at.isoformat(),
                "required_qualification": p.required_qualification,
                "status": p.status,
                "tasks": [
                    {
                        "id": t.id,
                        "key": t.key,
                        "group": t.group,
                        "payload": _PAYLOAD.dump_python(t.payload, mode="json"),
                        "overlap": t.overlap,
                        "exclude": sorted(t.exclude),
                        "truth": t.truth,
                    }
                    for t in p.tasks.values()
                ],
            }
            for p in state._pools.values()
        ]
        assignments = [
            {
                "seq": a.seq,
                "id": a.id,
                "pool": a.task.pool.id,
                "task": a.task.key,
                "worker": a.worker_id,
                "submit_at": a.submit_at,
                "answer": a.answer,
                "status": a.status,
                "review": a.review,
                "review_comment": a.review_comment,
            }
            for a in state._assignments.values()
        ]
        qualifications = [
            {
                "id": q.id,
                "name": q.name,
                "created_at": q.created_at.isoformat(),
                "holders": sorted(q.holders),
            }
            for q in state._qualifications.values()
        ]
        with state.faults._lock:
            faults = {
                "config": state.faults.config.model_dump(mode="json"),
                "garbled": dict(state.faults._garbled),
                "injected": dict(state.faults.injected),
            }
        return {
            "config": state.config.model_dump(mode="json"),
            "clock": {"epoch": state.clock.epoch.isoformat(), "now": state.clock.now()},
            "pools": pools,
            "assignments": assignments,
            "qualifications": qualifications,
            "blocked": dict(state.blocked),
            "stats": dict(state.stats),
            "requests": dict(state.requests),
            "faults": faults,
            "task_count": state._task_count,
        }


def restore(data: dict[str, Any]) -> MarketplaceState:
    """A state rebuilt from `snapshot` data; its clock resumes where the snapshot's stopped."""
    state = MarketplaceState(SimulatorConfig.model_validate(data["config"]))
    state.clock.epoch = datetime.fromisoformat(data["clock"]["epoch"])
    state.clock.advance(float(data["clock"]["now"]))
    faults = data["faults"]
    state.faults.replace(state.faults.config.model_validate(faults["config"]))
    state.faults._garbled.update(faults["garbled"])
    state.faults.injected.update(faults["injected"])
    state.blocked.update(data["blocked"])
    state.stats = Counter(data["stats"])
    state.requests = Counter(data["requests"])
    state._task_count = int(data["task_count"])

    for q in data["qualifications"]:
        qualification = Qualification(
            id=q["id"],
            name=q["name"],
            created_at=datetime.fromisoformat(q["created_at"]),
            holders=set(q["holders"]),
        )
        state._qualifications[qualification.id] = qualification
        state._qualification_by_name[qualification.name] = qualification

    tasks: list[Task] = []
    for p in data["pools"]:
        pool = Pool(
            id=p["id"],
            name=p["name"],
            stage=p["stage"],
            instruction=p["instruction"],
            reward=Decimal(p["reward"]),
            currency=p["currency"],
            campaign_id=p["campaign_id"],
            idempotency_key=p["idempotency_key"],
            created_at=datetime.fromisoformat(p["created_at"]),
            required_qualification=p["required_qualification"],
            status=p["status"],
        )
        state._pools[pool.id] = pool
        state._pool_by_key[pool.idempotency_key] = pool
        for t in p["tasks"]:
            task = Task(
                id=t["id"],
                key=t["key"],
                group=t["group"],
                pool=pool,
                payload=_PAYLOAD.validate_python(t["payload"]),
                overlap=int(t["overlap"]),
                exclude=frozenset(t["exclude"]),
                truth=t["truth"],
            )
            pool.tasks[task.key] = task
            tasks.append(task)
    # The key index points at the first task created with a key, in creation order.
    for task in sorted(tasks, key=lambda t: t.id):
        state._task_by_key.setdefault(task.key, task)

    for a in sorted(data["assignments"], key=lambda a: int(a["seq"])):
        pool = state._pools[a["pool"]]
        task = pool.tasks[a["task"]]
        assignment = Assignment(
            seq=int(a["seq"]),
            id=a["id"],
            task=task,
            worker_id=a["worker"],
            submit_at=float(a["submit_at"]),
            answer=a["answer"],
            status=a["status"],
            review=a["review"],
            review_comment=a["review_comment"],
        )
        state._assignments[assignment.id] = assignment
        state._seq = max(state._seq, assignment.seq)
        task.tried.add(assignment.worker_id)
        pool.group_workers.setdefault(task.group, set()).add(assignment.worker_id)
        waiting = state._pending_by_worker.setdefault(assignment.worker_id, set())
        if assignment.review == "rejected":
            pool.rejected += 1
        if assignment.status == "cancelled":
            continue
        task.live.append(assignment)
        pool.live += 1
        if assignment.status == "pending":
            pool.pending.append((assignment.submit_at, assignment.seq, assignment))
            waiting.add(assignment)
        else:
            pool.visible.append(assignment)
    for pool in state._pools.values():
        heapq.heapify(pool.pending)
        pool.visible.sort(key=lambda a: (a.submit_at, a.seq))
        pool.visible_keys = [(a.submit_at, a.seq) for a in pool.visible]
    return state


class StateFile:
    """One simulator's state file: the marketplace snapshot and the token it serves with."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> tuple[MarketplaceState, str]:
        """The stored state and token; StateFileError if the file is not a state file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateFileError(f"cannot read simulator state {self.path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StateFileError(f"{self.path} is not a crowdloop simulator state file")
        if data.get("version") != VERSION:
            raise StateFileError(
                f"{self.path} has state format version {data.get('version')}, "
                f"this crowdloop reads version {VERSION}"
            )
        try:
            return restore(data["state"]), str(data["token"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"simulator state {self.path} is damaged: {exc!r}") from exc

    def save(self, state: MarketplaceState, token: str) -> None:
        """Write atomically; concurrent saves are serialised, so the last one is the newest."""
        with self._lock:
            body = json.dumps(
                {"format": FORMAT, "version": VERSION, "token": token, "state": snapshot(state)},
                separators=(",", ":"),
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o600)  # it holds the bearer token
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
