"""AI-first ranking end to end: the demo ranking campaign run through the Prefect flow with
the simulator's AI judge ranking first, against the same campaign all-human (the same
seed, crowd and simulator), both scored against the simulator's hidden truth.

What this checks is the trade-off bench/bench_ai_routing.py --ranking measured (README,
"AI-first ranking sets"): with a judge of content accuracy 0.8, confidence >= 0.8 and order
agreement >= 0.6, the exported order stays within a few points of Kendall tau of
all-human while the crowd does a good deal less work; it does NOT reach the issue's "at
most half the human judgments" at that accuracy (the README gives the figures)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.demo.ranking import score_rankings_against_truth
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import Judgment
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.stages.ranking import aggregate_rankings, export_rankings
from crowdloop.stages.rounds import run_bare
from tests.e2e_helpers import judged, simulator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
JUDGE = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
SEED = 0
# One name for both runs (a database each): the name seeds the sets and their shown
# order, so both rank the very same sets.
NAME = "rk-e2e"


def _campaign(folder: Path, name: str, routing: dict[str, Any] | None) -> Path:
    folder.mkdir(parents=True)
    shutil.copytree(CAMPAIGNS / "ranking", folder / "ranking")
    data = yaml.safe_load((CAMPAIGNS / "ranking.yaml").read_text())
    data.update(name=name, seed=SEED, output_dir="out", poll_interval_s=0.05)
    data["ranking"]["export"] = {"pairs_path": "out/pairs.jsonl", "rankings_path": "out/r.jsonl"}
    if routing:
        data["routing"] = routing
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _human_judgments(campaign: str) -> int:
    with session_scope() as s:
        return len(
            s.exec(
                select(Judgment).where(
                    Judgment.campaign_id == campaign, Judgment.connector == "simulator"
                )
            ).all()
        )


def test_ai_first_ranking_stays_near_all_human_with_less_crowd_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crowdloop.flows.campaign import run_campaign

    # A database per run: both campaigns have one name, and two simulators of one seed hand
    # out the same task ids, which one database would take for the same results.
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'human.db'}")
    human_path = _campaign(tmp_path / "human", NAME, None)
    with simulator(monkeypatch, SimulatorConfig(seed=SEED, ai_judge=JUDGE)):
        spec = load_campaign(human_path)
        assert spec.ranking is not None
        run_bare(spec)
        aggregate_rankings(spec.name, spec.ranking)
        export_rankings(spec.name, spec.ranking)
    out = tmp_path / "human" / "out"
    human = score_rankings_against_truth(NAME, out / "r.jsonl", out / "pairs.jsonl")
    bought_all_human = _human_judgments(NAME)

    routing = {
        "ai": {"name": "aijudge", "options": {"store": str(tmp_path / "answers.sqlite")}},
        "confidence_threshold": 0.8,
        "min_order_agreement": 0.6,
    }
    ai_path = _campaign(tmp_path / "ai", NAME, routing)
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", f"sqlite:///{tmp_path / 'ai.db'}")
    with judged(monkeypatch, SimulatorConfig(seed=SEED, ai_judge=JUDGE)):
        result = run_campaign(str(ai_path))
    out = tmp_path / "ai" / "out"
    ai = score_rankings_against_truth(NAME, out / "r.jsonl", out / "pairs.jsonl")
    bought = _human_judgments(NAME)
    print(
        f"all-human: tau {human.tau:.3f}, {bought_all_human} human judgments; "
        f"AI-first: tau {ai.tau:.3f}, {bought} ({bought / bought_all_human:.0%})"
    )
    report = result["report"]
    assert report["status"] == "complete"
    routed = report["routing"]
    assert routed["unit"] == "ranking sets" and routed["by_route"].get("ai", 0) > 0
    assert ai.prompts == human.prompts == 12
    # Within 0.05 of all-human's tau, for at most 80% of its human judgments (measured on
    # this seed: 0.880 vs 0.903 at 159 of 230), and above the naive order of its rankings.
    assert ai.tau >= human.tau - 0.05
    assert bought <= 0.8 * bought_all_human
    assert ai.tau > ai.baseline_tau
