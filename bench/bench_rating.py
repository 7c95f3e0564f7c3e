"""Multi-aspect ratings: the per-worker linear model against the mean of votes, on
simulated crowds.

Every answer of the rating demo's six models per prompt (`crowdloop.demo.rating`) is rated
on HelpSteer's five aspects (0-4) by `overlap` workers drawn by the simulator's own worker
order from a simulated crowd (`crowdloop.simulator.crowd.Crowd`: careful raters with a
personal bias and scale use, noisy ones, random and constant clickers), with golden
ratings mixed in at `--golden-share`. Aggregated five ways and scored against the hidden
per-aspect truth (`crowdloop.simulator.rating.true_score`):

- mean: the mean of every vote (the naive baseline);
- mean_trusted: the mean of the votes of workers the golden checks did not block
  (per-aspect golden grading, the demo campaign's quality policy);
- linear_unanchored: the worker-linear model on every vote, golden items left out;
- linear: the worker-linear model on every vote, golden items anchoring the scale;
- linear_trusted: the same on the trusted votes (what a campaign exports).

A campaign re-asks the ratings of blocked workers; this bench does not, so the trusted
methods see fewer votes than a campaign would. Figures: mean absolute error and RMSE in
scale points over every (response, aspect), and for the model the share of truths within
two reported standard deviations.

    .venv/bin/python bench/bench_rating.py                 # 3 seeds x 4 crowds, 60 prompts
    .venv/bin/python bench/bench_rating.py --prompts 24 --seeds 1 --crowds spammy
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from crowdloop.demo.rating import SimulatedRatings, simulate_ratings
from crowdloop.models.rating_spec import RatingExportSpec, RatingSpec
from crowdloop.quality import GoldenPolicy, assess_worker
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import BAD_ARCHETYPES
from crowdloop.simulator.world import CATALOG
from crowdloop.stages.plan import golden_count
from crowdloop.stages.rating import RatingRow, fit_ratings, golden_passes

METHODS = ("mean", "mean_trusted", "linear_unanchored", "linear", "linear_trusted")
CROWDS: dict[str, dict[str, int]] = {
    # The simulator's default crowd: 30 honest, 8 noisy, 6 spammers, 4 left-biased (who
    # rate carefully: there is no left in a rating).
    "default": {},
    "spammy": {"honest": 20, "noisy": 6, "spammer": 16, "left_bias": 4},
    "constant": {"honest": 20, "noisy": 6, "spammer": 6, "same_side": 4, "always_tie": 4},
    "careful": {"honest": 30, "noisy": 8, "spammer": 0, "left_bias": 0},
}
# The demo campaign's quality policy (campaigns/rating.yaml).
POLICY = GoldenPolicy(min_golden=3, min_accuracy=0.7, block_confidence=0.8)


def blocked_workers(rows: list[RatingRow], tolerance: float) -> set[str]:
    """Workers the golden checks block: per-aspect golden answers, the demo's policy."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r.golden is not None:
            passed, graded = golden_passes(r.scores, r.golden, tolerance)
            tally[r.worker][0] += passed
            tally[r.worker][1] += graded
    return {w for w, (c, n) in tally.items() if assess_worker(c, n, POLICY).status == "blocked"}


def score(
    sim: SimulatedRatings, rows: list[RatingRow], spec: RatingSpec, method: str
) -> dict[str, float]:
    fitted = fit_ratings(rows, spec, method)
    err, covered = [], []
    for i, rid in enumerate(fitted.responses):
        for j, name in enumerate(fitted.aspects):
            e = float(fitted.scores[i, j]) - sim.truth[rid][name]
            err.append(e)
            covered.append(abs(e) <= 2 * float(fitted.sd[i, j]))
    e = np.array(err)
    return {
        "mae": float(np.abs(e).mean()),
        "rmse": float(np.sqrt((e**2).mean())),
        "covered": float(np.mean(covered)),
        "responses": float(len(fitted.responses)),
    }


def run(crowd: str, seed: int, prompts: int, overlap: int, golden_share: float) -> dict[str, Any]:
    spec = RatingSpec(candidates_file=Path("-"), export=RatingExportSpec(path=Path("-")))
    per_topic = max(1, prompts // len(CATALOG))
    real = per_topic * len(CATALOG) * 6
    config = CrowdConfig(**CROWDS[crowd])  # type: ignore[arg-type]
    sim = simulate_ratings(
        config, seed, per_topic, overlap, spec, golden=golden_count(real, golden_share)
    )
    blocked = blocked_workers(sim.rows, spec.golden_tolerance)
    trusted = [r for r in sim.rows if r.worker not in blocked]
    real_rows = [r for r in sim.rows if r.golden is None]
    started = time.process_time()
    out: dict[str, Any] = {
        "crowd": crowd,
        "seed": seed,
        "ratings": len(sim.rows),
        "blocked_bad": sum(1 for w in blocked if sim.archetype[w] in BAD_ARCHETYPES),
        "blocked_other": sum(1 for w in blocked if sim.archetype[w] not in BAD_ARCHETYPES),
        "bad_workers": sum(1 for a in sim.archetype.values() if a in BAD_ARCHETYPES),
        "mean": score(sim, sim.rows, spec, "mean"),
        "mean_trusted": score(sim, trusted, spec, "mean"),
        "linear_unanchored": score(sim, real_rows, spec, "worker_linear"),
        "linear": score(sim, sim.rows, spec, "worker_linear"),
        "linear_trusted": score(sim, trusted, spec, "worker_linear"),
    }
    out["cpu_s"] = round(time.process_time() - started, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--golden-share", type=float, default=0.2)
    parser.add_argument("--crowds", default=",".join(CROWDS))
    args = parser.parse_args()
    crowds = args.crowds.split(",")
    results = [
        run(crowd, seed, args.prompts, args.overlap, args.golden_share)
        for crowd in crowds
        for seed in range(args.seeds)
    ]
    print(f"{'crowd':9} {'seed':>4} {'blocked':>12} " + " ".join(f"{m:>17}" for m in METHODS))
    for r in results:
        blocked = f"{r['blocked_bad']}/{r['bad_workers']}+{r['blocked_other']}"
        print(
            f"{r['crowd']:9} {r['seed']:>4} {blocked:>12} "
            + " ".join(f"{r[m]['mae']:17.3f}" for m in METHODS)
        )
    print()
    print("median over seeds: MAE (RMSE) in scale points; blocked = bad blocked/bad + others")
    print(
        f"{'crowd':9} " + " ".join(f"{m:>17}" for m in METHODS) + "  2sd coverage (linear_trusted)"
    )
    for crowd in crowds:
        rows = [r for r in results if r["crowd"] == crowd]
        cells = []
        for m in METHODS:
            mae = float(np.median([r[m]["mae"] for r in rows]))
            rmse = float(np.median([r[m]["rmse"] for r in rows]))
            cells.append(f"{mae:.3f} ({rmse:.3f})")
        cover = float(np.median([r["linear_trusted"]["covered"] for r in rows]))
        print(f"{crowd:9} " + " ".join(f"{c:>17}" for c in cells) + f"  {cover:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
