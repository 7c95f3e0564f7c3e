"""The campaign lifecycle, the batches kept in step with it, and one driver per campaign —
stage functions against the live simulator, on SQLite and PostgreSQL (no Prefect)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotFound
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.models.domain import BatchRef, Capability, Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    CampaignEvent,
    CampaignLease,
    CampaignStatus,
    LedgerState,
    PushLedger,
)
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.stages import lease, lifecycle, operate
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import CampaignConflict, register_campaign
from crowdloop.stages.rounds import guard
from crowdloop.stages.sync import BatchGone, sync_stage, wait_and_sync
from tests.e2e_helpers import simulator
from tests.simulator_fixtures import api_client
from tests.test_ledger import CAMPAIGN, make_campaign

S = CampaignStatus


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Slow workers: nothing is answered while a test looks at what was published.
    with simulator(monkeypatch, SimulatorConfig(seed=3, time_scale=1.0)) as server:
        yield server


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        lifecycle, "emit", lambda name, campaign, payload=None, **_: sent.append((name, campaign))
    )
    return sent


@pytest.fixture
def campaign(db_url: str, tmp_path: Path) -> CampaignSpec:
    return make_campaign(tmp_path)


def pool_status(sim: Any) -> str:
    with api_client(sim) as client:
        pools = client.get(
            "/pools", params={"idempotency_key": f"crowdloop:{CAMPAIGN}:compare:batch"}
        ).json()["items"]
    assert len(pools) == 1
    return str(pools[0]["status"])


def status() -> CampaignStatus:
    return lifecycle.status_of(CAMPAIGN)


# --- transitions -----------------------------------------------------------------------------


def test_legal_moves_are_recorded_and_signalled(
    campaign: CampaignSpec, events: list[tuple[str, str]]
) -> None:
    assert status() == S.RUNNING
    assert lifecycle.transition(CAMPAIGN, S.PAUSED, reason="lunch", actor="cli ops@host")
    assert not lifecycle.transition(CAMPAIGN, S.PAUSED, reason="again", actor="cli ops@host")
    assert lifecycle.transition(CAMPAIGN, S.RUNNING, reason="back", actor="cli ops@host")
    assert lifecycle.transition(CAMPAIGN, S.CANCELLED, reason="wrong file", actor="x")
    with pytest.raises(lifecycle.IllegalTransition, match="is cancelled; it cannot become paused"):
        lifecycle.transition(CAMPAIGN, S.PAUSED, reason="", actor="x")
    assert lifecycle.transition(CAMPAIGN, S.RUNNING, reason="restart", actor="x")
    assert lifecycle.transition(CAMPAIGN, S.COMPLETE, reason="done", actor="x")
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(CAMPAIGN, S.RUNNING, reason="", actor="x")
    log = [(e.old_status, e.new_status, e.reason) for e in lifecycle.events(CAMPAIGN)]
    assert log == [
        ("running", "paused", "lunch"),
        ("paused", "running", "back"),
        ("running", "cancelled", "wrong file"),
        ("cancelled", "running", "restart"),
        ("running", "complete", "done"),
    ]
    assert [name for name, _ in events] == [
        "crowdloop.campaign.paused",
        "crowdloop.campaign.resumed",
        "crowdloop.campaign.cancelled",
        "crowdloop.campaign.started",
        "crowdloop.campaign.completed",
    ]
    assert {c for _, c in events} == {CAMPAIGN}


def test_only_a_running_campaign_is_turned_failed_by_a_hook(campaign: CampaignSpec) -> None:
    lifecycle.transition(CAMPAIGN, S.PAUSED, reason="ops", actor="x")
    running_only = frozenset({S.RUNNING})
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(
            CAMPAIGN, S.FAILED, reason="run crashed", actor="hook", allowed_from=running_only
        )
    assert status() == S.PAUSED


def test_guard_stops_a_run_whose_campaign_was_paused(campaign: CampaignSpec) -> None:
    guard(CAMPAIGN)
    lifecycle.transition(CAMPAIGN, S.PAUSED, reason="budget review", actor="x")
    with pytest.raises(lifecycle.CampaignHalted, match="is paused: budget review") as halted:
        guard(CAMPAIGN)
    assert halted.value.status == S.PAUSED


# --- batches follow the status -----------------------------------------------------------------


def test_pause_resume_cancel_and_restart_keep_the_pool_in_step(
    campaign: CampaignSpec, sim: Any, events: list[tuple[str, str]]
) -> None:
    with build_connector("simulator") as c:
        pushed = push_pending(CAMPAIGN, Stage.COMPARE, c)
    assert pushed.assignments > 0 and pool_status(sim) == "open"

    paused = operate.pause(CAMPAIGN, actor="cli ops@host", reason="checking the instructions")
    assert paused.changed and paused.batches == ["compare: open -> paused"]
    assert pool_status(sim) == "closed"
    # Nothing is published while paused: the round loop's guard refuses before any push.
    with pytest.raises(lifecycle.CampaignHalted):
        guard(CAMPAIGN)
    again = operate.pause(CAMPAIGN, actor="cli ops@host")
    assert not again.changed and again.batches == []

    resumed = operate.resume(CAMPAIGN, actor="cli ops@host")
    assert resumed.batches == ["compare: paused -> open"] and pool_status(sim) == "open"

    cancelled = operate.cancel(CAMPAIGN, actor="cli ops@host", reason="wrong candidates")
    assert cancelled.batches == ["compare: open -> stopped"] and pool_status(sim) == "closed"
    assert lifecycle.batch_states(CAMPAIGN) == {"compare": "stopped"}

    # A rerun restarts a cancelled campaign: the stopped pool reopens, nothing is re-created.
    assert lifecycle.record_start(CAMPAIGN, actor="flow-run x", flow_run_id=None) == S.RUNNING
    with build_connector("simulator") as c:
        lifecycle.reconcile_batches(CAMPAIGN, c)
        assert push_pending(CAMPAIGN, Stage.COMPARE, c).tasks_published == 0
    assert pool_status(sim) == "open"

    with session_scope() as s:
        controls = s.exec(
            select(PushLedger.action, PushLedger.state).where(
                PushLedger.action.in_(  # type: ignore[attr-defined]
                    ["pause_batch", "resume_batch", "stop_batch", "reopen_batch"]
                )
            )
        ).all()
    assert sorted(controls) == sorted(
        [
            (a, LedgerState.DONE)
            for a in ("pause_batch", "resume_batch", "stop_batch", "reopen_batch")
        ]
    )
    assert [n for n, _ in events] == [
        "crowdloop.campaign.paused",
        "crowdloop.campaign.resumed",
        "crowdloop.campaign.cancelled",
        "crowdloop.campaign.started",
    ]


class NoPause(Connector):
    """A connector without Capability.PAUSE, wrapping the simulator's for everything else."""

    name = "simulator"
    capabilities = frozenset(Capability) - {Capability.PAUSE}

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @classmethod
    def from_config(cls, options: Any, credentials_block: str | None) -> NoPause:
        raise NotImplementedError

    def create_batch(self, spec: Any, *, idempotency_key: str) -> BatchRef:
        return self.inner.create_batch(spec, idempotency_key=idempotency_key)

    def add_items(self, batch: BatchRef, items: Any, *, idempotency_key: str) -> Any:
        return self.inner.add_items(batch, items, idempotency_key=idempotency_key)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        return self.inner.find_batch(idempotency_key)

    def find_tasks(self, batch: BatchRef, task_keys: Any) -> dict[str, str]:
        return self.inner.find_tasks(batch, task_keys)

    def start(self, batch: BatchRef) -> None:
        self.calls.append("start")
        self.inner.start(batch)

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        self.calls.append("stop")
        self.inner.stop(batch, reason=reason)

    def get_status(self, batch: BatchRef) -> Any:
        return self.inner.get_status(batch)

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Any:
        return self.inner.iter_submissions(batch, cursor=cursor)


