"""2 Prefect process workers x 4 concurrent campaigns on one PostgreSQL (crowdloop's
database) with the Prefect server on PostgreSQL too, and the scheduled sync beside them
(the stack and what "the same datasets" means: tests/live/workers.py).

Every campaign must complete, and a second run of one of them, started mid-run, must be
refused the lease and leave the campaign to its driver. Nothing may be published twice
(the marketplace holds exactly the tasks crowdloop recorded, no push left at "intent"), no
answer may be lost or stored twice (every submitted assignment is one stored judgment),
and each campaign's exported preferences must equal, byte for byte, those of the same
campaign file run alone on a fresh database and simulator.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import _pg_available
from tests.live.conftest import BIN, require
from tests.live.workers import (
    Size,
    copy_campaigns,
    dataset_digest,
    ledger_of,
    run_alone,
    run_concurrently,
    workers_stack,
    write_campaigns,
)

pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.postgres, pytest.mark.timeout(900)]

SIZE = Size(campaigns=4, topics=2, prompts_per_topic=2, dynamic_overlap=False)
WORKERS = 2
# At most 3 runs a worker: 4 campaigns cannot all land on one worker, and slots are left
# for the sync and a second run of one campaign.
LIMIT = 3


def test_two_workers_four_campaigns_one_postgres(tmp_path: Path) -> None:
    require(_pg_available(), "PostgreSQL on 127.0.0.1:5432 is not reachable")
    require((BIN / "prefect").exists(), f"{BIN / 'prefect'} is missing")
    files = write_campaigns(tmp_path / "together", SIZE)
    alone_files = copy_campaigns(files, tmp_path / "alone")
    t0 = time.monotonic()
    with workers_stack(tmp_path, workers=WORKERS, limit=LIMIT) as stack:
        print(f"stack up after {time.monotonic() - t0:.0f} s")  # where the time goes, for CI logs
        outcome = run_concurrently(stack, files, timeout=600, second_run_of=files[0])
        print(
            f"campaigns: {outcome.wall_s:.0f} s, clock moving after {outcome.clock_started_s:.0f} s"
        )
        logs = stack.live.logs()
        for name, run in outcome.campaign_runs.items():
            assert run.state.is_completed(), (
                f"{name}: {run.state}\n{stack.live.flow_run_logs(run.id)}\n{logs}"
            )
        # Both workers ran campaigns (at most LIMIT each, so they had to share).
        # (a run's own log lines, with its URL, go to the worker that started it).
        ran = {
            worker.name: sum(
                f"flow-run/{r.id}" in worker.log.read_text() for r in outcome.campaign_runs.values()
            )
            for worker in stack.workers
        }
        assert sorted(ran.values()) in ([1, 3], [2, 2]), ran
        # The second run of pgw-0 was refused the lease and left the campaign to its driver.
        second = outcome.second_run
        assert second.state.is_failed(), second.state
        assert "is being driven by flow run" in stack.live.flow_run_logs(second.id)
        # A sync passed over the four campaigns mid-run and left them to their runs.
        met = [r for r in outcome.sync_runs if r.state.message.startswith("0 synced, 4 skipped")]
        assert met, [r.state.message for r in outcome.sync_runs]
        for run in outcome.sync_runs:
            logs = stack.live.flow_run_logs(run.id)
            assert run.state.is_completed(), f"sync: {run.state}\n{logs}"

        for path in files:
            name = path.parent.name
            ledger = ledger_of(stack, name)
            assert ledger.status == "complete", (name, ledger)
            assert ledger.items_open == 0, (name, ledger)
            # Nothing published twice, nothing left half-pushed.
            assert ledger.open_intents == 0, (name, ledger)
            assert ledger.tasks_without_external_id == 0, (name, ledger)
            assert ledger.pools == ledger.batches == 1, (name, ledger)
            assert ledger.pool_tasks == ledger.task_records > 0, (name, ledger)
            # No answer lost or stored twice.
            assert ledger.duplicate_judgments == 0, (name, ledger)
            assert ledger.pool_submitted == ledger.judgments > 0, (name, ledger)
        stats = stack.live.simulator.stats()
        assert stats["group_worker_duplicates"] == 0

        together = {path.parent.name: dataset_digest(path) for path in files}
    assert together == run_alone(alone_files)
    print(f"done after {time.monotonic() - t0:.0f} s")
