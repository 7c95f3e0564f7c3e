"""Benchmark: preference accuracy against the hidden truth, and cost, on simulated crowds.

For several crowd mixes and seeds it runs the same comparison campaign on the simulator
(no Prefect: `crowdloop.stages.rounds.bare_ops`) in several ways and scores each pair's
verdict against the simulator's truth:

- baseline: fixed overlap 3, no golden pairs; verdicts by majority vote, and by the sign of
  plain Bradley-Terry scores (same judgments, same cost);
- crowdloop default (the campaign spec's defaults): golden pairs (share 0.10) with blocking
  and exclusion, the worker-aware aggregation, and dynamic overlap (start at 1, up to 4,
  target confidence 0.8, 0.85 for a verdict on one answer, a pair with two or more answers
  asked again only while one more answer is worth 0.004 of P(verdict right), settled
  pairs bought no more, pairs careful workers split on among them (cost10f); tie verdicts
  the crowd does not call equal asked again, answers filled to 1.8 a real pair by value
  when nothing else is asked, asks capped at 1.9 a pair but re-asks after a block
  (cost13), and workers blocked at a late change point (6+ answers after it) or at a
  crowd posterior of 0.8 with a failing golden record (block13); `before_cost13`: the
  default before cost13; `fill180`, `fill190`, `fill180_cap180`, `fill180_cap190`,
  `ties`: its parts on it; `before_block13`(`_exam`): the default before block13;
  `before13`: before both;
  `before10f`: the default before cost10f (confidence rule on every pair, no hard pairs);
  `max3`: up to 3; `settled`: cost10b's target 0.825 and no one-answer target;
  `unsettled`: the default before cost10c, neither rule; `value`: the value rule without
  the hard pairs; `hard_settled`: the hard pairs without the value rule;
  `reask_unjudged`: the value rule, and golden re-asks scaled by the share of workers still
  unjudged; `aimed`, and `aimed_exam` with the exam: golden re-asks aimed at the workers
  whose latest answers look careless, sleep10's opt-in; `value_cleared`: the value rule
  only on pairs every answerer of which is cleared; `nohold`: every submission reviewed in
  the round it came in, the default before cost10e held an unjudged worker's);
- crowdloop quality-first: golden share 0.15 and dynamic overlap from 2 up to 5;
- crowdloop default + exam: production comparisons only for workers who passed an exam of
  12 clear-cut golden pairs (9 right), graded on our side;
- crowdloop default without crowd-wide blocking (`quality.blind_confidence: null`, the
  default before issue 10's second round).

The crowds go beyond the simulator's four classic archetypes (honest, noisy, random
clicker, left-biased): sleepers (careful for their first dozen answers, random after),
constant answerers (always the same side, always tie), a colluding group (one shared,
content-blind answer per pair), a few high-volume random clickers, hard real pairs (30%
near 50/50 for careful workers), the same hardness in the golden set (ambiguous golden
items), a small in-house team, and a large crowd with few answers per worker.

    .venv/bin/python bench/bench_quality.py                       # every crowd, seeds 0-2
    .venv/bin/python bench/bench_quality.py --crowds sleepers tie --seeds 0 1
    .venv/bin/python bench/bench_quality.py --quick               # seed 0
    .venv/bin/python bench/bench_quality.py --out a.json ...      # keep the rows
    .venv/bin/python bench/bench_quality.py --table a.json b.json # one table from saved rows
    .venv/bin/python bench/bench_quality.py --table a.json --bar default blind  # two bar checks
    .venv/bin/python bench/bench_quality.py --baseline-from a.json --configs default ...
    .venv/bin/python bench/bench_quality.py --keep runs/ ...      # keep the databases

`--table` also prints where each checked configuration's money went (paid answers by
kind, `_spend`). The campaign's name (config and row number) seeds the sides and the item
ids, so two configurations in one run are different samples; the same configuration
rerun on other code with the same --crowds and --seeds is a paired one (identical when
nobody is blocked).

Cost is what the simulated marketplace charged (golden, exam and re-queued work included).
"Bad" workers are the content-blind archetypes (`crowdloop.simulator.crowd.BAD_ARCHETYPES`:
random clickers, sleepers, constant answerers, colluders); "blocked" counts those of them
who gave 10 or more answers (golden and exam included), since nobody can judge a worker on
two clicks. Honest workers blocked counts the honest archetype only (noisy and left-biased
workers are neither). The last column is the share of the judgments the verdicts were
computed from that came from bad workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.demo.run import DemoSize, write_demo_inputs
from crowdloop.models.domain import Stage
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import CandidateScore, Item, Judgment, PairOutcome
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.crowd import BAD_ARCHETYPES
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.exam import ExamStarved
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preferences import aggregate_preferences, judgments_frame
from crowdloop.stages.quality_check import review_submissions
from crowdloop.stages.report import record_spend
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds

SIZE = DemoSize(
    topics=8,
    demo_prompts_per_topic=1,
    candidate_prompts_per_topic=8,
    golden_pairs=60,
    golden_verifications=4,
)
# key: (table label, crowd)
CROWDS: dict[str, tuple[str, CrowdConfig]] = {
    "typical": ("typical: 30 honest, 8 noisy, 6 random, 4 left-bias", CrowdConfig()),
    "spammy": (
        "spammy: 20 honest, 8 noisy, 16 random, 4 left-bias",
        CrowdConfig(honest=20, noisy=8, spammer=16, left_bias=4),
    ),
    "sleepers": (
        "sleepers: 30 honest, 6 noisy, 12 good-then-random",
        CrowdConfig(honest=30, noisy=6, spammer=0, left_bias=0, sleeper=12),
    ),
    "tie": (
        "always tie: 30 honest, 6 noisy, 12 always-tie",
        CrowdConfig(honest=30, noisy=6, spammer=0, left_bias=0, always_tie=12),
    ),
    "same_side": (
        "same side: 26 honest, 6 noisy, 12 always-left (a quarter)",
        CrowdConfig(honest=26, noisy=6, spammer=0, left_bias=4, same_side=12),
    ),
    "colluders": (
        "colluders: 30 honest, 6 noisy, 10 sharing one blind answer",
        CrowdConfig(honest=30, noisy=6, spammer=0, left_bias=0, colluder=10),
    ),
    "volume": (
        "high volume: 36 honest, 6 noisy, 4 random at 8x volume",
        CrowdConfig(honest=36, noisy=6, spammer=0, left_bias=0, volume_spammer=4),
    ),
    "hard": (
        "hard pairs: typical crowd, 30% of real pairs near 50/50",
        CrowdConfig(hard_share=0.3),
    ),
    "hard_golden": (
        "ambiguous golden: typical crowd, 30% of all pairs (golden too) near 50/50",
        CrowdConfig(hard_share=0.3, hard_clear_cut=True),
    ),
    "team": (
        "in-house team: 10 honest, 2 noisy",
        CrowdConfig(honest=10, noisy=2, spammer=0, left_bias=0),
    ),
    "large": (
        "large: 140 honest, 25 noisy, 25 random, 10 left-bias",
        CrowdConfig(honest=140, noisy=25, spammer=25, left_bias=10),
    ),
}
BASELINE = {"overlap": 3, "golden_share": 0.0}
BASELINE = {**BASELINE, "aggregation": "bradley_terry", "dynamic_overlap": None}
# The spec's defaults, written out so the table says what was run.
DEFAULT = {
    "overlap": 3,
    "golden_share": 0.10,
    "aggregation": "worker_aware",
    "dynamic_overlap": {
        "min_overlap": 1,
        "max_overlap": 4,
        "target_confidence": 0.8,
        "settle_pairs": True,
        "settle_hard": True,
        "single_answer_confidence": 0.85,
        "single_answer_by_reliability": False,
        "min_answer_value": 0.004,
        "answer_value_pairs": "any",
        "golden_reask": "extended",
        "golden_to": "anyone",
        "resolve_ties": True,
        "fill_extra": 0.8,
        "cap_extra": 0.9,
    },
}
# The default before cost13: no allowance, tie verdicts not asked again.
BEFORE13 = {
    **DEFAULT,
    "dynamic_overlap": {
        **DEFAULT["dynamic_overlap"],
        "resolve_ties": False,
        "fill_extra": None,
        "cap_extra": None,
    },
}
# The default before cost10f: the confidence rule on every pair, no hard pairs settled.
BEFORE10F = {
    **BEFORE13,
    "dynamic_overlap": {
        **BEFORE13["dynamic_overlap"],
        "settle_hard": False,
        "min_answer_value": None,
    },
}
# cost10d's: a pair with two or more answers asked again only while one more answer is
# worth 0.004 of P(verdict right) (docs/quality-bench.md, "The value of one more answer"),
# without cost10f's hard pairs.
VALUE = {
    **BEFORE10F,
    "dynamic_overlap": {**BEFORE10F["dynamic_overlap"], "min_answer_value": 0.004},
}
# cost10e's: the value rule only on pairs every answerer of which the crowd assessment has
# cleared (docs/quality-bench.md, cost10e).
VALUE_CLEARED = {
    **VALUE,
    "dynamic_overlap": {**VALUE["dynamic_overlap"], "answer_value_pairs": "cleared"},
}
# ... and only on pairs with an answer a block excluded (their re-asks).
VALUE_REBOUGHT = {
    **VALUE,
    "dynamic_overlap": {**VALUE["dynamic_overlap"], "answer_value_pairs": "rebought"},
}
# ... and golden re-asks times the share of the workers still unjudged.
REASK_UNJUDGED = {
    **VALUE,
    "dynamic_overlap": {**VALUE["dynamic_overlap"], "golden_reask": "unjudged"},
}
# cost10f: the value rule and golden re-asks by unjudged workers, with the money they save
# spent on one-answer verdicts (their target 0.9 instead of 0.85).
REASK_UNJUDGED_ONE90 = {
    **REASK_UNJUDGED,
    "dynamic_overlap": {**REASK_UNJUDGED["dynamic_overlap"], "single_answer_confidence": 0.9},
}
# cost10f: pairs hard for careful workers settled (3+ answers from cleared workers on both
# sides: `dynamic_overlap.settle_hard`).
HARD_SETTLED = {
    **BEFORE10F,
    "dynamic_overlap": {**BEFORE10F["dynamic_overlap"], "settle_hard": True},
}
# ... one-answer target 0.875.
REASK_UNJUDGED_ONE875 = {
    **REASK_UNJUDGED,
    "dynamic_overlap": {**REASK_UNJUDGED["dynamic_overlap"], "single_answer_confidence": 0.875},
}
# ... one-answer target 0.9 scaled by the crowd's reliability r: 1 - 0.1 / r^2
# (`dynamic_overlap.single_answer_by_reliability`).
REASK_UNJUDGED_RELIABLE = {
    **REASK_UNJUDGED_ONE90,
    "dynamic_overlap": {
        **REASK_UNJUDGED_ONE90["dynamic_overlap"],
        "single_answer_by_reliability": True,
    },
}
# ... hard pairs settled and golden re-asks by unjudged workers, without the value rule.
HARD_SETTLED_UNJUDGED = {
    **HARD_SETTLED,
    "dynamic_overlap": {**HARD_SETTLED["dynamic_overlap"], "golden_reask": "unjudged"},
}
# The default with golden re-asks by unjudged workers (cost10d's opt-in).
DEFAULT_UNJUDGED = {
    **BEFORE13,
    "dynamic_overlap": {**BEFORE13["dynamic_overlap"], "golden_reask": "unjudged"},
}
# sleep10's opt-in: golden re-asks aimed at the workers whose latest answers look careless
# (`dynamic_overlap.golden_to: unchecked`; docs/quality-bench.md, "Golden re-asks aimed at
# suspects").
AIMED = {
    **BEFORE13,
    "dynamic_overlap": {**BEFORE13["dynamic_overlap"], "golden_to": "unchecked"},
}
# cost10b's variant: settled pairs (equal, or unanimous on 3+ answers) bought no more,
# target 0.825, one-answer verdicts held to the target only (docs/quality-bench.md, "Cheaper dynamic
# overlap").
SETTLED = {
    **BEFORE10F,
    "dynamic_overlap": {
        **BEFORE10F["dynamic_overlap"],
        "target_confidence": 0.825,
        "single_answer_confidence": None,
    },
}
# The default before cost10c: every pair under target 0.8 asked again up to the cap.
UNSETTLED = {
    **BEFORE10F,
    "dynamic_overlap": {
        **BEFORE10F["dynamic_overlap"],
        "settle_pairs": False,
        "single_answer_confidence": None,
    },
}
# Dynamic overlap capped at fixed overlap's 3 answers a pair (tried in issue 10's cost
# round: cheaper, and less accurate on every crowd; docs/quality-bench.md).
MAX3 = {**BEFORE13, "dynamic_overlap": {**BEFORE13["dynamic_overlap"], "max_overlap": 3}}


# cost13's variants, from the default before it (docs/quality-bench.md, cost13): an
# allowance of answers
# per real pair (1 + `dynamic_overlap.fill_extra`, 1 + `cap_extra`) spent where one more
# answer is worth the most, and tie verdicts the crowd does not call equal asked again
# (`resolve_ties`). "fill180": filled to 1.8 answers a pair; "cap190": capped at 1.9.
def _before13_with(
    fill: float | None, cap: float | None, resolve_ties: bool = False
) -> dict[str, Any]:
    dynamic: dict[str, Any] = dict(BEFORE13["dynamic_overlap"])  # type: ignore[call-overload]
    return {
        **BEFORE13,
        "dynamic_overlap": {
            **dynamic,
            "fill_extra": None if fill is None else round(fill - 1, 2),
            "cap_extra": None if cap is None else round(cap - 1, 2),
            "resolve_ties": resolve_ties,
        },
    }


COST13 = {
    "fill180": _before13_with(1.8, None),
    "fill190": _before13_with(1.9, None),
    "fill180_cap180": _before13_with(1.8, 1.8),
    "fill180_cap190": _before13_with(1.8, 1.9),
    "ties": _before13_with(None, None, True),
}
QUALITY_FIRST = {
    **DEFAULT,
    "golden_share": 0.15,
    "dynamic_overlap": {"min_overlap": 2, "max_overlap": 5, "target_confidence": 0.8},
}

# The default plus an exam: production comparisons only for workers who passed 9 of 12
# clear-cut golden pairs (the exam's defaults).
EXAM = {"exam": {"items": 12, "min_correct": 9}}
# Blocking on the crowd-wide posterior at 0.95 (the default since issue 10's second round;
# off before it), and the default without it.
BLIND = {"blind_confidence": 0.95}
NO_BLIND = {"blind_confidence": None}
NO_LATE = {"exclude_late_confidence": None}
LATE_BLOCK = {"block_late_confidence": 0.85, "block_late_min_answers": 6}
BLIND90_LATE = {**LATE_BLOCK, "blind_confidence": 0.9}
BLIND85_LATE = {**LATE_BLOCK, "blind_confidence": 0.85}
GOLDEN80_LATE = {**LATE_BLOCK, "golden_blind_confidence": 0.8}
BEFORE_BLOCK13 = {"block_late_confidence": None, "golden_blind_confidence": None}
CONFIGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # key: (table label, preferences section, quality section)
    # No quality checks at all: nothing to block on without golden pairs but the crowd
    # posterior, which the baseline must not use either.
    "baseline": ("majority vote / plain Bradley-Terry, overlap 3", BASELINE, NO_BLIND),
    "default": ("crowdloop default", DEFAULT, {}),
    "blind": ("crowdloop default + crowd-wide blocking (0.95)", DEFAULT, BLIND),
    "quality_first": ("crowdloop quality-first", QUALITY_FIRST, {}),
    "exam": ("crowdloop default + exam", DEFAULT, EXAM),
    "aimed": ("crowdloop default, golden re-asks aimed at suspects", AIMED, {}),
    "aimed_exam": ("crowdloop default + exam, golden re-asks aimed at suspects", AIMED, EXAM),
    "noblind": ("crowdloop default without crowd-wide blocking", DEFAULT, NO_BLIND),
    "before10f": ("crowdloop default before cost10f (no value rule, no hard pairs)", BEFORE10F, {}),
    "max3": ("crowdloop default, dynamic overlap up to 3", MAX3, {}),
    "settled": ("crowdloop default, settled pairs stop, target 0.825", SETTLED, {}),
    "unsettled": ("crowdloop default before cost10c (no settled pairs)", UNSETTLED, {}),
    "value": ("crowdloop default + the value of one more answer (0.004)", VALUE, {}),
    "reask_unjudged": ("... + golden re-asks by unjudged workers", REASK_UNJUDGED, {}),
    "value_cleared": ("... value rule on pairs of cleared workers only", VALUE_CLEARED, {}),
    "reask_unjudged_one90": (
        "... + golden re-asks by unjudged workers, one-answer target 0.9",
        REASK_UNJUDGED_ONE90,
        {},
    ),
    "reask_unjudged_one875": (
        "... + golden re-asks by unjudged workers, one-answer target 0.875",
        REASK_UNJUDGED_ONE875,
        {},
    ),
    "reask_unjudged_reliable": (
        "... + golden re-asks by unjudged workers, one-answer target 0.9 by reliability",
        REASK_UNJUDGED_RELIABLE,
        {},
    ),
    "hard_settled": ("crowdloop default, hard pairs settled", HARD_SETTLED, {}),
    "default_unjudged": (
        "crowdloop default, golden re-asks by unjudged workers",
        DEFAULT_UNJUDGED,
        {},
    ),
    "hard_settled_unjudged": (
        "crowdloop default, hard pairs settled, golden re-asks by unjudged workers",
        HARD_SETTLED_UNJUDGED,
        {},
    ),
    "value_rebought": ("... value rule on re-asks after a block only", VALUE_REBOUGHT, {}),
    # The default before cost10e: every submission reviewed in the round it came in.
    "nohold": ("crowdloop default, review round by round", DEFAULT, {"hold_unjudged_work": False}),
    # The default before sleep12: no answers excluded after the exam's end without a block
    # (`quality.exclude_late_confidence`; docs/quality-bench.md, sleep12).
    "nolate": ("crowdloop default before sleep12", DEFAULT, NO_LATE),
    "nolate_exam": ("crowdloop default + exam before sleep12", DEFAULT, {**EXAM, **NO_LATE}),
    # block13: a worker blocked at a late change point anywhere (`quality.block_late_confidence`,
    # 6+ answers after it), and the crowd posterior's block bar lowered
    # (docs/quality-bench.md, block13).
    "late_block85": ("crowdloop default + late block (0.85)", DEFAULT, LATE_BLOCK),
    "late_block85_exam": ("... + exam", DEFAULT, {**EXAM, **LATE_BLOCK}),
    "blind90_late85": ("... + late block, posterior block at 0.9", DEFAULT, BLIND90_LATE),
    "blind85_late85": ("... + late block, posterior block at 0.85", DEFAULT, BLIND85_LATE),
    "blind85_late85_exam": ("... + exam", DEFAULT, {**EXAM, **BLIND85_LATE}),
    "golden80_late85": (
        "... + late block, posterior 0.8 with a failing golden record",
        DEFAULT,
        GOLDEN80_LATE,
    ),
    "golden80_late85_exam": ("... + exam", DEFAULT, {**EXAM, **GOLDEN80_LATE}),
    # The default before block13 (no late block, no golden-backed block at 0.8).
    "before_block13": ("crowdloop default before block13", DEFAULT, BEFORE_BLOCK13),
    "before_block13_exam": (
        "crowdloop default + exam before block13",
        DEFAULT,
        {**EXAM, **BEFORE_BLOCK13},
    ),
    # block13's late block at the exam's end too (off by default).
    "late_block_at_exam": (
        "crowdloop default + exam, late block at the exam's end too",
        DEFAULT,
        {**EXAM, "block_late_at_exam": True},
    ),
    "late85_excl35_exam": (
        "... + exam, late block 0.85, late exclusion at 0.35",
        DEFAULT,
        {**EXAM, **LATE_BLOCK, "exclude_late_confidence": 0.35},
    ),
    # exam14: the exam's probation off, and at other bars (`quality.exam_probation`;
    # docs/quality-bench.md, exam14).
    "noprobation_exam": (
        "crowdloop default + exam, no probation after it",
        DEFAULT,
        {**EXAM, "exam_probation": None},
    ),
    "probation05_exam": (
        "crowdloop default + exam, probation cleared at 0.05",
        DEFAULT,
        {**EXAM, "exam_probation": 0.05},
    ),
    "probation20_exam": (
        "crowdloop default + exam, probation cleared at 0.2",
        DEFAULT,
        {**EXAM, "exam_probation": 0.2},
    ),
    "before_cost13": (
        "crowdloop default before cost13 (no allowance, ties not asked again)",
        BEFORE13,
        {},
    ),
    # The default before this round: neither cost13's allowance nor block13's blocks.
    "before13": ("crowdloop default before cost13 and block13", BEFORE13, BEFORE_BLOCK13),
    **{
        key: (f"crowdloop default before cost13, {key.replace('_', ', ')} (/100 a pair)", spec, {})
        for key, spec in COST13.items()
    },
}


def _truth(sim_url: str, item_ids: list[str]) -> dict[str, str]:
    import httpx

    keys = {f"{i}.0": i for i in item_ids}
    answer = httpx.post(f"{sim_url}/sim/truth", json={"keys": list(keys)}, timeout=60).json()
    return {keys[k]: v for k, v in answer.items() if v in ("left", "right")}


def _accuracy(pred: dict[str, str], truth: dict[str, str]) -> float:
    return sum(pred.get(i) == t for i, t in truth.items()) / len(truth)


def _spend(name: str, blocked_ids: set[str]) -> dict[str, int]:
    """Where the money went: paid answers (every answer not rejected in review) by kind.

    golden / exam: answers on control items; real_initial: a real pair's first push;
    real_topup: later pushes (dynamic overlap) on pairs no excluded answer touched;
    real_after_block: later pushes on pairs with an excluded answer, before or after the
    block (re-asks of pairs a block emptied or weakened, and top-ups bought while the
    excluded answers still counted). Across them: paid answers from workers blocked by the
    end (accepted in review before their block), and rejected (unpaid) answers. Also
    pairs_with_N: real pairs by paid answers (5: five or more).
    """
    out = Counter[str]()
    with session_scope() as s:
        rows = s.exec(
            select(
                Item.id,
                Item.stage,
                Item.is_golden,
                Judgment.task_key,
                Judgment.review,
                Judgment.excluded,
                Judgment.worker_id,
            )
            .join(Judgment, Judgment.item_id == Item.id)
            .where(Item.campaign_id == name)
        ).all()
    touched = {item for item, _, _, _, _, excluded, _ in rows if excluded}
    per_pair = Counter[str]()
    for item, stage, golden, key, review, _, worker in rows:
        if review == "rejected":
            out["rejected_unpaid"] += 1
            continue
        if stage == Stage.EXAM.value:
            kind = "exam"
        elif golden:
            kind = "golden"
        elif key is None or key.endswith(".0"):
            kind = "real_initial"
        else:
            kind = "real_after_block" if item in touched else "real_topup"
        out[kind] += 1
        out["paid"] += 1
        if worker in blocked_ids:
            out["paid_from_blocked"] += 1
        if not golden and stage != Stage.EXAM.value:
            per_pair[item] += 1
    # How many paid answers the real pairs got: where dynamic overlap stopped.
    for n in per_pair.values():
        out[f"pairs_with_{min(n, 5)}"] += 1
    return dict(out)


def _careless_share(name: str, archetype: dict[str, str], careful_for: int) -> float:
    """Of the judgments the verdicts were computed from (trusted answers on real pairs),
    the share that were a sleeper's careless answers: a sleeper's answers from their
    ``careful_for``-th on, in the order they were given (submitted, else received, then
    id), exam and golden answers counted, as the simulator counts the tasks it handed."""
    from sqlmodel import col

    from crowdloop.stages.preferences import _judgments_query

    sleepers = {w for w, a in archetype.items() if a == "sleeper"}
    with session_scope() as s:
        given = s.exec(
            select(
                Judgment.id, Judgment.worker_id, Judgment.submitted_at, Judgment.received_at
            ).where(Judgment.campaign_id == name, col(Judgment.worker_id).in_(sleepers))
        ).all()
        verdict_rows = [
            (worker, jid)
            for *_, worker, _label, jid in s.execute(_judgments_query(name, col(Judgment.id)))
        ]
    careless: set[int] = set()
    per_worker: dict[str, list[tuple[Any, int]]] = {}
    for jid, worker, submitted, received in given:
        per_worker.setdefault(worker, []).append((submitted or received, jid))
    for answers in per_worker.values():
        careless.update(jid for _, jid in sorted(answers)[careful_for:])
    return sum(jid in careless for _, jid in verdict_rows) / max(len(verdict_rows), 1)


def run_one(
    root: Path,
    crowd: CrowdConfig,
    seed: int,
    prefs: dict[str, Any],
    name: str,
    quality: dict[str, Any] | None = None,
) -> dict[str, Any]:
    folder = root / name
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    overrides = {
        "demonstrations": None,
        "retraining": None,
        "poll_interval_s": 0.05,
        # Every key is written out (None included) so the spec's defaults do not leak in.
        "preferences": {**prefs, "golden_file": "golden-pairs.jsonl"},
    }
    if quality:
        overrides["quality"] = quality
    path = write_demo_inputs(folder, name, SIZE, seed, overrides)
    started = time.perf_counter()
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=crowd)) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        with connector_for(name) as connector:
            try:
                run_rounds(name, [Stage.COMPARE], bare_ops(connector), advance=False)
            except ExamStarved as starved:
                # Every exam seat answered, too few passers: production never starts, so
                # there is nothing to measure (the large crowd: 200 workers, 100 seats a
                # pair, so a worker meets ~6 of the 12 pairs). The row says so.
                return {
                    "exam_starved": str(starved),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            # The flow's review-held step: what hold_unjudged_work still holds is reviewed.
            review_submissions(name, [Stage.COMPARE], connector, final=True)
            cost = float(record_spend(name, connector))
        method = str(prefs.get("aggregation", "bradley_terry"))
        aggregate_preferences(name, method)
        with session_scope() as s:
            real = [i.id for i in s.exec(select(Item).where(Item.is_golden == False))]  # noqa: E712
            outcomes = {o.item_id: o.winner for o in s.exec(select(PairOutcome))}
            scores = {c.response_id: c.score for c in s.exec(select(CandidateScore))}
            sides = {i.id: (i.left_id, i.right_id) for i in s.exec(select(Item))}
            answers = Counter(j.worker_id for j in s.exec(select(Judgment)) if j.worker_id)
            # Answers excluded without a block (`quality.exclude_late_confidence`), per worker.
            late_excluded = Counter(
                j.worker_id
                for j in s.exec(select(Judgment).where(Judgment.excluded == True))  # noqa: E712
                if j.worker_id and (j.exclusion_reason or "").startswith("careless since")
            )
            # Answers still held on probation after the exam at the end, per worker.
            held = Counter(
                j.worker_id
                for j in s.exec(select(Judgment).where(Judgment.excluded == True))  # noqa: E712
                if j.worker_id and (j.exclusion_reason or "").startswith("on probation")
            )
        truth = _truth(sim.url, real)
        frame = judgments_frame(name)
        crowd_now = __import__("httpx").get(f"{sim.url}/sim/workers", timeout=30).json()
    # The hidden side of the run, beside its database (kept with --keep): who was what,
    # who was blocked, and each real pair's truth.
    (folder / "sim.json").write_text(json.dumps({"workers": crowd_now, "truth": truth}))
    archetype = {w["id"]: w["archetype"] for w in crowd_now}
    blocked = {w["id"] for w in crowd_now if w["blocked"]}
    spend = _spend(name, blocked_ids=blocked)
    bad = {w for w, a in archetype.items() if a in BAD_ARCHETYPES}
    bad_judged = {w for w in bad if answers[w] >= 10}
    honest = {w for w, a in archetype.items() if a == "honest"}
    tallies: dict[str, Counter[str]] = {}
    for pair, label in zip(frame["pair"], frame["label"], strict=True):
        tallies.setdefault(pair, Counter())[label] += 1
    mv = {}
    for pair, votes in tallies.items():
        top = votes.most_common()
        mv[pair] = "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]
    bt = {}
    for pair, (left, right) in sides.items():
        if left in scores and right in scores:
            bt[pair] = "left" if scores[left] > scores[right] else "right"
    judgments = int(sum(sum(v.values()) for v in tallies.values()))
    return {
        "cost": cost,
        "judgments_real_pairs": judgments,
        "pairs": len(truth),
        "pipeline": _accuracy(outcomes, truth),
        "majority_vote": _accuracy(mv, truth),
        "plain_bt": _accuracy(bt, truth),
        "blocked": dict(Counter(archetype[w] for w in blocked)),
        "bad_judged": len(bad_judged),
        "bad_judged_blocked": len(bad_judged & blocked),
        "bad_blocked": len(bad & blocked),
        "bad": len(bad),
        "honest": len(honest),
        "honest_blocked": len(honest & blocked),
        # Workers with answers excluded, not blocked, by the late change point (by kind),
        # and how many of their answers.
        "late_excluded": dict(Counter(archetype[w] for w in late_excluded)),
        "late_answers_excluded": {
            a: sum(n for w, n in late_excluded.items() if archetype[w] == a)
            for a in sorted(set(archetype.values()))
        },
        "honest_excluded": len(honest & set(late_excluded)),
        # Workers with answers still held on probation at the end (by kind), and how many.
        "probation_held": dict(Counter(archetype[w] for w in held)),
        "probation_answers_held": {
            a: sum(n for w, n in held.items() if archetype[w] == a)
            for a in sorted(set(archetype.values()))
        },
        "honest_held": len(honest & set(held)),
        # Of the judgments the verdicts were computed from, the share a bad worker gave.
        "bad_share": float(sum(w in bad for w in frame["worker"]) / max(len(frame), 1)),
        # ... and the share that were a sleeper's careless answers (after their careful
        # start).
        "sleeper_careless_share": _careless_share(name, archetype, crowd.sleeper_careful_answers),
        "spend": spend,
        "seconds": round(time.perf_counter() - started, 1),
    }


METHODS = (
    ("majority vote, overlap 3", "baseline", "majority_vote"),
    ("plain Bradley-Terry, overlap 3", "baseline", "plain_bt"),
    *((CONFIGS[k][0], k, "pipeline") for k in CONFIGS if k != "baseline"),
)


def table(rows: list[dict[str, Any]]) -> str:
    """The README table: means over seeds; blocked counts summed over seeds."""
    lines = [
        "| crowd | method | accuracy | cost (USD) | bad workers blocked (>= 10 answers) "
        "| honest blocked | verdict judgments from bad workers "
        "| from sleepers' careless answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, (label, _) in CROWDS.items():
        mine = [r for r in rows if r["crowd"] == key]
        if not mine:
            continue
        seeds = ",".join(str(r["seed"]) for r in mine)
        first = True
        for method, run, accuracy in METHODS:
            if any(run not in r for r in mine):
                continue  # not run on this crowd (--configs)
            starved = [r for r in mine if "exam_starved" in r[run]]
            if starved:
                crowd_cell = f"{label} (seeds {seeds})" if first else ""
                first = False
                lines.append(
                    f"| {crowd_cell} | {method} | exam starved ({len(starved)} of "
                    f"{len(mine)} seeds): production never started | | | | | |"
                )
                continue

            def mean(field: str, run: str = run, mine: list[dict[str, Any]] = mine) -> float:
                return statistics.mean(r[run][field] for r in mine)

            def total(field: str, run: str = run, mine: list[dict[str, Any]] = mine) -> int:
                return sum(int(r[run][field]) for r in mine)

            crowd_cell = f"{label} (seeds {seeds})" if first else ""
            first = False
            low = min(r[run][accuracy] for r in mine)
            shares = [r[run].get("sleeper_careless_share") for r in mine]
            careless = (
                f"{statistics.mean(shares):.1%}" if None not in shares and run != "baseline" else ""
            )
            strong = "**" if run == "default" else ""
            lines.append(
                f"| {crowd_cell} | {strong}{method}{strong} | {strong}{mean(accuracy):.3f}{strong}"
                f" (min {low:.3f}) | {mean('cost'):.2f} "
                f"| {total('bad_judged_blocked')}/{total('bad_judged')} "
                f"| {total('honest_blocked')}/{total('honest')} | {mean('bad_share'):.1%} "
                f"| {careless} |"
            )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]], config: str = "default") -> str:
    """The issue's bar, crowd by crowd: one configuration vs plain BT and majority vote."""
    out = []
    starved = sorted({r["crowd"] for r in rows if "exam_starved" in r.get(config, {})})
    if starved:
        out.append(f"{config}: exam starved, production never started: {', '.join(starved)}")
    rows = [r for r in rows if config in r and "exam_starved" not in r[config]]
    for key in CROWDS:
        mine = [r for r in rows if r["crowd"] == key]
        if not mine:
            continue
        acc = statistics.mean(r[config]["pipeline"] for r in mine)
        bt = statistics.mean(r["baseline"]["plain_bt"] for r in mine)
        cost = statistics.mean(r[config]["cost"] for r in mine)
        base_cost = statistics.mean(r["baseline"]["cost"] for r in mine)
        mv_ok = all(r[config]["pipeline"] >= r["baseline"]["majority_vote"] for r in mine)
        ok = acc >= bt and cost <= 0.8 * base_cost and mv_ok
        out.append(
            f"{key}: {config} {acc:.3f} vs BT {bt:.3f}, cost {cost / base_cost:.0%} of BT's, "
            f">= MV every seed: {mv_ok} -> {'holds' if ok else 'FAILS'}"
        )
    bad = sum(r[config]["bad_judged_blocked"] for r in rows)
    bad_n = sum(r[config]["bad_judged"] for r in rows)
    honest = sum(r[config]["honest_blocked"] for r in rows)
    honest_n = sum(r[config]["honest"] for r in rows)
    out.append(
        f"{config} blocks {bad}/{bad_n} bad workers with >= 10 answers "
        f"({bad / max(bad_n, 1):.0%}), {honest}/{honest_n} honest ({honest / max(honest_n, 1):.1%})"
    )
    return "\n".join(out)


