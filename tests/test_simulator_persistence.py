"""`crowdloop simulator serve` keeps the marketplace in a file: a restart keeps pools, tasks,
answers, reviews, blocks, qualifications, spend and the clock, and a keyed create after the
restart finds what was created before it instead of making a duplicate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.persistence import StateFile, StateFileError, restore, snapshot
from crowdloop.simulator.state import MarketplaceState
from tests.simulator_fixtures import API, compare_tasks, pool_body

# --- snapshot / restore, in process --------------------------------------------------------


def _busy_state() -> MarketplaceState:
    """A frozen-clock marketplace with every kind of state the snapshot has to carry."""
    state = MarketplaceState(SimulatorConfig(seed=5, time_scale=0))
    qual = state.create_qualification("exam-passed")[0]
    pool, _ = state.create_pool(
        name="p", stage="compare", instruction="pick", reward=_dec("0.05"), currency="USD",
        campaign_id="c", idempotency_key="pool-a",
    )  # fmt: skip
    gated, _ = state.create_pool(
        name="g", stage="compare", instruction="pick", reward=_dec("0.07"), currency="USD",
        campaign_id="c", idempotency_key="pool-b", required_qualification=qual.id,
    )  # fmt: skip
    state.add_tasks(pool.id, state.validate_tasks(compare_tasks(12, prefix="a")))
    state.add_tasks(gated.id, state.validate_tasks(compare_tasks(4, prefix="b", overlap=2)))
    state.open_pool(pool.id)
    state.open_pool(gated.id)
    state.advance_clock(600)
    first, _, _ = state.list_assignments(pool.id, None, 1000)
    state.review([(first[0].id, "accepted", ""), (first[1].id, "rejected", "wrong")])
    state.block_worker(first[2].worker_id, "spam")  # moves their pending work to others
    for worker in ("w001", "w002", "w003"):
        state.grant_qualification(qual.id, worker)
    state.advance_clock(900)
    return state


def _dec(text: str) -> Any:
    from decimal import Decimal

    return Decimal(text)


def test_snapshot_round_trip_is_exact() -> None:
    state = _busy_state()
    data = json.loads(json.dumps(snapshot(state)))
    again = restore(data)
    assert snapshot(again) == snapshot(state)
    # Derived structures too: the same pages, the same spend, the same counters.
    for pool_id in ("pool-0001", "pool-0002"):
        assert again.spend(pool_id) == state.spend(pool_id)
        assert again.pool_summary(pool_id) == state.pool_summary(pool_id)
        a, cursor_a, _ = again.list_assignments(pool_id, None, 7)
        b, cursor_b, _ = state.list_assignments(pool_id, None, 7)
        assert [x.id for x in a] == [x.id for x in b] and cursor_a == cursor_b
        rest_a = again.list_assignments(pool_id, cursor_a, 1000)[0]
        rest_b = state.list_assignments(pool_id, cursor_b, 1000)[0]
        assert [(x.id, x.answer) for x in rest_a] == [(x.id, x.answer) for x in rest_b]
    assert again.snapshot_stats() == state.snapshot_stats()


def test_restored_state_carries_on_like_the_original() -> None:
    """After a restore, new work (assignments, blocks, keyed creates) matches the original."""
    state = _busy_state()
    again = restore(json.loads(json.dumps(snapshot(state))))
    for s in (state, again):
        pool, created = s.create_pool(
            name="p", stage="compare", instruction="pick", reward=_dec("0.05"),
            currency="USD", campaign_id="c", idempotency_key="pool-a",
        )  # fmt: skip
        assert not created and pool.id == "pool-0001"
        added = s.add_tasks(pool.id, s.validate_tasks(compare_tasks(14, prefix="a")))
        assert [c for _, c in added] == [False] * 12 + [True] * 2
        s.block_worker("w004", "late block")
        s.advance_clock(5000)
    assert snapshot(again) == snapshot(state)


def test_state_file_is_atomic_and_checked(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "sim" / "state.json")
    state = _busy_state()
    store.save(state, "tok")
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in store.path.parent.iterdir()] == ["state.json"]  # no temp left
    loaded, token = store.load()
    assert token == "tok" and snapshot(loaded) == snapshot(state)
    store.path.write_text('{"format": "something else"}')
    with pytest.raises(StateFileError, match="not a crowdloop simulator state file"):
        store.load()


# --- the real command: start, write, stop with a signal, start again --------------------------


class Served:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines
        env = dict(line.split("=", 1) for line in lines if line.startswith("CROWDLOOP_"))
        self.url = env["CROWDLOOP_SIMULATOR_URL"]
        self.token = env["CROWDLOOP_SIMULATOR_TOKEN"]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}{API}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )


def _serve_cmd(state: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "crowdloop.cli", "simulator", "serve",
        "--port", "0", "--state", str(state), *extra,
    ]  # fmt: skip


@contextmanager
def serving(state: Path, *extra: str, stop: signal.Signals = signal.SIGTERM) -> Iterator[Served]:
    proc = subprocess.Popen(
        _serve_cmd(state, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any(line.startswith("CROWDLOOP_SIMULATOR_TOKEN=") for line in lines):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"simulator exited ({proc.wait()}) before announcing: {lines}")
            lines.append(line.strip())
        yield Served(proc, lines)
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _all_answers(client: httpx.Client, pool_id: str, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        items = client.get(f"/pools/{pool_id}/assignments", params={"limit": 1000}).json()["items"]
        if len(items) >= expected or time.monotonic() > deadline:
            return [{k: a[k] for k in ("id", "task_key", "worker_id", "answer")} for a in items]
        time.sleep(0.05)


def test_serve_restart_keeps_pools_tasks_and_answers(tmp_path: Path) -> None:
    state_file = tmp_path / "simulator.json"
    with serving(state_file, "--seed", "3", stop=signal.SIGINT) as sim, sim.client() as c:
        assert c.post("/pools", json=pool_body("restart-pool")).status_code == 201
        pool_id = c.get("/pools", params={"idempotency_key": "restart-pool"}).json()["items"][0]
        pool_id = pool_id["id"]
        added = c.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(5, overlap=2)})
        assert all(t["created"] for t in added.json()["tasks"])
        assert c.post(f"/pools/{pool_id}/open").status_code == 200
        before = _all_answers(c, pool_id, expected=10)  # 3600x clock: all in within a second
        assert len(before) == 10
        spend = c.get(f"/pools/{pool_id}/spend").json()
        token = sim.token
    assert json.loads(state_file.read_text())["state"]["config"]["seed"] == 3

    with serving(state_file) as sim, sim.client() as c:
        assert sim.token == token  # clients configured before the restart still get in
        assert "restored from" in sim.lines[0]
        again = c.post("/pools", json=pool_body("restart-pool"))
        assert again.status_code == 200 and again.json()["id"] == pool_id  # no duplicate
        readd = c.post(f"/pools/{pool_id}/tasks", json={"tasks": compare_tasks(6, overlap=2)})
        assert [t["created"] for t in readd.json()["tasks"]] == [False] * 5 + [True]
        assert _all_answers(c, pool_id, expected=12)[:10] == before
        assert c.get(f"/pools/{pool_id}", params={}).json()["tasks"] == 6
        assert c.get(f"/pools/{pool_id}/spend").json()["amount"] >= spend["amount"]

    wrong_seed = subprocess.run(
        _serve_cmd(state_file, "--seed", "4"), capture_output=True, text=True, timeout=60
    )
    assert wrong_seed.returncode == 2
    assert "seed 3" in wrong_seed.stdout
