"""Benchmark: AI-first routing against all-human collection, on the simulator and on LLMFAO.

Simulator (through the real round loop, no Prefect: `crowdloop.stages.rounds.bare_ops`).
The same comparison campaign runs twice per seed on the simulator's typical crowd (30
honest, 8 noisy, 6 random, 4 left-biased):

- all-human: the campaign defaults (golden share 0.10, worker-aware aggregation, dynamic
  overlap 1..4, target confidence 0.8);
- AI-first: the same, plus `routing:` with the `aijudge` connector pointed at the
  simulator's simulated AI judge (`/openai/v1`; crowdloop/simulator/ai_judge.py documents
  its model): content accuracy 0.8, position bias 0.1, confidence informative but
  imperfect, asked in both orders. Pairs go to humans when the judge's confidence is under
  the threshold, when its two orders disagree, when unreadable, or for audit (5%).

Scored against the simulator's hidden truth on real (non-golden) pairs whose truth is a
side: the accuracy of the exported verdicts (PairOutcome), and the human judgments bought
(every assignment the simulated marketplace was paid for: golden and re-queued work
included), and its cost. The runs alternate A B A B by seed.

LLMFAO (`/work/shared/data/llmfao`, or `--llmfao DIR`; skipped with the reason when
absent): GPT-4's 2,139 recorded verdicts play the AI judge and the 8,931 crowd judgments
play the humans. GPT-4 was asked once per pair and gave no confidence, so the judge's
confidence here is its self-consistency: P(its verdict) under a Bradley-Terry fit of the 59
models on GPT-4's own verdicts (a tie verdict has confidence 0: always humans). This part is
computed offline from the recording with the routing rule of `stages/routing.decide` (not
through the flow): a pair the judge decides contributes GPT-4's verdict, a pair sent to
humans (low confidence or audit) contributes all its recorded crowd judgments. Reported:
crowd judgments bought and the Spearman correlation of the resulting model ranking
(Bradley-Terry over models) with the all-human ranking.

Rankings (`--ranking`): the demo ranking campaign (campaigns/ranking.yaml: 12 prompts x 6
answers, sets of 4, 3 workers each, golden share 0.2, weighted Plackett-Luce) on the same
typical crowd, all-human against AI-first with the simulated judge (its ranking model is in
crowdloop/simulator/ai_judge.py), for each confidence threshold and each
`--min-order-agreement` (the least Kendall tau-b between the judge's rankings of a set shown
in order and reversed that lets it decide the set). Scored as tests/test_ranking_e2e.py
scores the demo: Kendall's tau-b of each prompt's exported order against the hidden
qualities, mean over prompts; human judgments bought are the simulated marketplace's
assignments (golden sets included).

Ratings (`--rating`): the demo rating campaign (campaigns/rating.yaml: 12 prompts x 6
answers, HelpSteer's five aspects on 0-4, 3 workers each, golden share 0.2, worker-linear
aggregation) on the same typical crowd, all-human against AI-first with the simulated
judge (its rating model is in crowdloop/simulator/ai_judge.py), for each confidence
threshold and each `--max-score-difference` (the most an aspect's score may differ between
the judge's two asks). Scored as tests/test_rating_e2e.py scores the demo: mean absolute
error of the exported scores against the hidden per-aspect truth; human judgments bought
are the simulated marketplace's assignments (golden items included).

    .venv/bin/python bench/bench_ai_routing.py                  # seeds 0-2, thresholds
    .venv/bin/python bench/bench_ai_routing.py --seeds 0 --skip-llmfao
    .venv/bin/python bench/bench_ai_routing.py --llmfao-only
    .venv/bin/python bench/bench_ai_routing.py --ranking --seeds 0 1 2 --thresholds 0.7 0.8
    .venv/bin/python bench/bench_ai_routing.py --rating --seeds 0 1 2 --thresholds 0.7 0.8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import select

from crowdloop.aggregation.bradley_terry import bradley_terry
from crowdloop.db import session_scope
from crowdloop.demo.run import DemoSize, write_demo_inputs
from crowdloop.ids import digest
from crowdloop.models.domain import CompareTask, PreferenceAnswer
from crowdloop.models.spec import RoutingSpec
from crowdloop.models.tables import AIRoute, AIRouteState, Item, Judgment, PairOutcome
from crowdloop.simulator.config import AIJudgeConfig, CrowdConfig, SimulatorConfig
from crowdloop.simulator.crowd import truth_of
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.preferences import aggregate_preferences
from crowdloop.stages.rounds import run_bare
from crowdloop.stages.routing import decide, routing_summary

SIZE = DemoSize(
    topics=8,
    demo_prompts_per_topic=1,
    candidate_prompts_per_topic=8,
    golden_pairs=60,
    golden_verifications=4,
)
PREFS = {
    "overlap": 3,
    "golden_share": 0.10,
    "aggregation": "worker_aware",
    "dynamic_overlap": {"min_overlap": 1, "max_overlap": 4, "target_confidence": 0.8},
}
JUDGE = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
# `--crowd`: the simulator's typical crowd, or bench_quality's spammy one.
CROWDS = {
    "typical": CrowdConfig(),
    "spammy": CrowdConfig(honest=20, noisy=8, spammer=16, left_bias=4),
}
AUDIT_RATE = 0.05
LLMFAO = Path("/work/shared/data/llmfao")


def _aim_at(sim: SimulatorServer, judge: AIJudgeConfig) -> None:
    """The simulator and aijudge connectors' variables aimed at this simulator and its judge."""
    os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
    os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
    os.environ["CROWDLOOP_AIJUDGE_BASE_URL"] = f"{sim.url}/openai/v1"
    os.environ["CROWDLOOP_AIJUDGE_API_KEY"] = sim.token
    os.environ["CROWDLOOP_AIJUDGE_MODEL"] = judge.model


