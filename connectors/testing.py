"""The connector contract suite, shipped with crowdloop so that a connector written in
another package is held to the same promises as the built-in ones.

What every connector promises the flows: keyed creates that a replay cannot duplicate,
submissions that page to the end and resume from a saved cursor without gaps or repeats,
rate limits waited out, auth failures reported at once and by name, a create that
happened behind a 5xx reconciled instead of repeated, capabilities that say what the
connector really does, stop/pause/resume as declared, and a read-only first-contact check.

Use it from a test module (pytest; see docs/connectors.md for a complete example):

    from crowdloop.connectors.testing import ConnectorContract, Harness

    class MyHarness(Harness): ...          # builds the connector against your fake

    class TestMyConnector(ConnectorContract):
        def make_harness(self) -> Harness:
            return MyHarness()

A `Harness` is one marketplace as the suite sees it: it builds the connector, makes the
marketplace's workers answer, and counts what exists there. Faults are injected below the
connector, at the httpx transport: a `FaultTransport` wraps whatever transport reaches the
marketplace (a live loopback server, or a respx router / `httpx.MockTransport` standing in
for a vendor), so the connector's own client, retry policy and error mapping are what get
exercised. This module needs pytest (crowdloop's `test` extra); nothing else imports it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

import httpx
import pytest

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import AuthError, NotSupported, TransientError
from crowdloop.models.domain import (
    AddItemsResult,
    BatchRef,
    BatchSpec,
    BatchState,
    BlockScope,
    Capability,
    CompareTask,
    Money,
    PreferenceAnswer,
    RankingAnswer,
    RankTask,
    RatedAspect,
    RateTask,
    RatingAnswer,
    ReviewDecision,
    Stage,
    Submission,
    SubmissionPage,
    TaskItem,
    WriteResponseTask,
)

__all__ = [
    "RETRY_AFTER_S",
    "ConnectorContract",
    "Fault",
    "FaultTransport",
    "Harness",
    "Op",
    "Route",
    "Wrap",
]

RETRY_AFTER_S = 3


class Op(StrEnum):
    """The HTTP calls behind the contract's operations that faults are aimed at."""

    CREATE_BATCH = "create_batch"
    ADD_ITEMS = "add_items"
    LIST_SUBMISSIONS = "list_submissions"


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After, request not processed
    UNAUTHORIZED = "unauthorized"  # 401, request not processed
    SERVER_ERROR_AFTER = "server_error_after"  # processed by the marketplace, then a 500


Wrap = Callable[[httpx.BaseTransport], httpx.BaseTransport]


@dataclass
class Route:
    method: str
    path: str  # regular expression searched in the URL path

    def matches(self, request: httpx.Request) -> bool:
        return request.method == self.method and re.search(self.path, request.url.path) is not None


