"""Graded preferences: the ordinal model against the mean of votes, on simulated crowds.

Every pair of the demo's four model answers per prompt (`crowdloop.demo.top5`) is asked on
Llama 2's four-level scale plus "unsure", of `overlap` workers drawn at random from a
simulated crowd (`crowdloop.simulator.crowd.Crowd`, the simulator's own answer model), and
aggregated twice: `crowdloop.aggregation.graded.OrdinalPreferenceModel` and the naive mean
of signed levels. Both are scored against the hidden truth (`simulator.graded.true_grade`)
on the pairs whose qualities differ:

- side: the aggregated side is the better response;
- level exact / within one: the aggregated level against the true level (a wrong side
  counts as wrong for both);
- level MAE: mean |signed level - true signed level|.

A third line, `worker_aware_side`, takes the side from the plain pipeline's worker-aware
Bradley-Terry (levels ignored) and the level from the mean of votes.

    .venv/bin/python bench/bench_graded.py                 # 3 seeds x 3 crowds, 60 prompts
    .venv/bin/python bench/bench_graded.py --prompts 30 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.aggregation.graded import GradedScale, OrdinalPreferenceModel, mean_of_votes
from crowdloop.aggregation.worker_aware import WorkerAwareBT
from crowdloop.demo.graded import simulate_graded
from crowdloop.models.spec import LLAMA2_LEVELS
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.world import CATALOG
from crowdloop.stages.preferences import TIE_BAND

METHODS = ("ordinal", "ordinal_median", "mean_of_votes", "worker_aware_side")
CROWDS: dict[str, dict[str, int]] = {
    # The simulator's default crowd: 30 honest, 8 noisy, 6 spammers, 4 left-biased.
    "default": {},
    "spammy": {"honest": 20, "noisy": 6, "spammer": 16, "left_bias": 4},
    "mixed-bad": {"honest": 20, "noisy": 6, "spammer": 6, "same_side": 4, "always_tie": 4},
}


def score(verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Side accuracy, level exact / within one step, signed-level MAE on decided pairs."""
    merged = truth.merge(verdicts, on="pair")
    merged = merged[merged["true_side"] != "tie"]
    sign = np.where(merged["true_side"] == "left", 1, -1)
    true_signed = sign * merged["true_level"].to_numpy()
    got_sign = np.where(merged["side"] == "left", 1, np.where(merged["side"] == "right", -1, 0))
    got_signed = got_sign * merged["level"].to_numpy()
    side_ok = got_sign == sign
    diff = np.abs(merged["level"].to_numpy() - merged["true_level"].to_numpy())
    return {
        "pairs": float(len(merged)),
        "side": float(side_ok.mean()),
        "level_exact": float((side_ok & (diff == 0)).mean()),
        "level_within_one": float((side_ok & (diff <= 1)).mean()),
        "mae": float(np.abs(got_signed - true_signed).mean()),
    }


def run(crowd: str, seed: int, prompts: int, overlap: int) -> dict[str, Any]:
    labels = [level.label for level in LLAMA2_LEVELS]
    config = CrowdConfig(**CROWDS[crowd])  # type: ignore[arg-type]
    per_topic = max(1, prompts // len(CATALOG))
    answers, truth = simulate_graded(config, seed, per_topic, overlap, labels)
    scale = GradedScale(levels=len(LLAMA2_LEVELS), unsure=True)
    started = time.process_time()
    model = OrdinalPreferenceModel(scale).fit(answers)
    cpu = time.process_time() - started
    pairs = answers.drop_duplicates("pair")[["pair", "left", "right"]]
    ordinal = model.verdicts(pairs)
    banded = model.verdicts(pairs, tie_band=TIE_BAND)
    naive = mean_of_votes(answers, scale)
    # The plain pipeline's side (worker-aware Bradley-Terry, levels ignored) with the naive
    # level: what graded answers would give without the ordinal model.
    bt = WorkerAwareBT().fit(answers[["worker", "left", "right", "label"]])
    delta = pairs["left"].map(bt.scores_).to_numpy() - pairs["right"].map(bt.scores_).to_numpy()
    side_only = naive.set_index("pair").loc[pairs["pair"]].reset_index()
    side_only["side"] = np.where(delta > 0, "left", np.where(delta < 0, "right", "tie"))
    side_only["level"] = np.where(side_only["side"] == "tie", 0, side_only["level"].clip(lower=1))
    return {
        "crowd": crowd,
        "seed": seed,
        "answers": len(answers),
        "fit_cpu_s": round(cpu, 2),
        "ordinal_median": score(ordinal, truth),
        "ordinal": score(banded, truth),
        "mean_of_votes": score(naive, truth),
        "worker_aware_side": score(side_only, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--crowds", default=",".join(CROWDS))
    args = parser.parse_args()
    results = [
        run(crowd, seed, args.prompts, args.overlap)
        for crowd in args.crowds.split(",")
        for seed in range(args.seeds)
    ]
    print(f"{'crowd':10} {'seed':>4} {'method':14} {'side':>6} {'exact':>6} {'±1':>6} {'MAE':>6}")
    for r in results:
        for method in METHODS:
            m = r[method]
            print(
                f"{r['crowd']:10} {r['seed']:>4} {method:14} {m['side']:6.3f} "
                f"{m['level_exact']:6.3f} {m['level_within_one']:6.3f} {m['mae']:6.3f}"
            )
    print()
    print("mean over seeds")
    for crowd in args.crowds.split(","):
        for method in METHODS:
            rows = [r[method] for r in results if r["crowd"] == crowd]
            mean = {k: float(np.mean([x[k] for x in rows])) for k in rows[0]}
            print(
                f"{crowd:10} {method:14} side {mean['side']:.3f}  exact "
                f"{mean['level_exact']:.3f}  within one {mean['level_within_one']:.3f}  "
                f"MAE {mean['mae']:.3f}  ({mean['pairs']:.0f} pairs)"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