def _truth(items: list[Item]) -> dict[str, str]:
    """The simulator's hidden truth of each real pair (every pair: the ones the AI decided
    were never published to the simulated marketplace, so it cannot be asked about them)."""
    out = {}
    for item in items:
        truth = truth_of(CompareTask.model_validate(item.payload))
        if truth in ("left", "right"):
            out[item.id] = str(truth)
    return out


def _share(pred: dict[str, str], truth: dict[str, str], ids: set[str]) -> float | None:
    mine = [i for i in truth if i in ids]
    return sum(pred.get(i) == truth[i] for i in mine) / len(mine) if mine else None


def run_one(
    root: Path,
    seed: int,
    threshold: float | None,
    human_min_overlap: int | None = None,
    sent_back_vote: bool = False,
    crowd: CrowdConfig | None = None,
) -> dict[str, Any]:
    """One campaign; `threshold` None: all-human."""
    variant = (
        "human"
        if threshold is None
        else f"ai{threshold:g}-o{human_min_overlap or 0}" + ("-vote" if sent_back_vote else "")
    )
    name = f"s{seed}-{variant}"
    folder = root / name
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    overrides: dict[str, Any] = {
        "demonstrations": None,
        "retraining": None,
        "poll_interval_s": 0.05,
        "preferences": {**PREFS, "golden_file": "golden-pairs.jsonl"},
    }
    if threshold is not None:
        overrides["routing"] = {
            "ai": {"name": "aijudge", "options": {"store": str(folder / "ai-answers.sqlite")}},
            "confidence_threshold": threshold,
            "audit_rate": AUDIT_RATE,
            "human_min_overlap": human_min_overlap,
            "sent_back_vote": sent_back_vote,
        }
    path = write_demo_inputs(folder, name, SIZE, seed, overrides)
    started = time.perf_counter()
    sim_config = SimulatorConfig(seed=seed, crowd=crowd or CrowdConfig(), ai_judge=JUDGE)
    with SimulatorServer(sim_config) as sim:
        _aim_at(sim, JUDGE)
        from crowdloop.models.spec import load_campaign

        cost = float(run_bare(load_campaign(path)))
        aggregate_preferences(name, str(PREFS["aggregation"]))
        with session_scope() as s:
            real = list(
                s.exec(select(Item).where(Item.is_golden == False, Item.kind == "compare"))  # noqa: E712
            )
            outcomes = {o.item_id: o.winner for o in s.exec(select(PairOutcome))}
            human = s.exec(select(Judgment).where(Judgment.connector == "simulator")).all()
            routes = {r.item_id: r for r in s.exec(select(AIRoute))}
            golden = set(s.exec(select(Item.id).where(Item.is_golden == True)))  # noqa: E712
        truth = _truth(real)
    summary = routing_summary(name) if threshold is not None else None
    decided = [i for i, r in routes.items() if r.route == AIRouteState.AI and i in truth]
    # Where the human judgments went: golden work, or the reason a real pair reached humans.
    where: dict[str, int] = {}
    for j in human:
        route = routes.get(str(j.item_id))
        key = (
            "golden"
            if j.item_id in golden
            else "all-human"
            if route is None
            else route.reason or route.route.value
        )
        where[key] = where.get(key, 0) + 1
    asked = [i for i, r in routes.items() if r.choice is not None and i in truth]
    return {
        "seed": seed,
        "threshold": threshold,
        "human_min_overlap": human_min_overlap,
        "sent_back_vote": sent_back_vote,
        "variant": variant,
        "pairs": len(truth),
        "accuracy": sum(outcomes.get(i) == t for i, t in truth.items()) / len(truth),
        "human_judgments": len(human),
        "cost": cost,
        "ai_decided": len(decided),
        "ai_decided_accuracy": (
            sum(routes[i].choice == truth[i] for i in decided) / len(decided) if decided else None
        ),
        # The judge's first-order answer mapped back, on every pair it answered.
        "ai_answer_accuracy": (
            sum(routes[i].choice == truth[i] for i in asked) / len(asked) if asked else None
        ),
        # The exported verdicts' accuracy on the pairs the AI decided and on the others.
        "final_accuracy_ai_pairs": _share(outcomes, truth, set(decided)),
        "final_accuracy_human_pairs": _share(outcomes, truth, set(truth) - set(decided)),
        "routes": summary.by_reason if summary else {},
        "human_judgments_by_route": where,
        "audit_agreement": (
            summary.audit_agree / summary.audited if summary and summary.audited else None
        ),
        "seconds": round(time.perf_counter() - started, 1),
        # Per pair (by content, the same across campaigns): verdict right, and where it went.
        "by_pair": {
            _pair_key(item): [outcomes.get(item.id) == truth[item.id], item.id in decided]
            for item in real
            if item.id in truth
        },
    }


