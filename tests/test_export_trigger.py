"""Dataset export (deterministic bytes, the TRL / SFT row shapes, no worker ids) and the
retraining trigger's bookkeeping (threshold, one key per trigger, resume while pending)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    Campaign,
    CandidateScore,
    ExportRecord,
    Item,
    Judgment,
    PairOutcome,
    Prompt,
    Response,
    TriggerRecord,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.export import (
    export_preferences,
    export_sft,
    exported_pairs,
    preference_rows,
)
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preferences import aggregate_preferences
from crowdloop.stages.quality_check import check_workers
from crowdloop.stages.sync import settle_items, wait_and_sync
from crowdloop.stages.trigger import finish_trigger, plan_trigger, triggers

CAMPAIGN = "export-test"
TOPICS = list(world.CATALOG)[:3]
MIN_CONFIDENCE = 0.6
PREFERENCE_KEYS = {
    "prompt",
    "chosen",
    "rejected",
    "margin",
    "confidence",
    "votes",
    "chosen_model",
    "rejected_model",
    "prompt_id",
    "pair_id",
    "campaign",
}
SFT_KEYS = {
    "prompt",
    "completion",
    "prompt_id",
    "response_id",
    "prompt_source",
    "verification_confidence",
    "prompt_confidence",
    "prompt_author_standing",
    "response_author_standing",
    "verified_again",
    "campaign",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_records(kind: str) -> list[ExportRecord]:
    with session_scope() as s:
        return list(
            s.exec(
                select(ExportRecord).where(ExportRecord.kind == kind).order_by(col(ExportRecord.id))
            ).all()
        )


@pytest.fixture
def collected(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A preferences campaign after one full round on the simulator, aggregated."""
    top5.write_jsonl(tmp_path / "candidates.jsonl", top5.generate_candidates(TOPICS, 0))
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 10))
    export_path = tmp_path / "out" / "preferences.jsonl"
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "output_dir": str(tmp_path / "out"),
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "golden_file": str(tmp_path / "golden.jsonl"),
                "golden_share": 0.25,
                "overlap": 5,
                "dynamic_overlap": None,
                "min_confidence": MIN_CONFIDENCE,
                "export": {"path": str(export_path)},
            },
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
    with SimulatorServer(SimulatorConfig(seed=2, time_scale=1e6)) as sim:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        with build_connector("simulator", {}, None) as connector:
            for _ in range(4):
                push_pending(CAMPAIGN, Stage.COMPARE, connector)
                wait_and_sync(
                    CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60
                )
                check_workers(CAMPAIGN, connector)
                moved = settle_items(CAMPAIGN, max_requeue_rounds=3)
                if moved["requeued"] == 0:
                    break
    aggregate = aggregate_preferences(CAMPAIGN)
    assert aggregate.pairs == 3 * 6  # every real pair of the 3 prompts has an outcome
    assert aggregate.prompts == 3
    yield export_path


# --- preferences -----------------------------------------------------------------------------


def test_preference_export_is_deterministic(collected: Path) -> None:
    rows, path = export_preferences(CAMPAIGN, collected, MIN_CONFIDENCE)
    assert path == collected
    first_bytes = collected.read_bytes()
    assert rows == len(first_bytes.decode().splitlines()) > 0

    again_rows, _ = export_preferences(CAMPAIGN, collected, MIN_CONFIDENCE)
    assert again_rows == rows
    assert collected.read_bytes() == first_bytes
    records = export_records("preferences")
    assert len(records) == 1
    assert (records[0].rows, records[0].sha256, records[0].path) == (
        rows,
        sha256(collected),
        str(collected),
    )
    assert exported_pairs(CAMPAIGN) == rows

    # Re-aggregating the same judgments and exporting again gives the same bytes too.
    aggregate_preferences(CAMPAIGN)
    export_preferences(CAMPAIGN, collected, MIN_CONFIDENCE)
    assert collected.read_bytes() == first_bytes
    assert len(export_records("preferences")) == 1
    # No temporary file is left beside the dataset.
    assert sorted(p.name for p in collected.parent.iterdir()) == ["preferences.jsonl"]

    # The same data written elsewhere is a new export record with the same digest.
    other = collected.parent / "copy.jsonl"
    export_preferences(CAMPAIGN, other, MIN_CONFIDENCE)
    records = export_records("preferences")
    assert len(records) == 2
    assert records[1].sha256 == records[0].sha256 == sha256(other)


