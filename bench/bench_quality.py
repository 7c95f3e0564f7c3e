"""Benchmark: preference accuracy against the hidden truth, and cost, on simulated crowds.

For several crowd mixes and seeds it runs the same comparison campaign on the simulator
(no Prefect: `crowdloop.stages.rounds.bare_ops`) in several ways and scores each pair's
verdict against the simulator's truth:

- baseline: fixed overlap 3, no golden pairs; verdicts by majority vote, and by the sign of
  plain Bradley-Terry scores (same judgments, same cost);
- crowdloop default (the campaign spec's defaults): golden pairs (share 0.10) with blocking
  and exclusion, the worker-aware aggregation, and dynamic overlap (start at 1, up to 4,
  target confidence 0.8);
- crowdloop quality-first: golden share 0.15 and dynamic overlap from 2 up to 5;
- crowdloop default + exam: production comparisons only for workers who passed an exam of
  12 clear-cut golden pairs (9 right), graded on our side.

    .venv/bin/python bench/bench_quality.py            # 3 seeds x 2 crowds
    .venv/bin/python bench/bench_quality.py --quick    # 1 seed x 2 crowds

Cost is what the simulated marketplace charged (golden, exam and re-queued work included).
The last column is the share of the judgments the verdicts were computed from that came
from the simulator's spammers.
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
from crowdloop.models.tables import CandidateScore, Item, PairOutcome
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preferences import aggregate_preferences, judgments_frame
from crowdloop.stages.report import record_spend
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds

SIZE = DemoSize(
    topics=8,
    demo_prompts_per_topic=1,
    candidate_prompts_per_topic=8,
    golden_pairs=60,
    golden_verifications=4,
)
CROWDS = {
    "typical (30 honest, 8 noisy, 6 spam, 4 left-bias)": CrowdConfig(),
    "spammy (20 honest, 8 noisy, 16 spam, 4 left-bias)": CrowdConfig(
        honest=20, noisy=8, spammer=16, left_bias=4
    ),
}
BASELINE = {"overlap": 3, "golden_share": 0.0}
BASELINE = {**BASELINE, "aggregation": "bradley_terry", "dynamic_overlap": None}
# The spec's defaults, written out so the table says what was run.
DEFAULT = {
    "overlap": 3,
    "golden_share": 0.10,
    "aggregation": "worker_aware",
    "dynamic_overlap": {"min_overlap": 1, "max_overlap": 4, "target_confidence": 0.8},
}
QUALITY_FIRST = {
    **DEFAULT,
    "golden_share": 0.15,
    "dynamic_overlap": {"min_overlap": 2, "max_overlap": 5, "target_confidence": 0.8},
}

# The default plus an exam: production comparisons only for workers who passed 9 of 12
# clear-cut golden pairs (the exam's defaults).
EXAM = {"exam": {"items": 12, "min_correct": 9}}
CONFIGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # key: (table label, preferences section, quality section)
    "baseline": ("majority vote / plain Bradley-Terry, overlap 3", BASELINE, {}),
    "default": ("crowdloop default", DEFAULT, {}),
    "quality_first": ("crowdloop quality-first", QUALITY_FIRST, {}),
    "exam": ("crowdloop default + exam", DEFAULT, EXAM),
}


def _truth(sim_url: str, item_ids: list[str]) -> dict[str, str]:
    import httpx

    keys = {f"{i}.0": i for i in item_ids}
    answer = httpx.post(f"{sim_url}/sim/truth", json={"keys": list(keys)}, timeout=60).json()
    return {keys[k]: v for k, v in answer.items() if v in ("left", "right")}


def _accuracy(pred: dict[str, str], truth: dict[str, str]) -> float:
    return sum(pred.get(i) == t for i, t in truth.items()) / len(truth)


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
            run_rounds(name, [Stage.COMPARE], bare_ops(connector), advance=False)
            cost = float(record_spend(name, connector))
        method = str(prefs.get("aggregation", "bradley_terry"))
        aggregate_preferences(name, method)
        with session_scope() as s:
            real = [i.id for i in s.exec(select(Item).where(Item.is_golden == False))]  # noqa: E712
            outcomes = {o.item_id: o.winner for o in s.exec(select(PairOutcome))}
            scores = {c.response_id: c.score for c in s.exec(select(CandidateScore))}
            sides = {i.id: (i.left_id, i.right_id) for i in s.exec(select(Item))}
            workers = sim.state.stats  # noqa: F841 - keeps the server's view alive for debugging
        truth = _truth(sim.url, real)
        frame = judgments_frame(name)
        crowd_now = __import__("httpx").get(f"{sim.url}/sim/workers", timeout=30).json()
        catch = Counter(w["archetype"] for w in crowd_now if w["blocked"])
        archetype = {w["id"]: w["archetype"] for w in crowd_now}
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
        "blocked": dict(catch),
        # Of the judgments the verdicts were computed from, the share a spammer gave.
        "spam_share": float(
            sum(archetype.get(w) == "spammer" for w in frame["worker"]) / max(len(frame), 1)
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed per crowd")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    rows = []
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-quality-") as tmp:
        root = Path(tmp)
        for crowd_name, crowd in CROWDS.items():
            for seed in seeds:
                runs = {
                    key: run_one(root, crowd, seed, prefs, f"{key}-{len(rows)}", quality)
                    for key, (_, prefs, quality) in CONFIGS.items()
                }
                rows.append({"crowd": crowd_name, "seed": seed, **runs})
                base = runs["baseline"]
                print(
                    f"{crowd_name} seed {seed}: MV {base['majority_vote']:.3f}, "
                    f"BT {base['plain_bt']:.3f} @ {base['cost']:.2f} | "
                    + " | ".join(
                        f"{key} {r['pipeline']:.3f} @ {r['cost']:.2f} "
                        f"(blocked {r['blocked']}, spam share {r['spam_share']:.3f})"
                        for key, r in runs.items()
                        if key != "baseline"
                    ),
                    flush=True,
                )
    print()
    print(
        "| crowd | method | accuracy vs truth (mean over seeds) | cost (USD) "
        "| judgments from spammers |"
    )
    print("|---|---|---|---|---|")
    for crowd_name in CROWDS:
        mine = [r for r in rows if r["crowd"] == crowd_name]

        def mean(run: str, key: str, mine: list[dict[str, Any]] = mine) -> float:
            return statistics.mean(r[run][key] for r in mine)

        for label, key, accuracy in (
            ("majority vote, overlap 3", "baseline", "majority_vote"),
            ("plain Bradley-Terry, overlap 3", "baseline", "plain_bt"),
            *((CONFIGS[k][0], k, "pipeline") for k in CONFIGS if k != "baseline"),
        ):
            print(
                f"| {crowd_name} | {label} | {mean(key, accuracy):.3f} | {mean(key, 'cost'):.2f} "
                f"| {mean(key, 'spam_share'):.1%} |"
            )
    print()
    print(json.dumps({"seeds": seeds, "rows": rows}, default=str))


if __name__ == "__main__":
    main()