@dataclass
class FaultTransport(httpx.BaseTransport):
    inner: httpx.BaseTransport
    routes: Mapping[Op, Route]
    armed: list[tuple[Op, Fault]] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request

    def arm(self, op: Op, fault: Fault, times: int = 1) -> None:
        self.armed.extend([(op, fault)] * times)

    def calls(self, op: Op) -> int:
        route = self.routes[op]
        return sum(
            1
            for method, path in self.seen
            if method == route.method and re.search(route.path, path) is not None
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        for index, (op, fault) in enumerate(self.armed):
            if self.routes[op].matches(request):
                del self.armed[index]
                return self._inject(fault, request)
        return self.inner.handle_request(request)

    def _inject(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault is Fault.RATE_LIMIT:
            return httpx.Response(
                429,
                headers={"Retry-After": str(RETRY_AFTER_S)},
                json={"error": "rate limited (injected)"},
                request=request,
            )
        if fault is Fault.UNAUTHORIZED:
            return httpx.Response(401, json={"error": "bad token (injected)"}, request=request)
        processed = self.inner.handle_request(request)
        processed.read()
        processed.close()
        return httpx.Response(500, json={"error": "internal (injected)"}, request=request)

    def close(self) -> None:
        self.inner.close()


def compare_items(
    n: int,
    *,
    key_prefix: str = "",
    prefix: str = "item",
    overlap: int = 2,
    instruction: str = "Which answer is better?",
) -> list[TaskItem]:
    """`n` pairwise items keyed `{key_prefix}{prefix}-{i}.0`: what a connector's own tests
    and the contract suite push (their texts end in `({i})`, so a payload names its item)."""
    return [
        TaskItem(
            key=f"{key_prefix}{prefix}-{i}.0",
            group=f"{prefix}-{i}",
            payload=CompareTask(
                instruction=instruction,
                prompt=f"Top 5 rivers ({i})",
                left=f"Nile, Amazon ({i})",
                right=f"Danube, Rhine ({i})",
            ),
            overlap=overlap,
        )
        for i in range(n)
    ]


class Harness(ABC):
    """One marketplace as the contract suite sees it.

    `connector(wrap)` must build the connector the way `from_config` would, except that
    its HTTP client's transport is `wrap(<the transport that reaches the marketplace>)`,
    its retry sleeps are appended to `self.sleeps` instead of slept, and its page size is
    small enough that `answer()`'s submissions span at least two pages.
    """

    name: str
    # The HTTP call behind each `Op` (method and a path regex), where faults are aimed.
    routes: ClassVar[Mapping[Op, Route]]
    # False for a marketplace with no HTTP underneath (replay): fault tests do not apply.
    http: bool = True
    # False where the platform cannot list a batch's tasks by our key (Prolific datasets):
    # `find_tasks` then confirms only what it can see, and replaying the add is what keeps
    # a reconciliation from duplicating.
    lists_tasks: bool = True
    # The crowd takes every task the moment it is published (no waiting for `answer`).
    takes_work_on_publish: bool = False

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        # The token / key the harness's connector presents; None: the marketplace has no
        # credentials to get wrong (replay) or the harness cannot swap them (simulator).
        self.secret: str | None = None

    def connector_with_wrong_secret(self) -> Connector | None:
        """The connector as `connector()` builds it, presenting a secret the fake refuses."""
        if self.secret is None:
            return None
        kept, self.secret = self.secret, "wrong-secret-0000000000000000"
        try:
            return self.connector()
        finally:
            self.secret = kept

    @abstractmethod
    def connector(self, wrap: Wrap | None = None) -> Connector: ...

    @abstractmethod
    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        """Have the marketplace's workers answer these started items; return how many
        submissions that makes (each must then be visible to `iter_submissions`)."""

    @abstractmethod
    def created(self) -> tuple[int, int]:
        """(batches, tasks) that exist on the marketplace right now."""

    def worker_id(self, connector: Connector, batch: BatchRef) -> str:
        """A worker the marketplace knows (one who answered in `batch`)."""
        for page in connector.iter_submissions(batch, cursor=None):
            for submission in page.submissions:
                return submission.worker_id
        raise AssertionError(f"{self.name}: no submission to take a worker id from")

    def batch_spec(self, stage: Stage = Stage.COMPARE) -> BatchSpec:
        return BatchSpec(
            name=f"contract {stage.value}",
            stage=stage,
            instruction="Which answer is better?",
            reward=Money(amount=Decimal("0.05")),
            campaign_id="contract",
        )

    def items(self, n: int, *, prefix: str = "item", overlap: int = 2) -> list[TaskItem]:
        return compare_items(n, key_prefix="contract:", prefix=prefix, overlap=overlap)

    def ranking_items(self, n: int, *, k: int = 4, overlap: int = 2) -> list[TaskItem]:
        """k-wise ranking tasks (Capability.RANKING): `k` lists to order, best first."""
        return [
            TaskItem(
                key=f"contract:rank-{i}.0",
                group=f"rank-{i}",
                payload=RankTask(
                    instruction="Rank the answers from best (1) to worst.",
                    prompt=f"Top 5 rivers, take {i}",
                    responses=tuple(f"{j + 1}. Nile ({i}, {j})" for j in range(k)),
                ),
                overlap=overlap,
            )
            for i in range(n)
        ]

    def graded_items(self, n: int, scale: tuple[str, ...]) -> list[TaskItem]:
        """Comparisons graded on `scale` with a rationale offered; one side is clearly
        better (five valid rivers against one), so careful workers pick it at a level."""
        full = "1. Nile\n2. Amazon\n3. Danube\n4. Rhine\n5. Volga"
        return [
            TaskItem(
                key=f"contract:graded-{i}.0",
                group=f"graded-{i}",
                payload=CompareTask(
                    instruction="Which answer is better, and by how much?",
                    prompt="List the top 5 rivers.",
                    left=full if i % 2 else "1. Nile",
                    right="1. Nile" if i % 2 else full,
                    scale=scale,
                    rationale=True,
                ),
                overlap=2,
            )
            for i in range(n)
        ]

    def rating_items(self, n: int, *, overlap: int = 2) -> list[TaskItem]:
        """Multi-aspect rating tasks (Capability.RATING): two aspects on 0-4 and 1-7."""
        return [
            TaskItem(
                key=f"contract:rate-{i}.0",
                group=f"rate-{i}",
                payload=RateTask(
                    instruction="Rate the answer on each aspect.",
                    prompt=f"Top 5 rivers, take {i}",
                    response=f"1. Nile\n2. Amazon\n3. Volga ({i})",
                    aspects=(
                        RatedAspect(name="helpfulness", low=0, high=4),
                        RatedAspect(name="clarity", low=1, high=7),
                    ),
                ),
                overlap=overlap,
            )
            for i in range(n)
        ]

    def writing_items(self, n: int) -> list[TaskItem]:
        return [
            TaskItem(
                key=f"contract:write-{i}.0",
                group=f"write-{i}",
                payload=WriteResponseTask(
                    instruction="Answer the request.", prompt=f"Top 5 lakes, take {i}"
                ),
                overlap=1,
            )
            for i in range(n)
        ]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop whatever the harness started."""


def faulty(harness: Harness) -> tuple[Connector, FaultTransport]:
    holder: list[FaultTransport] = []

    def wrap(inner: httpx.BaseTransport) -> FaultTransport:
        transport = FaultTransport(inner, harness.routes)
        holder.append(transport)
        return transport

    connector = harness.connector(wrap)
    assert holder, f"{harness.name}: the harness did not pass the transport through `wrap`"
    return connector, holder[0]


def pages(connector: Connector, batch: BatchRef, cursor: str | None) -> list[SubmissionPage]:
    return list(connector.iter_submissions(batch, cursor=cursor))


def submissions(read: list[SubmissionPage]) -> list[Submission]:
    return [s for page in read for s in page.submissions]


def started_batch(harness: Harness, connector: Connector, n: int) -> tuple[BatchRef, int]:
    batch = connector.create_batch(harness.batch_spec(), idempotency_key="contract:batch")
    items = harness.items(n)
    connector.add_items(batch, items, idempotency_key="contract:items")
    connector.start(batch)
    return batch, harness.answer(connector, batch, items)


class ConnectorContract:
    """The contract tests. Subclass it as `Test<Something>` and implement `make_harness`
    (or override the `harness` fixture, e.g. parametrized over several harnesses)."""

    def make_harness(self) -> Harness:
        raise NotImplementedError(f"{type(self).__name__} must implement make_harness()")

    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        made = self.make_harness()
        try:
            yield made
        finally:
            made.close()

    @pytest.fixture
    def http_harness(self, harness: Harness) -> Harness:
        if not harness.http:
            pytest.skip(f"{harness.name} has no HTTP underneath; transport faults do not apply")
        return harness

    # --- keyed creates ---------------------------------------------------------------------------

    def test_create_batch_replayed_with_its_key_creates_nothing(self, harness: Harness) -> None:
        with harness.connector() as connector:
            spec = harness.batch_spec()
            batch = connector.create_batch(spec, idempotency_key="contract:b1")
            before = harness.created()
            assert connector.create_batch(spec, idempotency_key="contract:b1") == batch
            assert harness.created() == before
        # Another process (a rerun after a crash) finds it by the key alone.
        with harness.connector() as fresh:
            assert fresh.find_batch("contract:b1") == batch
            assert fresh.find_batch("contract:never-used") is None
            other = fresh.create_batch(spec, idempotency_key="contract:b2")
        assert other != batch
        assert harness.created()[0] == before[0] + 1

    def test_add_items_replayed_with_its_key_creates_nothing(self, harness: Harness) -> None:
        items = harness.items(5)
        with harness.connector() as connector:
            batch = connector.create_batch(harness.batch_spec(), idempotency_key="contract:b")
            ids = connector.add_items(batch, items, idempotency_key="contract:i").external_ids
            assert set(ids) == {i.key for i in items}
            before = harness.created()
            assert (
                connector.add_items(batch, items, idempotency_key="contract:i").external_ids == ids
            )
            assert harness.created() == before
        with harness.connector() as fresh:
            keys = [i.key for i in items] + ["contract:not-pushed.0"]
            found = fresh.find_tasks(batch, keys)
            if harness.lists_tasks:
                assert found == ids
            else:
                assert found.items() <= ids.items()
                assert (
                    fresh.add_items(batch, items, idempotency_key="contract:i").external_ids == ids
                )
                assert harness.created() == before

    # --- reading results -----------------------------------------------------------------------

    def test_submissions_page_to_the_end_and_resume_without_gaps_or_repeats(
        self, harness: Harness
    ) -> None:
        with harness.connector() as connector:
            batch, expected = started_batch(harness, connector, 6)
            everything = pages(connector, batch, None)
        read = submissions(everything)
        assert len(read) == expected
        assert len({s.external_id for s in read}) == expected, "a submission was read twice"
        assert len(everything) >= 2, f"{harness.name}: the harness must make results span pages"
        assert not everything[-1].has_more
        assert all(page.has_more for page in everything[:-1])
        # Resume in a new process from the cursor saved after the first page.
        first = everything[0]
        with harness.connector() as fresh:
            rest = submissions(pages(fresh, batch, first.cursor))
            tail = submissions(pages(fresh, batch, everything[-1].cursor))
        ids = [s.external_id for s in first.submissions] + [s.external_id for s in rest]
        assert sorted(ids) == sorted(s.external_id for s in read)
        assert tail == [], "reading from the last cursor returned submissions already read"

    # --- faults ----------------------------------------------------------------------------------

    def test_rate_limit_is_waited_out(self, http_harness: Harness) -> None:
        connector, transport = faulty(http_harness)
        with connector:
            transport.arm(Op.CREATE_BATCH, Fault.RATE_LIMIT)
            batch = connector.create_batch(http_harness.batch_spec(), idempotency_key="contract:rl")
            assert RETRY_AFTER_S in http_harness.sleeps, "Retry-After was not honoured"
            items = http_harness.items(3)
            connector.add_items(batch, items, idempotency_key="contract:rl-items")
            connector.start(batch)
            expected = http_harness.answer(connector, batch, items)
            transport.arm(Op.LIST_SUBMISSIONS, Fault.RATE_LIMIT)
            assert len(submissions(pages(connector, batch, None))) == expected
        assert http_harness.sleeps.count(RETRY_AFTER_S) >= 2
        assert http_harness.created()[0] == 1

    def test_auth_failure_is_reported_at_once_naming_the_connector(
        self, http_harness: Harness
    ) -> None:
        connector, transport = faulty(http_harness)
        with connector:
            transport.arm(Op.CREATE_BATCH, Fault.UNAUTHORIZED)
            with pytest.raises(AuthError, match=rf"\[{connector.name}\]"):
                connector.create_batch(http_harness.batch_spec(), idempotency_key="contract:auth")
        assert transport.calls(Op.CREATE_BATCH) == 1, "an auth failure was retried"
        assert http_harness.sleeps == []

    @staticmethod
    def _recovered_batch(connector: Connector, harness: Harness, key: str) -> BatchRef:
        """What the push ledger does with an open intent: look the key up, create if absent."""
        try:
            return connector.create_batch(harness.batch_spec(), idempotency_key=key)
        except TransientError:
            found = connector.find_batch(key)
            return found or connector.create_batch(harness.batch_spec(), idempotency_key=key)

    def test_a_create_that_happened_behind_a_5xx_is_reconciled(self, http_harness: Harness) -> None:
        connector, transport = faulty(http_harness)
        items = http_harness.items(4)
        with connector:
            transport.arm(Op.CREATE_BATCH, Fault.SERVER_ERROR_AFTER)
            batch = self._recovered_batch(connector, http_harness, "contract:5xx")
            assert connector.find_batch("contract:5xx") == batch
            assert http_harness.created()[0] == 1, "the batch was created twice"
            transport.arm(Op.ADD_ITEMS, Fault.SERVER_ERROR_AFTER)
            try:
                ids = connector.add_items(batch, items, idempotency_key="contract:5xx-items")
            except TransientError:
                ids = connector.add_items(batch, items, idempotency_key="contract:5xx-items")
            assert set(ids.external_ids) == {i.key for i in items}
        assert http_harness.created() == (1, len(items)), "tasks were created twice"

    # --- capabilities -----------------------------------------------------------------------------

    def test_declared_capabilities_match_behaviour(self, harness: Harness) -> None:
        with harness.connector() as connector:
            caps = connector.capabilities
            batch, _ = started_batch(harness, connector, 3)
            read = submissions(pages(connector, batch, None))
            decisions = [ReviewDecision(submission_id=read[0].external_id, accept=True)]
            if Capability.REVIEW in caps:
                connector.review(batch, decisions)
                connector.review(batch, decisions)  # repeating an applied decision is a no-op
            else:
                with pytest.raises(NotSupported, match="review"):
                    connector.review(batch, decisions)
            worker = harness.worker_id(connector, batch)
            if Capability.BLOCK_WORKER in caps:
                connector.block_worker(worker, scope=BlockScope.CAMPAIGN, reason="contract")
                connector.block_worker(worker, scope=BlockScope.CAMPAIGN, reason="contract")
            else:
                with pytest.raises(NotSupported, match="block_worker"):
                    connector.block_worker(worker, scope=BlockScope.CAMPAIGN, reason="contract")
            spent = connector.spend(batch)
            if Capability.SPEND_REPORT in caps:
                assert isinstance(spent, Money)
            else:
                assert spent is None
            if Capability.FREE_TEXT in caps:
                writing = connector.create_batch(
                    harness.batch_spec(Stage.RESPONSES), idempotency_key="contract:write"
                )
                made = connector.add_items(
                    writing, harness.writing_items(2), idempotency_key="contract:write-items"
                )
                assert len(made.external_ids) == 2
            if Capability.QUALIFY_WORKERS in caps:
                connector.ensure_qualification("contract-exam")
                connector.ensure_qualification("contract-exam")
                connector.grant_qualification(worker, "contract-exam")
                connector.grant_qualification(worker, "contract-exam")
                gated = harness.batch_spec().model_copy(
                    update={"required_qualification": "contract-exam"}
                )
                assert connector.create_batch(gated, idempotency_key="contract:gated") != batch
            else:
                with pytest.raises(NotSupported, match="qualify_workers"):
                    connector.grant_qualification(worker, "contract-exam")
            stopped = connector.get_status(batch)
            connector.stop(batch, reason="contract done")
            assert connector.get_status(batch).tasks == stopped.tasks

    @staticmethod
    def _publish_answer_read(
        harness: Harness, connector: Connector, stage: Stage, items: list[TaskItem]
    ) -> tuple[AddItemsResult, list[Submission]]:
        """One batch of `stage` with `items` published, started, answered and read back;
        every task is read, and no more answers than the marketplace made. A human
        marketplace answers each task `overlap` times, a model judge once (the harness's
        `answer` says how many submissions its marketplace makes)."""
        batch = connector.create_batch(
            harness.batch_spec(stage), idempotency_key=f"contract:{stage.value}"
        )
        made = connector.add_items(batch, items, idempotency_key=f"contract:{stage.value}-items")
        assert set(made.external_ids) == {i.key for i in items}
        connector.start(batch)
        answered = harness.answer(connector, batch, items)
        read = submissions(pages(connector, batch, None))
        assert len(read) == answered <= sum(i.overlap for i in items)
        assert {sub.task_key for sub in read} == set(made.external_ids)
        return made, read

    def test_rankings_round_trip_where_declared(self, harness: Harness) -> None:
        """A connector that declares RANKING publishes ranking tasks and reads back one
        place per response shown; on every other connector a campaign with rankings is
        refused at preflight, naming the connector and the task type."""
        from crowdloop.stages.preflight import require_ranking

        with harness.connector() as connector:
            if Capability.RANKING not in connector.capabilities:
                with pytest.raises(NotSupported, match=rf"{re.escape(connector.name)}.*ranking"):
                    require_ranking(connector)
                return
            made, read = self._publish_answer_read(
                harness, connector, Stage.RANK, harness.ranking_items(3)
            )
            for sub in read:
                assert isinstance(sub.answer, RankingAnswer)
                assert len(sub.answer.ranks) == 4
                assert sub.task_key in made.external_ids

    def test_graded_comparisons_come_back_with_a_level_on_the_scale(self, harness: Harness) -> None:
        """GRADED_PAIRWISE: the scale reaches the workers and every answer's level is on it
        (none with "unsure"); RATIONALE: a rationale, when given, is text. Without the
        capability, the connector refuses it by name (what preflight relies on)."""
        scale = ("slightly better", "better", "much better")
        with harness.connector() as connector:
            if Capability.GRADED_PAIRWISE not in connector.capabilities:
                # What preflight asks of it for a graded campaign: a refusal by name.
                with pytest.raises(NotSupported, match="graded_pairwise"):
                    connector.require(Capability.GRADED_PAIRWISE)
                return
            batch = connector.create_batch(harness.batch_spec(), idempotency_key="contract:graded")
            items = harness.graded_items(6, scale)
            connector.add_items(batch, items, idempotency_key="contract:graded-items")
            connector.start(batch)
            made = harness.answer(connector, batch, items)
            read = submissions(pages(connector, batch, None))
        assert made > 0 and len(read) == made
        answers = [s.answer for s in read]
        assert all(isinstance(a, PreferenceAnswer) for a in answers)
        levels = [a.level for a in answers if isinstance(a, PreferenceAnswer)]
        sides = [a.choice for a in answers if isinstance(a, PreferenceAnswer)]
        for side, level in zip(sides, levels, strict=True):
            assert (level is None) if side == "tie" else (level in range(1, len(scale) + 1))
        assert any(level is not None for level in levels), "no answer carried a level"
        if Capability.RATIONALE in connector.capabilities:
            reasons = [a.rationale for a in answers if isinstance(a, PreferenceAnswer)]
            assert all(r is None or r.strip() for r in reasons)

    def test_ratings_round_trip_where_declared(self, harness: Harness) -> None:
        """A connector that declares RATING publishes rating tasks and reads back one score
        per aspect, each on its scale; on every other connector a campaign with ratings is
        refused at preflight, naming the connector and the task type."""
        from crowdloop.stages.preflight import require_rating

        with harness.connector() as connector:
            if Capability.RATING not in connector.capabilities:
                with pytest.raises(NotSupported, match=rf"{re.escape(connector.name)}.*rating"):
                    require_rating(connector)
                return
            made, read = self._publish_answer_read(
                harness, connector, Stage.RATE, harness.rating_items(3)
            )
            for sub in read:
                assert isinstance(sub.answer, RatingAnswer)
                assert set(sub.answer.scores) == {"helpfulness", "clarity"}
                assert 0 <= sub.answer.scores["helpfulness"] <= 4
                assert 1 <= sub.answer.scores["clarity"] <= 7
                assert sub.task_key in made.external_ids

    # --- lifecycle: stop, pause, resume ----------------------------------------------------------

    def test_stop_is_final_and_stopping_twice_is_a_no_op(self, harness: Harness) -> None:
        with harness.connector() as connector:
            batch, expected = started_batch(harness, connector, 3)
            read = submissions(pages(connector, batch, None))
            connector.stop(batch, reason="contract: cancelled")
            connector.stop(batch, reason="contract: cancelled again")
            assert connector.get_status(batch).state is BatchState.CLOSED
            # Submissions already made stay readable after the stop.
            assert len(submissions(pages(connector, batch, None))) == len(read) == expected
        with harness.connector() as fresh:  # a rerun stops it once more, as the lifecycle may
            fresh.stop(batch, reason="contract: rerun")
            assert fresh.get_status(batch).state is BatchState.CLOSED

    def test_pause_and_resume_do_what_the_capability_says(self, harness: Harness) -> None:
        with harness.connector() as connector:
            batch = connector.create_batch(harness.batch_spec(), idempotency_key="contract:pause")
            items = harness.items(3, prefix="paused")
            # A crowd that takes every task the moment it is published (the simulator's) would
            # have it all in hand before any pause: there, the tasks go up after the pause.
            late = harness.takes_work_on_publish and Capability.PAUSE in connector.capabilities
            if not late:
                connector.add_items(batch, items, idempotency_key="contract:pause-items")
            connector.start(batch)
            if Capability.PAUSE not in connector.capabilities:
                with pytest.raises(NotSupported, match="pause"):
                    connector.pause(batch)
                with pytest.raises(NotSupported, match="pause"):
                    connector.resume(batch)
                return
            connector.pause(batch)
            connector.pause(batch)  # pausing a paused batch is a no-op
            if late:
                connector.add_items(batch, items, idempotency_key="contract:pause-items")
            assert harness.answer(connector, batch, items) == 0, "a paused batch handed out work"
            assert connector.get_status(batch).state is BatchState.CLOSED
            connector.resume(batch)
            connector.resume(batch)  # resuming an open batch is a no-op
            assert connector.get_status(batch).state is BatchState.OPEN
            made = harness.answer(connector, batch, items)
            assert made > 0, "a resumed batch handed out no work"
            assert len(submissions(pages(connector, batch, None))) == made

    # --- first contact ----------------------------------------------------------------------------

    def test_check_proves_access_read_only_and_says_what_it_cannot_check(
        self, harness: Harness
    ) -> None:
        with harness.connector() as connector:
            before = harness.created()
            report = connector.check()
        assert report.connector == connector.name
        assert report.items, "a check must say something"
        assert report.ok, [f"{i.name}: {i.detail}" for i in report.failed]
        assert harness.created() == before, "the check created something"
        if harness.secret is not None:  # a marketplace with credentials proves them
            assert any(item.ok for item in report.items), "nothing was verified"
        assert all(item.detail for item in report.items)

    def test_check_fails_clearly_on_a_wrong_secret(self, harness: Harness) -> None:
        connector = harness.connector_with_wrong_secret()
        if connector is None:
            pytest.skip(f"{harness.name}: no credentials to get wrong")
        with connector:
            report = connector.check()
        assert not report.ok
        first = report.failed[0]
        assert "credentials refused" in first.detail
        assert f"[{connector.name}]" in first.detail
        assert "wrong-secret" not in first.detail, "the secret leaked into the report"
