"""The lifecycle through real `crowdloop run` processes: a second driver is turned away,
a running campaign is paused and resumed, cancelled and restarted from the CLI, and the
scheduled sync isolates a broken campaign — with no duplicate marketplace task and no
judgment lost or counted twice."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from crowdloop.cli import app
from crowdloop.db import session_scope
from crowdloop.models.tables import Campaign, Judgment, TaskRecord
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.stages import lifecycle
from tests.e2e_helpers import campaign_dir, env_with, simulator
from tests.simulator_fixtures import api_client

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

runner = CliRunner()
# Preferences only, fixed overlap: answers arrive over seconds (time_scale), so there is a
# "mid-run" to act in.
OVERRIDES: dict[str, Any] = {
    "demonstrations": None,
    "batch_size": 20,
    "poll_interval_s": 0.2,
    "preferences": {"dynamic_overlap": None, "overlap": 3},
}


def wait_for(
    what: str,
    ready: Callable[[], bool],
    timeout_s: float = 300,
    between: Callable[[], object] | None = None,
) -> None:
    """Poll `ready` until the deadline; `between` runs before each pause (e.g. a clock step)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if between is not None:
            between()
        time.sleep(0.1)


def count(model: Any) -> int:
    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def _env(
    db_url: str, monkeypatch: pytest.MonkeyPatch, time_scale: float
) -> Iterator[dict[str, Any]]:
    with simulator(monkeypatch, SimulatorConfig(seed=5, time_scale=time_scale)) as sim:
        yield {
            "sim": sim,
            "env": env_with(
                CROWDLOOP_DATABASE_URL=db_url,
                PREFECT_API_URL=str(PREFECT_API_URL.value()),
                CROWDLOOP_SIMULATOR_URL=sim.url,
                CROWDLOOP_SIMULATOR_TOKEN=sim.token,
            ),
        }


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    yield from _env(db_url, monkeypatch, time_scale=400.0)


