"""Benchmark: Bradley-Terry intervals on campaign-shaped data (many small prompts).

    .venv/bin/python bench/bench_intervals.py            # coverage + time at 10^5 and 10^6
    .venv/bin/python bench/bench_intervals.py --quick    # smaller smoke run

A preference campaign compares the 4 responses of each prompt pairwise (6 pairs, 3
judgments each, 10 % ties) and never across prompts, so its comparison graph is one small
component per prompt: 18 judgments per prompt, 4,800 prompts at ~10^5 judgments and 48,000
at ~10^6 (the shape of ``bench/bench_campaign.py``). ``bench/bench_aggregation.py`` only
tests dense data, where Bradley-Terry converges in 7-8 iterations.

Three interval methods, all for the score the report prints (the prior-1 MAP log-strength,
centred over all items):

- ``whole``: the previous implementation, kept here as the reference: 100 replicates, each
  drawing ``len(frame)`` comparisons with replacement and refitting ``bradley_terry`` on
  the whole graph.
- ``components``: ``bootstrap_scores`` (Poisson bootstrap, 100 replicates, each prompt
  refitted by a batched Newton iteration warm-started at the full fit).
- ``laplace``: ``bootstrap_scores(method="laplace")`` (sandwich covariance at the fit, no
  refits).

Coverage: the data are simulated from known log-strengths (normal, sd 1, per prompt). The
estimand is what the MAP estimates with unlimited data: the truth moved, per prompt, to
the level its prior anchors (sum of sigmoids = half the prompt's size), then centred over
all items. Coverage is the share of items whose 95 % interval holds it, over ``--seeds``
data sets of ``--coverage-prompts`` prompts; the shrinkage of the prior (weight 1 against
~9 comparisons per item) biases every method a little, the same for all.

Time: CPU seconds (``time.process_time``) of one ``bootstrap_scores`` call, frame in to
intervals out, at each ``--sizes`` (prompts), repeated ``--repeats`` times with the methods
interleaved (A B C A B C ...) and reported as medians, so machine load falls on all
methods alike. ``whole`` is timed at the first size only (it takes ~0.4 s per replicate
there). The script asserts nothing; it prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from crowdloop.aggregation.bootstrap import _encode, bootstrap_scores
from crowdloop.aggregation.bradley_terry import _rescale, bradley_terry

ITEMS_PER_PROMPT = 4
OVERLAP = 3
TIE_SHARE = 0.1
N_BOOT = 100


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def campaign_frame(n_prompts: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Judgments of a simulated campaign and the estimand per item (see the docstring)."""
    rng = np.random.default_rng(seed)
    k = ITEMS_PER_PROMPT
    truth = rng.normal(0.0, 1.0, (n_prompts, k))
    first, second = np.triu_indices(k, 1)
    per_prompt = first.size * OVERLAP
    prompt = np.repeat(np.arange(n_prompts), per_prompt)
    a = np.tile(np.repeat(first, OVERLAP), n_prompts)
    b = np.tile(np.repeat(second, OVERLAP), n_prompts)
    swap = rng.random(a.size) < 0.5  # sides randomised, as the campaign does
    left, right = np.where(swap, b, a), np.where(swap, a, b)
    won = rng.random(a.size) < expit(truth[prompt, left] - truth[prompt, right])
    label = np.where(won, "left", "right").astype(object)
    label[rng.random(a.size) < TIE_SHARE] = "tie"
    names = np.array([f"p{p}-r{r}" for p in range(n_prompts) for r in range(k)], dtype=object)
    frame = pd.DataFrame(
        {
            "worker": rng.integers(0, 200, a.size),
            "left": names[prompt * k + left],
            "right": names[prompt * k + right],
            "label": label,
        }
    )
    anchored = np.concatenate([_rescale(row) for row in truth])
    return frame, pd.Series(anchored - anchored.mean(), index=names)


