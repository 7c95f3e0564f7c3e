"""The graded demo campaign (campaigns/graded.yaml) end to end on the simulator: its exported
rows checked against the simulator's hidden truth, and against the mean of votes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlmodel import col, select

from crowdloop.aggregation.graded import mean_of_votes
from crowdloop.db import session_scope
from crowdloop.flows.campaign import run_campaign
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import Item, PairOutcome
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.graded import level_of
from crowdloop.simulator.world import response_quality
from crowdloop.stages.graded import scale_of
from crowdloop.stages.preferences import judgments_frame
from tests.e2e_helpers import simulator

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

CAMPAIGNS = Path(__file__).resolve().parents[1] / "campaigns"


def graded_campaign(tmp_path: Path) -> Path:
    """campaigns/graded.yaml with its inputs, writing its outputs under tmp_path."""
    shutil.copytree(CAMPAIGNS / "graded", tmp_path / "graded")
    data = yaml.safe_load((CAMPAIGNS / "graded.yaml").read_text(encoding="utf-8"))
    data["output_dir"] = "out"
    data["preferences"]["export"]["path"] = "out/preferences.jsonl"
    data["poll_interval_s"] = 0.2
    path = tmp_path / "graded.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_graded_demo_rows_match_the_hidden_truth_and_beat_the_mean_of_votes(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = graded_campaign(tmp_path)
    spec = load_campaign(path)
    assert spec.preferences is not None and spec.preferences.graded is not None
    graded = spec.preferences.graded
    crowd = CrowdConfig(honest=24, noisy=4, spammer=12, left_bias=2)
    with simulator(monkeypatch, SimulatorConfig(seed=12, crowd=crowd)):
        result = run_campaign(str(path))
    assert result["report"]["status"] == "complete"
    rows = [json.loads(line) for line in (tmp_path / "out/preferences.jsonl").open()]
    assert len(rows) >= 40
    sides, levels, equal = [], [], 0
    for row in rows:
        gap = response_quality(row["prompt"], row["chosen"]) - response_quality(
            row["prompt"], row["rejected"]
        )
        if gap == 0:  # equally good: no side is right, and the level should say so
            equal += 1
            assert (graded.rank(row["level"]) or 0) <= 2
            continue
        sides.append(gap > 0)
        truth = level_of(gap, len(graded.levels))
        got = graded.rank(row["level"])
        assert got is not None
        levels.append(abs(got - truth))
        # The margin column is the exported level's margin from the campaign file.
        assert row["margin"] == pytest.approx(graded.levels[got - 1].margin)
    side_accuracy = float(np.mean(sides))
    within_one = float(np.mean([s and d <= 1 for s, d in zip(sides, levels, strict=True)]))
    print(
        f"rows={len(rows)} equally good={equal} side={side_accuracy:.3f} "
        f"level within one={within_one:.3f}"
    )
    assert equal <= 0.15 * len(rows)
    assert side_accuracy >= 0.95
    assert within_one >= 0.85

    # The naive baseline on the same answers (every answer, no golden filtering), scored on
    # the same pairs: the mean of signed levels.
    naive = mean_of_votes(judgments_frame(spec.name), scale_of(graded)).set_index("pair")
    ours_exact, naive_exact = [], []
    with session_scope() as s:
        outcomes = s.exec(
            select(PairOutcome, Item).join(Item, col(Item.id) == col(PairOutcome.item_id))
        ).all()
        for o, item in outcomes:
            payload = item.payload
            gap = response_quality(payload["prompt"], payload["left"]) - response_quality(
                payload["prompt"], payload["right"]
            )
            if gap == 0 or o.item_id not in naive.index:
                continue
            side = "left" if gap > 0 else "right"
            truth = level_of(gap, len(graded.levels))
            ours_exact.append(o.winner == side and (o.level or 0) == truth)
            n = naive.loc[o.item_id]
            naive_exact.append(n["side"] == side and int(n["level"]) == truth)
    assert len(ours_exact) == len(naive_exact) >= 50
    ours, base = float(np.mean(ours_exact)), float(np.mean(naive_exact))
    print(f"pairs={len(ours_exact)} exact level: ordinal={ours:.3f} mean of votes={base:.3f}")
    assert ours > base
    report = result["report"]
    assert report["graded"]["golden_answers"] > 0
    assert report["graded"]["golden_level_within_one"] > 0
    assert report["rationales"] > 0
    markdown = (tmp_path / "out" / "graded-example-report.md").read_text(encoding="utf-8")
    assert "**Graded preferences:**" in markdown
    assert "| significantly better |" in markdown
