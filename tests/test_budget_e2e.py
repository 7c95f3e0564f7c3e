"""A budgeted campaign end to end on the simulator: the cap is hit mid-run, the campaign
pauses with nothing over the cap sent, a raised cap lets a rerun finish with no task
created twice; a crash between a reservation and its send changes nothing; and the
estimate brackets what the campaign cost."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.faults import CRASH_EXIT_CODE
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import (
    LedgerState,
    PushLedger,
    ReservationState,
    SpendReservation,
    TaskRecord,
)
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.budget import BudgetPause, budget_status, raise_cap
from crowdloop.stages.estimate import estimate_spec
from tests.budget_runner import PAUSED_EXIT_CODE, run_bare
from tests.e2e_helpers import campaign_dir, env_with, simulator

pytestmark = pytest.mark.slow

FAST = {"poll_interval_s": 0.05}


def with_budget(path: Path, **budget: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["budget"] = budget
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def exposure(sim: SimulatorServer, campaign: str) -> Decimal:
    """The most the marketplace can charge for everything it was sent."""
    total = Decimal(0)
    with sim.state._lock:
        for pool in sim.state._pools.values():
            if pool.campaign_id == campaign:
                for task in pool.tasks.values():
                    rejected = sum(1 for a in task.live if a.review == "rejected")
                    total += (task.overlap - rejected) * pool.reward
    return total


def counts() -> tuple[int, int, int]:
    with session_scope() as s:
        tasks = s.exec(select(func.count()).select_from(TaskRecord)).one()
        intents = s.exec(
            select(func.count())
            .select_from(PushLedger)
            .where(PushLedger.state == LedgerState.INTENT)
        ).one()
        open_reservations = s.exec(
            select(func.count())
            .select_from(SpendReservation)
            .where(SpendReservation.state == ReservationState.RESERVED)
        ).one()
    return int(tasks), int(intents), int(open_reservations)


def test_cap_hit_mid_run_pauses_and_a_raised_cap_finishes(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = campaign_dir(tmp_path, "capped", overrides=FAST)
    expected = estimate_spec(load_campaign(path)).expected
    cap = (expected * Decimal("0.4")).quantize(Decimal("0.01"))
    with_budget(path, cap=str(cap))
    with simulator(monkeypatch, SimulatorConfig(seed=4)) as sim:
        with pytest.raises(BudgetPause) as paused:
            run_bare(path)
        assert paused.value.reason == "cap" and paused.value.cap == cap
        sent = sim.stats()["tasks_created"]
        assert sent > 0
        assert exposure(sim, "capped") <= cap
        assert budget_status("capped").committed <= cap
        # A rerun before the cap moves sends nothing more.
        with pytest.raises(BudgetPause):
            run_bare(path)
        assert sim.stats()["tasks_created"] == sent
        status = raise_cap("capped", cap * 10, by="ops on call")
        assert status.approved == cap * 10
        actual = run_bare(path)
        stats = sim.stats()
    tasks, intents, open_reservations = counts()
    assert stats["tasks_created"] == tasks, "a task was created twice"
    assert stats["duplicate_task_creates_avoided"] == 0
    assert stats["pools_created"] == 4
    assert intents == 0 and open_reservations == 0
    final = budget_status("capped")
    assert final.committed == final.actual == final.paid == actual <= cap * 10
    assert final.differences == []


def _child(path: Path, db_url: str, sim: SimulatorServer, crash_at: str | None) -> int:
    env = env_with(
        CROWDLOOP_DATABASE_URL=db_url,
        CROWDLOOP_SIMULATOR_URL=sim.url,
        CROWDLOOP_SIMULATOR_TOKEN=sim.token,
    )
    env.pop("CROWDLOOP_CRASH_AT", None)
    if crash_at:
        env["CROWDLOOP_CRASH_AT"] = crash_at
    proc = subprocess.run(
        [sys.executable, "-m", "tests.budget_runner", str(path)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode not in (0, CRASH_EXIT_CODE, PAUSED_EXIT_CODE):
        raise AssertionError(f"runner failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.returncode


@pytest.mark.parametrize("crash_at", ["budget:reserved@3", "tasks:sent@2"])
def test_crash_after_reservation_then_rerun(
    crash_at: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    path = campaign_dir(tmp_path, "crashy-budget", overrides={**FAST, "batch_size": 10})
    worst = estimate_spec(load_campaign(path)).worst
    with_budget(path, cap=str(worst))
    with simulator(monkeypatch, SimulatorConfig(seed=9)) as sim:
        assert _child(path, db_url, sim, crash_at) == CRASH_EXIT_CODE
        monkeypatch.setenv("CROWDLOOP_DATABASE_URL", db_url)
        with session_scope() as s:
            reserved = s.exec(select(func.count()).select_from(SpendReservation)).one()
        assert reserved > 0
        assert _child(path, db_url, sim, None) == 0
        stats = sim.stats()
        market = exposure(sim, "crashy-budget")
    tasks, intents, open_reservations = counts()
    assert stats["tasks_created"] == tasks, "a task was created twice on the marketplace"
    assert intents == 0 and open_reservations == 0
    status = budget_status("crashy-budget")
    assert status.committed == status.paid <= worst
    assert market <= worst


def test_estimate_brackets_the_small_demo_campaign(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast version of bench/bench_estimate.py: the demo campaign at a small size."""
    path = campaign_dir(tmp_path, "bracket", overrides=FAST)
    est = estimate_spec(load_campaign(path))
    with simulator(monkeypatch, SimulatorConfig(seed=0)):
        actual = run_bare(path)
    print(f"expected {est.expected:.2f}, actual {actual:.2f}, worst case {est.worst:.2f}")
    assert est.worst >= actual
    assert abs(est.expected - actual) <= Decimal("0.15") * actual