def test_preference_rows_shape(collected: Path) -> None:
    export_preferences(CAMPAIGN, collected, MIN_CONFIDENCE)
    text = collected.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    with session_scope() as s:
        outcomes = {o.item_id: o for o in s.exec(select(PairOutcome)).all()}
        items = {i.id: i for i in s.exec(select(Item)).all()}
        responses = {r.id: r for r in s.exec(select(Response)).all()}
        prompts = {p.id: p for p in s.exec(select(Prompt)).all()}
        scores = {c.response_id: c.score for c in s.exec(select(CandidateScore)).all()}
        workers = set(s.exec(select(Judgment.worker_id).distinct()).all())
    decided = [o for o in outcomes.values() if o.winner != "tie" and o.confidence >= MIN_CONFIDENCE]
    assert len(rows) == len(decided) > 0
    assert [r["pair_id"] for r in rows] == sorted(o.item_id for o in decided)
    for row in rows:
        assert set(row) == PREFERENCE_KEYS
        outcome, item = outcomes[row["pair_id"]], items[row["pair_id"]]
        assert not item.is_golden
        left, right = responses[str(item.left_id)], responses[str(item.right_id)]
        chosen, rejected = (left, right) if outcome.winner == "left" else (right, left)
        assert row["prompt"] == prompts[outcome.prompt_id].text
        assert (row["chosen"], row["rejected"]) == (chosen.text, rejected.text)
        assert (row["chosen_model"], row["rejected_model"]) == (chosen.model, rejected.model)
        assert row["margin"] == round(scores[chosen.id] - scores[rejected.id], 6)
        assert MIN_CONFIDENCE <= row["confidence"] <= 1
        # The verdict pools every comparison of the prompt (P(chosen better) from the
        # scores), so the chosen side always scores higher, while the pair's own votes may
        # lean the other way: they are reported, not used as the verdict.
        assert row["margin"] > 0
        assert sum(row["votes"].values()) >= 3
        assert row["campaign"] == CAMPAIGN
    # Provenance never names a worker.
    assert len(workers) > 5
    assert all(w is not None and w not in text for w in workers)
    assert "worker" not in text


def test_low_confidence_pairs_are_left_out(collected: Path) -> None:
    everything = list(preference_rows(CAMPAIGN, 0.5))
    strict = list(preference_rows(CAMPAIGN, 0.99))
    assert len(strict) < len(everything)
    assert all(r["confidence"] >= 0.99 for r in strict)
    with session_scope() as s:
        decided = s.exec(
            select(func.count()).select_from(PairOutcome).where(PairOutcome.winner != "tie")
        ).one()
    assert len(everything) == decided


# --- SFT -------------------------------------------------------------------------------------


def add_sft_data(campaign: str) -> None:
    with session_scope() as s:
        s.add(Campaign(id=campaign, spec={}, spec_hash="0" * 64, connector="simulator"))
        s.flush()
        s.add(Prompt(id="p-b", campaign_id=campaign, text="Top 5 fruits?", source="crowd",
                     author="w001", verdict="accept", confidence=0.9))  # fmt: skip
        s.add(Prompt(id="p-a", campaign_id=campaign, text="Top 5 birds?", source="file",
                     verdict="accept"))  # fmt: skip
        s.add(Prompt(id="p-x", campaign_id=campaign, text="asdf", source="crowd",
                     author="w002", verdict="reject", confidence=0.8))  # fmt: skip
        s.flush()
        rows = [
            ("r-2", "p-b", "crowd", "accept", "1. apple\n2. pear", 0.876543),
            ("r-1", "p-a", "crowd", "accept", "1. robin\n2. owl", 0.95),
            ("r-3", "p-b", "crowd", "reject", "lorem ipsum", 0.9),
            ("r-4", "p-b", "model", "accept", "1. mango", None),
            ("r-5", "p-x", "crowd", "accept", "1. kiwi", 0.7),  # its prompt was rejected
            ("r-6", "p-a", "crowd", None, "1. crow", None),  # verification still open
        ]
        for rid, pid, source, verdict, text, conf in rows:
            s.add(Response(id=rid, campaign_id=campaign, prompt_id=pid, text=text,
                           source=source, author="w003", verdict=verdict,
                           confidence=conf))  # fmt: skip