# --- rankings -------------------------------------------------------------------------------

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"


def _demo_campaign(
    kind: str,
    folder: Path,
    name: str,
    seed: int,
    export: dict[str, str],
    routing: dict[str, Any] | None,
    threshold: float | None,
) -> Path:
    """`campaigns/<kind>.yaml` copied into `folder` (its own SQLite database) under `name`,
    exporting to `export`; with `routing` (the kind's own routing settings), AI-first at
    `threshold`. Returns the campaign file."""
    import shutil

    import yaml

    folder.mkdir(parents=True)
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    shutil.copytree(CAMPAIGNS / kind, folder / kind)
    data = yaml.safe_load((CAMPAIGNS / f"{kind}.yaml").read_text())
    data.update(name=name, seed=seed, output_dir="out", poll_interval_s=0.05)
    data[kind]["export"] = export
    if routing is not None:
        data["routing"] = {
            "ai": {"name": "aijudge", "options": {"store": str(folder / "ai-answers.sqlite")}},
            "confidence_threshold": threshold,
            **routing,
            "audit_rate": AUDIT_RATE,
        }
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_ranking_one(
    root: Path,
    seed: int,
    threshold: float | None,
    min_agreement: float | None = None,
    judge: AIJudgeConfig = JUDGE,
) -> dict[str, Any]:
    """The demo ranking campaign once; `threshold` None: all-human."""

    from crowdloop.aggregation.rankings import kendall_tau
    from crowdloop.demo.ranking import score_rankings_against_truth
    from crowdloop.models.domain import RankTask
    from crowdloop.models.spec import load_campaign
    from crowdloop.simulator.world import response_quality
    from crowdloop.stages.ranking import aggregate_rankings, export_rankings

    variant = "human" if threshold is None else f"ai{threshold:g}-t{min_agreement:g}"
    # One name per seed (each variant has its own database): the name seeds the sets and
    # their shown order, so every variant of a seed ranks the very same sets.
    name = f"rk-s{seed}"
    folder = root / f"{name}-{variant}"
    path = _demo_campaign(
        "ranking",
        folder,
        name,
        seed,
        {"pairs_path": "out/pairs.jsonl", "rankings_path": "out/r.jsonl"},
        None if threshold is None else {"min_order_agreement": min_agreement},
        threshold,
    )
    started = time.perf_counter()
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=CrowdConfig(), ai_judge=judge)) as sim:
        _aim_at(sim, judge)
        spec = load_campaign(path)
        assert spec.ranking is not None
        cost = float(run_bare(spec))
        aggregate_rankings(name, spec.ranking)
        export_rankings(name, spec.ranking)
        with session_scope() as s:
            human = s.exec(select(Judgment).where(Judgment.connector == "simulator")).all()
            routes = list(s.exec(select(AIRoute)))
            payloads = {i.id: RankTask.model_validate(i.payload) for i in s.exec(select(Item))}
    truth = score_rankings_against_truth(
        name, folder / "out" / "r.jsonl", folder / "out" / "pairs.jsonl"
    )
    summary = routing_summary(name) if threshold is not None else None

    def ai_tau(route: AIRoute) -> float:
        task = payloads[route.item_id]
        quality = [-response_quality(task.prompt, t) for t in task.responses]
        return kendall_tau(route.places or [], quality)

    decided = [r for r in routes if r.route == AIRouteState.AI and r.places]
    answered = [r for r in routes if r.places]
    return {
        "seed": seed,
        "threshold": threshold,
        "min_order_agreement": min_agreement,
        "variant": variant,
        "tau": truth.tau,
        "pairs_right": truth.pairs_right,
        "human_judgments": len(human),
        "cost": cost,
        "sets": len(routes),
        "ai_decided": len(decided),
        "ai_decided_tau": statistics.mean(map(ai_tau, decided)) if decided else None,
        "ai_answer_tau": statistics.mean(map(ai_tau, answered)) if answered else None,
        "routes": summary.by_reason if summary else {},
        "audited": summary.audited if summary else 0,
        "audit_tau": summary.audit_tau if summary else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_rating_one(
    root: Path,
    seed: int,
    threshold: float | None,
    max_difference: int | None = None,
    judge: AIJudgeConfig = JUDGE,
) -> dict[str, Any]:
    """The demo rating campaign once; `threshold` None: all-human."""

    from crowdloop.demo.rating import score_ratings_against_truth
    from crowdloop.models.domain import RateTask
    from crowdloop.models.spec import load_campaign
    from crowdloop.simulator.rating import true_scores
    from crowdloop.stages.rating import aggregate_ratings, export_ratings

    variant = "human" if threshold is None else f"ai{threshold:g}-d{max_difference}"
    name = f"ra-s{seed}"  # one name per seed: every variant of a seed rates the same items
    folder = root / f"{name}-{variant}"
    path = _demo_campaign(
        "rating",
        folder,
        name,
        seed,
        {"path": "out/ratings.jsonl"},
        None if threshold is None else {"max_score_difference": max_difference},
        threshold,
    )
    started = time.perf_counter()
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=CrowdConfig(), ai_judge=judge)) as sim:
        _aim_at(sim, judge)
        spec = load_campaign(path)
        assert spec.rating is not None
        cost = float(run_bare(spec))
        aggregate_ratings(name, spec.rating)
        export_ratings(name, spec.rating)
        with session_scope() as s:
            human = s.exec(select(Judgment).where(Judgment.connector == "simulator")).all()
            routes = list(s.exec(select(AIRoute)))
            payloads = {
                i.id: RateTask.model_validate(i.payload)
                for i in s.exec(select(Item).where(Item.kind == "rate"))
            }
    truth = score_ratings_against_truth(name, folder / "out" / "ratings.jsonl", spec.rating)
    summary = routing_summary(name) if threshold is not None else None

    def ai_error(route: AIRoute) -> float:
        hidden = true_scores(payloads[route.item_id])
        got = route.scores or {}
        return statistics.mean(abs(got[a] - t) for a, t in hidden.items())

    decided = [r for r in routes if r.route == AIRouteState.AI and r.scores]
    answered = [r for r in routes if r.scores]
    return {
        "seed": seed,
        "threshold": threshold,
        "max_score_difference": max_difference,
        "variant": variant,
        "error": truth.mean_error,
        "aspect_error": truth.error,
        "human_judgments": len(human),
        "cost": cost,
        "items": len(routes),
        "ai_decided": len(decided),
        "ai_decided_error": statistics.mean(map(ai_error, decided)) if decided else None,
        "ai_answer_error": statistics.mean(map(ai_error, answered)) if answered else None,
        "routes": summary.by_reason if summary else {},
        "audited": summary.audited if summary else 0,
        "audit_aspects": summary.audit_aspects if summary else {},
        "seconds": round(time.perf_counter() - started, 1),
    }


