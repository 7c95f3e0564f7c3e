"""In-memory state of the simulated marketplace: pools, tasks, assignments, workers.

One lock guards everything; every public method takes it and reads the simulated clock
inside it, so "now" only moves forward between operations. That ordering is what makes
cursors safe: a new assignment is always due strictly after any "now" already observed,
so it sorts after every cursor handed out and appears on a later page, never behind one.

Assignments wait in a per-pool heap until their submit time passes, then move, in
(submit time, sequence) order, to an append-only visible list that pages are sliced
from with bisect.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from crowdloop.models.domain import TaskPayload
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.crowd import Crowd, Payload, Truth, Worker, truth_of
from crowdloop.simulator.faults import FaultInjector

PoolStatus = Literal["draft", "open", "closed"]
AssignmentStatus = Literal["pending", "submitted", "cancelled"]
ReviewStatus = Literal["accepted", "rejected"]


class SimError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(SimError):
    status_code = 404
    code = "not_found"


class ConflictError(SimError):
    status_code = 409
    code = "conflict"


class InvalidInput(SimError):
    status_code = 422
    code = "invalid"


class Clock:
    """Simulated seconds since start: real elapsed time × scale, plus manual advances."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self.epoch = datetime.now(UTC)
        self._start = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.time_scale + self._offset

    def advance(self, sim_seconds: float) -> None:
        if sim_seconds < 0:
            raise InvalidInput("the clock only moves forward")
        self._offset += sim_seconds

    def to_datetime(self, sim_seconds: float) -> datetime:
        return self.epoch + timedelta(seconds=sim_seconds)


class _TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=500)
    group: str = Field(min_length=1, max_length=500)
    payload: TaskPayload
    overlap: int = Field(ge=1, le=100)
    exclude_workers: list[str] = Field(default_factory=list)


_TASK_IN = TypeAdapter(_TaskIn)


@dataclass(eq=False)
class Assignment:
    seq: int
    id: str
    task: Task
    worker_id: str
    submit_at: float
    answer: dict[str, Any]
    status: AssignmentStatus = "pending"
    review: ReviewStatus | None = None
    review_comment: str = ""


@dataclass(eq=False)
class Task:
    id: str
    key: str
    group: str
    pool: Pool
    payload: Payload
    overlap: int
    exclude: frozenset[str]
    truth: Truth
    live: list[Assignment] = field(default_factory=list)  # pending or submitted
    tried: set[str] = field(default_factory=set)  # every worker ever assigned


@dataclass(eq=False)
class Qualification:
    id: str
    name: str
    created_at: datetime
    holders: set[str] = field(default_factory=set)


@dataclass(eq=False)
class Pool:
    id: str
    name: str
    stage: str
    instruction: str
    reward: Decimal
    currency: str
    campaign_id: str
    idempotency_key: str
    created_at: datetime
    # Only holders of this qualification (an id) are offered the pool's tasks.
    required_qualification: str | None = None
    status: PoolStatus = "draft"
    tasks: dict[str, Task] = field(default_factory=dict)
    group_workers: dict[str, set[str]] = field(default_factory=dict)
    pending: list[tuple[float, int, Assignment]] = field(default_factory=list)  # heap
    visible: list[Assignment] = field(default_factory=list)
    visible_keys: list[tuple[float, int]] = field(default_factory=list)
    live: int = 0
    rejected: int = 0