def whole_graph_bootstrap(frame: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """The previous ``bootstrap_scores``: multinomial draws, whole-graph refits."""
    left, right, outcome, items = _encode(frame)
    n_items = len(items)
    point = bradley_terry(left, right, outcome, n_items).scores
    low = np.minimum(left, right)
    share_low = np.where(left == low, outcome, 1.0 - outcome)
    keys, pair = np.unique(low * n_items + np.maximum(left, right), return_inverse=True)
    pair = pair.ravel()
    rng = np.random.default_rng(seed)
    replicates = np.empty((n_boot, n_items))
    for replicate in range(n_boot):
        drawn = rng.integers(0, left.size, left.size)
        weight = np.bincount(pair[drawn], None, keys.size)
        won = np.bincount(pair[drawn], share_low[drawn], keys.size)
        share = np.divide(won, weight, out=np.full(keys.size, 0.5), where=weight > 0)
        replicates[replicate] = bradley_terry(
            keys // n_items,
            keys % n_items,
            np.clip(share, 0, 1),
            n_items,
            weights=weight,
            tol=1e-6,
        ).scores
    bounds = np.quantile(replicates, [0.025, 0.975], axis=0)
    return pd.DataFrame({"item": items, "score": point, "low": bounds[0], "high": bounds[1]})


METHODS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "whole": whole_graph_bootstrap,
    "components": lambda frame: bootstrap_scores(frame, n_boot=N_BOOT),
    "laplace": lambda frame: bootstrap_scores(frame, n_boot=N_BOOT, method="laplace"),
}


def coverage(prompts: int, seeds: list[int]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, method in METHODS.items():
        hits = widths = total = 0.0
        for seed in seeds:
            frame, estimand = campaign_frame(prompts, seed)
            result = method(frame).set_index("item")
            truth = estimand.reindex(result.index).to_numpy()
            hits += float(((result["low"] <= truth) & (truth <= result["high"])).sum())
            widths += float((result["high"] - result["low"]).sum())
            total += len(result)
        out[name] = {"coverage": hits / total, "mean_width": widths / total}
        log(f"coverage {name}: {out[name]['coverage']:.3f}, width {out[name]['mean_width']:.3f}")
    return out


def timings(sizes: list[int], repeats: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for index, prompts in enumerate(sizes):
        frame, _ = campaign_frame(prompts, seed=0)
        names = [n for n in METHODS if n != "whole" or index == 0]
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(repeats):
            for name in names:
                start = time.process_time()
                METHODS[name](frame)
                seconds[name].append(time.process_time() - start)
                log(f"{prompts} prompts ({len(frame)} judgments) {name}: {seconds[name][-1]:.2f} s")
        out[str(prompts)] = {
            "judgments": len(frame),
            **{n: {"cpu_s": s, "median_cpu_s": statistics.median(s)} for n, s in seconds.items()},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one seed")
    parser.add_argument("--sizes", type=int, nargs="+", help="prompts per timed data set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--coverage-prompts", type=int, default=1_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    sizes = args.sizes or ([480, 4_800] if args.quick else [4_800, 48_000])
    seeds = args.seeds[:1] if args.quick else args.seeds
    prompts = min(args.coverage_prompts, 200) if args.quick else args.coverage_prompts
    log(f"coverage on {len(seeds)} x {prompts} prompts")
    cover = coverage(prompts, seeds)
    times = timings(sizes, 1 if args.quick else args.repeats)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"\nmachine: {machine}, Python {platform.python_version()}")
    print(f"\ncoverage of the 95 % intervals ({len(seeds)} x {prompts} prompts x 4 items):")
    print("| method | coverage | mean width |\n|---|---|---|")
    for name, row in cover.items():
        print(f"| {name} | {row['coverage']:.3f} | {row['mean_width']:.3f} |")
    print(f"\nCPU seconds per call ({N_BOOT} replicates), median of the interleaved repeats:")
    print("| prompts | judgments | " + " | ".join(METHODS) + " | whole / components |")
    print("|---|---|" + "---|" * (len(METHODS) + 1))
    for prompts, row in times.items():
        cells = [f"{row[n]['median_cpu_s']:.2f}" if n in row else "-" for n in METHODS]
        ratio = (
            f"{row['whole']['median_cpu_s'] / row['components']['median_cpu_s']:.1f}x"
            if "whole" in row
            else "-"
        )
        print(f"| {prompts} | {row['judgments']} | " + " | ".join(cells) + f" | {ratio} |")
    print(json.dumps({"coverage": cover, "timings": times}))


if __name__ == "__main__":
    main()