def rating_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| collection | per-aspect MAE vs truth (mean, max) | human judgments bought "
        "| cost (USD) | AI-decided items (their MAE) | audit: AI vs humans, MAD (items) |",
        "|---|---|---|---|---|---|",
    ]
    base = [r for r in rows if r["threshold"] is None]
    base_j = statistics.mean(r["human_judgments"] for r in base) if base else None
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v != "human", v))
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        err = statistics.mean(r["error"] for r in mine)
        high = max(r["error"] for r in mine)
        judg = statistics.mean(r["human_judgments"] for r in mine)
        cost = statistics.mean(r["cost"] for r in mine)
        first = mine[0]
        ai_first = first["threshold"] is not None
        share = f" ({judg / base_j:.0%})" if base_j and ai_first else ""
        label = (
            f"AI-first, confidence >= {first['threshold']:g}, "
            f"asks differ <= {first['max_score_difference']}"
            if ai_first
            else "all-human"
        )
        ai = audit = "–"
        if ai_first:
            n = statistics.mean(r["ai_decided"] for r in mine)
            e = [r["ai_decided_error"] for r in mine if r["ai_decided_error"] is not None]
            ai = f"{n:.0f} of {statistics.mean(r['items'] for r in mine):.0f}" + (
                f" ({statistics.mean(e):.3f})" if e else ""
            )
            mads = [
                statistics.mean(r["audit_aspects"].values()) for r in mine if r["audit_aspects"]
            ]
            audited = sum(r["audited"] for r in mine)
            audit = f"{statistics.mean(mads):.3f} ({audited})" if mads else "–"
        lines.append(
            f"| {label} | {err:.3f} ({high:.3f}) | {judg:.0f}{share} | {cost:.2f} "
            f"| {ai} | {audit} |"
        )
    return "\n".join(lines)


