"""Rankings as evidence: the pairs a ranking implies, agreement with a known order, the
naive mean-rank baseline, and one scorer over all three methods.

A ranking is (item codes as shown, places: 1 best, equal places tied). The methods:

- `plackett_luce`: crowdloop.aggregation.plackett_luce on the rankings themselves;
- `bradley_terry`: crowdloop.aggregation.bradley_terry over the K(K-1)/2 pairs each
  ranking implies, weighted so that a ranking is not worth K(K-1)/2 independent votes
  (`PAIR_WEIGHTS`; bench/bench_ranking.py measures the choices);
- `mean_rank`: each item's mean normalised position (0 best, 1 worst), negated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Literal, TypeAlias

import numpy as np

from crowdloop.aggregation.bradley_terry import bradley_terry
from crowdloop.aggregation.plackett_luce import plackett_luce

Ranking: TypeAlias = tuple[Sequence[int], Sequence[int]]
Method: TypeAlias = Literal["plackett_luce", "bradley_terry", "mean_rank"]
PairWeight: TypeAlias = Literal["choices", "one", "pairs"]


def rankdata(values: Sequence[float] | np.ndarray, method: Literal["average", "min"]) -> np.ndarray:
    """Ranks from 1 (smallest), equal values sharing their average or lowest rank, as
    ``scipy.stats.rankdata`` gives them (importing scipy.stats costs a campaign process
    ~22 MiB for these few lines)."""
    values = np.asarray(values)
    n = len(values)
    order = np.argsort(values, kind="mergesort")
    place = np.empty(n, dtype=np.intp)
    place[order] = np.arange(n)
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if n else np.zeros(0, dtype=bool)
    group = np.cumsum(starts)[place]  # 1-based group of equal values, per value
    bounds = np.r_[np.flatnonzero(starts), n]  # first position of each group, then n
    if method == "min":
        return (bounds[group - 1] + 1).astype(np.float64)
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def pair_weight(k: int, how: PairWeight) -> float:
    """The weight of one implied pair of a ranking of `k`: `choices` gives the ranking the
    weight of its k-1 Plackett-Luce choices (2/k per pair), `one` the weight of a single
    vote (1/C(k,2)), `pairs` counts every pair as an independent vote (1)."""
    if how == "choices":
        return 2.0 / k
    if how == "one":
        return 2.0 / (k * (k - 1))
    return 1.0


def implied_pairs(
    rankings: Sequence[Ranking],
    how: PairWeight,
    weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, outcome, weight) of every pair the rankings imply; outcome is 1 when
    `left` is placed above `right`, 0 below, 0.5 tied."""
    left: list[int] = []
    right: list[int] = []
    outcome: list[float] = []
    weight: list[float] = []
    for r, (items, places) in enumerate(rankings):
        w = pair_weight(len(items), how) * (1.0 if weights is None else float(weights[r]))
        for a, b in combinations(range(len(items)), 2):
            left.append(int(items[a]))
            right.append(int(items[b]))
            pa, pb = places[a], places[b]
            outcome.append(1.0 if pa < pb else 0.0 if pa > pb else 0.5)
            weight.append(w)
    return (
        np.asarray(left, dtype=np.int64),
        np.asarray(right, dtype=np.int64),
        np.asarray(outcome, dtype=float),
        np.asarray(weight, dtype=float),
    )


