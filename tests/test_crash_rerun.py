"""Kill the campaign process at the moments a crash hurts most, rerun, compare.

The campaign runs as `crowdloop run` in a child process that exits on the spot at a named
crash point (`os._exit`, no cleanup, like a kill), against a simulator that lives on in
this process. After a rerun there must be no duplicate task on the marketplace, no lost or
double-counted judgment, and byte-identical datasets to an uninterrupted run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func
from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.faults import CRASH_EXIT_CODE
from crowdloop.models.tables import Judgment, LedgerState, PushLedger, TaskRecord
from crowdloop.simulator.config import SimulatorConfig
from tests.e2e_helpers import campaign_dir, env_with, outputs, simulator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

# batch_size 10 makes every push several add-items calls, so "mid-batch" exists.
OVERRIDES = {"batch_size": 10}


def _run(campaign: Path, db_url: str, sim_env: dict[str, str], crash_at: str | None) -> int:
    env = env_with(
        CROWDLOOP_DATABASE_URL=db_url,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        **sim_env,
    )
    env.pop("CROWDLOOP_CRASH_AT", None)
    if crash_at:
        env["CROWDLOOP_CRASH_AT"] = crash_at
    proc = subprocess.run(
        [sys.executable, "-m", "crowdloop.cli", "run", str(campaign)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode not in (0, CRASH_EXIT_CODE):
        raise AssertionError(f"crowdloop run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.returncode


def _counts(db_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", db_url)
    with session_scope() as s:
        judgments = s.exec(select(func.count()).select_from(Judgment)).one()
        tasks = s.exec(select(func.count()).select_from(TaskRecord)).one()
        open_intents = s.exec(
            select(func.count())
            .select_from(PushLedger)
            .where(PushLedger.state == LedgerState.INTENT)
        ).one()
    return int(judgments), int(tasks), int(open_intents)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], int, int]:
    """An uninterrupted run: its datasets, judgments and tasks created on the marketplace."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("reference")
    db_url = f"sqlite:///{folder / 'db.sqlite'}"
    try:
        with simulator(mp, SimulatorConfig(seed=9)) as sim:
            path = campaign_dir(folder, "crashy", overrides=OVERRIDES)
            sim_env = {"CROWDLOOP_SIMULATOR_URL": sim.url, "CROWDLOOP_SIMULATOR_TOKEN": sim.token}
            assert _run(path, db_url, sim_env, None) == 0
            tasks_created = sim.stats()["tasks_created"]
        judgments, _, _ = _counts(db_url, mp)
    finally:
        mp.undo()
    return outputs(folder), judgments, tasks_created


@pytest.mark.parametrize(
    "crash_at",
    [
        "batch:created",  # the pool exists on the marketplace, our database does not know
        "tasks:intent-recorded",  # push recorded, call not made
        "budget:reserved@2",  # spend reserved with the intent, call not made
        "tasks:sent@2",  # mid-batch: the second add-items call went out, its outcome unrecorded
        "sync:page-read@2",  # results arrived, not stored
    ],
)
def test_crash_and_rerun_changes_nothing(
    crash_at: str,
    reference: tuple[dict[str, bytes], int, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref_outputs, ref_judgments, ref_tasks = reference
    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with simulator(monkeypatch, SimulatorConfig(seed=9)) as sim:
        path = campaign_dir(tmp_path, "crashy", overrides=OVERRIDES)
        sim_env = {"CROWDLOOP_SIMULATOR_URL": sim.url, "CROWDLOOP_SIMULATOR_TOKEN": sim.token}
        assert _run(path, db_url, sim_env, crash_at) == CRASH_EXIT_CODE
        assert _run(path, db_url, sim_env, None) == 0
        stats = sim.stats()
    judgments, _, open_intents = _counts(db_url, monkeypatch)
    assert stats["tasks_created"] == ref_tasks, "a task was created twice on the marketplace"
    assert stats["pools_created"] == 4  # prompts, responses, verify, compare: once each
    assert judgments == ref_judgments, "a judgment was lost or stored twice"
    assert open_intents == 0
    assert outputs(tmp_path) == ref_outputs