def _ranking_label(row: dict[str, Any]) -> str:
    if row["threshold"] is None:
        return "all-human"
    return (
        f"AI-first, confidence >= {row['threshold']:g}, order tau >= {row['min_order_agreement']:g}"
    )


def ranking_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| collection | Kendall tau of exported order (mean, min) | TRL pairs right "
        "| human judgments bought | cost (USD) | AI-decided sets (their tau) | audit tau (sets) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = [r for r in rows if r["threshold"] is None]
    base_j = statistics.mean(r["human_judgments"] for r in base) if base else None
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v != "human", v))
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        tau = statistics.mean(r["tau"] for r in mine)
        low = min(r["tau"] for r in mine)
        right = statistics.mean(r["pairs_right"] for r in mine)
        judg = statistics.mean(r["human_judgments"] for r in mine)
        cost = statistics.mean(r["cost"] for r in mine)
        ai_first = mine[0]["threshold"] is not None
        share = f" ({judg / base_j:.0%})" if base_j and ai_first else ""
        ai = audit = "–"
        if ai_first:
            n = statistics.mean(r["ai_decided"] for r in mine)
            t = [r["ai_decided_tau"] for r in mine if r["ai_decided_tau"] is not None]
            ai = f"{n:.0f} of {statistics.mean(r['sets'] for r in mine):.0f}" + (
                f" ({statistics.mean(t):.3f})" if t else ""
            )
            a = [r["audit_tau"] for r in mine if r["audit_tau"] is not None]
            sets = sum(r["audited"] for r in mine)
            audit = f"{statistics.mean(a):.3f} ({sets})" if a else "–"
        lines.append(
            f"| {_ranking_label(mine[0])} | {tau:.3f} ({low:.3f}) | {right:.3f} "
            f"| {judg:.0f}{share} | {cost:.2f} | {ai} | {audit} |"
        )
    return "\n".join(lines)


def ranking_verdict(rows: list[dict[str, Any]], margin: float) -> list[str]:
    base = [r for r in rows if r["threshold"] is None]
    if not base:
        return []
    tau0 = statistics.mean(r["tau"] for r in base)
    j0 = statistics.mean(r["human_judgments"] for r in base)
    out = []
    for variant in sorted({r["variant"] for r in rows} - {"human"}):
        mine = [r for r in rows if r["variant"] == variant]
        tau = statistics.mean(r["tau"] for r in mine)
        j = statistics.mean(r["human_judgments"] for r in mine)
        ok = tau >= tau0 - margin and j <= 0.5 * j0
        out.append(
            f"{_ranking_label(mine[0])}: tau {tau:.3f} vs all-human {tau0:.3f} "
            f"({tau - tau0:+.3f}), human judgments {j / j0:.0%} of all-human -> "
            f"{'meets' if ok else 'MISSES'} the bar (tau within {margin:g}, at most half)"
        )
    return out


