"""The spend ledger and the hard cap, on SQLite and PostgreSQL, against the simulator.

The property tests drive random sequences of pushes, exam rounds, syncs with worker checks
and re-queues, dynamic-overlap extensions, crashes (before the send, after a send whose
answer was lost) and reruns with fresh connectors, and check after every step that

- committed spend (open reservations + settled actual) never exceeds the cap, and
- what the marketplace could charge for everything it was sent (each task's overlap minus
  rejected answers, at the pool's reward) never exceeds the cap either.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import TransientError
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import Money, Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Batch, BudgetEvent, ReservationState, SpendReservation
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import budget, exam, preferences, quality_check
from crowdloop.stages.budget import BudgetPause, approve, budget_status, raise_cap
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.sync import settle_items, sync_stage

CAMPAIGN = "budget-test"
TOPICS = list(world.CATALOG)[:3]
REWARD = Decimal("0.05")
FAST = 1e6


def make_campaign(
    tmp_path: Path, *, cap: str, exam_on: bool = False, **budget_extra: Any
) -> CampaignSpec:
    top5.write_jsonl(tmp_path / "candidates.jsonl", top5.generate_candidates(TOPICS, 0))
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 24))
    quality: dict[str, Any] = {"min_golden": 2, "max_requeue_rounds": 2}
    if exam_on:
        quality["exam"] = {"items": 4, "min_correct": 3, "takers": 20, "min_passers": 3}
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "batch_size": 5,  # several add-items calls per push
            "output_dir": str(tmp_path),
            "quality": quality,
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "golden_file": str(tmp_path / "golden.jsonl"),
                "golden_share": 0.25,
                "overlap": 2,
                "dynamic_overlap": {"min_overlap": 1, "max_overlap": 3},
                "reward": {"amount": str(REWARD)},
                "export": {"path": str(tmp_path / "preferences.jsonl")},
            },
            "budget": {"cap": cap, **budget_extra},
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
    return spec


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    crowd = CrowdConfig(honest=10, noisy=2, spammer=4, left_bias=0)
    with SimulatorServer(SimulatorConfig(seed=3, time_scale=FAST, crowd=crowd)) as server:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", server.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", server.token)
        yield server


class Crashy:
    """A connector whose next add_items fails: before the call, or after it was made."""

    def __init__(self) -> None:
        self.connector: Connector = build_connector("simulator", {}, None)
        self.fail: str | None = None
        real = self.connector.add_items

        def add_items(batch: Any, items: Any, *, idempotency_key: str) -> Any:
            mode, self.fail = self.fail, None
            if mode == "before":  # reservation and intent committed, nothing sent
                raise TransientError("simulator", "connection reset before the request")
            result = real(batch, items, idempotency_key=idempotency_key)
            if mode == "after":  # sent and created, the answer lost
                raise TransientError("simulator", "500 after the write")
            return result

        self.connector.add_items = add_items  # type: ignore[method-assign]

    def close(self) -> None:
        self.connector.close()


def marketplace_exposure(sim: SimulatorServer) -> Decimal:
    """The most the marketplace can charge for what it was sent (unrejected overlap)."""
    state = sim.state
    total = Decimal(0)
    with state._lock:
        for pool in state._pools.values():
            if pool.campaign_id != CAMPAIGN:
                continue
            for task in pool.tasks.values():
                rejected = sum(1 for a in task.live if a.review == "rejected")
                total += (task.overlap - rejected) * pool.reward
    return total


def committed() -> Decimal:
    with session_scope() as s:
        return budget._committed(s, CAMPAIGN)


def check_invariants(sim: SimulatorServer) -> tuple[Decimal, Decimal, Decimal]:
    status = budget_status(CAMPAIGN, refresh=False)
    assert status.cap is not None
    now = committed()
    exposure = marketplace_exposure(sim)
    assert now <= status.cap, f"committed {now} > cap {status.cap}"
    assert exposure <= status.cap, f"marketplace exposure {exposure} > cap {status.cap}"
    return status.cap, now, exposure


# --- the property ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_sequence_commits_more_than_the_cap(
    seed: int, db_url: str, tmp_path: Path, sim: SimulatorServer
) -> None:
    rng = random.Random(seed)
    spec = make_campaign(tmp_path, cap=str(rng.choice([1, 2, 3])), exam_on=seed != 1)
    current = Crashy()
    pauses: list[str] = []
    ops = ["push", "push", "exam", "sync", "sync", "extend", "crash", "rerun", "raise"]
    try:
        for _ in range(30):
            op = rng.choice(ops)
            try:
                if op == "push":
                    push_pending(CAMPAIGN, Stage.COMPARE, current.connector)
                elif op == "exam" and spec.quality.exam is not None:
                    exam.exam_round(CAMPAIGN, current.connector, wait=False)
                elif op == "sync":
                    time.sleep(0.01)  # the simulated crowd answers in simulated minutes
                    for stage in (Stage.EXAM, Stage.COMPARE):
                        sync_stage(CAMPAIGN, stage, current.connector)
                    quality_check.check_workers(CAMPAIGN, current.connector)
                    quality_check.review_submissions(
                        CAMPAIGN, [Stage.COMPARE, Stage.EXAM], current.connector
                    )
                    settle_items(CAMPAIGN, spec.quality.max_requeue_rounds)
                elif op == "extend":
                    assert spec.preferences and spec.preferences.dynamic_overlap
                    preferences.extend_uncertain(
                        CAMPAIGN, spec.preferences.dynamic_overlap, "bradley_terry"
                    )
                elif op == "crash":
                    current.fail = rng.choice(["before", "after"])
                    push_pending(CAMPAIGN, Stage.COMPARE, current.connector)
                elif op == "rerun":  # a new process: a fresh connector, same database
                    current.close()
                    current = Crashy()
                    push_pending(CAMPAIGN, Stage.COMPARE, current.connector)
                elif op == "raise" and rng.random() < 0.3:
                    cap = budget_status(CAMPAIGN, refresh=False).cap
                    assert cap is not None
                    raise_cap(CAMPAIGN, cap + Decimal("0.5"), by="property test")
            except BudgetPause as pause:
                pauses.append(pause.reason)
            except TransientError:
                pass
            check_invariants(sim)
    finally:
        current.close()
    # A tight cap is reached in every sequence; everything sent was reserved first.
    assert pauses, "the cap was never reached: the test exercised nothing"
    with session_scope() as s:
        reservations = list(s.exec(select(SpendReservation)).all())
    assert reservations and all(r.currency == "USD" for r in reservations)


def test_two_processes_cannot_both_pass_the_check(db_url: str, tmp_path: Path) -> None:
    """The budget row is locked from the check to the commit of the reservation."""
    make_campaign(tmp_path, cap="1.00")
    budget.open_budget(CAMPAIGN)
    with session_scope() as s:
        batch = Batch(
            campaign_id=CAMPAIGN, stage="compare", connector="simulator", idempotency_key="k"
        )
        s.add(batch)
        s.flush()
        batch_id = batch.id
    assert batch_id is not None
    first_locked = threading.Event()
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def push(name: str, hold: bool) -> None:
        try:
            if not hold:
                first_locked.wait(10)
            with session_scope() as s:
                taken, _ = budget.fit(s, CAMPAIGN, [Decimal("0.60")], "compare")
                if hold:
                    first_locked.set()
                    time.sleep(0.5)  # the other process tries now, and must wait
                if taken:
                    budget.record_reservation(
                        s,
                        ledger_key=f"key-{name}",
                        campaign_id=CAMPAIGN,
                        batch_id=batch_id,
                        stage="compare",
                        assignments=12,
                        unit_cost=Decimal("0.05"),
                        currency="USD",
                    )
            results[name] = taken
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=push, args=("a", True)),
        threading.Thread(target=push, args=("b", False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert results == {"a": 1, "b": 0}
    assert committed() == Decimal("0.60")


# --- approval, pause point, cap -------------------------------------------------------------------


def test_launch_approval_comes_before_anything_is_created(
    db_url: str, tmp_path: Path, sim: SimulatorServer
) -> None:
    make_campaign(tmp_path, cap="50", approval_threshold="1.00")
    connector = build_connector("simulator", {}, None)
    try:
        with pytest.raises(BudgetPause) as paused:
            push_pending(CAMPAIGN, Stage.COMPARE, connector)
        assert paused.value.reason == "approval"
        assert sim.stats()["pools_created"] == 0 and sim.stats()["tasks_created"] == 0
        status = budget_status(CAMPAIGN)
        assert status.awaiting_approval and status.approved == 0
        assert status.worst_case is not None and status.worst_case > Decimal("1.00")
        approved = approve(CAMPAIGN, by="alice")
        assert not approved.awaiting_approval and approved.approved == Decimal(50)
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
        assert sim.stats()["tasks_created"] > 0
    finally:
        connector.close()
    with session_scope() as s:
        events = [(e.kind, e.by) for e in s.exec(select(BudgetEvent).order_by(BudgetEvent.id))]
    assert events[0][0] == "opened" and ("paused", None) in events
    assert ("approved", "alice") in events
    with pytest.raises(ValueError):
        approve(CAMPAIGN, by=" ")


def test_pause_point_then_cap_then_raise(db_url: str, tmp_path: Path, sim: SimulatorServer) -> None:
    # 18 real + 6 golden items: 18 x 1 + 6 x 2 = 30 assignments x 0.05 = 1.50 in round one.
    make_campaign(tmp_path, cap="0.80", pause_at=0.5)
    connector = build_connector("simulator", {}, None)
    try:
        with pytest.raises(BudgetPause) as first:
            push_pending(CAMPAIGN, Stage.COMPARE, connector)
        assert first.value.reason == "pause" and first.value.approved == Decimal("0.40")
        assert marketplace_exposure(sim) <= Decimal("0.40")
        assert committed() <= Decimal("0.40")
        approve(CAMPAIGN, by="bob")
        with pytest.raises(BudgetPause) as second:
            push_pending(CAMPAIGN, Stage.COMPARE, connector)
        assert second.value.reason == "cap"
        assert Decimal("0.40") < committed() <= Decimal("0.80")
        assert marketplace_exposure(sim) <= Decimal("0.80")
        status = raise_cap(CAMPAIGN, Money(amount=Decimal("4.00")), by="carol", note="more")
        # Raised with pause_at 0.5: approved to the new pause point, 2.00.
        assert status.cap == Decimal("4.00") and status.approved == Decimal("2.00")
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
        assert committed() == Decimal("1.50") == marketplace_exposure(sim)
    finally:
        connector.close()
    kinds = [e["kind"] for e in budget.budget_events(CAMPAIGN)]
    assert kinds.count("paused") == 2 and "cap_raised" in kinds and "approved" in kinds


def test_settling_releases_and_reconciles_with_the_marketplace(
    db_url: str, tmp_path: Path, sim: SimulatorServer
) -> None:
    make_campaign(tmp_path, cap="5")
    connector = build_connector("simulator", {}, None)
    try:
        push_pending(CAMPAIGN, Stage.COMPARE, connector)
        reserved = committed()
        assert reserved == Decimal("1.50")
        time.sleep(0.05)
        sync_stage(CAMPAIGN, Stage.COMPARE, connector)
        budget.refresh_spend(CAMPAIGN, connector)
        status = budget_status(CAMPAIGN)
        # Every assignment answered: the reservation is settled at the actual cost, which
        # the marketplace's own report confirms to the cent.
        assert status.reserved == 0 and status.actual == status.paid == Decimal("1.50")
        assert status.differences == []
        with session_scope() as s:
            rows = list(s.exec(select(SpendReservation)).all())
        assert rows and all(r.state == ReservationState.SETTLED for r in rows)
        # A marketplace that charges more than we account for: reported, and counted.
        real_spend = connector.spend

        def dearer(batch: Any) -> Money | None:
            reported = real_spend(batch)
            assert reported is not None
            return Money(amount=reported.amount + Decimal("0.25"), currency=reported.currency)

        connector.spend = dearer  # type: ignore[method-assign]
        diffs = budget.check_reported(CAMPAIGN, connector)
        assert [d["difference"] for d in diffs] == ["0.25"]
        # Everything is settled, so the batch counts at what the marketplace charged.
        assert committed() == Decimal("1.75")
        assert budget_status(CAMPAIGN).differences[0]["difference"] == "0.25"
    finally:
        connector.close()


def test_budget_pause_survives_pickling() -> None:
    """Prefect may pickle a task's exception; the flow reads its fields."""
    import pickle

    pause = BudgetPause(
        "c", "cap", Decimal("1.5"), Decimal("10"), Decimal("10"), Decimal("9"), "USD", "compare"
    )
    again = pickle.loads(pickle.dumps(pause))
    assert isinstance(again, BudgetPause) and str(again) == str(pause)
    assert (again.reason, again.needed, again.stage) == ("cap", Decimal("1.5"), "compare")
