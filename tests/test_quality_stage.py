"""check_workers on a simulated campaign: spammers are found on golden pairs, blocked on the
marketplace, their judgments kept but excluded; rerunning the check changes nothing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import TransientError
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.domain import BlockScope, Stage
from crowdloop.models.spec import CampaignSpec, DynamicOverlapSpec
from crowdloop.models.tables import (
    Item,
    ItemState,
    Judgment,
    PairOutcome,
    TaskRecord,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import quality_check
from crowdloop.stages.items import ask_again
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preferences import (
    aggregate_preferences,
    extend_uncertain,
    judgments_frame,
    score_pairs,
    settled_pairs,
    unanswered_pairs,
    unsure_pairs,
    within_allowance,
)
from crowdloop.stages.quality_check import check_workers, reopen_short_comparisons
from crowdloop.stages.sync import settle_items, wait_and_sync

CAMPAIGN = "quality-test"
TOPICS = list(world.CATALOG)[:2]
# 2 topics x 7 prompts x 6 pairs = 84 real pairs, 36 golden (share 0.3), each asked 15 times:
# 540 golden answers over 26 workers, so every worker sees well over 8 golden pairs.
PROMPTS_PER_TOPIC = 7
OVERLAP = 15
CROWD = CrowdConfig(honest=20, spammer=6, noisy=0, left_bias=0)
MIN_GOLDEN_SEEN = 8


@pytest.fixture
def campaign(sqlite_url: str, tmp_path: Path) -> CampaignSpec:
    top5.write_jsonl(
        tmp_path / "candidates.jsonl",
        top5.generate_candidates(TOPICS, 0, prompts_per_topic=PROMPTS_PER_TOPIC),
    )
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 60))
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "output_dir": str(tmp_path),
            "quality": {"min_golden": 4, "min_accuracy": 0.7, "block_confidence": 0.8},
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "golden_file": str(tmp_path / "golden.jsonl"),
                "golden_share": 0.3,
                "overlap": OVERLAP,
                "dynamic_overlap": None,
                "export": {"path": str(tmp_path / "preferences.jsonl")},
            },
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
    return spec


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(seed=1, time_scale=1e6, crowd=CROWD)) as server:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", server.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", server.token)
        yield server


@pytest.fixture
def connector(sim: SimulatorServer) -> Iterator[Connector]:
    with build_connector("simulator", {}, None) as c:
        yield c


def sim_workers(sim: SimulatorServer) -> dict[str, dict[str, Any]]:
    rows = httpx.get(f"{sim.url}/sim/workers", timeout=10).json()
    return {w["id"]: w for w in rows}


def by_archetype(sim: SimulatorServer, archetype: str) -> set[str]:
    return {w for w, row in sim_workers(sim).items() if row["archetype"] == archetype}


def answers_in_time_order(worker: str) -> list[Judgment]:
    """A worker's judgments in the order the crowd assessment reads them (submitted, else
    received, then id), detached from their session."""
    with session_scope() as s:
        mine = sorted(
            s.exec(select(Judgment).where(Judgment.worker_id == worker)).all(),
            key=lambda j: (j.submitted_at or j.received_at, j.id),
        )
        s.expunge_all()
    return mine


def first_turn(mine: list[Judgment]) -> Judgment:
    """The first of a worker's answers (in time order, `answers_in_time_order`) later than
    the one before it, not the first nor among the last two: where a change point can
    be read."""
    return next(
        j
        for k, j in enumerate(mine[1:-2], 1)
        if (mine[k - 1].submitted_at or mine[k - 1].received_at) < (j.submitted_at or j.received_at)
    )


def assess_with(monkeypatch: pytest.MonkeyPatch, worker: str, **columns: Any) -> None:
    """The real crowd assessment, with ``worker``'s row's ``columns`` set as given."""
    assessed = quality_check.assess_campaign_crowd

    def patched(s: Any, campaign_id: str, policy: Any) -> Any:
        crowd, audit = assessed(s, campaign_id, policy)
        at = crowd["worker"] == worker
        for name, value in columns.items():
            crowd.loc[at, name] = value
        return crowd, audit

    monkeypatch.setattr(quality_check, "assess_campaign_crowd", patched)


def quality_with(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
    """The campaign's stored spec, read by the quality check with these `quality` settings."""
    load = quality_check.load_spec

    def loaded(s: Any, campaign_id: str) -> CampaignSpec:
        spec = load(s, campaign_id)
        return spec.model_copy(update={"quality": spec.quality.model_copy(update=settings)})

    monkeypatch.setattr(quality_check, "load_spec", loaded)


def blocked_on_marketplace(sim: SimulatorServer) -> set[str]:
    return {w for w, row in sim_workers(sim).items() if row["blocked"]}


def judgment_count() -> int:
    with session_scope() as s:
        return int(s.exec(select(func.count()).select_from(Judgment)).one())


def worker_snapshot() -> dict[str, tuple[Any, ...]]:
    with session_scope() as s:
        return {
            r.worker_id: (
                r.status,
                r.golden_correct,
                r.golden_total,
                r.judgments,
                r.blocked_at,
                r.block_reason,
            )
            for r in s.exec(select(WorkerRecord)).all()
        }