def _pair_key(item: Item) -> str:
    payload = CompareTask.model_validate(item.payload)
    return digest(payload.prompt, *sorted((payload.left, payload.right)))


def human_subset_accuracy(rows: list[dict[str, Any]]) -> list[str]:
    """All-human accuracy on the pairs AI-first sent to humans, beside AI-first's own."""
    out = []
    for row in rows:
        if row["threshold"] is None:
            continue
        base = next((r for r in rows if r["threshold"] is None and r["seed"] == row["seed"]), None)
        if base is None:
            continue
        human = [k for k, (_, ai) in row["by_pair"].items() if not ai and k in base["by_pair"]]
        if not human:
            continue
        mine = sum(row["by_pair"][k][0] for k in human) / len(human)
        theirs = sum(base["by_pair"][k][0] for k in human) / len(human)
        out.append(
            f"seed {row['seed']}, {_label(row)}: on the {len(human)} pairs "
            f"sent to humans, AI-first {mine:.3f} vs all-human {theirs:.3f}"
        )
    return out


def _label(row: dict[str, Any]) -> str:
    if row["threshold"] is None:
        return "all-human"
    first = row["human_min_overlap"]
    return (
        f"AI-first, confidence >= {row['threshold']:g}"
        + (f", humans start at overlap {first}" if first else "")
        + (", the judge's vote on sent-back pairs" if row.get("sent_back_vote") else "")
    )


def _variants(rows: list[dict[str, Any]]) -> list[str]:
    order = sorted(
        {
            (
                r["threshold"] if r["threshold"] is not None else -1.0,
                r["human_min_overlap"] or 0,
                r["variant"],
            )
            for r in rows
        }
    )
    return [v for _, _, v in order]


def simulator_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| collection | pairwise accuracy (mean, min) | human judgments bought | cost (USD) "
        "| AI-decided pairs (their accuracy) | audit agreement |",
        "|---|---|---|---|---|---|",
    ]
    base = [r for r in rows if r["threshold"] is None]
    base_j = statistics.mean(r["human_judgments"] for r in base) if base else None
    for variant in _variants(rows):
        mine = [r for r in rows if r["variant"] == variant]
        acc = statistics.mean(r["accuracy"] for r in mine)
        low = min(r["accuracy"] for r in mine)
        judg = statistics.mean(r["human_judgments"] for r in mine)
        cost = statistics.mean(r["cost"] for r in mine)
        ai_first = mine[0]["threshold"] is not None
        share = f" ({judg / base_j:.0%})" if base_j and ai_first else ""
        ai = agree = "–"
        if ai_first:
            n = statistics.mean(r["ai_decided"] for r in mine)
            a = [r["ai_decided_accuracy"] for r in mine if r["ai_decided_accuracy"] is not None]
            ai = f"{n:.0f} of {statistics.mean(r['pairs'] for r in mine):.0f}" + (
                f" ({statistics.mean(a):.3f})" if a else ""
            )
            ag = [r["audit_agreement"] for r in mine if r["audit_agreement"] is not None]
            agree = f"{statistics.mean(ag):.3f}" if ag else "–"
        lines.append(
            f"| {_label(mine[0])} | {acc:.3f} ({low:.3f}) | {judg:.0f}{share} | {cost:.2f} "
            f"| {ai} | {agree} |"
        )
    return "\n".join(lines)


def simulator_verdict(rows: list[dict[str, Any]]) -> list[str]:
    base = [r for r in rows if r["threshold"] is None]
    out: list[str] = []
    if not base:
        return out
    acc0 = statistics.mean(r["accuracy"] for r in base)
    j0 = statistics.mean(r["human_judgments"] for r in base)
    for variant in _variants(rows):
        mine = [r for r in rows if r["variant"] == variant]
        if mine[0]["threshold"] is None:
            continue
        acc = statistics.mean(r["accuracy"] for r in mine)
        j = statistics.mean(r["human_judgments"] for r in mine)
        ok = acc >= acc0 - 0.01 and j <= 0.5 * j0
        out.append(
            f"{_label(mine[0])}: accuracy {acc:.3f} vs all-human {acc0:.3f} "
            f"({(acc - acc0) * 100:+.1f} points), human judgments {j / j0:.0%} of all-human "
            f"-> {'meets' if ok else 'MISSES'} the bar (within 1 point, at most half)"
        )
    return out


