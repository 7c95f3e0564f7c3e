"""A campaign with an exam, end to end through the Prefect flow (test API) and the simulator:
the exam runs first, production comparisons reach only workers who passed it, the exam
batch is closed at the end and the report carries the exam."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.demo.run import DemoSize
from crowdloop.flows.campaign import run_campaign
from crowdloop.models.tables import Batch, ExamResult, ExamStatus, Item, Judgment
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.stages import exam as exam_stage
from tests.e2e_helpers import campaign_dir, simulator
from tests.simulator_fixtures import api_client

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

SIZE = DemoSize(
    topics=3,
    demo_prompts_per_topic=1,
    candidate_prompts_per_topic=2,
    golden_pairs=30,
    golden_verifications=8,
)


def test_campaign_with_an_exam_through_the_flow(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crowd = CrowdConfig(honest=24, noisy=0, spammer=10, left_bias=0)
    started = time.monotonic()
    with simulator(monkeypatch, SimulatorConfig(seed=6, crowd=crowd)) as sim:
        path = campaign_dir(
            tmp_path,
            "examined",
            SIZE,
            {
                "demonstrations": None,
                "quality": {"exam": {"items": 12, "min_correct": 9, "min_passers": 8}},
                "preferences": {"dynamic_overlap": None, "overlap": 3},
            },
        )
        result = run_campaign(str(path))
        workers = httpx.get(f"{sim.url}/sim/workers", timeout=10).json()
        with api_client(sim) as client:
            exam_pool = client.get(
                "/pools", params={"idempotency_key": "crowdloop:examined:exam:batch"}
            ).json()["items"]
    elapsed = time.monotonic() - started
    spammers = {w["id"] for w in workers if w["archetype"] == "spammer"}
    honest = {w["id"] for w in workers if w["archetype"] == "honest"}
    qualified = {w["id"] for w in workers if w["qualifications"]}
    with session_scope() as s:
        results = {r.worker_id: r for r in s.exec(select(ExamResult)).all()}
        production = list(
            s.exec(
                select(Judgment.worker_id)
                .join(Item, col(Item.id) == col(Judgment.item_id))
                .where(Item.stage == "compare")
            ).all()
        )
        exam_batch = s.exec(select(Batch).where(Batch.stage == "exam")).one()
    passed = {w for w, r in results.items() if r.status == ExamStatus.PASSED}
    print(
        f"{elapsed:.1f}s: honest passed {len(passed & honest)}/{len(honest)}, spammers "
        f"{len(passed & spammers)}/{len(spammers)}; production judgments {len(production)}, "
        f"by spammers {sum(w in spammers for w in production)}"
    )
    assert result["report"]["status"] == "complete"
    assert result["preferences"]["preferences"]["rows"] > 0
    assert result["preferences"]["exam"]["passed"] == len(passed)
    assert len(passed & honest) >= 0.95 * len(honest)
    assert qualified == passed and not passed & spammers
    assert production and not set(production) & spammers
    assert set(production) <= passed
    assert exam_batch.closed and [p["status"] for p in exam_pool] == ["closed"]
    report = result["report"]
    assert report["exam"]["failed"] >= len(spammers)
    assert report["quality"]["exam"]["granted"] == len(passed)


def test_an_exam_wait_that_runs_out_is_not_retried(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answers arrive (frozen clock): the exam task fails once with the reason, without
    the task retries waiting all over again, and production never starts."""
    calls = 0
    real = exam_stage.exam_round

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(exam_stage, "exam_round", counted)
    with simulator(monkeypatch, SimulatorConfig(seed=6, time_scale=0)) as sim:
        path = campaign_dir(
            tmp_path,
            "unready",
            SIZE,
            {
                "demonstrations": None,
                "quality": {"exam": {"min_passers": 8, "wait_s": 0.3}},
                "preferences": {"dynamic_overlap": None},
            },
        )
        with pytest.raises(exam_stage.ExamNotReady, match="passed the exam"):
            run_campaign(str(path))
        stats = sim.stats()
    assert calls == 1
    assert (stats["pools_created"], stats["tasks_created"]) == (1, 12)  # the exam alone