def excluded_snapshot() -> dict[str, tuple[bool, str | None]]:
    with session_scope() as s:
        return {
            j.external_id: (j.excluded, j.exclusion_reason) for j in s.exec(select(Judgment)).all()
        }


def run_round(connector: Connector) -> None:
    push_pending(CAMPAIGN, Stage.COMPARE, connector)
    wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)


def test_spammers_are_blocked_and_excluded_idempotently(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    run_round(connector)
    spammers = by_archetype(sim, "spammer")
    honest = by_archetype(sim, "honest")
    assert (len(spammers), len(honest)) == (6, 20)
    with session_scope() as s:
        items = int(s.exec(select(func.count()).select_from(Item)).one())
    before = judgment_count()
    assert before == items * OVERLAP

    result = check_workers(CAMPAIGN, connector)

    # Everyone has enough golden history for a decision.
    with session_scope() as s:
        records = {r.worker_id: r for r in s.exec(select(WorkerRecord)).all()}
    assert set(records) == spammers | honest
    assert result.workers == 26
    assert min(r.golden_total for r in records.values()) >= MIN_GOLDEN_SEEN

    # Spammers, and only spammers, are blocked: here and on the marketplace.
    assert sorted(result.newly_blocked) == sorted(spammers)
    assert blocked_on_marketplace(sim) == spammers
    assert sim.stats()["workers_blocked"] == len(spammers)
    assert result.warnings == []
    for w in spammers:
        rec = records[w]
        assert rec.status == WorkerStatus.BLOCKED
        assert rec.blocked_at is not None
        assert rec.golden_correct / rec.golden_total < 0.7
        assert rec.p_below >= 0.8
        assert rec.block_reason is not None
        assert rec.block_reason.startswith(f"golden accuracy {rec.accuracy:.2f} ")
        assert f"({rec.golden_correct}/{rec.golden_total} correct)" in rec.block_reason
    for w in honest:
        assert records[w].status == WorkerStatus.TRUSTED
        assert records[w].blocked_at is None

    # Their judgments are kept and marked, nobody else's.
    assert judgment_count() == before
    with session_scope() as s:
        judgments = list(s.exec(select(Judgment)).all())
    excluded = [j for j in judgments if j.excluded]
    assert {j.worker_id for j in excluded} == spammers
    assert len(excluded) == result.excluded_judgments
    assert len(excluded) == sum(records[w].judgments for w in spammers)
    assert all(not j.excluded for j in judgments if j.worker_id in honest)
    for j in excluded:
        reason = records[str(j.worker_id)].block_reason
        assert reason is not None and j.exclusion_reason is not None
        # e.g. "untrusted worker: golden accuracy 0.39 (7/20 correct); P(below 0.7) = 1.00"
        assert j.exclusion_reason.endswith(reason)
        assert "golden accuracy" in j.exclusion_reason

    # A second check changes nothing: no new block, no newly excluded row, same records.
    workers_before, excluded_before = worker_snapshot(), excluded_snapshot()
    again = check_workers(CAMPAIGN, connector)
    assert again.newly_blocked == []
    assert again.excluded_judgments == 0
    assert again.workers == 26
    assert sim.stats()["workers_blocked"] == len(spammers)
    assert blocked_on_marketplace(sim) == spammers
    assert worker_snapshot() == workers_before
    assert excluded_snapshot() == excluded_before
    assert judgment_count() == before


def test_excluded_answers_are_replaced_by_other_workers(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    run_round(connector)
    check_workers(CAMPAIGN, connector)
    spammers = by_archetype(sim, "spammer")
    with session_scope() as s:
        short_items = set(
            s.exec(select(Judgment.item_id).where(col(Judgment.excluded).is_(True))).all()
        )
        excluded = int(
            s.exec(
                select(func.count()).select_from(Judgment).where(col(Judgment.excluded).is_(True))
            ).one()
        )
    assert short_items

    moved = settle_items(CAMPAIGN, max_requeue_rounds=3)
    assert moved["requeued"] == len(short_items)
    assert moved["exhausted"] == 0
    again = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert again.tasks_published == len(short_items)
    assert again.assignments == excluded
    wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)

    with session_scope() as s:
        second = list(
            s.exec(
                select(Judgment)
                .join(TaskRecord, col(TaskRecord.key) == col(Judgment.task_key))
                .where(col(TaskRecord.key).like("%.1"))
            ).all()
        )
    assert len(second) == excluded
    assert not {j.worker_id for j in second} & spammers
    result = check_workers(CAMPAIGN, connector)
    assert result.newly_blocked == []
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] == len(short_items)
    with session_scope() as s:
        states = set(s.exec(select(Item.state)).all())
    assert states == {ItemState.COLLECTED}


