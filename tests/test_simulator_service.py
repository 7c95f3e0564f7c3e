"""The simulated marketplace over real HTTP: a live in-process SimulatorServer per test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from crowdloop.simulator import world
from crowdloop.simulator.config import FaultConfig
from crowdloop.simulator.runner import SimulatorServer
from tests.simulator_fixtures import (
    API,
    api_client,
    compare_tasks,
    config,
    open_pool_with_tasks,
    pool_body,
    read_all,
    read_pages,
)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(config()) as server:
        yield server


@pytest.fixture
def frozen() -> Iterator[SimulatorServer]:
    """Simulated time stands still until the test advances it."""
    with SimulatorServer(config(time_scale=0)) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with api_client(sim) as c:
        yield c


def test_api_needs_the_bearer_token_and_admin_does_not(sim: SimulatorServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": sim.token}):
        response = httpx.get(
            f"{sim.url}{API}/pools", params={"idempotency_key": "k"}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["x-request-id"]
    assert httpx.get(f"{sim.url}/sim/workers").status_code == 200
    assert sim.stats()["pools_created"] == 0


def test_pool_create_is_idempotent_by_key(client: httpx.Client, sim: SimulatorServer) -> None:
    first = client.post("/pools", json=pool_body("k1"))
    assert first.status_code == 201
    assert first.json()["status"] == "draft"
    again = client.post("/pools", json=pool_body("k1", name="renamed"))
    assert again.status_code == 200
    assert again.json() == first.json()
    other = client.post("/pools", json=pool_body("k2"))
    assert other.json()["id"] != first.json()["id"]
    found = client.get("/pools", params={"idempotency_key": "k1"}).json()["items"]
    assert [p["id"] for p in found] == [first.json()["id"]]
    assert client.get("/pools", params={"idempotency_key": "nope"}).json() == {"items": []}
    stats = sim.stats()
    assert (stats["pools_created"], stats["pool_create_replays"]) == (2, 1)


def test_task_keys_dedupe_so_retries_create_nothing(
    client: httpx.Client, sim: SimulatorServer
) -> None:
    pool_id = client.post("/pools", json=pool_body()).json()["id"]
    tasks = compare_tasks(5)
    first = client.post(f"/pools/{pool_id}/tasks", json={"idempotency_key": "a", "tasks": tasks})
    assert [t["created"] for t in first.json()["tasks"]] == [True] * 5
    replay = client.post(
        f"/pools/{pool_id}/tasks",
        json={"idempotency_key": "b", "tasks": tasks[3:] + compare_tasks(1, start=5)},
    )
    assert [(t["key"], t["created"]) for t in replay.json()["tasks"]] == [
        ("t3", False),
        ("t4", False),
        ("t5", True),
    ]
    ids = {t["key"]: t["id"] for t in first.json()["tasks"]}
    assert replay.json()["tasks"][0]["id"] == ids["t3"]
    found = client.get(f"/pools/{pool_id}/tasks", params={"keys": "t0,t4,missing"}).json()
    assert found["items"] == [{"id": ids["t0"], "key": "t0"}, {"id": ids["t4"], "key": "t4"}]
    stats = sim.stats()
    assert (stats["tasks_created"], stats["duplicate_task_creates_avoided"]) == (6, 2)
    assert client.get(f"/pools/{pool_id}").json()["tasks"] == 6


def test_a_bad_task_fails_the_request_naming_key_and_field(client: httpx.Client) -> None:
    pool_id = client.post("/pools", json=pool_body()).json()["id"]
    tasks = compare_tasks(3)
    del tasks[1]["payload"]["left"]
    response = client.post(f"/pools/{pool_id}/tasks", json={"idempotency_key": "a", "tasks": tasks})
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert "'t1'" in message and "left" in message
    # All or nothing: the good tasks of the failed request were not added either.
    assert client.get(f"/pools/{pool_id}").json()["tasks"] == 0
    bad_overlap = compare_tasks(1, overlap=0)
    response = client.post(f"/pools/{pool_id}/tasks", json={"tasks": bad_overlap})
    assert response.status_code == 422 and "overlap" in response.json()["error"]["message"]
    assert client.post("/pools/pool-9999/tasks", json={"tasks": []}).status_code == 404


def test_only_open_pools_get_worked_on(frozen: SimulatorServer) -> None:
    with api_client(frozen) as client:
        pool_id = client.post("/pools", json=pool_body()).json()["id"]
        client.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(10)})
        frozen.advance(100_000)
        summary = client.get(f"/pools/{pool_id}").json()
        assert (summary["status"], summary["assignments_total"]) == ("draft", 0)
        assert client.post(f"/pools/{pool_id}/open").json()["status"] == "open"
        assert client.post(f"/pools/{pool_id}/open").status_code == 200  # idempotent
        summary = client.get(f"/pools/{pool_id}").json()
        assert (summary["assignments_total"], summary["assignments_submitted"]) == (30, 0)
        frozen.advance(100_000)
        assert client.get(f"/pools/{pool_id}").json()["assignments_submitted"] == 30
        # Closed: nothing new is handed out; reopening assigns the tasks added meanwhile.
        client.post(f"/pools/{pool_id}/close", json={"reason": "done"})
        client.post(f"/pools/{pool_id}/close")
        client.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(2, start=10)})
        assert client.get(f"/pools/{pool_id}").json()["assignments_total"] == 30
        client.post(f"/pools/{pool_id}/open")
        assert client.get(f"/pools/{pool_id}").json()["assignments_total"] == 36


def test_pagination_reads_everything_once_in_submit_order(client: httpx.Client) -> None:
    pool_id = open_pool_with_tasks(client, compare_tasks(120))
    pages = list(read_pages(client, pool_id, limit=50))
    items = [item for page in pages for item in page["items"]]
    assert [len(p["items"]) for p in pages] == [50] * 7 + [10]
    assert len({i["id"] for i in items}) == 360
    assert [i["submitted_at"] for i in items] == sorted(i["submitted_at"] for i in items)
    # Reading again from the end finds nothing and keeps the cursor.
    tail = client.get(
        f"/pools/{pool_id}/assignments", params={"cursor": pages[-1]["next_cursor"]}
    ).json()
    assert tail == {"items": [], "next_cursor": pages[-1]["next_cursor"], "has_more": False}
    per_task = Counter(i["task_key"] for i in items)
    assert set(per_task.values()) == {3}
    assert client.get(f"/pools/{pool_id}/assignments", params={"limit": 1001}).status_code == 422
    bad = client.get(f"/pools/{pool_id}/assignments", params={"cursor": "%%%"})
    assert bad.status_code == 422


def test_resume_from_a_saved_cursor_with_late_submissions(frozen: SimulatorServer) -> None:
    with api_client(frozen) as client:
        pool_id = open_pool_with_tasks(client, compare_tasks(60))
        seen: list[dict[str, object]] = []
        cursor: str | None = None
        # Submissions trickle in as the clock moves; more tasks arrive mid-way.
        for step in range(12):
            frozen.advance(150)
            if step == 4:
                client.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(30, start=60)})
            items, cursor = read_all(client, pool_id, cursor=cursor, limit=7)
            seen.extend(items)
        frozen.advance(10_000)
        items, cursor = read_all(client, pool_id, cursor=cursor, limit=7)
        seen.extend(items)
        everything, _ = read_all(client, pool_id)
        ids = [i["id"] for i in seen]
        assert len(ids) == len(set(ids)) == 270
        assert ids == [i["id"] for i in everything]


def test_blocking_reassigns_pending_work(frozen: SimulatorServer) -> None:
    with api_client(frozen) as client:
        pool_id = open_pool_with_tasks(client, compare_tasks(80))
        blocked = client.post("/workers/w001/block", json={"scope": "account", "reason": "spam"})
        assert blocked.status_code == 200
        assert blocked.json()["reassigned"] > 0  # all work was still pending at time 0
        again = client.post("/workers/w001/block", json={"scope": "account", "reason": "spam"})
        assert again.json()["reassigned"] == 0
        client.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(40, start=80)})
        frozen.advance(100_000)
        items, _ = read_all(client, pool_id)
        assert "w001" not in {i["worker_id"] for i in items}
        workers_per_task: dict[str, set[str]] = {}
        for item in items:
            workers_per_task.setdefault(item["task_key"], set()).add(item["worker_id"])
        assert len(workers_per_task) == 120
        assert all(len(w) == 3 for w in workers_per_task.values())
        assert client.post("/workers/nobody/block", json={}).status_code == 404
        status = {w["id"]: w["blocked"] for w in httpx.get(f"{frozen.url}/sim/workers").json()}
        assert status["w001"] and not status["w002"]
        assert frozen.stats()["assignments_reassigned"] == blocked.json()["reassigned"]


def test_group_and_excluded_workers_are_respected(
    client: httpx.Client, sim: SimulatorServer
) -> None:
    same_group = compare_tasks(5, prefix="g", group="item-1")
    everyone = [w["id"] for w in httpx.get(f"{sim.url}/sim/workers").json()]
    allowed = set(everyone[-4:])
    excluded = compare_tasks(2, prefix="x", overlap=3, exclude_workers=everyone[:-4])
    pool_id = open_pool_with_tasks(client, same_group + excluded)
    items, _ = read_all(client, pool_id)
    group_workers = [i["worker_id"] for i in items if i["task_key"].startswith("g")]
    assert len(group_workers) == len(set(group_workers)) == 15
    for key in ("x0", "x1"):
        assert {i["worker_id"] for i in items if i["task_key"] == key} <= allowed
    assert sim.stats()["group_worker_duplicates"] == 0
    # Overlap larger than the eligible crowd: as many as can be assigned, no more.
    crowded = compare_tasks(1, prefix="y", overlap=10, exclude_workers=everyone[:-4])
    client.post(f"/pools/{pool_id}/tasks", json={"tasks": crowded})
    items, _ = read_all(client, pool_id)
    assert {i["worker_id"] for i in items if i["task_key"] == "y0"} == allowed


def _answers(seed: int) -> dict[tuple[str, str], object]:
    with SimulatorServer(config(seed=seed)) as server, api_client(server) as client:
        pool_id = open_pool_with_tasks(client, compare_tasks(40))
        client.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(20, start=40)})
        items, _ = read_all(client, pool_id, limit=13)
    return {(i["task_key"], i["worker_id"]): i["answer"] for i in items}


def test_same_seed_same_calls_give_identical_answers() -> None:
    first, second = _answers(seed=11), _answers(seed=11)
    assert first == second and len(first) == 180
    assert _answers(seed=12) != first


def test_review_and_spend(client: httpx.Client) -> None:
    pool_id = open_pool_with_tasks(client, compare_tasks(10))
    items, _ = read_all(client, pool_id)
    assert client.get(f"/pools/{pool_id}/spend").json() == {"amount": "1.50", "currency": "USD"}
    decisions = [
        {"id": items[0]["id"], "status": "rejected", "comment": "failed golden"},
        {"id": items[1]["id"], "status": "accepted"},
    ]
    assert client.post("/assignments/review", json={"decisions": decisions}).status_code == 200
    assert client.post("/assignments/review", json={"decisions": decisions}).json() == {
        "applied": 0,
        "unchanged": 2,
    }
    spend = client.get(f"/pools/{pool_id}/spend").json()
    assert Decimal(spend["amount"]) == Decimal("0.05") * 29
    flip = [
        {"id": items[0]["id"], "status": "accepted"},
        {"id": items[2]["id"], "status": "accepted"},
    ]
    conflict = client.post("/assignments/review", json={"decisions": flip})
    assert conflict.status_code == 409
    # All or nothing: the non-conflicting decision of the refused request was not applied.
    again, _ = read_all(client, pool_id)
    assert {i["id"]: i["review_status"] for i in again}[items[2]["id"]] == "pending"
    missing = client.post(
        "/assignments/review", json={"decisions": [{"id": "x", "status": "accepted"}]}
    )
    assert missing.status_code == 404


def test_truth_and_stats_admin_endpoints(client: httpx.Client, sim: SimulatorServer) -> None:
    pool_id = open_pool_with_tasks(client, compare_tasks(4))
    truth = httpx.post(f"{sim.url}/sim/truth", json={"keys": ["t0", "t1", "zzz"]}).json()
    assert truth == {"t0": "left", "t1": "right", "zzz": None}
    client.get(f"/pools/{pool_id}")
    stats = httpx.get(f"{sim.url}/sim/stats").json()
    assert stats["requests"]["GET /api/v1/pools/{pool_id}"] == 1
    assert stats["requests"]["POST /api/v1/pools"] == 1
    assert stats["assignments_created"] == 12
    assert stats["faults_injected"] == {}


def test_injected_faults(client: httpx.Client, sim: SimulatorServer) -> None:
    set_faults = httpx.post(
        f"{sim.url}/sim/faults", json={"rate_limit": 1.0, "retry_after_s": 0.25}
    )
    assert set_faults.status_code == 200
    limited = client.post("/pools", json=pool_body("k1"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "0.25"
    sim.set_faults(FaultConfig(server_error=1.0))
    assert client.post("/pools", json=pool_body("k1")).status_code == 500
    assert sim.stats()["pools_created"] == 0  # a plain 500 does nothing
    sim.set_faults(FaultConfig(false_500=1.0))
    assert client.post("/pools", json=pool_body("k1")).status_code == 500
    assert sim.stats()["pools_created"] == 1  # a false 500 did the work
    assert client.get("/pools", params={"idempotency_key": "k1"}).status_code == 200
    sim.set_faults(FaultConfig(timeout=1.0, timeout_sleep_s=0.3))
    with pytest.raises(httpx.ReadTimeout):
        client.get("/pools", params={"idempotency_key": "k1"}, timeout=0.1)
    sim.set_faults(FaultConfig())
    assert sim.stats()["faults_injected"] == {
        "rate_limit": 1,
        "server_error": 1,
        "false_500": 1,
        "timeout": 1,
    }


def test_garbled_answers_are_sticky(client: httpx.Client, sim: SimulatorServer) -> None:
    pool_id = open_pool_with_tasks(client, compare_tasks(50))
    sim.set_faults(FaultConfig(garble=0.2, seed=3))
    first, _ = read_all(client, pool_id, limit=31)
    second, _ = read_all(client, pool_id, limit=1000)
    assert first == second
    garbled = [
        i for i in first if i["answer"] not in ({"choice": c} for c in ("left", "right", "tie"))
    ]
    assert 10 <= len(garbled) <= 50
    assert sim.stats()["faults_injected"]["garble"] == len(garbled)


def test_large_batches_go_through_in_full_pages(client: httpx.Client, sim: SimulatorServer) -> None:
    tasks = compare_tasks(3000)
    pool_id = open_pool_with_tasks(client, tasks)
    items, _ = read_all(client, pool_id)
    assert len(items) == len({i["id"] for i in items}) == 9000
    requests = sim.stats()["requests"]
    assert requests["POST /api/v1/pools/{pool_id}/tasks"] == 6
    assert requests["GET /api/v1/pools/{pool_id}/assignments"] == 9
    topics = {world.prompt_topic(t["payload"]["prompt"]) for t in tasks}
    assert len(topics) == len(world.CATALOG)