def concordance(places: Sequence[int], known: Sequence[int]) -> float:
    """Share of the pairs `known` orders strictly that `places` orders the same way (a
    tie in `places` counts half): 1 the same order, 0 the reverse, 0.5 for a random one.
    Equal to (1 + Kendall's tau-a over those pairs) / 2."""
    agree = 0.0
    total = 0
    for a, b in combinations(range(len(known)), 2):
        if known[a] == known[b]:
            continue
        total += 1
        if places[a] == places[b]:
            agree += 0.5
        elif (places[a] < places[b]) == (known[a] < known[b]):
            agree += 1.0
    if total == 0:
        raise ValueError("the known order orders nothing (every place is equal)")
    return agree / total


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same items (places or scores: only the
    direction within each pair matters, and both must use the same direction). 1 the same
    order, -1 the reverse; where it is undefined (one side ties everything) 1 if both do,
    else 0."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} places against {len(y)}")
    concordant = discordant = tied_x = tied_y = 0
    for a, b in combinations(range(len(x)), 2):
        dx, dy = x[a] - x[b], y[a] - y[b]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tied_x += 1
        elif dy == 0:
            tied_y += 1
        elif (dx > 0) == (dy > 0):
            concordant += 1
        else:
            discordant += 1
    n0 = concordant + discordant
    denominator = math.sqrt((n0 + tied_x) * (n0 + tied_y))
    if denominator == 0:
        return 1.0 if tied_x == tied_y == 0 else 0.0
    return (concordant - discordant) / denominator


def mean_rank(rankings: Sequence[Ranking], n_items: int) -> np.ndarray:
    """Minus each item's mean normalised position (ties at their average position; 0 for
    an item no ranking shows): higher is better, like the model scores."""
    total = np.zeros(n_items)
    count = np.zeros(n_items)
    for items, places in rankings:
        position = (rankdata(places, method="average") - 1.0) / (len(items) - 1)
        np.add.at(total, np.asarray(items, dtype=np.int64), position)
        np.add.at(count, np.asarray(items, dtype=np.int64), 1.0)
    mean = np.divide(total, count, out=np.full(n_items, 0.5), where=count > 0)
    return -(mean - 0.5)


def ranking_scores(
    rankings: Sequence[Ranking],
    n_items: int,
    method: Method,
    how: PairWeight = "choices",
    weights: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """One score per item (higher is better) by `method`; see the module docstring."""
    if method == "plackett_luce":
        return plackett_luce(rankings, n_items, weights=weights).scores
    if method == "bradley_terry":
        left, right, outcome, w = implied_pairs(rankings, how, weights)
        return bradley_terry(left, right, outcome, n_items, weights=w).scores
    return mean_rank(rankings, n_items)


def worker_weights(
    rankings: Sequence[Ranking],
    workers: Sequence[str],
    n_items: int,
    method: Method,
    how: PairWeight = "choices",
    *,
    rounds: int = 5,
    prior_answers: float = 2.0,
    prior_reliability: float = 0.5,
) -> np.ndarray:
    """A weight per ranking: its worker's reliability, learned from agreement with the
    weighted consensus (a few rounds of fit, then re-weigh).

    A worker's reliability is 2c - 1 for the share c of pairs their rankings order as the
    consensus does (0 for a random or a fixed-order ranker, whose c is 1/2 on shuffled
    sets; 1 for a perfect one), averaged over their rankings with `prior_answers`
    pseudo-rankings at `prior_reliability`, so a worker with one ranking is not judged on
    it alone. Negative reliabilities weigh 0. The consensus includes the worker's own
    rankings (no leave-one-out, which would cost a fit per worker), which flatters every
    worker a little and the ones with many rankings of the same sets most.
    """
    codes = {w: i for i, w in enumerate(sorted(set(workers)))}
    of = np.array([codes[w] for w in workers], dtype=np.int64)
    weights = np.ones(len(rankings))
    for _ in range(rounds):
        scores = ranking_scores(rankings, n_items, method, how, weights)
        agreement = np.array(
            [
                2.0 * concordance(places, _places_by(scores, items)) - 1.0
                if len(set(scores[list(items)])) > 1
                else 0.0
                for items, places in rankings
            ]
        )
        total = np.bincount(of, weights=agreement, minlength=len(codes))
        count = np.bincount(of, minlength=len(codes))
        reliability = (total + prior_answers * prior_reliability) / (count + prior_answers)
        weights = np.clip(reliability, 0.0, 1.0)[of]
    return weights


def _places_by(scores: np.ndarray, items: Sequence[int]) -> list[int]:
    """Places (1 best, equal scores tied) of `items` by `scores`."""
    return [int(p) for p in rankdata(-scores[list(items)], method="min")]