def test_sft_export_rows_and_determinism(sqlite_url: str, tmp_path: Path) -> None:
    add_sft_data("sft-test")
    path = tmp_path / "sft.jsonl"
    n, _ = export_sft("sft-test", path)
    first = path.read_bytes()
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert n == len(rows) == 2
    assert [r["response_id"] for r in rows] == ["r-1", "r-2"]
    assert all(set(r) == SFT_KEYS for r in rows)
    assert rows[0] == {
        "prompt": "Top 5 birds?",
        "completion": "1. robin\n2. owl",
        "prompt_id": "p-a",
        "response_id": "r-1",
        "prompt_source": "file",
        "verification_confidence": 0.95,
        "prompt_confidence": 1.0,
        "prompt_author_standing": "unknown",
        "response_author_standing": "unknown",
        "verified_again": [],
        "campaign": "sft-test",
    }
    assert rows[1]["verification_confidence"] == 0.8765
    assert rows[1]["prompt_source"] == "crowd"
    text = first.decode()
    assert all(w not in text for w in ("w001", "w002", "w003"))

    export_sft("sft-test", path)
    assert path.read_bytes() == first
    records = export_records("sft")
    assert [(r.rows, r.sha256) for r in records] == [(2, sha256(path))]
    assert exported_pairs("sft-test") == 0  # SFT rows are not preference pairs


# --- retraining trigger ------------------------------------------------------------------------


@pytest.fixture
def trigger_campaign(db_url: str) -> str:
    with session_scope() as s:
        s.add(Campaign(id="trig", spec={}, spec_hash="0" * 64, connector="simulator"))
    return "trig"


def trigger_count() -> int:
    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(TriggerRecord)).one())


def test_trigger_threshold_and_key(trigger_campaign: str) -> None:
    c = trigger_campaign
    assert plan_trigger(c, pairs_total=0, threshold=50, target="inline") is None
    assert plan_trigger(c, pairs_total=49, threshold=50, target="inline") is None
    assert trigger_count() == 0

    first = plan_trigger(c, pairs_total=50, threshold=50, target="inline")
    assert first is not None
    assert first.key == f"crowdloop:{c}:retrain:1"
    assert (first.pairs_total, first.new_pairs, first.target, first.state) == (
        50,
        50,
        "inline",
        "intent",
    )
    # While the intent is pending, every call returns it, whatever the count now says.
    for total in (50, 60, 500):
        pending = plan_trigger(c, pairs_total=total, threshold=50, target="inline")
        assert pending is not None
        assert (pending.key, pending.pairs_total, pending.state) == (first.key, 50, "intent")
    assert trigger_count() == 1

    finish_trigger(first.key, flow_run_id="run-123", result={"accuracy": 0.8})
    done = triggers(c)
    assert [(t.key, t.state, t.flow_run_id, t.result) for t in done] == [
        (first.key, "done", "run-123", {"accuracy": 0.8})
    ]
    # Nothing new until `threshold` more pairs than the last trigger.
    assert plan_trigger(c, pairs_total=50, threshold=50, target="inline") is None
    assert plan_trigger(c, pairs_total=99, threshold=50, target="inline") is None
    assert trigger_count() == 1

    second = plan_trigger(c, pairs_total=100, threshold=50, target="inline")
    assert second is not None
    assert second.key == f"crowdloop:{c}:retrain:2"
    assert (second.pairs_total, second.new_pairs) == (100, 50)
    assert trigger_count() == 2
    finish_trigger(second.key, flow_run_id=None, result=None)
    assert [t.key for t in triggers(c)] == [first.key, second.key]
    assert {t.state for t in triggers(c)} == {"done"}


def test_triggers_are_per_campaign(trigger_campaign: str) -> None:
    with session_scope() as s:
        s.add(Campaign(id="other", spec={}, spec_hash="1" * 64, connector="simulator"))
    a = plan_trigger(trigger_campaign, pairs_total=10, threshold=10, target="inline")
    b = plan_trigger("other", pairs_total=10, threshold=10, target="deployment:x/y")
    assert a is not None and b is not None
    assert (a.key, b.key) == ("crowdloop:trig:retrain:1", "crowdloop:other:retrain:1")
    assert b.target == "deployment:x/y"
    finish_trigger(a.key, flow_run_id=None, result=None)
    # The other campaign's pending intent does not block or count for this one.
    assert plan_trigger(trigger_campaign, pairs_total=15, threshold=10, target="inline") is None
    third = plan_trigger(trigger_campaign, pairs_total=20, threshold=10, target="inline")
    assert third is not None and third.key == "crowdloop:trig:retrain:2"
    assert [t.key for t in triggers("other")] == [b.key]
    assert trigger_count() == 3
