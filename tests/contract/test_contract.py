"""The connector contract, run over every marketplace that has a harness module.

What every connector promises the flows: keyed creates that a replay cannot duplicate,
submissions that page to the end and resume from a saved cursor without gaps or repeats,
rate limits waited out, auth failures reported at once and by name, a create that
happened behind a 5xx reconciled instead of repeated, and capabilities that say what the
connector really does.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import AuthError, NotSupported, TransientError
from crowdloop.models.domain import (
    BatchRef,
    BatchState,
    BlockScope,
    Capability,
    Money,
    ReviewDecision,
    Stage,
    Submission,
    SubmissionPage,
)
from tests.contract.harness import RETRY_AFTER_S, Fault, FaultTransport, Harness, Op, discover

HARNESSES = discover()


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    made = HARNESSES[request.param]()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def http_harness(harness: Harness) -> Harness:
    if not harness.http:
        pytest.skip(f"{harness.name} has no HTTP underneath; transport faults do not apply")
    return harness


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


# --- keyed creates ---------------------------------------------------------------------------


def test_create_batch_replayed_with_its_key_creates_nothing(harness: Harness) -> None:
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


def test_add_items_replayed_with_its_key_creates_nothing(harness: Harness) -> None:
    items = harness.items(5)
    with harness.connector() as connector:
        batch = connector.create_batch(harness.batch_spec(), idempotency_key="contract:b")
        ids = connector.add_items(batch, items, idempotency_key="contract:i").external_ids
        assert set(ids) == {i.key for i in items}
        before = harness.created()
        assert connector.add_items(batch, items, idempotency_key="contract:i").external_ids == ids
        assert harness.created() == before
    with harness.connector() as fresh:
        keys = [i.key for i in items] + ["contract:not-pushed.0"]
        found = fresh.find_tasks(batch, keys)
        if harness.lists_tasks:
            assert found == ids
        else:
            assert found.items() <= ids.items()
            assert fresh.add_items(batch, items, idempotency_key="contract:i").external_ids == ids
            assert harness.created() == before


# --- reading results -----------------------------------------------------------------------


def test_submissions_page_to_the_end_and_resume_without_gaps_or_repeats(harness: Harness) -> None:
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


def test_rate_limit_is_waited_out(http_harness: Harness) -> None:
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


def test_auth_failure_is_reported_at_once_naming_the_connector(http_harness: Harness) -> None:
    connector, transport = faulty(http_harness)
    with connector:
        transport.arm(Op.CREATE_BATCH, Fault.UNAUTHORIZED)
        with pytest.raises(AuthError, match=rf"\[{connector.name}\]"):
            connector.create_batch(http_harness.batch_spec(), idempotency_key="contract:auth")
    assert transport.calls(Op.CREATE_BATCH) == 1, "an auth failure was retried"
    assert http_harness.sleeps == []


def _recovered_batch(connector: Connector, harness: Harness, key: str) -> BatchRef:
    """What the push ledger does with an open intent: look the key up, create if absent."""
    try:
        return connector.create_batch(harness.batch_spec(), idempotency_key=key)
    except TransientError:
        found = connector.find_batch(key)
        return found or connector.create_batch(harness.batch_spec(), idempotency_key=key)


def test_a_create_that_happened_behind_a_5xx_is_reconciled(http_harness: Harness) -> None:
    connector, transport = faulty(http_harness)
    items = http_harness.items(4)
    with connector:
        transport.arm(Op.CREATE_BATCH, Fault.SERVER_ERROR_AFTER)
        batch = _recovered_batch(connector, http_harness, "contract:5xx")
        assert connector.find_batch("contract:5xx") == batch
        assert http_harness.created()[0] == 1, "the batch was created twice"
        transport.arm(Op.ADD_ITEMS, Fault.SERVER_ERROR_AFTER)
        try:
            ids = connector.add_items(batch, items, idempotency_key="contract:5xx-items")
        except TransientError:
            ids = connector.add_items(batch, items, idempotency_key="contract:5xx-items")
        assert set(ids.external_ids) == {i.key for i in items}
    assert http_harness.created() == (1, len(items)), "tasks were created twice"


# --- capabilities ------------------------------------------------------------------------------


def test_declared_capabilities_match_behaviour(harness: Harness) -> None:
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


# --- lifecycle: stop, pause, resume ----------------------------------------------------------


def test_stop_is_final_and_stopping_twice_is_a_no_op(harness: Harness) -> None:
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


def test_pause_and_resume_do_what_the_capability_says(harness: Harness) -> None:
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


# --- first contact -----------------------------------------------------------------------------


def test_check_proves_access_read_only_and_says_what_it_cannot_check(harness: Harness) -> None:
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


def test_check_fails_clearly_on_a_wrong_secret(harness: Harness) -> None:
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