def encode_cursor(submit_at: float, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{submit_at!r}|{seq}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        at, seq = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return float(at), int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid cursor {cursor!r}") from exc


class MarketplaceState:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.crowd = Crowd(config.crowd, config.seed)
        self.clock = Clock(config.time_scale)
        self.faults = FaultInjector(config.faults)
        self.blocked: dict[str, str] = {}  # worker id -> reason
        self.stats: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pools: dict[str, Pool] = {}
        self._pool_by_key: dict[str, Pool] = {}
        self._task_by_key: dict[str, Task] = {}  # first task created with a key, any pool
        self._assignments: dict[str, Assignment] = {}
        self._pending_by_worker: dict[str, set[Assignment]] = {}
        self._qualifications: dict[str, Qualification] = {}
        self._qualification_by_name: dict[str, Qualification] = {}
        self._seq = 0
        self._task_count = 0

    # --- pools -------------------------------------------------------------------------

    def create_pool(
        self,
        *,
        name: str,
        stage: str,
        instruction: str,
        reward: Decimal,
        currency: str,
        campaign_id: str,
        idempotency_key: str,
        required_qualification: str | None = None,
    ) -> tuple[Pool, bool]:
        """The pool for this key, and whether this call created it."""
        with self._lock:
            existing = self._pool_by_key.get(idempotency_key)
            if existing is not None:
                self.stats["pool_create_replays"] += 1
                return existing, False
            if (
                required_qualification is not None
                and required_qualification not in self._qualifications
            ):
                raise InvalidInput(f"unknown qualification {required_qualification!r}")
            pool = Pool(
                id=f"{self.config.id_prefix}pool-{len(self._pools) + 1:04d}",
                name=name,
                stage=stage,
                instruction=instruction,
                reward=reward,
                currency=currency,
                campaign_id=campaign_id,
                idempotency_key=idempotency_key,
                created_at=self.clock.to_datetime(self.clock.now()),
                required_qualification=required_qualification,
            )
            self._pools[pool.id] = pool
            self._pool_by_key[idempotency_key] = pool
            self.stats["pools_created"] += 1
            return pool, True

    def find_pools(self, idempotency_key: str) -> list[Pool]:
        with self._lock:
            pool = self._pool_by_key.get(idempotency_key)
            return [pool] if pool else []

    def pool_summary(self, pool_id: str) -> dict[str, Any]:
        with self._lock:
            pool = self._pool(pool_id)
            self._promote(pool, self.clock.now())
            return {
                "id": pool.id,
                "name": pool.name,
                "status": pool.status,
                "tasks": len(pool.tasks),
                "assignments_total": pool.live,
                "assignments_submitted": len(pool.visible),
            }

    def open_pool(self, pool_id: str) -> Pool:
        with self._lock:
            pool = self._pool(pool_id)
            if pool.status != "open":
                pool.status = "open"
                now = self.clock.now()
                for task in pool.tasks.values():
                    self._fill(task, now)
            return pool

    def close_pool(self, pool_id: str) -> Pool:
        """Stop handing out the pool's tasks; work already taken is still submitted."""
        with self._lock:
            pool = self._pool(pool_id)
            pool.status = "closed"
            return pool

    def spend(self, pool_id: str) -> tuple[Decimal, str]:
        with self._lock:
            pool = self._pool(pool_id)
            self._promote(pool, self.clock.now())
            return pool.reward * (len(pool.visible) - pool.rejected), pool.currency

    # --- tasks -------------------------------------------------------------------------

    @staticmethod
    def validate_tasks(raw_tasks: list[Any]) -> list[_TaskIn]:
        """Parse a request's tasks; the first bad one fails the whole request (nothing added)."""
        parsed: list[_TaskIn] = []
        for index, raw in enumerate(raw_tasks):
            key = raw.get("key") if isinstance(raw, dict) else None
            label = f"task {key!r}" if isinstance(key, str) else f"task #{index}"
            try:
                parsed.append(_TASK_IN.validate_python(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "task"
                raise InvalidInput(f"{label}: {where}: {first['msg']}") from exc
        return parsed

    def add_tasks(self, pool_id: str, tasks: list[_TaskIn]) -> list[tuple[Task, bool]]:
        """Add tasks by key: a key already in the pool returns its task and creates nothing."""
        with self._lock:
            pool = self._pool(pool_id)
            now = self.clock.now()
            result: list[tuple[Task, bool]] = []
            for item in tasks:
                existing = pool.tasks.get(item.key)
                if existing is not None:
                    self.stats["duplicate_task_creates_avoided"] += 1
                    result.append((existing, False))
                    continue
                self._task_count += 1
                task = Task(
                    id=f"{self.config.id_prefix}task-{self._task_count:07d}",
                    key=item.key,
                    group=item.group,
                    pool=pool,
                    payload=item.payload,
                    overlap=item.overlap,
                    exclude=frozenset(item.exclude_workers),
                    truth=truth_of(item.payload),
                )
                pool.tasks[task.key] = task
                self._task_by_key.setdefault(task.key, task)
                self.stats["tasks_created"] += 1
                if pool.status == "open":
                    self._fill(task, now)
                result.append((task, True))
            return result

    def find_tasks(self, pool_id: str, keys: list[str]) -> list[Task]:
        with self._lock:
            pool = self._pool(pool_id)
            return [pool.tasks[k] for k in keys if k in pool.tasks]

    # --- assignments ---------------------------------------------------------------------

    def list_assignments(
        self, pool_id: str, cursor: str | None, limit: int
    ) -> tuple[list[Assignment], str | None, bool]:
        """Submitted assignments after `cursor` in (submit time, sequence) order."""
        after = decode_cursor(cursor) if cursor else None
        with self._lock:
            pool = self._pool(pool_id)
            self._promote(pool, self.clock.now())
            start = bisect.bisect_right(pool.visible_keys, after) if after else 0
            items = pool.visible[start : start + limit]
            has_more = start + len(items) < len(pool.visible)
            next_cursor = encode_cursor(items[-1].submit_at, items[-1].seq) if items else cursor
            return items, next_cursor, has_more

    def review(self, decisions: list[tuple[str, ReviewStatus, str]]) -> int:
        """Apply all decisions or none; returns how many changed anything."""
        with self._lock:
            now = self.clock.now()
            wanted: dict[str, ReviewStatus] = {}
            for assignment_id, status, _ in decisions:
                assignment = self._assignments.get(assignment_id)
                if assignment is None or assignment.status == "cancelled":
                    raise NotFoundError(f"assignment {assignment_id!r} not found")
                self._promote(assignment.task.pool, now)
                if assignment.status != "submitted":
                    raise ConflictError(f"assignment {assignment_id!r} is not submitted yet")
                current = wanted.get(assignment_id, assignment.review)
                if current is not None and current != status:
                    raise ConflictError(
                        f"assignment {assignment_id!r} is already {current}, not {status}"
                    )
                wanted[assignment_id] = status
            changed = 0
            for assignment_id, status, comment in decisions:
                assignment = self._assignments[assignment_id]
                if assignment.review is None:
                    assignment.review = status
                    assignment.review_comment = comment
                    if status == "rejected":
                        assignment.task.pool.rejected += 1
                    changed += 1
            self.stats["reviews_applied"] += changed
            return changed

    # --- workers -------------------------------------------------------------------------

    def workers(self) -> list[tuple[Worker, bool]]:
        with self._lock:
            return [(w, w.id in self.blocked) for w in self.crowd.workers]

    def block_worker(self, worker_id: str, reason: str) -> int:
        """Block a worker and hand their unsubmitted work to others; returns how many moved."""
        with self._lock:
            if worker_id not in self.crowd.by_id:
                raise NotFoundError(f"worker {worker_id!r} not found")
            if worker_id in self.blocked:
                return 0
            self.blocked[worker_id] = reason
            self.stats["workers_blocked"] += 1
            now = self.clock.now()
            moved = 0
            for assignment in sorted(self._pending_by_worker.get(worker_id, ()), key=_by_seq):
                self._promote(assignment.task.pool, now)
                if assignment.status != "pending":
                    continue
                self._cancel(assignment)
                if assignment.task.pool.status == "open":
                    moved += self._fill(assignment.task, now)
            self.stats["assignments_reassigned"] += moved
            return moved

    # --- qualifications --------------------------------------------------------------------

    def create_qualification(self, name: str) -> tuple[Qualification, bool]:
        """The qualification with this name, and whether this call created it."""
        with self._lock:
            existing = self._qualification_by_name.get(name)
            if existing is not None:
                return existing, False
            qualification = Qualification(
                id=f"qual-{len(self._qualifications) + 1:04d}",
                name=name,
                created_at=self.clock.to_datetime(self.clock.now()),
            )
            self._qualifications[qualification.id] = qualification
            self._qualification_by_name[name] = qualification
            return qualification, True

    def find_qualifications(self, name: str) -> list[Qualification]:
        with self._lock:
            found = self._qualification_by_name.get(name)
            return [found] if found else []

    def grant_qualification(self, qualification_id: str, worker_id: str) -> tuple[bool, int]:
        """Grant (idempotent): whether it was new, and how many waiting tasks the worker got.

        A new holder is offered at once the unfilled tasks of open pools that require the
        qualification, as a marketplace shows a newly qualified worker the pools they now
        pass the filter of.
        """
        with self._lock:
            qualification = self._qualifications.get(qualification_id)
            if qualification is None:
                raise NotFoundError(f"qualification {qualification_id!r} not found")
            if worker_id not in self.crowd.by_id:
                raise NotFoundError(f"worker {worker_id!r} not found")
            if worker_id in qualification.holders:
                self.stats["qualification_grant_replays"] += 1
                return False, 0
            qualification.holders.add(worker_id)
            self.stats["qualifications_granted"] += 1
            now = self.clock.now()
            assigned = 0
            for pool in self._pools.values():
                if pool.status != "open" or pool.required_qualification != qualification_id:
                    continue
                for task in pool.tasks.values():
                    if len(task.live) < task.overlap:
                        assigned += self._fill(task, now)
            return True, assigned

    def worker_qualifications(self) -> dict[str, list[str]]:
        """worker id -> names of the qualifications they hold (workers holding any)."""
        with self._lock:
            out: dict[str, list[str]] = {}
            for q in sorted(self._qualifications.values(), key=lambda q: q.name):
                for worker_id in q.holders:
                    out.setdefault(worker_id, []).append(q.name)
            return out

    # --- admin ---------------------------------------------------------------------------

    def truth(self, keys: list[str]) -> dict[str, Truth]:
        with self._lock:
            return {k: self._task_by_key[k].truth for k in keys if k in self._task_by_key}

    def advance_clock(self, sim_seconds: float) -> float:
        with self._lock:
            self.clock.advance(sim_seconds)
            return self.clock.now()

    def now(self) -> float:
        with self._lock:
            return self.clock.now()

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def snapshot_stats(self) -> dict[str, Any]:
        with self._lock:
            per_group: Counter[tuple[str, str, str]] = Counter()
            for pool in self._pools.values():
                for task in pool.tasks.values():
                    for assignment in task.live:
                        per_group[(pool.id, task.group, assignment.worker_id)] += 1
            return {
                "pools_created": self.stats["pools_created"],
                "pool_create_replays": self.stats["pool_create_replays"],
                "tasks_created": self.stats["tasks_created"],
                "duplicate_task_creates_avoided": self.stats["duplicate_task_creates_avoided"],
                "assignments_created": self.stats["assignments_created"],
                "assignments_reassigned": self.stats["assignments_reassigned"],
                "reviews_applied": self.stats["reviews_applied"],
                "workers_blocked": self.stats["workers_blocked"],
                "qualifications_granted": self.stats["qualifications_granted"],
                "qualification_grant_replays": self.stats["qualification_grant_replays"],
                "group_worker_duplicates": sum(n - 1 for n in per_group.values() if n > 1),
                "requests": dict(self.requests),
                "faults_injected": dict(self.faults.injected),
            }

    # --- internals (lock held) -----------------------------------------------------------

    def _pool(self, pool_id: str) -> Pool:
        pool = self._pools.get(pool_id)
        if pool is None:
            raise NotFoundError(f"pool {pool_id!r} not found")
        return pool

    def _promote(self, pool: Pool, now: float) -> None:
        """Move every assignment due by `now` from the heap to the visible list."""
        heap = pool.pending
        while heap and heap[0][0] <= now:
            _, _, assignment = heapq.heappop(heap)
            if assignment.status != "pending":
                continue  # cancelled while waiting
            assignment.status = "submitted"
            pool.visible.append(assignment)
            pool.visible_keys.append((assignment.submit_at, assignment.seq))
            self._pending_by_worker[assignment.worker_id].discard(assignment)

    def _fill(self, task: Task, now: float) -> int:
        """Assign workers until the task has `overlap` live assignments (or nobody is left)."""
        needed = task.overlap - len(task.live)
        if needed <= 0:
            return 0
        pool = task.pool
        taken = pool.group_workers.setdefault(task.group, set())
        holders = (
            self._qualifications[pool.required_qualification].holders
            if pool.required_qualification is not None
            else None
        )
        added = 0
        for worker_id in self.crowd.permutation(task.key):
            if (
                worker_id in task.tried
                or worker_id in taken
                or worker_id in task.exclude
                or worker_id in self.blocked
                or (holders is not None and worker_id not in holders)
            ):
                continue
            self._assign(task, self.crowd.by_id[worker_id], now)
            taken.add(worker_id)
            added += 1
            if added == needed:
                break
        return added

    def _assign(self, task: Task, worker: Worker, now: float) -> None:
        self._seq += 1
        # A zero delay would let an assignment land at exactly "now", i.e. possibly at a
        # cursor already handed out; keep it strictly in the future.
        delay, answer = self.crowd.work(worker, task.key, task.payload, task.truth, now)
        assignment = Assignment(
            seq=self._seq,
            id=f"{self.config.id_prefix}asg-{self._seq:08d}",
            task=task,
            worker_id=worker.id,
            submit_at=now + max(delay, 1e-6),
            answer=answer,
        )
        task.live.append(assignment)
        task.tried.add(worker.id)
        task.pool.live += 1
        heapq.heappush(task.pool.pending, (assignment.submit_at, assignment.seq, assignment))
        self._pending_by_worker.setdefault(worker.id, set()).add(assignment)
        self._assignments[assignment.id] = assignment
        self.stats["assignments_created"] += 1

    def _cancel(self, assignment: Assignment) -> None:
        assignment.status = "cancelled"
        task = assignment.task
        task.live.remove(assignment)
        task.pool.live -= 1
        self._pending_by_worker[assignment.worker_id].discard(assignment)
        # The worker stays in the group's set: a blocked worker gets nothing new anyway.


def _by_seq(assignment: Assignment) -> int:
    return assignment.seq
