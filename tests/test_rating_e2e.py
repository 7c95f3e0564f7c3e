"""The demo rating campaign end to end through Prefect (test API) on the simulated
marketplace, its exported reward-regression rows checked against the simulator's hidden
per-aspect truth and against the mean of the votes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crowdloop.cli import app
from crowdloop.demo.rating import score_ratings_against_truth
from crowdloop.flows.campaign import run_campaign
from crowdloop.models.spec import load_campaign
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.stages.report import campaign_report, report_markdown
from tests.e2e_helpers import simulator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"


def test_demo_rating_campaign_beats_the_mean_of_votes_on_a_crowd_with_spammers(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(CAMPAIGNS / "rating", tmp_path / "rating")
    spec = yaml.safe_load((CAMPAIGNS / "rating.yaml").read_text())
    spec["output_dir"] = "out"
    spec["rating"]["export"] = {"path": "out/ratings.jsonl"}
    path = tmp_path / "rating.yaml"
    path.write_text(yaml.safe_dump(spec))
    # A quarter of the crowd clicks at random, a tenth gives every aspect the top score.
    crowd = CrowdConfig(honest=20, noisy=6, spammer=12, left_bias=2, same_side=4)
    with simulator(monkeypatch, SimulatorConfig(seed=1, crowd=crowd)):
        result = run_campaign(str(path))
    out = tmp_path / "out" / "ratings.jsonl"
    rating = load_campaign(path).rating
    assert rating is not None
    truth = score_ratings_against_truth("rating-demo", out, rating)
    print(truth)
    assert result["report"]["status"] == "complete"
    assert truth.responses == 72
    # Every row's aspect scores against the hidden per-aspect truth (mean absolute error in
    # scale points), and against the mean of every valid vote (spammers included).
    assert set(truth.error) == {a.name for a in rating.aspects}
    assert truth.mean_error < 0.5
    assert truth.mean_error < truth.mean_baseline_error - 0.1
    assert all(truth.error[a] < truth.baseline_error[a] for a in truth.error)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    first = rows[0]
    assert {"prompt", "response", "scores", "uncertainty", "helpfulness"} <= set(first)
    assert all(0 <= r[a.name] <= 4 for r in rows for a in rating.aspects)
    assert all(r["uncertainty"][a.name] > 0 for r in rows for a in rating.aspects)
    report = result["report"]
    assert report["rating"]["golden_graded"] > 0
    assert report["rating"]["excluded"] > 0  # blocked workers' ratings left out
    assert report["exports"]["ratings"]["rows"] == 72
    assert len(report["rating"]["aspects"]) == 5
    assert report["rating"]["caveat"] is None  # golden ratings were graded
    assert report["rationales"] > 0  # careful raters sometimes said why
    markdown = report_markdown(campaign_report("rating-demo"))
    assert "**Ratings:**" in markdown and "| helpfulness |" in markdown
    # Re-aggregating and re-exporting from the stored judgments gives the same bytes.
    again = CliRunner().invoke(
        app, ["export", "rating-demo", "--kind", "ratings", "--out", str(tmp_path / "again.jsonl")]
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()
