"""A marketplace whose "workers" are the judgments of a recorded crowd study.

Use it to run real crowd data through the whole pipeline (planning, push ledger, sync,
quality checks, aggregation, export) without a marketplace account, and to check that
nothing is lost or altered on the way. Options (no credentials):

    connector:
      name: replay
      options:
        comparisons: /path/to/crowd-comparisons.csv   # required
        pairs: /path/to/pairs-crowd.jsonl             # required
        page_limit: 1000          # submissions per page
        when_exhausted: quarantine  # or leave_open
        unmatched: error            # or expire

Matching. A published compare task shows a prompt and two responses; it is matched to the
recorded pair with the same (prompt text, left text, right text), or to the pair shown the
other way round, in which case each recorded left/right label is flipped so the answer
refers to what this task shows (ties stay ties). The match is made once per task group
(crowdloop's item id) and kept, so a re-queued item continues the same pair.

Identical texts. Some recorded pairs show the very same texts (two models gave the same
answer to a prompt). Content alone cannot say which of them a task is, so the connector
breaks such ties by `TaskItem.group`: it computes the item id crowdloop's planner gives
each candidate pair (`planned_item_id`, which holds when the campaign's candidates use
`response_id()`, as `crowdloop.demo.llmfao` writes them). Without a match it falls back to
the first unclaimed candidate in recorded order and counts it in `stats["ambiguous_fallbacks"]`.

Serving. When a task is published, the pair's recorded judgments are handed out in
recorded order (the comparisons file's row order), up to the task's overlap, skipping
judgments of blocked workers (they are consumed: a blocked worker's answers are never
served) and of workers the task excludes. Worker ids are the recorded ones. When the pair
has fewer judgments left than the overlap asks for, each missing assignment comes back as
a *quarantined* submission with the reason "replay: recorded judgments exhausted"
(`when_exhausted: quarantine`, the default): the connector contract has no way to say
"nobody will ever answer this", and a quarantined answer is what stops the flows waiting.
Set the campaign's `quality.max_requeue_rounds: 0`, or every re-queue just adds more of
them. `when_exhausted: leave_open` leaves them outstanding (a marketplace where nobody
picks the task up; the flows then wait until `stage_timeout_s`).

State. A real marketplace outlives the short-lived connector objects a flow opens per
task, so the replay's state (batches, tasks, served judgments, blocks, reviews) lives in a
module-level registry keyed by the two resolved data paths and is shared by every
`ReplayConnector` built for them in this process. It is not persisted: a campaign must
run to completion in one process (a rerun in a new process should use a new campaign
name). `reset_replay_state()` forgets everything (tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel

from crowdloop.connectors.answers import quarantined
from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import InvalidRequest, NotFound
from crowdloop.connectors.replay.models import (
    FLIP,
    RecordedPair,
    Recording,
    load_recording,
    response_id,
)
from crowdloop.connectors.replay.options import CONNECTOR_NAME, PAGE_LIMIT, ReplayOptions
from crowdloop.ids import compare_item_id, digest
from crowdloop.models.domain import (
    AddItemsResult,
    BatchRef,
    BatchSpec,
    BatchState,
    BatchStatus,
    BlockScope,
    Capability,
    CompareTask,
    FeeModel,
    PreferenceAnswer,
    Quarantined,
    ReviewDecision,
    Submission,
    SubmissionPage,
    TaskItem,
)

EXHAUSTED_REASON = "replay: recorded judgments exhausted"
UNMATCHED_REASON = "replay: no recorded pair shows this prompt and these responses"

WhenExhausted = Literal["quarantine", "leave_open"]
Unmatched = Literal["error", "expire"]


def planned_item_id(campaign_id: str, pair: RecordedPair) -> str:
    """The id crowdloop's planner gives this pair's compare item (its `TaskItem.group`).

    The planner's own `compare_item_id`, with response ids from `response_id()`. Only used
    to tell apart recorded pairs whose texts are identical.
    """
    return compare_item_id(
        campaign_id,
        pair.prompt,
        response_id(pair.prompt, pair.model_x),
        response_id(pair.prompt, pair.model_y),
    )


@dataclass
class _Task:
    id: str
    key: str
    group: str
    pair: str | None  # None: unmatched (expired)
    flipped: bool
    overlap: int


@dataclass
class _Batch:
    id: str
    idempotency_key: str
    campaign_id: str
    name: str
    started: bool = False
    stopped: bool = False
    tasks: dict[str, _Task] = field(default_factory=dict)  # by our task key
    groups: dict[str, tuple[str, bool]] = field(default_factory=dict)  # group -> pair, flipped
    claimed: dict[str, str] = field(default_factory=dict)  # pair id -> group
    next_judgment: dict[str, int] = field(default_factory=dict)  # pair id -> index
    log: list[Submission | Quarantined] = field(default_factory=list)  # submission order
    assignments_total: int = 0


class ReplayMarket:
    """The process-wide state of one recording's marketplace (see the module doc)."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.lock = threading.RLock()
        self.batches: dict[str, _Batch] = {}
        self.batch_by_key: dict[str, str] = {}
        self.blocked: dict[str, tuple[BlockScope, str]] = {}
        self.reviews: dict[str, bool] = {}
        self.stats: dict[str, int] = {
            "batches_created": 0,
            "batch_create_replays": 0,
            "tasks_created": 0,
            "task_create_replays": 0,
            "judgments_served": 0,
            "exhausted_assignments": 0,
            "unmatched_tasks": 0,
            "flipped_tasks": 0,
            "ambiguous_matches": 0,
            "ambiguous_fallbacks": 0,
            "blocked_skipped": 0,
            "reviews": 0,
        }


