"""The demo ranking campaign end to end through Prefect (test API) on the simulated
marketplace, its exported datasets checked against the simulator's hidden truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from crowdloop.demo.ranking import score_rankings_against_truth
from crowdloop.flows.campaign import run_campaign
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.world import response_quality
from tests.e2e_helpers import simulator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"


def test_demo_ranking_campaign_beats_mean_rank_on_a_crowd_with_spammers(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(CAMPAIGNS / "ranking", tmp_path / "ranking")
    spec = yaml.safe_load((CAMPAIGNS / "ranking.yaml").read_text())
    spec["output_dir"] = "out"
    spec["ranking"]["export"] = {
        "pairs_path": "out/pairs.jsonl",
        "rankings_path": "out/rankings.jsonl",
    }
    path = tmp_path / "ranking.yaml"
    path.write_text(yaml.safe_dump(spec))
    # A quarter of the crowd ranks at random, a tenth keeps the shown order.
    crowd = CrowdConfig(honest=20, noisy=6, spammer=12, left_bias=2, same_side=4)
    with simulator(monkeypatch, SimulatorConfig(seed=1, crowd=crowd)):
        result = run_campaign(str(path))
    out = tmp_path / "out"
    truth = score_rankings_against_truth(
        "ranking-demo", out / "rankings.jsonl", out / "pairs.jsonl"
    )
    print(truth)
    assert result["report"]["status"] == "complete"
    assert truth.prompts == 12
    # Every row is a prompt's six answers in the aggregated order, checked against the
    # hidden qualities (Kendall's tau-b, mean over prompts) and against mean rank over
    # every ranking (spammers included).
    assert truth.tau >= 0.8
    assert truth.tau > truth.baseline_tau + 0.05
    rows = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert all(
        len(r["responses"]) == 6 and r["scores"] == sorted(r["scores"], reverse=True) for r in rows
    )
    assert all(
        response_quality(r["prompt"], r["responses"][0])
        >= response_quality(r["prompt"], r["responses"][-1])
        for r in rows
    )
    # The TRL pairs: chosen above rejected by the aggregated order, mostly truly better.
    assert truth.pairs >= 100
    assert truth.pairs_right >= 0.8
    pair = json.loads((out / "pairs.jsonl").read_text().splitlines()[0])
    assert {"prompt", "chosen", "rejected", "margin", "confidence"} <= set(pair)
    report = result["report"]
    assert report["ranking"]["golden_graded"] > 0
    assert report["ranking"]["excluded"] > 0  # blocked workers' rankings left out
    assert report["exports"]["rankings"]["rows"] == 12
