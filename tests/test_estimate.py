"""The cost estimate (pure), the `budget:` spec section and `crowdloop estimate`."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from crowdloop.cli import app
from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import FeeModel
from crowdloop.models.spec import CampaignSpec, SpecError, load_campaign
from crowdloop.simulator import world
from crowdloop.stages.budget import db_counts
from crowdloop.stages.estimate import (
    WorkCounts,
    count_work,
    estimate,
    estimate_spec,
    expected_overlap,
    md_escape,
)
from crowdloop.stages.plan import register_campaign

TOPICS = list(world.CATALOG)[:2]


def write_campaign(tmp_path: Path, **extra: Any) -> Path:
    top5.write_jsonl(tmp_path / "candidates.jsonl", top5.generate_candidates(TOPICS, 0))
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 20))
    data: dict[str, Any] = {
        "name": "est",
        "output_dir": ".",
        "quality": {"max_requeue_rounds": 2},
        "preferences": {
            "candidates_file": "candidates.jsonl",
            "golden_file": "golden.jsonl",
            "golden_share": 0.25,
            "overlap": 3,
            "dynamic_overlap": None,
            "reward": {"amount": "0.05"},
            "export": {"path": "prefs.jsonl"},
        },
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- the arithmetic -------------------------------------------------------------------------


def test_fixed_overlap_expected_and_worst_case(tmp_path: Path) -> None:
    spec = load_campaign(write_campaign(tmp_path))
    counts = count_work(spec)
    # 2 topics x 4 models: 2 prompts x 6 pairs; golden 12 * 0.25 / 0.75 = 4.
    assert counts == WorkCounts(real_pairs=12, golden_pairs=4)
    est = estimate(spec, counts, FeeModel(rate=Decimal("0.2")), fee_source="test")
    first_round = (12 + 4) * 3 * Decimal("0.05")  # 2.40
    assert est.rewards_expected == first_round  # rework_share defaults to 0
    # Worst case: every assignment asked again in each of the 2 re-queue rounds.
    assert est.rewards_worst == first_round * 3
    assert est.fee_expected == first_round * Decimal("0.2")
    assert est.expected == Decimal("2.88") and est.worst == Decimal("8.64")
    assert est.fee_priced and est.fee_source == "test"


def test_dynamic_overlap_and_exam_and_assumptions(tmp_path: Path) -> None:
    path = write_campaign(
        tmp_path,
        preferences={"dynamic_overlap": {"min_overlap": 1, "max_overlap": 4}},
        quality={"max_requeue_rounds": 1, "exam": {"items": 6, "min_correct": 5, "min_passers": 4}},
        budget={"cap": 100, "assume": {"extend_rate": 0.5, "exam_takers": 10, "rework_share": 0.1}},
    )
    spec = load_campaign(path)
    counts = count_work(spec)
    # The exam takes 6 of the 20 golden pairs; production keeps golden pairs.
    assert counts == WorkCounts(real_pairs=12, golden_pairs=4, exam_items=6)
    assert expected_overlap(1, 4, 0.5) == 1 + 0.5 + 0.25 + 0.125
    est = estimate(spec, counts, FeeModel(rate=Decimal(0)))
    by_what = {ln.what.split(" (")[0].split(",")[0]: ln for ln in est.lines}
    real = by_what["real pairs"]
    assert (real.overlap, real.overlap_max) == (1.875, 4)
    assert real.expected == Decimal("1.875") * 12 * Decimal("0.05")
    assert real.worst == 12 * 4 * Decimal("0.05")
    exam = by_what["exam items"]
    assert exam.expected == 6 * 10 * Decimal("0.05") and exam.worst == 6 * 100 * Decimal("0.05")
    # Extension rounds carry golden pairs too, one more answer each, at the golden share
    # of the pairs they extend: expected 12 * 0.875 -> 4, at most 12 * 3 -> 12.
    later = by_what["golden pairs asked again in extension rounds"]
    assert (later.items, later.items_max, later.overlap, later.overlap_max) == (4, 12, 1, 1)
    assert later.expected == 4 * Decimal("0.05") and later.worst == 12 * Decimal("0.05")
    reasks = by_what["re-asks"]
    golden = by_what["golden pairs"]
    compare_expected = real.expected + golden.expected + later.expected
    assert reasks.expected == compare_expected * Decimal("0.1")
    assert reasks.worst == real.worst + golden.worst + later.worst  # one re-queue round
    assert est.rewards_worst == sum(ln.worst for ln in est.lines)


def test_demonstrations_are_priced_per_attempt(tmp_path: Path) -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": "demo-est",
            "quality": {"max_requeue_rounds": 0},
            "demonstrations": {
                "topics": ["a", "b"],
                "prompts_per_topic": 2,
                "max_attempts": 2,
                "verification_overlap": 3,
                "export": {"path": str(tmp_path / "sft.jsonl")},
            },
            "budget": {"cap": 10, "assume": {"text_accept_rate": 0.5}},
        }
    )
    est = estimate(spec, count_work(spec), FeeModel(rate=Decimal(0)))
    lines = {ln.stage: ln for ln in est.lines if ln.stage != "demonstrations"}
    # 4 slots; writes per text 1 + 0.5 = 1.5; a prompt is accepted at last 1 - 0.25 = 0.75.
    assert lines["prompts"].items == pytest.approx(6.0) and lines["prompts"].items_max == 8
    assert lines["responses"].items == pytest.approx(4.5)
    verify = [ln for ln in est.lines if ln.stage == "verify"]
    assert verify[0].items == pytest.approx(10.5) and verify[0].items_max == 16
    # An unsure verdict is asked of two more verifiers (30% expected, every one at worst,
    # up to max_verification_overlap 5); texts of authors blocked later are verified again
    # (none expected, every text at worst).
    assert verify[0].overlap == pytest.approx(3.6) and verify[0].overlap_max == 5
    assert verify[0].worst == 16 * 5 * Decimal("0.02")
    assert verify[1].items == 0 and verify[1].worst == 16 * 5 * Decimal("0.02")
    assert est.rewards_worst == 8 * Decimal("0.10") * 2 + 2 * 16 * 5 * Decimal("0.02")


def test_a_connector_that_cannot_price_its_fee_says_so(tmp_path: Path) -> None:
    toloka = {"name": "toloka", "options": {"project_id": "1"}}  # options are validated
    spec = load_campaign(write_campaign(tmp_path, connector=toloka))
    est = estimate_spec(spec)
    assert not est.fee_priced and est.fee_expected == 0
    assert any("cannot price" in n for n in est.notes)
    assert "not priced" in est.markdown()
    assert est.to_json()["platform_fee"]["priced"] is False
    # The campaign can state the rate itself.
    spec = load_campaign(
        write_campaign(tmp_path, connector=toloka, budget={"cap": 50, "fee_rate": 0.3})
    )
    est = estimate_spec(spec)
    assert est.fee_rate == Decimal("0.3") and est.fee_expected == est.rewards_expected * Decimal(
        "0.3"
    )


def test_simulator_declares_a_zero_fee(tmp_path: Path) -> None:
    est = estimate_spec(load_campaign(write_campaign(tmp_path)))
    assert est.fee_rate == 0 and "simulator" in est.fee_source


def test_markdown_escapes_text_from_inputs(tmp_path: Path) -> None:
    assert md_escape("a|b <script>`x`") == "a\\|b &lt;script&gt;\\`x\\`"
    est = estimate_spec(load_campaign(write_campaign(tmp_path)))
    md = est.markdown()
    assert "| compare | real pairs, overlap 3 | 12.0 / 12 | 3.00 / 3 |" in md
    payload = json.loads(json.dumps(est.to_json()))
    assert payload["expected"] == "2.40" and payload["worst_case"] == "7.20"


def test_counts_from_files_match_registration(tmp_path: Path, sqlite_url: str) -> None:
    path = write_campaign(
        tmp_path,
        quality={"exam": {"items": 6, "min_correct": 5, "min_passers": 3}},
    )
    spec = load_campaign(path)
    with session_scope() as s:
        register_campaign(s, spec)
    with session_scope() as s:
        assert db_counts(s, spec.name) == count_work(spec)


# --- the spec section -------------------------------------------------------------------------


def test_budget_section_validates_at_load(tmp_path: Path) -> None:
    spec = load_campaign(
        write_campaign(tmp_path, budget={"cap": 25, "approval_threshold": "10.5", "pause_at": 0.8})
    )
    assert spec.budget is not None
    assert spec.budget.cap.amount == Decimal(25) and spec.budget.cap.currency == "USD"
    assert spec.budget.approval_threshold and spec.budget.approval_threshold.amount == Decimal(
        "10.5"
    )
    for bad, field in (
        ({"pause_at": 0.8}, "budget.cap"),
        ({"cap": 0}, "budget.cap"),
        ({"cap": 10, "pause_at": 1.5}, "budget.pause_at"),
        ({"cap": 10, "pause_at": 0}, "budget.pause_at"),
        ({"cap": {"amount": 10, "currency": "EUR"}}, "preferences.reward"),
        ({"cap": 10, "surprise": 1}, "budget.surprise"),
    ):
        with pytest.raises(SpecError) as err:
            load_campaign(write_campaign(tmp_path, budget=bad))
        assert "campaign.yaml:" in str(err.value) and f"'{field}'" in str(err.value), err.value


def test_no_budget_section_keeps_the_spec_hash(tmp_path: Path) -> None:
    from crowdloop.stages.plan import spec_hash

    plain = load_campaign(write_campaign(tmp_path))
    capped = load_campaign(write_campaign(tmp_path, budget={"cap": 5}))
    # The budget is operational: a cap raised later is not a different campaign.
    assert spec_hash(plain) == spec_hash(capped)
    assert "budget" not in json.dumps(plain.model_dump(mode="json")["quality"])


# --- the command ------------------------------------------------------------------------------


def test_estimate_command(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_campaign(tmp_path, budget={"cap": 5})
    out = runner.invoke(app, ["estimate", str(path)])
    assert out.exit_code == 0, out.output
    assert "**Expected:** 2.40 USD" in out.output and "**Worst case:** 7.20 USD" in out.output
    as_json = runner.invoke(app, ["estimate", str(path), "--json"])
    assert json.loads(as_json.output)["worst_case"] == "7.20"
    bad = write_campaign(tmp_path, budget={"cap": 5, "pause_at": 2})
    failed = runner.invoke(app, ["estimate", str(bad)])
    assert failed.exit_code == 2
    assert "campaign.yaml:" in failed.output and "budget.pause_at" in failed.output