# --- LLMFAO ---------------------------------------------------------------------------------


def _bt_models(rows: list[tuple[str, str, str]], models: list[str]) -> np.ndarray:
    index = {m: i for i, m in enumerate(models)}
    left = np.array([index[x] for x, _, _ in rows])
    right = np.array([index[y] for _, y, _ in rows])
    outcome = np.array([{"left": 1.0, "right": 0.0, "tie": 0.5}[w] for _, _, w in rows])
    return bradley_terry(left, right, outcome, len(models)).scores


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def llmfao(data: Path, thresholds: list[float]) -> dict[str, Any]:
    crowd: dict[str, list[tuple[str, str, str]]] = {}
    with (data / "crowd-comparisons.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            crowd.setdefault(row["id"], []).append((row["model_x"], row["model_y"], row["winner"]))
    gpt4: dict[str, tuple[str, str, str]] = {}
    with (data / "gpt4-crowd-comparisons.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            gpt4[row["id"]] = (row["model_x"], row["model_y"], row["winner"])
    models = sorted(
        {m for x, y, _ in gpt4.values() for m in (x, y)}
        | {m for rows in crowd.values() for x, y, _ in rows for m in (x, y)}
    )
    all_rows = [r for rows in crowd.values() for r in rows]
    human_scores = _bt_models(all_rows, models)
    ai_scores = _bt_models(list(gpt4.values()), models)
    index = {m: i for i, m in enumerate(models)}

    def confidence(x: str, y: str, w: str) -> float:
        if w == "tie":
            return 0.0
        d = ai_scores[index[x]] - ai_scores[index[y]]
        p_left = 1.0 / (1.0 + np.exp(-d))
        return float(p_left if w == "left" else 1.0 - p_left)

    out = {
        "pairs": len(gpt4),
        "crowd_judgments": len(all_rows),
        "gpt4_only_spearman": _spearman(ai_scores, human_scores),
        "agreement_3way": None,
        "rows": [],
    }
    # GPT-4 vs the crowd's majority per pair (ties where the top two counts are equal).
    agree = decisive = decisive_agree = n = 0
    for pid, (_, _, w) in gpt4.items():
        votes = [v for _, _, v in crowd.get(pid, [])]
        if not votes:
            continue
        counts = {s: votes.count(s) for s in ("left", "right", "tie")}
        top = sorted(counts.values(), reverse=True)
        majority = "tie" if top[0] == top[1] else max(counts, key=counts.__getitem__)
        n += 1
        agree += majority == w
        if "tie" not in (majority, w):
            decisive += 1
            decisive_agree += majority == w
    out["agreement_3way"] = agree / n
    out["agreement_no_ties"] = decisive_agree / decisive
    for t in thresholds:
        routing = RoutingSpec(confidence_threshold=t, audit_rate=AUDIT_RATE)
        rows: list[tuple[str, str, str]] = []
        bought = decided = 0
        for pid, (x, y, w) in gpt4.items():
            answer = PreferenceAnswer(choice=w, confidence=confidence(x, y, w))  # type: ignore[arg-type]
            route, _ = decide(answer, routing, 0, pid)
            if route is AIRouteState.AI:
                rows.append((x, y, w))
                decided += 1
            else:
                rows.extend(crowd.get(pid, []))
                bought += len(crowd.get(pid, []))
        scores = _bt_models(rows, models)
        out["rows"].append(
            {
                "threshold": t,
                "ai_decided": decided,
                "crowd_bought": bought,
                "spearman": _spearman(scores, human_scores),
            }
        )
    return out


def llmfao_table(result: dict[str, Any]) -> str:
    lines = [
        "| routing (confidence threshold) | pairs the AI decides | crowd judgments bought "
        "| Spearman vs all-human ranking |",
        "|---|---|---|---|",
        f"| all-human | 0 | {result['crowd_judgments']} (100%) | 1.000 |",
        f"| GPT-4 only | {result['pairs']} | 0 | {result['gpt4_only_spearman']:.3f} |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| AI-first, >= {r['threshold']:g} | {r['ai_decided']} | {r['crowd_bought']} "
            f"({r['crowd_bought'] / result['crowd_judgments']:.0%}) | {r['spearman']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8])
    parser.add_argument(
        "--llmfao-thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 0.95]
    )
    parser.add_argument("--llmfao", type=Path, default=LLMFAO)
    parser.add_argument("--skip-llmfao", action="store_true")
    parser.add_argument("--llmfao-only", action="store_true")
    parser.add_argument(
        "--human-min-overlap",
        type=int,
        nargs="+",
        default=[0],
        help="first overlap of pairs sent to humans; 0: the campaign's own (each is a variant)",
    )
    parser.add_argument(
        "--sent-back-vote",
        type=int,
        nargs="+",
        choices=[0, 1],
        default=[0],
        help="1: the judge's verdict counts as a vote on pairs it sent back (each a variant)",
    )
    parser.add_argument("--crowd", choices=sorted(CROWDS), default="typical")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--ranking", action="store_true", help="the ranking campaign instead")
    parser.add_argument(
        "--min-order-agreement",
        type=float,
        nargs="+",
        default=[1.0],
        help="rankings: least Kendall tau between the judge's two orders (each a variant)",
    )
    parser.add_argument("--rating", action="store_true", help="the rating campaign instead")
    parser.add_argument(
        "--max-score-difference",
        type=int,
        nargs="+",
        default=[1],
        help="ratings: most an aspect may differ between the judge's two asks (each a variant)",
    )
    parser.add_argument("--tau-margin", type=float, default=0.02)
    parser.add_argument(
        "--judge-accuracy", type=float, default=JUDGE.accuracy, help="rankings: the judge's"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if args.rating:
        rated: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="crowdloop-bench-ai-rate-") as tmp:
            for seed in args.seeds:  # interleaved: all-human, then each AI-first variant
                variants = [(t, d) for t in args.thresholds for d in args.max_score_difference]
                for threshold, difference in [(None, None), *variants]:
                    judge = JUDGE.model_copy(update={"accuracy": args.judge_accuracy})
                    row = run_rating_one(Path(tmp), seed, threshold, difference, judge)
                    print(json.dumps(row), flush=True)
                    rated.append(row)
        print()
        print(rating_table(rated))
        if args.out:
            args.out.write_text(json.dumps({"rating": rated}, indent=2, default=str))
        return
    if args.ranking:
        ranked: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="crowdloop-bench-ai-rank-") as tmp:
            for seed in args.seeds:  # interleaved: all-human, then each AI-first variant
                variants = [(t, m) for t in args.thresholds for m in args.min_order_agreement]
                for threshold, agreement in [(None, None), *variants]:
                    judge = JUDGE.model_copy(update={"accuracy": args.judge_accuracy})
                    row = run_ranking_one(Path(tmp), seed, threshold, agreement, judge)
                    print(json.dumps(row), flush=True)
                    ranked.append(row)
        print()
        print(ranking_table(ranked))
        print()
        print("\n".join(ranking_verdict(ranked, args.tau_margin)))
        if args.out:
            args.out.write_text(json.dumps({"ranking": ranked}, indent=2, default=str))
        return
    if not args.llmfao_only:
        rows = []
        with tempfile.TemporaryDirectory(prefix="crowdloop-bench-ai-") as tmp:
            for seed in args.seeds:  # interleaved: all-human, AI-first, per seed
                variants = [
                    (t, o or None, bool(v))
                    for t in args.thresholds
                    for o in args.human_min_overlap
                    for v in args.sent_back_vote
                ]
                for threshold, overlap, vote in [(None, None, False), *variants]:
                    row = run_one(Path(tmp), seed, threshold, overlap, vote, CROWDS[args.crowd])
                    print(json.dumps({k: v for k, v in row.items() if k != "by_pair"}), flush=True)
                    rows.append(row)
        result["simulator"] = rows
        print()
        print(simulator_table(rows))
        print()
        print("\n".join(simulator_verdict(rows)))
        print("\n".join(human_subset_accuracy(rows)))
    if not args.skip_llmfao:
        data = args.llmfao
        needed = ("crowd-comparisons.csv", "gpt4-crowd-comparisons.csv")
        missing = [f for f in needed if not (data / f).is_file()]
        if missing:
            print(f"\nLLMFAO skipped: {', '.join(missing)} not found in {data}")
        else:
            result["llmfao"] = llmfao(data, args.llmfao_thresholds)
            r = result["llmfao"]
            print()
            print(
                f"LLMFAO: GPT-4 vs crowd majority agree on {r['agreement_3way']:.3f} of pairs "
                f"(three-way), {r['agreement_no_ties']:.3f} where neither says tie"
            )
            print(llmfao_table(r))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
