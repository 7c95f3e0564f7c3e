"""The replay connector: its contract on a tiny recording, then the whole LLMFAO crowd study
run through the campaign flow with nothing lost or altered."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from crowdloop.aggregation.bradley_terry import LABEL_OUTCOMES, bradley_terry
from crowdloop.connectors.errors import InvalidRequest, NotFound
from crowdloop.connectors.registry import build_connector
from crowdloop.connectors.replay.connector import (
    EXHAUSTED_REASON,
    ReplayConnector,
    market_for,
    planned_item_id,
    reset_replay_state,
)
from crowdloop.connectors.replay.models import FLIP, RecordingError, load_recording
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    BlockScope,
    CompareTask,
    Money,
    Quarantined,
    Stage,
    Submission,
    TaskItem,
)

LLMFAO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llmfao"
needs_llmfao = pytest.mark.skipif(
    not (LLMFAO / "crowd-comparisons.csv").is_file(),
    reason=f"LLMFAO data not found at {LLMFAO} (see README 'Data')",
)

# --- a tiny recording -----------------------------------------------------------------------

PAIRS = [
    {"id": 0, "prompt": 1, "text": "P", "model_x": 10, "result_x": "A", "model_y": 11,
     "result_y": "B"},
    {"id": 1, "prompt": 1, "text": "P", "model_x": 12, "result_x": "C", "model_y": 10,
     "result_y": "A"},
    # Models 13 and 14 gave the same answer "D": pairs 2 and 3 show the very same texts.
    {"id": 2, "prompt": 1, "text": "P", "model_x": 13, "result_x": "D", "model_y": 11,
     "result_y": "B"},
    {"id": 3, "prompt": 1, "text": "P", "model_x": 11, "result_x": "B", "model_y": 14,
     "result_y": "D"},
]  # fmt: skip
JUDGMENTS = [  # pair, worker, winner: in recorded order
    (0, "w1", "left"), (0, "w2", "tie"), (0, "w3", "right"),
    (1, "w1", "right"), (1, "w4", "left"),
    (2, "w1", "left"), (2, "w2", "left"),
    (3, "w3", "tie"), (3, "w4", "right"),
]  # fmt: skip


def _write_recording(folder: Path) -> dict[str, str]:
    pairs, comparisons = folder / "pairs.jsonl", folder / "comparisons.csv"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    by_id = {p["id"]: p for p in PAIRS}
    with comparisons.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "prompt", "model_x", "model_y", "worker", "winner"])
        for pair, worker, winner in JUDGMENTS:
            p = by_id[pair]
            out.writerow([pair, p["prompt"], p["model_x"], p["model_y"], worker, winner])
    return {"comparisons": str(comparisons), "pairs": str(pairs)}


@pytest.fixture
def options(tmp_path: Path) -> Iterator[dict[str, str]]:
    reset_replay_state()
    yield _write_recording(tmp_path)
    reset_replay_state()


def _spec(campaign: str = "c1") -> BatchSpec:
    return BatchSpec(
        name="replay test",
        stage=Stage.COMPARE,
        instruction="which?",
        reward=Money(amount=0),
        campaign_id=campaign,
    )


def _task(
    key: str, left: str, right: str, *, group: str | None = None, overlap: int = 5
) -> TaskItem:
    payload = CompareTask(instruction="which?", prompt="P", left=left, right=right)
    return TaskItem(key=key, group=group or key.split(".")[0], payload=payload, overlap=overlap)


def _drain(c: ReplayConnector, ref: BatchRef, cursor: str | None = None) -> list[Any]:
    out: list[Any] = []
    for page in c.iter_submissions(ref, cursor=cursor):
        out.extend(page.submissions)
        out.extend(page.quarantined)
    return out


def _answers(subs: list[Any]) -> list[tuple[str, str | None, str]]:
    return [
        (s.task_key, s.worker_id, s.answer.choice if isinstance(s, Submission) else "expired")
        for s in subs
    ]


def test_found_by_entry_point_and_state_shared_between_instances(options: dict[str, str]) -> None:
    first = build_connector("replay", options)
    assert isinstance(first, ReplayConnector)
    ref = first.create_batch(_spec(), idempotency_key="k-batch")
    first.start(ref)
    first.add_items(ref, [_task("i0.0", "A", "B")], idempotency_key="k-tasks")
    first.close()
    # A flow opens a new connector per task: it must see the same marketplace.
    with ReplayConnector.from_config(options, None) as second:
        assert second.find_batch("k-batch") == ref
        assert second.find_tasks(ref, ["i0.0", "nope"]).keys() == {"i0.0"}
        assert len(_drain(second, ref)) == 5
    with pytest.raises(InvalidRequest, match="required"):
        ReplayConnector.from_config({"pairs": options["pairs"]}, None)


def test_creates_are_idempotent_by_key(options: dict[str, str]) -> None:
    c = ReplayConnector.from_config(options, None)
    ref = c.create_batch(_spec(), idempotency_key="k-batch")
    assert c.create_batch(_spec(), idempotency_key="k-batch") == ref
    assert c.find_batch("other") is None
    c.start(ref)
    items = [_task("i0.0", "A", "B"), _task("i1.0", "C", "A")]
    first = c.add_items(ref, items, idempotency_key="k-tasks")
    again = c.add_items(ref, items, idempotency_key="k-tasks")
    subset = c.add_items(ref, items[1:], idempotency_key="k-tasks")
    assert first == again and subset.external_ids == {"i1.0": first.external_ids["i1.0"]}
    assert c.stats["tasks_created"] == 2 and c.stats["task_create_replays"] == 3
    assert len(_drain(c, ref)) == 10  # 2 tasks x overlap 5, nothing served twice
    status = c.get_status(ref)
    assert (status.tasks, status.assignments_total, status.assignments_submitted) == (2, 10, 10)
    with pytest.raises(NotFound):
        c.find_tasks(BatchRef(connector="replay", external_id="missing"), ["x"])


def test_serves_recorded_order_up_to_overlap_and_flips_a_swapped_pair(
    options: dict[str, str],
) -> None:
    c = ReplayConnector.from_config(options, None)
    ref = c.create_batch(_spec(), idempotency_key="k")
    c.start(ref)
    # Pair 0 as recorded (A | B); pair 1 recorded as (C | A), shown the other way round.
    c.add_items(
        ref,
        [_task("i0.0", "A", "B", overlap=2), _task("i1.0", "A", "C", overlap=2)],
        idempotency_key="t1",
    )
    assert _answers(_drain(c, ref)) == [
        ("i0.0", "w1", "left"),
        ("i0.0", "w2", "tie"),
        ("i1.0", "w1", FLIP["right"]),
        ("i1.0", "w4", FLIP["left"]),
    ]
    assert c.stats["flipped_tasks"] == 1
    # A re-queue of item i0 (new key, same group) continues the pair; then it runs dry.
    cursor = "4"
    c.add_items(ref, [_task("i0.1", "A", "B", overlap=2)], idempotency_key="t2")
    rest = _drain(c, ref, cursor)
    assert _answers(rest) == [("i0.1", "w3", "right"), ("i0.1", None, "expired")]
    assert isinstance(rest[1], Quarantined) and rest[1].reason == EXHAUSTED_REASON


def test_blocked_worker_is_not_served_and_pages_resume_from_a_cursor(
    options: dict[str, str],
) -> None:
    c = ReplayConnector.from_config({**options, "page_limit": 2}, None)
    ref = c.create_batch(_spec(), idempotency_key="k")
    c.start(ref)
    c.block_worker("w2", scope=BlockScope.CAMPAIGN, reason="failed golden")
    c.add_items(ref, [_task("i0.0", "A", "B", overlap=3)], idempotency_key="t")
    pages = list(c.iter_submissions(ref, cursor=None))
    assert [len(p.submissions) + len(p.quarantined) for p in pages] == [2, 1]
    assert [p.has_more for p in pages] == [True, False]
    assert _answers(_drain(c, ref)) == [
        ("i0.0", "w1", "left"),
        ("i0.0", "w3", "right"),
        ("i0.0", None, "expired"),
    ]
    assert _answers(_drain(c, ref, pages[0].cursor)) == [("i0.0", None, "expired")]
    end = list(c.iter_submissions(ref, cursor=pages[-1].cursor))
    assert len(end) == 1 and not end[0].submissions and not end[0].has_more
    with pytest.raises(InvalidRequest, match="bad cursor"):
        list(c.iter_submissions(ref, cursor="99"))


def test_identical_texts_are_told_apart_by_the_planned_item_id(options: dict[str, str]) -> None:
    c = ReplayConnector.from_config(options, None)
    ref = c.create_batch(_spec("camp"), idempotency_key="k")
    c.start(ref)
    recording = market_for(Path(options["comparisons"]), Path(options["pairs"])).recording
    group_3 = planned_item_id("camp", recording.pairs["3"])
    group_2 = planned_item_id("camp", recording.pairs["2"])
    # Both tasks show D | B; pair 3 (recorded B | D) must go to its own item, flipped.
    c.add_items(ref, [_task(f"{group_3}.0", "D", "B", group=group_3)], idempotency_key="a")
    c.add_items(ref, [_task(f"{group_2}.0", "D", "B", group=group_2)], idempotency_key="b")
    got = [a for a in _answers(_drain(c, ref)) if a[2] != "expired"]
    assert got == [
        (f"{group_3}.0", "w3", "tie"),
        (f"{group_3}.0", "w4", "left"),
        (f"{group_2}.0", "w1", "left"),
        (f"{group_2}.0", "w2", "left"),
    ]
    assert c.stats["ambiguous_matches"] == 2 and c.stats["ambiguous_fallbacks"] == 0


def test_unmatched_task_is_refused_and_nothing_is_created(options: dict[str, str]) -> None:
    c = ReplayConnector.from_config(options, None)
    ref = c.create_batch(_spec(), idempotency_key="k")
    with pytest.raises(InvalidRequest, match="no recorded pair"):
        c.add_items(ref, [_task("i0.0", "A", "B"), _task("x.0", "A", "Z")], idempotency_key="t")
    assert c.find_tasks(ref, ["i0.0", "x.0"]) == {}
    lenient = ReplayConnector.from_config({**options, "unmatched": "expire"}, None)
    lenient.start(ref)
    lenient.add_items(ref, [_task("x.0", "A", "Z", overlap=2)], idempotency_key="t")
    assert _answers(_drain(lenient, ref)) == [("x.0", None, "expired")] * 2


def test_mismatched_files_fail_naming_the_line(options: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    lines = Path(options["comparisons"]).read_text().splitlines()
    bad.write_text("\n".join([*lines[:3], "0,1,10,12,w9,left"]) + "\n")
    with pytest.raises(RecordingError, match=r"bad\.csv:4: prompt/models differ from pair 0"):
        load_recording(bad, Path(options["pairs"]))


# --- the LLMFAO study end to end -------------------------------------------------------------


def _stored_judgments(campaign_id: str) -> pd.DataFrame:
    from crowdloop.db import session_scope
    from crowdloop.models.tables import Item, Judgment, JudgmentStatus, Prompt, Response

    with session_scope() as s:
        models = {r.id: r.model for r in s.exec(select(Response)).all()}
        prompts = {p.id: p.text for p in s.exec(select(Prompt)).all()}
        rows = s.execute(
            sa_select(
                col(Judgment.status),
                col(Judgment.excluded),
                col(Judgment.reason),
                col(Judgment.worker_id),
                col(Judgment.label),
                col(Item.subject_id),
                col(Item.left_id),
                col(Item.right_id),
            )
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(col(Judgment.campaign_id) == campaign_id)
        ).all()
    frame = pd.DataFrame(
        rows,
        columns=["status", "excluded", "reason", "worker", "label", "prompt", "left", "right"],
    )
    frame["status"] = frame["status"].map(lambda v: JudgmentStatus(v).value)
    frame["prompt"] = frame["prompt"].map(prompts)
    frame["left"] = frame["left"].map(models)
    frame["right"] = frame["right"].map(models)
    return frame


def _ranking(left: pd.Series, right: pd.Series, labels: pd.Series) -> pd.Series:
    """Global Bradley-Terry scores of models (crowdloop's solver), strongest first."""
    models = pd.Index(sorted(set(left) | set(right)))
    fit = bradley_terry(
        models.get_indexer(left),
        models.get_indexer(right),
        labels.map(LABEL_OUTCOMES).to_numpy(dtype=np.float64),
        len(models),
    )
    scores = pd.Series(fit.scores, index=models)
    return scores.iloc[np.lexsort((scores.index.to_numpy(), -scores.to_numpy()))]


@pytest.mark.slow
@needs_llmfao
@pytest.mark.usefixtures("prefect_api")
def test_llmfao_replayed_through_the_pipeline_loses_and_alters_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    from crowdloop.demo.llmfao import write_llmfao_inputs
    from crowdloop.flows.campaign import run_campaign

    reset_replay_state()
    path = write_llmfao_inputs(LLMFAO, tmp_path, name="llmfao-e2e")
    summary = json.loads((tmp_path / "llmfao-inputs.json").read_text())
    started = time.perf_counter()
    result = run_campaign(str(path))
    elapsed = time.perf_counter() - started

    # What the pipeline should hold: every recorded judgment of every listed pair.
    crowd = pd.read_csv(LLMFAO / "crowd-comparisons.csv", dtype={"worker": str})
    pairs = pd.read_json(LLMFAO / "pairs-crowd.jsonl", lines=True)
    listed = {
        (r["prompt_id"], *sorted((r["a"], r["b"])))
        for r in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())
    }
    pairs["key"] = [
        (str(p), *sorted((f"{p}:{x}", f"{p}:{y}")))
        for p, x, y in zip(pairs["prompt"], pairs["model_x"], pairs["model_y"], strict=True)
    ]
    planned = pairs[pairs["key"].isin(listed)]
    expected = crowd[crowd["id"].isin(planned["id"])].merge(
        pairs[["id", "text"]], on="id", validate="many_to_one"
    )
    assert len(planned) == summary["pairs_listed"] == len(listed) == len(pairs)
    # Nothing of the study is left out: every recorded judgment belongs to a planned pair.
    assert len(expected) == summary["judgments_on_listed_pairs"] == len(crowd) == 8_931

    stored = _stored_judgments("llmfao-e2e")
    valid = stored[stored["status"] == "valid"]
    quarantined = stored[stored["status"] == "quarantined"]
    short = (5 - expected.groupby("id").size()).clip(lower=0).sum()
    print(
        f"\nLLMFAO replay: {len(planned)} pairs, {len(valid)} judgments stored "
        f"({len(crowd)} recorded), {len(quarantined)} exhausted assignments, "
        f"run_campaign {elapsed:.1f}s"
    )
    assert len(valid) == len(expected)
    assert not valid["excluded"].any()
    assert len(quarantined) == short and set(quarantined["reason"]) == {EXHAUSTED_REASON}

    # Labels match after orientation: bring each stored judgment back to the recorded sides.
    recorded_side = {(t, lm, rm) for t, lm, rm in zip(expected["text"], expected["left"],
                                                      expected["right"], strict=True)}  # fmt: skip
    back = []
    for prompt, left, right, worker, label in valid[
        ["prompt", "left", "right", "worker", "label"]
    ].itertuples(index=False):
        if (prompt, left, right) in recorded_side:
            back.append((prompt, left, right, worker, label))
        else:
            assert (prompt, right, left) in recorded_side
            back.append((prompt, right, left, worker, FLIP[label]))
    want = zip(expected["text"], expected["left"], expected["right"], expected["worker"],
               expected["winner"], strict=True)  # fmt: skip
    assert Counter(back) == Counter(want)
    flipped = sum(1 for b, v in zip(back, valid["left"], strict=True) if b[1] != v)
    assert 0 < flipped < len(valid)  # both orientations were shown

    stats = market_for(LLMFAO / "crowd-comparisons.csv", LLMFAO / "pairs-crowd.jsonl").stats
    assert stats["ambiguous_matches"] > 0 and stats["ambiguous_fallbacks"] == 0

    # The pipeline aggregated all of it ...
    aggregate = result["preferences"]["aggregate"]
    assert aggregate["judgments"] == len(expected) and aggregate["pairs"] == len(planned)
    assert result["report"]["status"] == "complete"
    # ... and the global model ranking is the one the CSV gives.
    from_pipeline = _ranking(valid["left"], valid["right"], valid["label"])
    from_csv = _ranking(expected["left"], expected["right"], expected["winner"])
    assert list(from_pipeline.index) == list(from_csv.index)
    assert np.max(np.abs(from_pipeline - from_csv.reindex(from_pipeline.index))) <= 1e-9