SPEND_KINDS = ("golden", "exam", "real_initial", "real_topup", "real_after_block")


def spend_table(rows: list[dict[str, Any]], config: str = "default") -> str:
    """Where one configuration's money went, crowd by crowd: paid answers by kind as a share
    of the baseline's (means over seeds; rows saved before the breakdown existed are
    skipped)."""
    lines = [
        f"| crowd | {config} paid answers (% of baseline's) | golden | exam | real, first ask "
        "| later asks, untouched pairs | later asks, pairs with an excluded answer "
        "| paid from workers later blocked "
        "| rejected (unpaid) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in CROWDS:
        mine = [
            r
            for r in rows
            if r["crowd"] == key and "spend" in r.get(config, {}) and "spend" in r["baseline"]
        ]
        if not mine:
            continue
        base = statistics.mean(r["baseline"]["spend"]["paid"] for r in mine)

        def mean(kind: str, mine: list[dict[str, Any]] = mine) -> float:
            return statistics.mean(r[config]["spend"].get(kind, 0) for r in mine)

        cells = " | ".join(f"{mean(k):.0f} ({mean(k) / base:.0%})" for k in SPEND_KINDS)
        lines.append(
            f"| {key} | {mean('paid'):.0f} ({mean('paid') / base:.0%}) | {cells} "
            f"| {mean('paid_from_blocked'):.0f} | {mean('rejected_unpaid'):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--crowds", nargs="+", choices=list(CROWDS), default=list(CROWDS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--table", type=Path, nargs="+", help="print the table of saved rows")
    parser.add_argument(
        "--baseline-from",
        type=Path,
        help="reuse the baseline rows (same crowd and seed) saved in this --out file: the "
        "baseline buys no quality checks, so it is the same run to run",
    )
    parser.add_argument(
        "--bar",
        nargs="+",
        choices=[c for c in CONFIGS if c != "baseline"],
        default=["default"],
        help="with --table: the configurations to check against the issue's bar",
    )
    parser.add_argument(
        "--name-as",
        choices=[c for c in CONFIGS if c != "baseline"],
        help="name every non-baseline run's campaign after this configuration instead of its "
        "own (one configuration a run): a variant run as `--configs VAR --name-as default` "
        "sees the default's campaigns (sides, item ids), a paired sample",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep every run's campaign folder (its SQLite database) under this directory, "
        "for `bench/diagnose_blocking.py`; the campaign name is the folder's",
    )
    args = parser.parse_args()
    if args.table:
        rows = [row for path in args.table for row in json.loads(path.read_text())["rows"]]
        print(table(rows))
        for config in args.bar:
            print()
            print(verdict(rows, config))
            print()
            print(spend_table(rows, config))
        return
    seeds = [0] if args.quick else args.seeds
    configs = ["baseline", *(c for c in args.configs if c != "baseline")]
    if args.name_as and len(configs) > 2:
        parser.error("--name-as names one configuration's runs: give one in --configs")
    saved = {
        (r["crowd"], r["seed"]): r["baseline"]
        for r in (json.loads(args.baseline_from.read_text())["rows"] if args.baseline_from else [])
    }
    rows = []
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-quality-") as tmp:
        root = args.keep or Path(tmp)
        for crowd_key in args.crowds:
            crowd = CROWDS[crowd_key][1]
            for seed in seeds:
                runs = {
                    key: saved[(crowd_key, seed)]
                    if key == "baseline" and (crowd_key, seed) in saved
                    else run_one(
                        root,
                        crowd,
                        seed,
                        CONFIGS[key][1],
                        f"{(args.name_as if key != 'baseline' else None) or key}-{len(rows)}",
                        CONFIGS[key][2],
                    )
                    for key in configs
                }
                rows.append({"crowd": crowd_key, "seed": seed, **runs})
                if args.keep:
                    # Which folder is which crowd and seed, written as the runs end.
                    (args.keep / "index.json").write_text(
                        json.dumps(
                            [
                                {"crowd": r["crowd"], "seed": r["seed"], "row": i}
                                for i, r in enumerate(rows)
                            ]
                        )
                    )
                base = runs["baseline"]
                print(
                    f"{crowd_key} seed {seed}: MV {base['majority_vote']:.3f}, "
                    f"BT {base['plain_bt']:.3f} @ {base['cost']:.2f} | "
                    + " | ".join(
                        f"{key} EXAM STARVED after {r['seconds']}s: {r['exam_starved']}"
                        if "exam_starved" in r
                        else f"{key} {r['pipeline']:.3f} @ {r['cost']:.2f} "
                        f"(bad blocked {r['bad_judged_blocked']}/{r['bad_judged']}, honest "
                        f"{r['honest_blocked']}, bad share {r['bad_share']:.3f}, "
                        f"sleepers' careless {r['sleeper_careless_share']:.3f}, "
                        f"late-excluded {r['late_excluded']}, "
                        f"held {r['probation_held']}, "
                        f"{r['seconds']}s)"
                        for key, r in runs.items()
                        if key != "baseline"
                    ),
                    flush=True,
                )
    if len(configs) == len(CONFIGS):
        print()
        print(table(rows))
        print()
        print(verdict(rows))
    if args.out:
        args.out.write_text(json.dumps({"seeds": seeds, "rows": rows}, default=str))


if __name__ == "__main__":
    main()