def test_a_platform_that_cannot_pause_is_said_so_and_keeps_its_batch(
    campaign: CampaignSpec, sim: Any
) -> None:
    with build_connector("simulator") as inner:
        c = NoPause(inner)
        push_pending(CAMPAIGN, Stage.COMPARE, c)
        lifecycle.transition(CAMPAIGN, S.PAUSED, reason="ops", actor="x")
        report = lifecycle.reconcile_batches(CAMPAIGN, c)
        assert report.warnings and "cannot pause a batch" in report.warnings[0]
        assert c.calls == ["start"] and pool_status(sim) == "open"
        lifecycle.transition(CAMPAIGN, S.CANCELLED, reason="ops", actor="x")
        lifecycle.reconcile_batches(CAMPAIGN, c)
        assert c.calls == ["start", "stop"] and pool_status(sim) == "closed"


def test_a_batch_the_marketplace_no_longer_knows_stops_the_sync_by_name(
    campaign: CampaignSpec, sim: Any
) -> None:
    class Gone(NoPause):
        def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Any:
            raise NotFound("simulator", f"pool {batch.external_id!r} not found")

    with build_connector("simulator") as inner:
        push_pending(CAMPAIGN, Stage.COMPARE, inner)
        with pytest.raises(BatchGone, match="no longer knows its compare batch 'pool-"):
            sync_stage(CAMPAIGN, Stage.COMPARE, Gone(inner))


