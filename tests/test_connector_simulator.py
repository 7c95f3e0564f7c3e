"""SimulatorConnector: against a live simulator (with and without faults) and against a
respx router with realistic payloads, asserting on what is sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.errors import AlreadyExists, AuthError, NotSupported, TransientError
from crowdloop.connectors.registry import build_connector, get_connector_class
from crowdloop.connectors.simulator.connector import SimulatorConnector
from crowdloop.connectors.simulator.credentials import SimulatorCredentials
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    BatchState,
    BlockScope,
    Capability,
    CompareTask,
    Money,
    PreferenceAnswer,
    Quarantined,
    ReviewDecision,
    Stage,
    Submission,
    TaskItem,
    VerdictAnswer,
)
from crowdloop.simulator.config import FaultConfig
from crowdloop.simulator.runner import SimulatorServer
from tests.simulator_fixtures import compare_payload, config

BASE = "http://sim.test"
TOKEN = "tok-s3cret"
FAST_RETRY = RetryPolicy(attempts=10, base_delay_s=0.01, max_delay_s=0.05)
SPEC = BatchSpec(
    name="compare top-5 lists",
    stage=Stage.COMPARE,
    instruction="Pick the better list.",
    reward=Money(amount=Decimal("0.05")),
    campaign_id="camp-1",
)
BATCH = BatchRef(connector="simulator", external_id="pool-0001")


def _items(n: int, *, start: int = 0) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"camp-1:compare:item-{i}",
            group=f"item-{i}",
            payload=CompareTask.model_validate(compare_payload(i)),
            overlap=3,
            exclude_workers=("w003",) if i % 10 == 0 else (),
        )
        for i in range(start, start + n)
    ]


# --- live simulator ----------------------------------------------------------------------


def _connector_for(sim: SimulatorServer, timeout_s: float = 5.0) -> SimulatorConnector:
    credentials = SimulatorCredentials(base_url=sim.url, api_token=SecretStr(sim.token))
    # Small pages so collecting takes several cursor steps, faults included.
    client = credentials.get_client(timeout_s=timeout_s, retry=FAST_RETRY)
    return SimulatorConnector(client, page_limit=90)


def _collect(connector: SimulatorConnector, batch: BatchRef) -> list[Submission]:
    submissions: list[Submission] = []
    cursor: str | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for page in connector.iter_submissions(batch, cursor=cursor):
            submissions.extend(page.submissions)
            assert not page.quarantined
            cursor = page.cursor
        if connector.get_status(batch).complete:
            return submissions
        time.sleep(0.02)
    raise AssertionError("the batch never completed")


def _push_and_collect(
    faults: FaultConfig, timeout_s: float
) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    with SimulatorServer(config(seed=5, faults=faults)) as sim, _connector_for(sim, timeout_s) as c:
        batch = c.create_batch(SPEC, idempotency_key="camp-1:compare")
        assert c.create_batch(SPEC, idempotency_key="camp-1:compare") == batch
        assert c.find_batch("camp-1:compare") == batch
        assert c.find_batch("camp-1:other") is None
        items = _items(240)
        ids: dict[str, str] = {}
        for start in range(0, len(items), 60):
            chunk = items[start : start + 60]
            ids.update(c.add_items(batch, chunk, idempotency_key=f"add-{start}").external_ids)
        # A replay after a lost answer creates nothing and maps to the same ids.
        assert c.add_items(batch, items[:60], idempotency_key="add-0").external_ids == {
            i.key: ids[i.key] for i in items[:60]
        }
        assert c.find_tasks(batch, [i.key for i in items]) == ids
        c.start(batch)
        c.start(batch)
        submissions = _collect(c, batch)
        c.stop(batch, reason="enough answers")
        assert c.get_status(batch).state is BatchState.CLOSED
        assert c.spend(batch) == Money(amount=Decimal("0.05") * len(submissions))
        sim.set_faults(FaultConfig())
        stats = sim.stats()
    answers = {(s.task_key, s.worker_id): s.answer for s in submissions}
    assert len(answers) == len(submissions) == 720
    return answers, stats


def test_faults_change_nothing_in_what_is_created_or_collected() -> None:
    clean, clean_stats = _push_and_collect(FaultConfig(), timeout_s=5.0)
    faults = FaultConfig(
        seed=4,
        rate_limit=0.12,
        retry_after_s=0.01,
        server_error=0.12,
        false_500=0.15,
        timeout=0.06,
        timeout_sleep_s=0.6,
    )
    faulty, faulty_stats = _push_and_collect(faults, timeout_s=0.3)
    assert faulty == clean
    injected = set(faulty_stats["faults_injected"])
    assert injected == {"rate_limit", "server_error", "false_500", "timeout"}
    for stats in (clean_stats, faulty_stats):
        assert (stats["pools_created"], stats["tasks_created"]) == (1, 240)
        assert stats["group_worker_duplicates"] == 0
    assert (
        faulty_stats["duplicate_task_creates_avoided"]
        > clean_stats["duplicate_task_creates_avoided"]
    )


def test_garbled_answers_are_quarantined_never_dropped() -> None:
    garbling = config(faults=FaultConfig(garble=0.25, seed=2))
    with SimulatorServer(garbling) as sim, _connector_for(sim) as connector:
        batch = connector.create_batch(SPEC, idempotency_key="k")
        connector.add_items(batch, _items(40), idempotency_key="a")
        connector.start(batch)
        pages = list(connector.iter_submissions(batch, cursor=None))
        again = list(connector.iter_submissions(batch, cursor=None))
    submissions = [s for p in pages for s in p.submissions]
    quarantined = [q for p in pages for q in p.quarantined]
    assert len(submissions) + len(quarantined) == 120
    assert 10 <= len(quarantined) <= 50
    assert all(q.task_key and q.worker_id and q.reason and q.raw for q in quarantined)
    assert [q.external_id for p in again for q in p.quarantined] == [
        q.external_id for q in quarantined
    ]


def test_review_block_and_conflicts_live() -> None:
    with SimulatorServer(config()) as sim, _connector_for(sim) as connector:
        batch = connector.create_batch(SPEC, idempotency_key="k")
        connector.add_items(batch, _items(5), idempotency_key="a")
        connector.start(batch)
        first = next(iter(connector.iter_submissions(batch, cursor=None))).submissions
        decisions = [ReviewDecision(submission_id=first[0].external_id, accept=False)]
        connector.review(batch, decisions)
        connector.review(batch, decisions)  # the same decision again is a no-op
        with pytest.raises(AlreadyExists):
            connector.review(
                batch, [ReviewDecision(submission_id=first[0].external_id, accept=True)]
            )
        assert connector.spend(batch) == Money(amount=Decimal("0.05") * 14)
        connector.block_worker("w002", scope=BlockScope.ACCOUNT, reason="spam")
        connector.block_worker("w002", scope=BlockScope.ACCOUNT, reason="spam")
        blocked = {w["id"]: w["blocked"] for w in httpx.get(f"{sim.url}/sim/workers").json()}
        assert blocked["w002"]


def test_from_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CROWDLOOP_SIMULATOR_URL", raising=False)
    monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", TOKEN)
    with pytest.raises(RuntimeError, match="CROWDLOOP_SIMULATOR_URL"):
        SimulatorConnector.from_config({}, None)
    with SimulatorServer(config()) as sim:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        assert get_connector_class("simulator") is SimulatorConnector
        with build_connector("simulator", {"timeout_s": 2, "retry_attempts": 2}) as connector:
            assert isinstance(connector, SimulatorConnector)
            assert connector.client.seam.timeout_s == 2
            assert connector.client.seam.retry.attempts == 2
            assert connector.find_batch("none") is None
            connector.require(Capability.PAIRWISE)
            with pytest.raises(NotSupported):
                connector.require(Capability.SANDBOX)


def test_from_config_loads_the_named_credentials_block(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> SimulatorCredentials:
        loaded.append(name)
        return SimulatorCredentials(base_url=BASE, api_token=SecretStr(TOKEN), timeout_s=4)

    # No Prefect API in unit tests: stand in for Block.load, which reads the saved document.
    monkeypatch.setattr(SimulatorCredentials, "load", load)
    monkeypatch.delenv("CROWDLOOP_SIMULATOR_URL", raising=False)
    with SimulatorConnector.from_config({"page_limit": 250}, "sim-creds") as connector:
        assert loaded == ["sim-creds"]
        assert connector.client.seam.base_url == BASE
        assert connector.client.seam.timeout_s == 4
        assert connector.page_limit == 250


# --- respx: what goes over the wire ---------------------------------------------------------


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def connector(waits: list[float]) -> Iterator[SimulatorConnector]:
    credentials = SimulatorCredentials(base_url=BASE, api_token=SecretStr(TOKEN), timeout_s=3)
    client = credentials.get_client(retry=RetryPolicy(attempts=4), sleep=waits.append)
    with SimulatorConnector(client) as c:
        yield c


def _pool(status: str = "draft") -> dict[str, Any]:
    return {
        "id": "pool-0001",
        "name": SPEC.name,
        "stage": "compare",
        "campaign_id": "camp-1",
        "status": status,
        "reward": {"amount": "0.05", "currency": "USD"},
        "idempotency_key": "camp-1:compare",
        "created_at": "2025-01-01T00:00:00+00:00",
    }


def _assignment(n: int, answer: Any, **overrides: Any) -> dict[str, Any]:
    item = {
        "id": f"asg-{n:08d}",
        "task_id": f"task-{n:07d}",
        "task_key": f"camp-1:compare:item-{n}",
        "task_kind": "compare",
        "worker_id": f"w{n:03d}",
        "submitted_at": "2025-01-01T00:05:00+00:00",
        "answer": answer,
        "review_status": "pending",
    }
    item.update(overrides)
    return item


def _sent(call: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(call.request.content)
    return body


def test_create_sends_key_and_money_as_string_and_reuses_an_existing_pool(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    route = router.post("/api/v1/pools").mock(
        side_effect=[httpx.Response(201, json=_pool()), httpx.Response(200, json=_pool())]
    )
    first = connector.create_batch(SPEC, idempotency_key="camp-1:compare")
    second = connector.create_batch(SPEC, idempotency_key="camp-1:compare")
    assert first == second == BatchRef(connector="simulator", external_id="pool-0001")
    request = route.calls[0].request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"].startswith("crowdloop/")
    assert _sent(route.calls[0]) == {
        "name": SPEC.name,
        "stage": "compare",
        "instruction": SPEC.instruction,
        "reward": {"amount": "0.05", "currency": "USD"},
        "campaign_id": "camp-1",
        "idempotency_key": "camp-1:compare",
    }


def test_find_batch_queries_by_key(router: respx.MockRouter, connector: SimulatorConnector) -> None:
    route = router.get("/api/v1/pools").mock(
        side_effect=[
            httpx.Response(200, json={"items": [_pool()]}),
            httpx.Response(200, json={"items": []}),
        ]
    )
    assert connector.find_batch("camp-1:compare") == BATCH
    assert connector.find_batch("other") is None
    assert [c.request.url.params["idempotency_key"] for c in route.calls] == [
        "camp-1:compare",
        "other",
    ]


def test_add_items_sends_task_keys_and_survives_a_false_500(
    router: respx.MockRouter, connector: SimulatorConnector, waits: list[float]
) -> None:
    items = _items(3)
    created = {
        "tasks": [{"id": f"task-{i}", "key": t.key, "created": True} for i, t in enumerate(items)]
    }
    replayed = {"tasks": [{**t, "created": False} for t in created["tasks"]]}
    route = router.post("/api/v1/pools/pool-0001/tasks").mock(
        side_effect=[
            httpx.Response(500, json={"error": {"code": "internal", "message": "oops"}}),
            httpx.Response(200, json=replayed),
        ]
    )
    result = connector.add_items(BATCH, items, idempotency_key="push-1")
    assert result.external_ids == {t.key: f"task-{i}" for i, t in enumerate(items)}
    assert route.call_count == 2 and len(waits) == 1
    first, retry = _sent(route.calls[0]), _sent(route.calls[1])
    assert first == retry  # the retry is the same keyed request
    assert first["idempotency_key"] == "push-1"
    assert first["tasks"][0] == {
        "key": "camp-1:compare:item-0",
        "group": "item-0",
        "payload": compare_payload(0),
        "overlap": 3,
        "exclude_workers": ["w003"],
    }


def test_find_tasks_splits_long_key_lists(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    keys = [f"camp-1:compare:{'x' * 80}-{i}" for i in range(100)]

    def found(request: httpx.Request) -> httpx.Response:
        asked = request.url.params["keys"].split(",")
        return httpx.Response(200, json={"items": [{"id": f"id-{k}", "key": k} for k in asked]})

    route = router.get("/api/v1/pools/pool-0001/tasks").mock(side_effect=found)
    assert connector.find_tasks(BATCH, keys) == {k: f"id-{k}" for k in keys}
    assert route.call_count > 1
    assert all(len(str(c.request.url)) < 12_000 for c in route.calls)


def test_pagination_follows_the_cursor_to_the_end(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    route = router.get("/api/v1/pools/pool-0001/assignments").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "items": [
                        _assignment(1, {"choice": "left"}),
                        _assignment(2, {"choice": "tie"}),
                    ],
                    "next_cursor": "c-2",
                    "has_more": True,
                },
            ),
            httpx.Response(
                200,
                json={
                    "items": [_assignment(3, {"choice": "right"})],
                    "next_cursor": "c-3",
                    "has_more": False,
                },
            ),
        ]
    )
    pages = list(connector.iter_submissions(BATCH, cursor="c-0"))
    assert [c.request.url.params.get("cursor") for c in route.calls] == ["c-0", "c-2"]
    assert {c.request.url.params["limit"] for c in route.calls} == {"1000"}
    assert [(p.cursor, p.has_more, len(p.submissions)) for p in pages] == [
        ("c-2", True, 2),
        ("c-3", False, 1),
    ]
    first = pages[0].submissions[0]
    assert first == Submission(
        external_id="asg-00000001",
        task_key="camp-1:compare:item-1",
        worker_id="w001",
        answer=PreferenceAnswer(choice="left"),
        submitted_at=datetime(2025, 1, 1, 0, 5, tzinfo=UTC),
    )


def test_an_empty_page_keeps_the_cursor(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    router.get("/api/v1/pools/pool-0001/assignments").mock(
        return_value=httpx.Response(200, json={"items": [], "next_cursor": None, "has_more": False})
    )
    assert [p.cursor for p in connector.iter_submissions(BATCH, cursor="c-9")] == ["c-9"]
    assert [p.cursor for p in connector.iter_submissions(BATCH, cursor=None)] == [None]


def test_rate_limit_waits_out_retry_after(
    router: respx.MockRouter, connector: SimulatorConnector, waits: list[float]
) -> None:
    route = router.get("/api/v1/pools/pool-0001").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "7"}, json={"error": {"code": "rate_limited"}}
            ),
            httpx.Response(429, headers={"Retry-After": "0.5"}),
            httpx.Response(
                200,
                json={
                    "id": "pool-0001",
                    "name": "x",
                    "status": "open",
                    "tasks": 4,
                    "assignments_total": 12,
                    "assignments_submitted": 5,
                },
            ),
        ]
    )
    status = connector.get_status(BATCH)
    assert (status.state, status.tasks, status.complete) == (BatchState.OPEN, 4, False)
    assert waits == [7.0, 0.5]
    assert route.call_count == 3


def test_server_errors_are_retried_with_backoff_then_surface(
    router: respx.MockRouter, connector: SimulatorConnector, waits: list[float]
) -> None:
    route = router.post("/api/v1/pools/pool-0001/open").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(502),
            httpx.Response(200, json=_pool("open")),
        ]
    )
    connector.start(BATCH)
    assert route.call_count == 3
    assert waits == [0.5, 1.0]
    router.post("/api/v1/pools/pool-0001/close").mock(return_value=httpx.Response(500, text="down"))
    with pytest.raises(TransientError, match=r"\[simulator\].*HTTP 500"):
        connector.stop(BATCH, reason="budget")


def test_unauthorized_fails_at_once_naming_the_connector(
    router: respx.MockRouter, connector: SimulatorConnector, waits: list[float]
) -> None:
    route = router.post("/api/v1/pools").mock(
        return_value=httpx.Response(
            401, json={"error": {"code": "unauthorized", "message": "bad token"}}
        )
    )
    with pytest.raises(AuthError, match=r"^\[simulator\]") as raised:
        connector.create_batch(SPEC, idempotency_key="k")
    assert raised.value.connector == "simulator"
    assert route.call_count == 1 and waits == []
    assert TOKEN not in str(raised.value)


def test_garbled_assignments_become_quarantined_rows(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    items = [
        _assignment(1, {"choice": "left"}),
        _assignment(2, {"choice": "maybe"}),
        _assignment(3, {}),
        _assignment(4, {"verdict": "accept"}),  # wrong answer kind for a compare task
        _assignment(5, "left"),
        _assignment(6, {"choice": "left"}, task_kind="sort"),
        {k: v for k, v in _assignment(7, {"choice": "left"}).items() if k != "worker_id"},
        _assignment(8, {"verdict": "reject"}, task_kind="verify"),
    ]
    router.get("/api/v1/pools/pool-0001/assignments").mock(
        return_value=httpx.Response(
            200, json={"items": items, "next_cursor": "c-8", "has_more": False}
        )
    )
    (page,) = connector.iter_submissions(BATCH, cursor=None)
    assert [s.external_id for s in page.submissions] == ["asg-00000001", "asg-00000008"]
    assert page.submissions[1].answer == VerdictAnswer(verdict="reject")
    by_id = {q.external_id: q for q in page.quarantined}
    assert sorted(by_id) == [f"asg-0000000{n}" for n in range(2, 8)]
    assert "choice" in by_id["asg-00000002"].reason
    assert "choice" in by_id["asg-00000003"].reason
    assert "preference" in by_id["asg-00000004"].reason
    assert "not an object" in by_id["asg-00000005"].reason
    assert "unknown task kind 'sort'" in by_id["asg-00000006"].reason
    missing_worker = by_id["asg-00000007"]
    assert missing_worker.worker_id is None and "worker_id" in missing_worker.reason
    assert json.loads(by_id["asg-00000002"].raw) == items[1]
    assert all(isinstance(q, Quarantined) and q.task_key for q in page.quarantined)


def test_review_conflict_raises_already_exists(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    route = router.post("/api/v1/assignments/review").mock(
        side_effect=[
            httpx.Response(200, json={"applied": 2, "unchanged": 0}),
            httpx.Response(
                409, json={"error": {"code": "conflict", "message": "already accepted"}}
            ),
        ]
    )
    decisions = [
        ReviewDecision(submission_id="asg-1", accept=True),
        ReviewDecision(submission_id="asg-2", accept=False, comment="failed golden"),
    ]
    connector.review(BATCH, decisions)
    assert _sent(route.calls[0]) == {
        "decisions": [
            {"id": "asg-1", "status": "accepted", "comment": ""},
            {"id": "asg-2", "status": "rejected", "comment": "failed golden"},
        ]
    }
    with pytest.raises(AlreadyExists):
        connector.review(BATCH, [ReviewDecision(submission_id="asg-1", accept=False)])
    assert route.call_count == 2


def test_block_and_spend(router: respx.MockRouter, connector: SimulatorConnector) -> None:
    block = router.post("/api/v1/workers/w007/block").mock(
        return_value=httpx.Response(
            200, json={"worker_id": "w007", "blocked": True, "reassigned": 2}
        )
    )
    connector.block_worker("w007", scope=BlockScope.CAMPAIGN, reason="golden accuracy 0.3")
    assert _sent(block.calls[0]) == {"scope": "campaign", "reason": "golden accuracy 0.3"}
    router.get("/api/v1/pools/pool-0001/spend").mock(
        return_value=httpx.Response(200, json={"amount": "1.35", "currency": "USD"})
    )
    assert connector.spend(BATCH) == Money(amount=Decimal("1.35"), currency="USD")


def test_an_unreadable_body_is_a_garbled_response(
    router: respx.MockRouter, connector: SimulatorConnector
) -> None:
    from crowdloop.connectors.errors import GarbledResponse

    router.get("/api/v1/pools/pool-0001").mock(return_value=httpx.Response(200, json={"id": 1}))
    with pytest.raises(GarbledResponse, match="PoolSummary"):
        connector.get_status(BATCH)


@pytest.mark.parametrize("with_unreadable", [False, True])
def test_answers_read_the_same_with_or_without_an_unreadable_record(
    router: respx.MockRouter, connector: SimulatorConnector, with_unreadable: bool
) -> None:
    # A page whose records all parse is validated in one call, and each answer by its
    # kind's own model; a page with an unreadable record is read record by record. Both
    # give the same submissions and the same quarantine reasons, word for word; an answer
    # carrying a "kind" of its own gets the task's kind, as before.
    items = [
        _assignment(1, {"choice": "left", "level": None}),
        _assignment(2, {"choice": "maybe"}),
        _assignment(3, {"kind": "verdict", "choice": "right"}),
        _assignment(4, {"choice": "tie", "level": 2}),
        _assignment(5, {"verdict": "accept", "rationale": "ok"}, task_kind="verify"),
    ]
    if with_unreadable:
        items.append(_assignment(6, {"choice": "left"}, submitted_at="yesterday"))
    router.get("/api/v1/pools/pool-0001/assignments").mock(
        return_value=httpx.Response(
            200, json={"items": items, "next_cursor": "c-9", "has_more": False}
        )
    )
    (page,) = connector.iter_submissions(BATCH, cursor=None)
    assert [(s.external_id, s.answer) for s in page.submissions] == [
        ("asg-00000001", PreferenceAnswer(choice="left")),
        ("asg-00000003", PreferenceAnswer(choice="right")),
        ("asg-00000005", VerdictAnswer(verdict="accept", rationale="ok")),
    ]
    reasons = {q.external_id: q.reason for q in page.quarantined}
    assert reasons.pop("asg-00000002") == (
        "bad preference answer for a compare task: choice: Input should be 'left', 'right' or 'tie'"
    )
    assert reasons.pop("asg-00000004") == (
        "bad preference answer for a compare task: value: Value error, a level goes with "
        "a side (left or right), not with tie"
    )
    if with_unreadable:
        assert reasons.pop("asg-00000006").startswith("unreadable assignment: submitted_at:")
    assert reasons == {}