@pytest.fixture
def frozen(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A simulator whose clock moves only when the test advances it: the operator's action
    lands mid-run however slowly the run's process starts on a loaded machine."""
    yield from _env(db_url, monkeypatch, time_scale=0.0)


def advance_until(sim: Any, what: str, ready: Callable[[], bool], step_s: float = 600) -> None:
    """Move the frozen crowd's clock a step at a time until `ready` (with a deadline)."""
    wait_for(what, ready, between=lambda: sim.advance(step_s))


def run_to_end(sim: Any, proc: subprocess.Popen[str]) -> tuple[int, str]:
    advance_until(sim, "the run to finish", lambda: proc.poll() is not None, step_s=3600)
    return finish(proc)


def start_run(path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crowdloop.cli", "run", str(path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pool_status(sim: Any, name: str) -> str:
    with api_client(sim) as client:
        (pool,) = client.get(
            "/pools", params={"idempotency_key": f"crowdloop:{name}:compare:batch"}
        ).json()["items"]
    return str(pool["status"])


def status(name: str) -> str | None:
    try:
        return lifecycle.status_of(name).value
    except lifecycle.UnknownCampaign:  # not registered yet
        return None


def no_duplicate_task(sim: Any) -> None:
    # One marketplace task per task record: nothing was published twice.
    assert sim.stats()["tasks_created"] == count(TaskRecord)


def finish(proc: subprocess.Popen[str], timeout_s: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out + err


def test_one_driver_pause_and_resume(tmp_path: Path, frozen: dict[str, Any]) -> None:
    env = frozen
    sim = env["sim"]
    path = campaign_dir(tmp_path, "paused", overrides=OVERRIDES)
    first = start_run(path, env["env"])
    try:
        wait_for("the first published tasks", lambda: count(TaskRecord) > 0)
        advance_until(sim, "the first judgments", lambda: count(Judgment) > 0, step_s=60)

        # A second driver exits at once, naming the first.
        second = subprocess.run(
            [sys.executable, "-m", "crowdloop.cli", "run", str(path)],
            env=env["env"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert "is being driven by flow run" in second.stdout.replace("\n", " ")

        paused = runner.invoke(app, ["pause", "paused", "--reason", "checking instructions"])
        assert paused.exit_code == 0, paused.output
        assert "now paused" in paused.output and "compare: open -> paused" in paused.output
        assert pool_status(sim, "paused") == "closed" and status("paused") == "paused"
        shown = runner.invoke(app, ["status", "paused"])
        assert "checking instructions" in shown.output and "paused" in shown.output
        assert first.poll() is None  # the run waits for the operator

        resumed = runner.invoke(app, ["resume", "paused"])
        assert resumed.exit_code == 0, resumed.output
        code, output = run_to_end(sim, first)
        assert code == 0, output[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert status("paused") == "complete"
    assert pool_status(sim, "paused") == "closed"  # completion closes the batch
    assert lifecycle.batch_states("paused") == {"compare": "stopped"}
    no_duplicate_task(sim)
    changes = [(e.old_status, e.new_status) for e in lifecycle.events("paused")]
    assert ("running", "paused") in changes and ("paused", "running") in changes
    assert changes[-1] == ("running", "complete")


def test_cancel_mid_run_then_rerun_to_completion(tmp_path: Path, frozen: dict[str, Any]) -> None:
    env = frozen
    sim = env["sim"]
    path = campaign_dir(tmp_path, "cancelled", overrides=OVERRIDES)
    first = start_run(path, env["env"])
    try:
        wait_for("the first published tasks", lambda: count(TaskRecord) > 0)
        advance_until(sim, "the first judgments", lambda: count(Judgment) > 0, step_s=60)
        cancelled = runner.invoke(app, ["cancel", "cancelled", "--reason", "wrong candidates"])
        assert cancelled.exit_code == 0, cancelled.output
        code, output = finish(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 1, output[-3000:]
    assert "cancelled (wrong candidates)" in output.replace("\n", " ")
    assert status("cancelled") == "cancelled"
    assert pool_status(sim, "cancelled") == "closed"
    judged = count(Judgment)

    rerun = start_run(path, env["env"])
    code, output = run_to_end(sim, rerun)
    assert code == 0, output[-3000:]
    assert status("cancelled") == "complete"
    assert count(Judgment) >= judged  # nothing collected before the cancel was lost
    no_duplicate_task(sim)
    with session_scope() as s:
        (campaign,) = s.exec(select(Campaign)).all()
    assert campaign.status == "complete"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_scheduled_sync_isolates_a_broken_campaign(
    tmp_path: Path, env: dict[str, Any], db_url: str
) -> None:
    from crowdloop.connectors.registry import build_connector
    from crowdloop.flows.campaign import register
    from crowdloop.flows.sync_open import sync_open_campaigns
    from crowdloop.models.domain import Stage
    from crowdloop.models.spec import load_campaign
    from crowdloop.stages.ledger import push_pending

    good = register(load_campaign(campaign_dir(tmp_path / "a", "good", overrides=OVERRIDES)))
    bad = register(load_campaign(campaign_dir(tmp_path / "b", "bad", overrides=OVERRIDES)))
    with build_connector("simulator") as c:
        push_pending(good, Stage.COMPARE, c)
    with session_scope() as s:
        row = s.get(Campaign, bad)
        assert row is not None
        row.spec = {**row.spec, "connector": {**row.spec["connector"], "name": "gone"}}
        row.connector = "gone"
        s.add(row)
    state = sync_open_campaigns(return_state=True)
    assert state.is_failed()
    assert "1 of 2 campaign(s) failed to sync: bad" in (state.message or "")
    assert "no connector named 'gone'" in (state.message or "")
    # The good one still synced, after the bad one failed (campaigns sync in name order).
    assert count(Judgment) > 0  # the good campaign synced after the bad one failed


def test_a_capped_run_waits_for_approval_and_finishes_once_the_cap_is_raised(
    tmp_path: Path, env: dict[str, Any]
) -> None:
    from decimal import Decimal

    import yaml

    from crowdloop.models.spec import load_campaign
    from crowdloop.stages.budget import budget_status
    from crowdloop.stages.estimate import estimate_spec

    sim = env["sim"]
    path = campaign_dir(tmp_path, "capped-run", overrides=OVERRIDES)
    cap = (estimate_spec(load_campaign(path)).expected * Decimal("0.4")).quantize(Decimal("0.01"))
    data = yaml.safe_load(path.read_text())
    data["budget"] = {"cap": str(cap)}
    path.write_text(yaml.safe_dump(data))
    run = start_run(path, env["env"])
    try:
        wait_for("the cap", lambda: status("capped-run") == "awaiting_approval")
        assert budget_status("capped-run").committed <= cap
        # The batches are paused just after the status is committed: wait for that too.
        wait_for("the batches to pause", lambda: pool_status(sim, "capped-run") == "closed")
        shown = runner.invoke(app, ["status", "capped-run"])
        assert "awaiting approval" in shown.output and "cap" in shown.output
        resumed = runner.invoke(app, ["resume", "capped-run"])
        assert resumed.exit_code == 2 and "crowdloop approve capped-run" in resumed.output
        approved = runner.invoke(app, ["approve", "capped-run", "--cap", str(cap * 10)])
        assert approved.exit_code == 0, approved.output
        code, output = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert code == 0, output[-3000:]
    assert status("capped-run") == "complete"
    final = budget_status("capped-run")
    assert final.committed <= cap * 10
    no_duplicate_task(sim)
    changes = [(e.old_status, e.new_status) for e in lifecycle.events("capped-run")]
    assert ("running", "awaiting_approval") in changes and changes[-1] == ("running", "complete")