_MARKETS: dict[tuple[str, str], ReplayMarket] = {}
_MARKETS_LOCK = threading.Lock()


def market_for(comparisons: Path, pairs: Path) -> ReplayMarket:
    """The shared market for these data files, loading them on first use."""
    key = (str(comparisons.resolve()), str(pairs.resolve()))
    with _MARKETS_LOCK:
        market = _MARKETS.get(key)
        if market is None:
            market = ReplayMarket(load_recording(comparisons, pairs))
            _MARKETS[key] = market
        return market


def reset_replay_state() -> None:
    """Forget every replay market of this process (their batches, tasks and blocks)."""
    with _MARKETS_LOCK:
        _MARKETS.clear()


class ReplayConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = ReplayOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.PAIRWISE,
            Capability.BLOCK_WORKER,
            Capability.REVIEW,
            Capability.IDEMPOTENT_CREATE,
        }
    )
    # A recorded study is played back: nothing is paid, no fee is charged.
    fee: ClassVar[FeeModel | None] = FeeModel(rate=Decimal(0), source="recorded data, no payments")
    max_items_per_call: ClassVar[int] = 500

    def __init__(
        self,
        market: ReplayMarket,
        *,
        page_limit: int = PAGE_LIMIT,
        when_exhausted: WhenExhausted = "quarantine",
        unmatched: Unmatched = "error",
    ) -> None:
        if page_limit < 1:
            raise ValueError("page_limit must be >= 1")
        self.market = market
        self.page_limit = page_limit
        self.when_exhausted = when_exhausted
        self.unmatched = unmatched

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        from pydantic import ValidationError

        try:
            opts = ReplayOptions.model_validate(dict(options))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(CONNECTOR_NAME, f"option {where!r}: {first['msg']}") from exc
        paths = {"comparisons": opts.comparisons.expanduser(), "pairs": opts.pairs.expanduser()}
        for k, p in paths.items():
            if not p.is_file():
                raise InvalidRequest(CONNECTOR_NAME, f"option {k!r}: {p} is not a file")
        return cls(
            market_for(paths["comparisons"], paths["pairs"]),
            page_limit=opts.page_limit,
            when_exhausted=opts.when_exhausted,
            unmatched=opts.unmatched,
        )

    @property
    def stats(self) -> dict[str, int]:
        with self.market.lock:
            return dict(self.market.stats)

    # --- creates (keyed) -----------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        m = self.market
        with m.lock:
            existing = m.batch_by_key.get(idempotency_key)
            if existing is not None:
                m.stats["batch_create_replays"] += 1
                return self.batch_ref(existing)
            batch = _Batch(
                id=f"replay-{digest(idempotency_key)}",
                idempotency_key=idempotency_key,
                campaign_id=spec.campaign_id,
                name=spec.name,
            )
            m.batches[batch.id] = batch
            m.batch_by_key[idempotency_key] = batch.id
            m.stats["batches_created"] += 1
            return self.batch_ref(batch.id)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        with self.market.lock:
            found = self.market.batch_by_key.get(idempotency_key)
            return self.batch_ref(found) if found else None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        # Tasks are deduplicated by their own keys, so replaying a call (same key, same or
        # fewer tasks) creates nothing; the call key itself adds nothing to that.
        m = self.market
        with m.lock:
            b = self._batch(batch)
            if b.stopped:
                raise InvalidRequest(self.name, f"batch {b.id} is stopped")
            for item in items:
                if not isinstance(item.payload, CompareTask):
                    raise InvalidRequest(
                        self.name, f"task {item.key}: only compare tasks can be replayed"
                    )
            # Validate every task before publishing any: a refused call creates nothing.
            matches = {}
            for item in items:
                if item.key not in b.tasks:
                    matches[item.key] = self._match(b, item)
            ids: dict[str, str] = {}
            for item in items:
                task = b.tasks.get(item.key)
                if task is None:
                    task = self._publish(b, item, matches[item.key])
                else:
                    m.stats["task_create_replays"] += 1
                ids[item.key] = task.id
            return AddItemsResult(external_ids=ids)

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        with self.market.lock:
            b = self._batch(batch)
            return {k: b.tasks[k].id for k in task_keys if k in b.tasks}

    # --- batch control -------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        with self.market.lock:
            self._batch(batch).started = True

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        with self.market.lock:
            self._batch(batch).stopped = True

    def get_status(self, batch: BatchRef) -> BatchStatus:
        with self.market.lock:
            b = self._batch(batch)
            return BatchStatus(
                state=BatchState.OPEN if b.started and not b.stopped else BatchState.CLOSED,
                tasks=len(b.tasks),
                assignments_total=b.assignments_total,
                assignments_submitted=len(b.log) if b.started else 0,
            )

    # --- results -------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        """Pages of the batch's submission log after `cursor` (a log offset, as text)."""
        with self.market.lock:
            b = self._batch(batch)
            start = self._offset(cursor, len(b.log))
            # A draft (unstarted) batch hands out nothing yet, like a real marketplace.
            log = list(b.log) if b.started else []
        if start >= len(log):
            yield SubmissionPage(submissions=(), cursor=cursor, has_more=False)
            return
        while start < len(log):
            end = min(start + self.page_limit, len(log))
            chunk = log[start:end]
            yield SubmissionPage(
                submissions=tuple(s for s in chunk if isinstance(s, Submission)),
                quarantined=tuple(s for s in chunk if isinstance(s, Quarantined)),
                cursor=str(end),
                has_more=end < len(log),
            )
            start = end

    # --- money and workers ---------------------------------------------------------------

    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        """Recorded only (nobody is paid); a repeated decision is a no-op."""
        with self.market.lock:
            self._batch(batch)
            for d in decisions:
                before = self.market.reviews.get(d.submission_id)
                if before is not None and before != d.accept:
                    raise InvalidRequest(
                        self.name, f"submission {d.submission_id} was already reviewed otherwise"
                    )
                if before is None:
                    self.market.reviews[d.submission_id] = d.accept
                    self.market.stats["reviews"] += 1

    def block_worker(self, worker_id: str, *, scope: BlockScope, reason: str) -> None:
        """Recorded for every batch of this market; the worker's unserved answers are dropped."""
        with self.market.lock:
            self.market.blocked.setdefault(worker_id, (scope, reason))

    def spend(self, batch: BatchRef) -> None:
        return None

    # --- internals -----------------------------------------------------------------------

    def _batch(self, ref: BatchRef) -> _Batch:
        b = self.market.batches.get(ref.external_id)
        if b is None:
            raise NotFound(
                self.name,
                f"no batch {ref.external_id!r} in this process (replay state is in-memory; "
                "rerun under a new campaign name)",
            )
        return b

    def _offset(self, cursor: str | None, size: int) -> int:
        if cursor is None:
            return 0
        try:
            offset = int(cursor)
        except ValueError:
            offset = -1
        if not 0 <= offset <= size:
            raise InvalidRequest(self.name, f"bad cursor {cursor!r}")
        return offset

    def _match(self, b: _Batch, item: TaskItem) -> tuple[str, bool] | None:
        """(pair id, flipped) this task replays, or None when nothing recorded matches."""
        known = b.groups.get(item.group)
        if known is not None:
            return known
        payload = item.payload
        assert isinstance(payload, CompareTask)
        found = self.market.recording.by_content.get(
            (payload.prompt, payload.left, payload.right), ()
        )
        free = [(pid, flipped) for pid, flipped in found if pid not in b.claimed]
        if len(found) > 1:
            self.market.stats["ambiguous_matches"] += 1
            pairs = self.market.recording.pairs
            by_id = [c for c in free if planned_item_id(b.campaign_id, pairs[c[0]]) == item.group]
            if by_id:
                return by_id[0]
            if free:
                self.market.stats["ambiguous_fallbacks"] += 1
        if free:
            return free[0]
        if self.unmatched == "error":
            raise InvalidRequest(
                self.name,
                f"task {item.key}: {UNMATCHED_REASON}"
                + (" (its pairs are already claimed by other tasks)" if found else ""),
            )
        return None

    def _publish(self, b: _Batch, item: TaskItem, match: tuple[str, bool] | None) -> _Task:
        m = self.market
        task = _Task(
            id=f"{b.id}-t{len(b.tasks) + 1:06d}",
            key=item.key,
            group=item.group,
            pair=match[0] if match else None,
            flipped=match[1] if match else False,
            overlap=item.overlap,
        )
        b.tasks[item.key] = task
        b.assignments_total += item.overlap
        m.stats["tasks_created"] += 1
        if match is None:
            m.stats["unmatched_tasks"] += 1
            self._expire(b, task, item.overlap, UNMATCHED_REASON)
            return task
        pair_id, flipped = match
        b.groups[item.group] = match
        b.claimed[pair_id] = item.group
        m.stats["flipped_tasks"] += int(flipped)
        recorded = m.recording.judgments.get(pair_id, ())
        excluded = set(item.exclude_workers)
        served = 0
        at = b.next_judgment.get(pair_id, 0)
        while served < item.overlap and at < len(recorded):
            judgment = recorded[at]
            at += 1
            if judgment.worker in m.blocked:
                m.stats["blocked_skipped"] += 1
                continue
            if judgment.worker in excluded:
                continue
            choice = FLIP[judgment.winner] if flipped else judgment.winner
            b.log.append(
                Submission(
                    external_id=f"{b.id}:{item.key}:{judgment.worker}",
                    task_key=item.key,
                    worker_id=judgment.worker,
                    answer=PreferenceAnswer(choice=choice),
                    submitted_at=datetime.now(UTC),
                )
            )
            served += 1
        b.next_judgment[pair_id] = at
        m.stats["judgments_served"] += served
        if served < item.overlap and self.when_exhausted == "quarantine":
            self._expire(b, task, item.overlap - served, EXHAUSTED_REASON)
        return task

    def _expire(self, b: _Batch, task: _Task, count: int, reason: str) -> None:
        """Close `count` assignments of the task as quarantined: no answer will ever come."""
        for n in range(count):
            raw = {"task_key": task.key, "pair": task.pair, "assignment": n, "reason": reason}
            b.log.append(
                quarantined(f"{b.id}:{task.key}:expired-{n}", reason, raw, task_key=task.key)
            )
        self.market.stats["exhausted_assignments"] += count
