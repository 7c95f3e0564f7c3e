"""Benchmark: WorkerAwareBT on a simulated crowd of 1,000,000 comparisons.

    .venv/bin/python bench/bench_worker_aware.py            # 1e6 comparisons, 1,000 items,
                                                            # 2,000 workers
    .venv/bin/python bench/bench_worker_aware.py --comparisons 100000

The crowd: item log-strengths ~ N(0, 1); worker attentiveness uniform in [0.2, 1.0] (an
inattentive answer is uniform over left/right/tie); 5% of workers add a left bias of 1.5 to
the left item's log-strength; attentive answers follow Davidson's model with ties (ν = 0.5).

Prints the wall and CPU time of ``WorkerAwareBT().fit`` on the long-format frame (item and
worker factorisation included), L-BFGS-B iterations, and recovery against the hidden truth:
Spearman of attentiveness and of scores, and plain ``BradleyTerry``'s Spearman of scores on
the same data (with its time). Ends with one JSON line. A benchmark, not a test: it asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from crowdloop.aggregation.bradley_terry import BradleyTerry
from crowdloop.aggregation.worker_aware import WorkerAwareBT

LABELS = np.array(["left", "right", "tie"])


def simulate(
    seed: int, n_items: int, n_workers: int, n_comparisons: int, tie: float, left_bias: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Frame (worker, left, right, label) and the true strengths, attentiveness, biases."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n_items)
    attentiveness = rng.uniform(0.2, 1.0, n_workers)
    bias = np.where(rng.random(n_workers) < 0.05, left_bias, 0.0)
    left = rng.integers(0, n_items, n_comparisons)
    right = (left + rng.integers(1, n_items, n_comparisons)) % n_items
    worker = rng.integers(0, n_workers, n_comparisons)
    diff = strength[left] - strength[right] + bias[worker]
    odds = np.stack([np.exp(diff / 2), np.exp(-diff / 2), np.full(n_comparisons, tie)], 1)
    cumulative = np.cumsum(odds / odds.sum(axis=1, keepdims=True), axis=1)
    judged = (rng.random(n_comparisons)[:, None] > cumulative).sum(axis=1)
    random = rng.integers(0, 3, n_comparisons)
    answer = np.where(rng.random(n_comparisons) < attentiveness[worker], judged, random)
    frame = pd.DataFrame({"worker": worker, "left": left, "right": right, "label": LABELS[answer]})
    return frame, strength, attentiveness, bias


def timed(action: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comparisons", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2_000)
    parser.add_argument("--tie", type=float, default=0.5)
    parser.add_argument("--left-bias", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame, strength, attentiveness, bias = simulate(
        args.seed, args.items, args.workers, args.comparisons, args.tie, args.left_bias
    )
    model, wall, cpu = timed(lambda: WorkerAwareBT().fit(frame))
    plain, plain_wall, plain_cpu = timed(lambda: BradleyTerry().fit(frame))

    items = range(args.items)
    workers = range(args.workers)
    biased = np.flatnonzero(bias > 0)
    top = set(model.position_bias_.nlargest(biased.size).index)
    figures = {
        "comparisons": args.comparisons,
        "items": args.items,
        "workers": args.workers,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "iterations": model.n_iter_,
        "converged": model.converged_,
        "spearman_attentiveness": round(
            float(spearmanr(model.attentiveness_.reindex(workers), attentiveness).statistic), 4
        ),
        "spearman_scores": round(
            float(spearmanr(model.scores_.reindex(items), strength).statistic), 4
        ),
        "plain_bt_spearman_scores": round(
            float(spearmanr(plain.scores_.reindex(items), strength).statistic), 4
        ),
        "plain_bt_seconds": round(plain_wall, 2),
        "plain_bt_cpu_seconds": round(plain_cpu, 2),
        "biased_workers": int(biased.size),
        "biased_in_top_bias": len(top & set(biased)),
        "tie_true": args.tie,
        "tie_estimate": round(model.tie_, 4),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(
        f"WorkerAwareBT on {args.comparisons:,} comparisons ({args.items:,} items, "
        f"{args.workers:,} workers)"
    )
    print(f"  fit: {wall:.2f} s wall, {cpu:.2f} s CPU, {model.n_iter_} L-BFGS-B iterations,")
    print(f"       converged={model.converged_}")
    print(f"  Spearman attentiveness vs truth: {figures['spearman_attentiveness']:.4f}")
    print(f"  Spearman scores vs truth:        {figures['spearman_scores']:.4f}")
    print(
        f"  plain BradleyTerry, scores:      {figures['plain_bt_spearman_scores']:.4f} "
        f"({plain_wall:.2f} s wall, {plain_cpu:.2f} s CPU)"
    )
    print(
        f"  left-biased workers among the {biased.size} largest position_bias_: "
        f"{figures['biased_in_top_bias']}"
    )
    print(f"  tie ν: true {args.tie}, estimated {model.tie_:.4f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