def test_wait_and_sync_sees_work_stored_by_another_process(
    campaign: CampaignSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the wait re-counted only when its own estimate reached zero, so a run
    whose work was stored by someone else waited up to stage_timeout_s."""
    with (
        simulator(monkeypatch, SimulatorConfig(seed=4, time_scale=1e6)),
        build_connector("simulator") as c,
    ):
        push_pending(CAMPAIGN, Stage.COMPARE, c)
        other = threading.Thread(
            target=lambda: wait_and_sync(
                CAMPAIGN, [Stage.COMPARE], c, poll_interval_s=0.01, timeout_s=60
            )
        )
        # Another process syncs everything first.
        other.start()
        other.join(timeout=60)
        polls: list[int] = []
        wait_and_sync(
            CAMPAIGN,
            [Stage.COMPARE],
            c,
            poll_interval_s=0.01,
            timeout_s=5,
            on_progress=lambda _got, left: polls.append(left),
        )
    assert polls == [0]


def test_a_stalled_wait_says_so_once(campaign: CampaignSpec, sim: Any) -> None:
    stalls: list[int] = []
    clock = [0.0]
    with build_connector("simulator") as c:
        push_pending(CAMPAIGN, Stage.COMPARE, c)
        lifecycle.transition(CAMPAIGN, S.PAUSED, reason="ops", actor="x")
        calls = {"n": 0}

        def check() -> None:  # stop the wait after a few quiet polls
            calls["n"] += 1
            if calls["n"] > 5:
                guard(CAMPAIGN)

        with pytest.raises(lifecycle.CampaignHalted):
            wait_and_sync(
                CAMPAIGN,
                [Stage.COMPARE],
                c,
                poll_interval_s=0.0,
                timeout_s=600,
                sleep=lambda _s: clock.__setitem__(0, clock[0] + 1),
                check=check,
                stall_after_s=0.0,
                on_stall=lambda _secs, left: stalls.append(left),
            )
    assert len(stalls) == 1 and stalls[0] > 0


# --- one driver per campaign ---------------------------------------------------------------------


def test_a_second_driver_is_refused_with_the_holder_named(campaign: CampaignSpec) -> None:
    with lease.held(CAMPAIGN, description="flow run 'brave-otter'"):
        with pytest.raises(lease.CampaignBusy, match="driven by flow run 'brave-otter'"):
            lease.acquire(CAMPAIGN)
        assert lease.current(CAMPAIGN) is not None
    assert lease.current(CAMPAIGN) is None
    with lease.held(CAMPAIGN):  # free again once released
        pass


def test_an_expired_lease_is_taken_over_and_its_holder_finds_out(campaign: CampaignSpec) -> None:
    first = lease.acquire(CAMPAIGN, ttl_s=0.0, holder="elsewhere:1:aaaa")
    second = lease.acquire(CAMPAIGN, ttl_s=60, holder="elsewhere:2:bbbb")
    assert not lease.renew(first) and lease.renew(second)
    first.lost = True
    with pytest.raises(lease.LeaseLost):
        first.check()


def test_a_lease_whose_process_is_gone_is_taken_at_once(campaign: CampaignSpec) -> None:
    import socket
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = f"{socket.gethostname()}:{proc.stdout.strip()}:cccc"
    lease.acquire(CAMPAIGN, ttl_s=3600, holder=dead)
    assert lease.current(CAMPAIGN) is None  # dead: nobody drives it
    taken = lease.acquire(CAMPAIGN, ttl_s=60)
    with session_scope() as s:
        row = s.get(CampaignLease, CAMPAIGN)
    assert row is not None and row.holder == taken.holder


def test_racing_drivers_get_one_lease(campaign: CampaignSpec) -> None:
    winners: list[str] = []
    losers: list[str] = []
    start = threading.Barrier(6)

    def race(n: int) -> None:
        start.wait()
        try:
            got = lease.acquire(CAMPAIGN, holder=f"elsewhere:{n}:race")
            winners.append(got.holder)
        except lease.CampaignBusy as exc:
            losers.append(str(exc))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1 and len(losers) == 5


def test_the_scheduled_sync_is_kept_off_a_driven_campaign(campaign: CampaignSpec) -> None:
    with (
        lease.held(CAMPAIGN, description="flow run 'x'"),
        pytest.raises(lease.CampaignBusy),
        lease.held(CAMPAIGN, description="the scheduled sync"),
    ):
        pass


# --- a changed campaign file -------------------------------------------------------------------


def test_run_settings_change_in_place_with_update_work_shape_does_not(
    campaign: CampaignSpec,
) -> None:
    slower = campaign.model_copy(update={"poll_interval_s": 30.0})
    with session_scope() as s, pytest.raises(CampaignConflict, match="rerun with --update"):
        register_campaign(s, slower)
    with session_scope() as s:
        register_campaign(s, slower, update=True)
    with session_scope() as s:
        assert register_campaign(s, slower).spec["poll_interval_s"] == 30.0
    prefs = campaign.preferences
    assert prefs is not None
    wider = campaign.model_copy(
        update={"preferences": prefs.model_copy(update={"overlap": prefs.overlap + 1})}
    )
    with (
        session_scope() as s,
        pytest.raises(CampaignConflict, match=r"preferences\.overlap cannot change in place"),
    ):
        register_campaign(s, wider, update=True)


def test_the_event_log_names_who_changed_what(campaign: CampaignSpec) -> None:
    operate.pause(CAMPAIGN, actor="cli ana@ops-1", reason="invoice check")
    with session_scope() as s:
        (event,) = s.exec(select(CampaignEvent)).all()
    assert (event.actor, event.reason, event.new_status) == (
        "cli ana@ops-1",
        "invoice check",
        "paused",
    )


def test_simulator_pause_is_a_reversible_close(sim: Any, db_url: str, tmp_path: Path) -> None:
    make_campaign(tmp_path)
    with build_connector("simulator") as c:
        push_pending(CAMPAIGN, Stage.COMPARE, c)
        with session_scope() as s:
            from crowdloop.models.tables import Batch

            batch = s.exec(select(Batch)).one()
        ref = BatchRef(connector="simulator", external_id=batch.external_id or "")
        c.pause(ref)
        c.pause(ref)
        assert pool_status(sim) == "closed"
        c.resume(ref)
        c.resume(ref)
        assert pool_status(sim) == "open"


def test_a_control_intent_recorded_by_a_concurrent_reconciler_is_reused(
    campaign: CampaignSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two reconcilers recording the same move at once (seen on PostgreSQL in CI: the flow
    resuming a capped run while the approval reconciled): the second insert of the intent
    key fails, and the loser reuses the winner's open intent instead of failing the run."""
    from sqlalchemy import event
    from sqlmodel import Session

    batch_key = f"crowdloop:{CAMPAIGN}:compare:batch"
    raced: list[str] = []

    def other_reconciler_first(session: Session, *_: Any) -> None:
        # Between our read (no intent yet) and our insert, the other one commits its own.
        if raced or not any(isinstance(o, PushLedger) for o in session.new):
            return
        raced.append("done")
        with session_scope() as other:
            other.add(
                PushLedger(
                    key=f"{batch_key}:resume_batch:1",
                    campaign_id=CAMPAIGN,
                    connector="simulator",
                    action="resume_batch",
                    target=batch_key,
                    calls=1,
                )
            )

    event.listen(Session, "before_flush", other_reconciler_first)
    try:
        key = lifecycle._control_intent(CAMPAIGN, "simulator", batch_key, "resume_batch")
    finally:
        event.remove(Session, "before_flush", other_reconciler_first)
    assert raced == ["done"]
    assert key == f"{batch_key}:resume_batch:1"
    with session_scope() as s:
        rows = s.exec(select(PushLedger).where(PushLedger.action == "resume_batch")).all()
    assert [(r.key, r.state, r.calls) for r in rows] == [(key, LedgerState.INTENT, 2)]