def test_collected_pairs_left_short_by_a_later_block_are_asked_again(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    # Every item settles first (nobody is blocked yet); the block comes a step later, as
    # when a worker is caught rounds after their answers were collected.
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    result = check_workers(CAMPAIGN, connector)
    assert result.newly_blocked
    with session_scope() as s:
        short = set(s.exec(select(Judgment.item_id).where(col(Judgment.excluded).is_(True))))
        pending = set(s.exec(select(Item.id).where(Item.state == ItemState.PENDING)))
    assert short and result.reopened == len(short)
    assert pending == short
    again = push_pending(CAMPAIGN, Stage.COMPARE, connector)
    assert again.assignments == result.excluded_judgments
    # Asked again once: a second check finds nothing more to reopen.
    assert check_workers(CAMPAIGN, connector).reopened == 0


def test_with_dynamic_overlap_an_emptied_pair_is_bought_again_only_if_its_pooled_verdict_is_unsure(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """A pair a block left with no trusted answer keeps a verdict pooled from its prompt's
    other pairs; dynamic overlap asks again (min_overlap times) only if that verdict is
    under the target, and the check itself re-buys nothing."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    with session_scope() as s:
        real = sorted(s.exec(select(Item.id).where(col(Item.is_golden).is_(False))).all())
        golden = sorted(s.exec(select(Item.id).where(col(Item.is_golden).is_(True))).all())
        # Every fourth real pair and a golden one lose every answer (their workers all
        # blocked later): at most two pairs of a prompt's six, so each keeps a pooled verdict.
        emptied = real[::4]
        s.execute(
            update(Judgment)
            .where(col(Judgment.item_id).in_([*emptied, golden[0]]))
            .values(excluded=True, exclusion_reason="untrusted worker: test")
        )
    with session_scope() as s:
        assert reopen_short_comparisons(s, CAMPAIGN, 3, min_overlap=1) == 0

    frame = judgments_frame(CAMPAIGN)
    missing = unanswered_pairs(CAMPAIGN, frame)
    assert sorted(missing["pair"]) == emptied
    scores, verdicts, _ = score_pairs(frame, "bradley_terry", missing)
    pooled = verdicts.set_index("pair").loc[emptied]
    assert (pooled[["n_left", "n_right", "n_tie"]] == 0).all().all()
    # The verdict is the fitted scores' win probability: no vote of its own enters it; a
    # response that only the emptied pair compared scores the prior's mean, 0.
    for pair, row in pooled.iterrows():
        delta = scores.get(row["left"], 0.0) - scores.get(row["right"], 0.0)
        expected = 1 / (1 + math.exp(-delta))
        assert row["p_left_better"] == pytest.approx(expected), pair
    confidence = pooled["confidence"].to_dict()
    assert min(confidence.values()) < max(confidence.values())
    target = (min(confidence.values()) + max(confidence.values())) / 2
    unsure = {p for p, c in confidence.items() if c < target}
    assert unsure and unsure != set(emptied)

    # The other pairs have OVERLAP (15) trusted answers, over max_overlap: only emptied
    # pairs can be extended, those under the target, each asked min_overlap times.
    dynamic = DynamicOverlapSpec(min_overlap=2, max_overlap=4, target_confidence=target)
    assert extend_uncertain(CAMPAIGN, dynamic, "bradley_terry") == len(unsure)
    with session_scope() as s:
        pending = {
            i.id: i.overlap for i in s.exec(select(Item).where(Item.state == ItemState.PENDING))
        }
    assert pending == dict.fromkeys(unsure, 2)
    assert push_pending(CAMPAIGN, Stage.COMPARE, connector).assignments == 2 * len(unsure)

    # The sure ones keep their pooled verdict in the campaign's outcomes, with no votes.
    aggregate_preferences(CAMPAIGN, "bradley_terry")
    with session_scope() as s:
        outcomes = {o.item_id: o for o in s.exec(select(PairOutcome))}
    for pair in set(emptied) - unsure:
        assert outcomes[pair].n_left + outcomes[pair].n_right + outcomes[pair].n_tie == 0
        assert outcomes[pair].confidence == pytest.approx(confidence[pair])


def test_dynamic_overlap_buys_one_trusted_answer_more_up_to_the_cap(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """Under the default cap (4 trusted answers) an unsure pair with three trusted answers
    gets a fourth, one with four gets none, and one a block emptied gets min_overlap (its
    excluded answers are not bought again); the rest (15 answers each) are over the cap."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    # The confidence rule for every pair (`min_answer_value` off): the cap is under test.
    dynamic = DynamicOverlapSpec(target_confidence=0.999, settle_pairs=True, min_answer_value=None)
    cap = dynamic.max_overlap
    with session_scope() as s:
        real = sorted(s.exec(select(Item.id).where(col(Item.is_golden).is_(False))).all())
        # Pairs of different prompts (six pairs a prompt, ids are hashes: far apart).
        short, full, none = real[0], real[40], real[80]
        for pair, keep in ((short, cap - 1), (full, cap), (none, 0)):
            kept = s.exec(select(Judgment.id).where(Judgment.item_id == pair).limit(keep)).all()
            s.execute(
                update(Judgment)
                .where(Judgment.item_id == pair, col(Judgment.id).not_in(kept))
                .values(excluded=True, exclusion_reason="untrusted worker: test")
            )
            # Split sides: a pair its answers call equal, or three answers on one side,
            # is settled before the cap (`settled_pairs`).
            for n, jid in enumerate(kept):
                label = "right" if n == 0 else "left"
                s.execute(update(Judgment).where(col(Judgment.id) == jid).values(label=label))
    # A target no verdict reaches: every pair is unsure, only the cap decides.
    assert extend_uncertain(CAMPAIGN, dynamic, "bradley_terry") == 2
    with session_scope() as s:
        pending = {
            i.id: i.overlap for i in s.exec(select(Item).where(Item.state == ItemState.PENDING))
        }
    assert pending == {short: cap, none: dynamic.min_overlap}
    # One assignment each: the short pair's last trusted answer, the emptied pair's first.
    assert push_pending(CAMPAIGN, Stage.COMPARE, connector).assignments == 2


def test_dynamic_overlap_stops_on_a_pair_the_crowd_calls_equal(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """A pair whose trusted answers are two ties is settled (its confidence, ~1/2 on an
    equal pair however many say so, would buy it up to the cap); two answers that pick
    opposite sides, or one tie alone, are not (`settled_pairs`)."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    # A target no verdict reaches (a pooled verdict can pass 0.999: margin 7).
    # The confidence rule for every pair (`min_answer_value` off): settling is under test.
    dynamic = DynamicOverlapSpec(
        target_confidence=1 - 1e-9, settle_pairs=True, min_answer_value=None
    )
    with session_scope() as s:
        real = sorted(s.exec(select(Item.id).where(col(Item.is_golden).is_(False))).all())
        # Pairs of different prompts (six pairs a prompt, ids are hashes: far apart).
        equal, split, single = real[0], real[40], real[80]
        for pair, labels in (
            (equal, ["tie", "tie"]),
            (split, ["left", "right"]),
            (single, ["tie"]),
        ):
            kept = list(
                s.exec(select(Judgment.id).where(Judgment.item_id == pair).limit(len(labels)))
            )
            s.execute(
                update(Judgment)
                .where(Judgment.item_id == pair, col(Judgment.id).not_in(kept))
                .values(excluded=True, exclusion_reason="untrusted worker: test")
            )
            for jid, label in zip(kept, labels, strict=True):
                s.execute(update(Judgment).where(col(Judgment.id) == jid).values(label=label))
    # Every pair is unsure; the other pairs are over the cap.
    assert extend_uncertain(CAMPAIGN, dynamic, "worker_aware") == 2
    with session_scope() as s:
        pending = {
            i.id: i.overlap for i in s.exec(select(Item).where(Item.state == ItemState.PENDING))
        }
    assert pending == {split: 3, single: 2}


def test_settled_pairs_are_equal_on_two_thirds_of_the_votes_or_unanimous_on_three() -> None:
    # Votes weighted by attentiveness, as the worker-aware model gives them.
    rows = [  # pair, n_left, n_right, n_tie
        ("two_ties", 0.0, 0.0, 1.7),
        ("tie_and_side", 0.9, 0.0, 0.9),
        ("one_tie", 0.0, 0.0, 0.9),
        ("two_of_three", 0.8, 0.0, 1.8),
        ("emptied", 0.0, 0.0, 0.0),
        ("three_left", 2.7, 0.0, 0.0),
        ("two_left", 1.8, 0.0, 0.0),
        ("two_left_one_right", 1.8, 0.9, 0.0),
    ]
    verdicts = pd.DataFrame(rows, columns=["pair", "n_left", "n_right", "n_tie"])
    labels = {
        "two_ties": ["tie", "tie"],
        "tie_and_side": ["tie", "left"],
        "one_tie": ["tie"],
        "two_of_three": ["tie", "left", "tie"],
        "three_left": ["left"] * 3,
        "two_left": ["left"] * 2,
        "two_left_one_right": ["left", "left", "right"],
    }
    frame = pd.DataFrame(
        [(pair, label) for pair, given in labels.items() for label in given],
        columns=["pair", "label"],
    )
    settled = dict(zip(verdicts["pair"], settled_pairs(verdicts, frame), strict=True))
    assert {p for p, yes in settled.items() if yes} == {"two_ties", "two_of_three", "three_left"}


def test_a_pair_careful_workers_split_on_is_settled_as_hard_only_with_settle_hard() -> None:
    """`settle_hard`: three or more answers, all from cleared workers, on both sides, are
    settled; the same split with an answer from a worker not cleared, two answers, or the
    rule off, is not (`settled_pairs` with ``cleared``, `unsure_pairs`)."""
    answers = {  # pair: (worker, label), ...
        "hard": [("a", "left"), ("b", "right"), ("c", "left")],
        "doubted": [("a", "left"), ("u", "right"), ("c", "left")],
        "two_split": [("a", "left"), ("b", "right")],
        "with_tie": [("a", "left"), ("b", "tie"), ("c", "tie"), ("d", "right")],
        "one_side": [("a", "left"), ("b", "left"), ("c", "tie")],
    }
    frame = pd.DataFrame(
        [(pair, worker, label) for pair, given in answers.items() for worker, label in given],
        columns=["pair", "worker", "label"],
    )
    verdicts = pd.DataFrame(
        [(pair, 1.0, 1.0, 1.0, 0.6) for pair in answers],
        columns=["pair", "n_left", "n_right", "n_tie", "confidence"],
    )
    cleared = {"a", "b", "c", "d"}
    settled = dict(zip(verdicts["pair"], settled_pairs(verdicts, frame, cleared), strict=True))
    assert {p for p, yes in settled.items() if yes} == {"hard", "with_tie"}
    assert not settled_pairs(verdicts, frame).any()

    def asked(dynamic: DynamicOverlapSpec, who: set[str] | None) -> set[str]:
        return set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic, cleared=who), "pair"])

    off = DynamicOverlapSpec(resolve_ties=False, min_answer_value=None, settle_hard=False)
    on = DynamicOverlapSpec(resolve_ties=False, min_answer_value=None, settle_hard=True)
    assert DynamicOverlapSpec().settle_hard
    assert asked(off, cleared) == set(answers)
    assert asked(on, cleared) == {"doubted", "two_split", "one_side"}
    # Nobody cleared (no crowd assessment): no pair is hard.
    assert asked(on, None) == set(answers)


def test_the_one_answer_target_scaled_by_the_crowd_reliability() -> None:
    """`single_answer_by_reliability`: the one-answer target is 1 - (1 - t) / r^2 with r the
    crowd's attentiveness-weighted votes per answer: a one-answer verdict at 0.88 is asked
    again with every vote at full weight (target 0.9), not when votes weigh 0.9 (target
    0.877)."""
    labels = {"one": ["left"], "two": ["left", "left"], "three": ["left", "right", "left"]}
    frame = pd.DataFrame(
        [(pair, label) for pair, given in labels.items() for label in given],
        columns=["pair", "label"],
    )

    def asked(weight: float) -> set[str]:
        verdicts = pd.DataFrame(
            [
                ("one", weight, 0.0, 0.0, 0.88),
                ("two", 2 * weight, 0.0, 0.0, 0.87),
                ("three", 2 * weight, weight, 0.0, 0.9),
            ],
            columns=["pair", "n_left", "n_right", "n_tie", "confidence"],
        )
        dynamic = DynamicOverlapSpec(
            resolve_ties=False,
            min_answer_value=None,
            single_answer_confidence=0.9,
            single_answer_by_reliability=True,
        )
        return set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic), "pair"])

    assert asked(1.0) == {"one"}
    assert asked(0.9) == set()


def test_a_verdict_on_one_answer_is_held_to_the_stricter_target() -> None:
    """`single_answer_confidence` asks again about a one-answer verdict the general target
    lets through; a pair with two answers at the same confidence, and a one-answer verdict
    above the stricter target, are not asked; null leaves the general target alone."""
    rows = [  # pair, n_left, n_right, n_tie, confidence
        ("one_answer_unsure", 0.9, 0.0, 0.0, 0.82),
        ("one_answer_sure", 0.9, 0.0, 0.0, 0.88),
        ("two_answers", 1.8, 0.0, 0.0, 0.82),
        ("under_target", 1.8, 0.9, 0.0, 0.7),
        ("settled_tie", 0.0, 0.0, 1.8, 0.51),
    ]
    verdicts = pd.DataFrame(rows, columns=["pair", "n_left", "n_right", "n_tie", "confidence"])
    labels = {
        "one_answer_unsure": ["left"],
        "one_answer_sure": ["left"],
        "two_answers": ["left", "left"],
        "under_target": ["left", "left", "right"],
        "settled_tie": ["tie", "tie"],
    }
    frame = pd.DataFrame(
        [(pair, label) for pair, given in labels.items() for label in given],
        columns=["pair", "label"],
    )

    def asked(dynamic: DynamicOverlapSpec) -> set[str]:
        return set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic), "pair"])

    # The confidence rule for pairs with two or more answers (`min_answer_value` off; its
    # value rule: tests/test_pair_value.py).
    default = DynamicOverlapSpec(resolve_ties=False, min_answer_value=None)
    assert (default.target_confidence, default.single_answer_confidence) == (0.8, 0.85)
    assert asked(default) == {"one_answer_unsure", "under_target"}
    assert asked(
        DynamicOverlapSpec(resolve_ties=False, single_answer_confidence=None, min_answer_value=None)
    ) == {"under_target"}
    assert asked(
        DynamicOverlapSpec(
            resolve_ties=False,
            settle_pairs=False,
            single_answer_confidence=None,
            min_answer_value=None,
        )
    ) == {"under_target", "settled_tie"}


def test_a_tie_verdict_the_crowd_does_not_call_equal_is_asked_again_with_resolve_ties() -> None:
    """`resolve_ties`: a verdict in the tie band on a pair careful workers split on (settled
    as hard) is asked again; a pair the crowd calls equal (ties two thirds of its votes)
    is not; without the option neither is."""
    answers = {  # pair: (worker, label), ...
        "split_tie": [("a", "left"), ("b", "right"), ("c", "left")],
        "equal": [("a", "tie"), ("b", "tie")],
        "sided": [("a", "left"), ("b", "right"), ("c", "left")],
    }
    frame = pd.DataFrame(
        [(pair, worker, label) for pair, given in answers.items() for worker, label in given],
        columns=["pair", "worker", "label"],
    )
    verdicts = pd.DataFrame(
        [
            ("split_tie", 2.0, 1.0, 0.0, 0.52, "tie", 0.0),
            ("equal", 0.0, 0.0, 2.0, 0.5, "tie", 0.0),
            ("sided", 2.0, 1.0, 0.0, 0.6, "left", 0.0),
        ],
        columns=["pair", "n_left", "n_right", "n_tie", "confidence", "winner", "answer_value"],
    )
    cleared = {"a", "b", "c"}

    def asked(dynamic: DynamicOverlapSpec) -> set[str]:
        return set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic, cleared=cleared), "pair"])

    assert asked(DynamicOverlapSpec(resolve_ties=False)) == set()
    assert asked(DynamicOverlapSpec(resolve_ties=True)) == {"split_tie"}


def test_the_allowance_fills_the_most_valuable_pairs_and_caps_the_rules_asks() -> None:
    """`fill_extra`: when the rules ask nothing, the room under the allowance goes to the open
    pairs (answered, under the cap, not settled, worth something), highest value first;
    with asks of their own nothing is added. `cap_extra`: the rules' asks are cut to the
    room by value, never a pair a block emptied or touched (`within_allowance`)."""
    labels = {
        "one_low": ["left"],
        "one_high": ["left"],
        "two_mid": ["left", "right"],
        "settled": ["left", "left", "left"],
        "full": ["left", "right", "left", "right"],
        "worthless": ["left"],
    }
    frame = pd.DataFrame(
        [(pair, label) for pair, given in labels.items() for label in given],
        columns=["pair", "label"],
    )
    rows = [  # pair, n_left, n_right, n_tie, confidence, answer_value
        ("one_low", 1.0, 0.0, 0.0, 0.9, 0.01),
        ("one_high", 1.0, 0.0, 0.0, 0.9, 0.05),
        ("two_mid", 1.0, 1.0, 0.0, 0.6, 0.03),
        ("settled", 3.0, 0.0, 0.0, 0.7, 0.04),
        ("full", 2.0, 2.0, 0.0, 0.6, 0.08),
        ("worthless", 1.0, 0.0, 0.0, 0.99, 0.0),
        ("emptied", 0.0, 0.0, 0.0, 0.6, 0.001),
    ]
    verdicts = pd.DataFrame(
        rows, columns=["pair", "n_left", "n_right", "n_tie", "confidence", "answer_value"]
    )
    nothing = pd.Series(False, index=verdicts.index)

    def chosen(dynamic: DynamicOverlapSpec, asked: pd.Series, spent: int) -> set[str]:
        mask = within_allowance(verdicts, frame, dynamic, asked, (10, spent))
        return set(verdicts.loc[mask, "pair"])

    fill = DynamicOverlapSpec(fill_extra=1.0, cap_extra=None)
    default = DynamicOverlapSpec()
    assert (default.fill_extra, default.cap_extra, default.resolve_ties) == (0.8, 0.9, True)
    # Room for two more (20 - 18): the two most valuable open pairs.
    assert chosen(fill, nothing, 18) == {"one_high", "two_mid"}
    assert chosen(fill, nothing, 15) == {"one_high", "two_mid", "one_low"}
    assert chosen(fill, nothing, 20) == set()
    # The rules ask: the allowance adds nothing.
    asked = verdicts["pair"].isin(["one_low"])
    assert chosen(fill, asked, 0) == {"one_low"}
    # ... unless all they ask is at the cap (extend_uncertain would buy nothing).
    assert chosen(fill, verdicts["pair"].isin(["full"]), 18) == {"one_high", "two_mid"}
    # A cap: by value, the emptied pair and one with an excluded answer never cut.
    capped = DynamicOverlapSpec(fill_extra=None, cap_extra=1.0)
    every = verdicts["pair"].isin(["one_low", "two_mid", "emptied", "one_high"])
    assert chosen(capped, every, 17) == {"emptied", "one_high", "two_mid"}
    assert chosen(capped, every, 10) == {"one_low", "two_mid", "emptied", "one_high"}
    assert chosen(capped, every, 25) == {"emptied"}
    rebought = within_allowance(verdicts, frame, capped, every, (10, 25), None, {"one_low"})
    assert set(verdicts.loc[rebought, "pair"]) == {"emptied", "one_low"}


def test_failed_marketplace_block_is_retried(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connector: Connector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_round(connector)
    spammers = by_archetype(sim, "spammer")
    real_block = connector.block_worker
    calls = 0

    def flaky_block(worker_id: str, *, scope: BlockScope, reason: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("simulator", "503 service unavailable")
        real_block(worker_id, scope=scope, reason=reason)

    monkeypatch.setattr(connector, "block_worker", flaky_block)
    with pytest.raises(TransientError):
        check_workers(CAMPAIGN, connector)
    assert blocked_on_marketplace(sim) == set()
    # The flow task retries the check (a fresh connector in a new task run).
    with build_connector("simulator", {}, None) as retry_connector:
        check_workers(CAMPAIGN, retry_connector)
    assert blocked_on_marketplace(sim) == spammers


def test_submissions_are_reviewed_once_a_chunk_at_a_time(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connector: Connector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """review_submissions reads unreviewed work a chunk at a time (it held every id of a
    round at once): each review call stays within the chunk, every valid submission is
    decided exactly once, a blocked worker's excluded work is rejected, and a second pass
    finds nothing left."""
    from crowdloop.stages import quality_check

    monkeypatch.setattr(quality_check, "REVIEW_CHUNK", 97)
    run_round(connector)
    check_workers(CAMPAIGN, connector)
    with session_scope() as s:
        s.execute(update(Judgment).values(review=None))  # as if nothing were reviewed yet
    calls: list[list[str]] = []
    review = connector.review

    def recording(batch: Any, decisions: Any) -> None:
        calls.append([d.submission_id for d in decisions])
        review(batch, decisions)

    monkeypatch.setattr(connector, "review", recording)
    reviewed = quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], connector)
    with session_scope() as s:
        rows = s.exec(select(Judgment.external_id, Judgment.excluded, Judgment.review)).all()
    sent = [ext for call in calls for ext in call]
    assert len(calls) > 1 and all(len(call) <= 97 for call in calls)
    assert reviewed == len(sent) == len(set(sent)) == len(rows) > 1000
    assert all(r == ("rejected" if ex else "accepted") for _, ex, r in rows)
    assert any(ex for _, ex, _ in rows), "no excluded work to reject: the test shows nothing"
    assert quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], connector) == 0
    assert len(calls) == len(sent) // 97 + (1 if len(sent) % 97 else 0)


def test_a_worker_who_turned_careless_keeps_the_answers_before_the_change_point(
    campaign: CampaignSpec,
    sim: SimulatorServer,
    connector: Connector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block on the drift evidence excludes the worker's answers from the change point the
    crowd assessment found on, not the careful ones before it; the pairs those answers
    leave short go back to the crowd like any other excluded answers'."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    worker = sorted(by_archetype(sim, "honest"))[0]
    mine = answers_in_time_order(worker)
    turn = mine[len(mine) // 2]
    assessed = quality_check.assess_campaign_crowd

    def drifted(s: Any, campaign_id: str, policy: Any) -> Any:
        # The real assessment, with this one worker read as turned careless at `turn`.
        crowd, audit = assessed(s, campaign_id, policy)
        at = crowd["worker"] == worker
        crowd.loc[at, "p_blind"] = 0.999
        crowd["drift_seq"] = crowd["drift_seq"].astype(object)
        crowd.loc[at, "drift_seq"] = turn.id
        crowd.loc[at, "drift_since"] = 0.0
        return crowd, audit

    monkeypatch.setattr(quality_check, "assess_campaign_crowd", drifted)
    result = check_workers(CAMPAIGN, connector)

    assert worker in result.newly_blocked
    assert worker in blocked_on_marketplace(sim)
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None and record.excluded_from == (
            turn.submitted_at or turn.received_at
        )
        excluded = {
            j.id: j.excluded for j in s.exec(select(Judgment).where(Judgment.worker_id == worker))
        }
    at = mine.index(turn)
    assert not any(excluded[j.id] for j in mine[:at])
    assert all(excluded[j.id] for j in mine[at:])
    # Every pair of this campaign is asked at a fixed overlap: each one that lost an answer
    # is short of it and goes back.
    assert result.reopened >= len({j.item_id for j in mine[at:] if not j.item_id.startswith("ex")})
    # A second check excludes nothing more.
    assert check_workers(CAMPAIGN, connector).excluded_judgments == 0


def _golden_answerers() -> dict[str, set[str | None]]:
    """Each golden pair's workers so far."""
    with session_scope() as s:
        return {
            i: {j.worker_id for j in s.exec(select(Judgment).where(Judgment.item_id == i))}
            for i in s.exec(select(Item.id).where(col(Item.is_golden).is_(True))).all()
        }


def test_golden_pairs_are_asked_again_in_later_rounds(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """Golden pairs all go out in the first round; a dynamic-overlap round asks one more
    answer on some of them, at the golden share of the pairs it extends, fewest answers
    first, each of a worker who has not answered that pair."""
    run_round(connector)
    settle_items(CAMPAIGN, max_requeue_rounds=3)
    before = _golden_answerers()
    # 18 pairs extended at share 0.3: 18 * 0.3 / 0.7 -> 8 golden pairs.
    assert quality_check.reask_golden(CAMPAIGN, 18, 0.3) == 8
    with session_scope() as s:
        pending = {
            i.id: i.overlap for i in s.exec(select(Item).where(Item.state == ItemState.PENDING))
        }
    assert set(pending) <= set(before) and len(pending) == 8
    assert all(overlap == len(before[i]) + 1 for i, overlap in pending.items())
    assert push_pending(CAMPAIGN, Stage.COMPARE, connector).assignments == 8
    wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)
    with session_scope() as s:
        for item_id in pending:
            workers = [
                j.worker_id for j in s.exec(select(Judgment).where(Judgment.item_id == item_id))
            ]
            assert len(workers) == len(before[item_id]) + 1
            assert len(set(workers)) == len(workers)  # a new worker, not a repeat
    assert quality_check.reask_golden(CAMPAIGN, 0, 0.3) == 0


def test_golden_reasks_are_aimed_at_the_suspect_workers(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """With `golden_to="unchecked"` the golden pairs asked again are kept off every worker
    but the most suspect (`golden_targets`: latest answers better explained by a late
    change point to content-blind answering, `recent_bf`), `GOLDEN_PER_SUSPECT` pairs
    each, and one spare, so the new golden answers come from them; the random clickers
    rank first. The count is the campaign's budget, the golden share of all extensions
    so far less the golden re-asks already made. With "anyone" the pairs are kept off
    nobody and the count is this round's share."""
    run_round(connector)
    settle_items(CAMPAIGN, max_requeue_rounds=3)
    before = _golden_answerers()
    with session_scope() as s:
        real = sorted(i for i in s.exec(select(Item.id).where(col(Item.is_golden).is_(False))))
        crowd, _ = quality_check.assess_campaign_crowd(
            s, CAMPAIGN, quality_check.crowd_policy_from(campaign.quality)
        )
        targets = quality_check.golden_targets(s, CAMPAIGN, crowd)
    spammers = by_archetype(sim, "spammer")
    recent = dict(zip(crowd["worker"], crowd["recent_bf"], strict=True))
    assert all(recent[w] > quality_check.SUSPECT_BF for w in targets)
    # Nothing extended yet: no budget.
    assert quality_check.reask_golden(CAMPAIGN, 18, 0.3, golden_to="unchecked") == 0
    with session_scope() as s:
        ask_again(s, {OVERLAP + 1: real[:18]})  # 18 pairs extended at share 0.3: 8 golden
    # The most suspect, GOLDEN_PER_SUSPECT pairs each: the 8 pairs for the first 3, or
    # fewer pairs for fewer suspects.
    suspects = set(targets[: math.ceil(8 / quality_check.GOLDEN_PER_SUSPECT)])
    assert suspects and suspects <= spammers
    n = min(8, quality_check.GOLDEN_PER_SUSPECT * len(suspects))
    assert quality_check.reask_golden(CAMPAIGN, 18, 0.3, golden_to="unchecked") == n
    everyone = set(crowd["worker"].astype(str))
    with session_scope() as s:
        allowed = [
            everyone - set(i.exclude_also or ())
            for i in s.exec(
                select(Item).where(Item.state == ItemState.PENDING, col(Item.is_golden).is_(True))
            )
        ]
    assert len(allowed) == n
    # Each pair: the suspects and at most one spare worker, a careful one.
    assert all(suspects <= a and len(a - suspects) <= 1 for a in allowed)
    spares = set().union(*allowed) - suspects
    assert not spares & spammers
    assert push_pending(CAMPAIGN, Stage.COMPARE, connector).assignments == n + 18
    wait_and_sync(CAMPAIGN, [Stage.COMPARE], connector, poll_interval_s=0.05, timeout_s=60)
    with session_scope() as s:
        new = {
            j.worker_id
            for item_id in before
            for j in s.exec(select(Judgment).where(Judgment.item_id == item_id))
            if j.worker_id not in before[item_id]
        }
    assert new and new <= suspects | spares
    settle_items(CAMPAIGN, max_requeue_rounds=3)
    # What is left of the budget, at most.
    left = quality_check.reask_golden(CAMPAIGN, 18, 0.3, golden_to="unchecked")
    assert left <= 8 - n
    assert quality_check.reask_golden(CAMPAIGN, 18, 0.3, golden_to="anyone") == 8
    with session_scope() as s:
        again = s.exec(
            select(Item).where(Item.state == ItemState.PENDING, col(Item.is_golden).is_(True))
        ).all()
    assert len(again) == 8 + left and sum(not i.exclude_also for i in again) == 8
    # Aimed for one push only: the quality check after it lifts the exclusions, so a
    # pair sent back when a block excludes its aimed answer can be taken by anyone.
    check_workers(CAMPAIGN, connector)
    with session_scope() as s:
        golden = s.exec(select(Item).where(col(Item.is_golden).is_(True))).all()
    assert not any(i.exclude_also for i in golden)


def test_golden_reasks_by_unjudged_workers_fall_as_workers_are_judged(
    campaign: CampaignSpec, sim: SimulatorServer, connector: Connector
) -> None:
    """With `by_unjudged`, a round's golden re-asks are the pairs-extended count times the
    share of the workers not blocked whose crowd posterior of careless answering is still
    at least `CLEARED_BLIND`: some while the random clickers are unjudged, none once they
    are blocked and every careful worker is cleared."""
    run_round(connector)
    settle_items(CAMPAIGN, max_requeue_rounds=3)
    spammers = by_archetype(sim, "spammer")

    def unjudged() -> float:
        with session_scope() as s:
            crowd, _ = quality_check.assess_campaign_crowd(
                s, CAMPAIGN, quality_check.crowd_policy_from(campaign.quality)
            )
            out = {
                r.worker_id
                for r in s.exec(select(WorkerRecord)).all()
                if r.status in (WorkerStatus.BLOCKED, WorkerStatus.EXCLUDED)
            }
        active = crowd[~crowd["worker"].isin(out)]
        return float((active["p_blind"] >= quality_check.CLEARED_BLIND).mean())

    share = unjudged()
    assert 0 < share < 1  # the random clickers, not the careful workers
    # 18 pairs extended at share 0.3: 8 golden pairs, times the unjudged share.
    asked = quality_check.reask_golden(CAMPAIGN, 18, 0.3, by_unjudged=True)
    assert asked == math.ceil(8 * share) and 0 < asked < 8
    run_round(connector)
    check_workers(CAMPAIGN, connector)
    assert spammers <= blocked_on_marketplace(sim)
    settle_items(CAMPAIGN, max_requeue_rounds=3)
    left = unjudged()
    assert left < share
    assert quality_check.reask_golden(CAMPAIGN, 18, 0.3, by_unjudged=True) == math.ceil(8 * left)
