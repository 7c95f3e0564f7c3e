"""Plackett-Luce scores from (partial, tied) rankings, by Hunter's MM algorithm.

A ranking of K items is read as K-1 successive choices: the first is chosen from all K,
the second from the K-1 left, and so on, each item `i` chosen from a set `S` with
probability gamma_i / sum_{k in S} gamma_k. Hunter (2004, "MM algorithms for generalized
Bradley-Terry models", Ann. Statist. 32(1), section 5) gives the update

    gamma_i <- w_i / sum_{stages s with i in S_s} (n_s / sum_{k in S_s} gamma_k)

where w_i counts the stages item i was chosen in and n_s the choices made from S_s (1
without ties). Ties are read with Breslow's approximation (from Cox regression): every
member of a tied group is chosen from the whole remaining set, then the group leaves it.
A stage where every remaining item is tied chooses nothing and is dropped.

As in crowdloop.aggregation.bradley_terry, a small prior keeps the scores finite and
ordered on data that never shows an item losing (a single ranking, say): each item plays
`prior` virtual ties against a reference of strength 1, i.e. prior/2 wins and prior/2
losses in pairwise choice stages {i, reference}.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from crowdloop.aggregation.bradley_terry import BTResult


def choice_stages(
    rankings: Sequence[tuple[Sequence[int], Sequence[int]]],
    weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The choice stages of the rankings, in long form.

    `rankings[r]` is (item codes as shown, their places: 1 best, equal places tied).
    Returns (member_stage, member_item, stage_weight, winner_item_weight) where the first
    two list which items are in each stage's choice set, `stage_weight` is the ranking's
    weight times the choices made in the stage, and `winner_item_weight` pairs each
    winning item (first column) with the weight of its win (second column).
    """
    member_stage: list[int] = []
    member_item: list[int] = []
    stage_weight: list[float] = []
    winners: list[tuple[int, float]] = []
    for r, (items, places) in enumerate(rankings):
        weight = 1.0 if weights is None else float(weights[r])
        order = sorted(zip(places, items, strict=True))
        remaining = [item for _, item in order]
        start = 0
        while start < len(order):
            end = start
            while end < len(order) and order[end][0] == order[start][0]:
                end += 1
            group = remaining[start:end]
            choice_set = remaining[start:]
            if len(group) < len(choice_set):
                stage = len(stage_weight)
                member_stage.extend([stage] * len(choice_set))
                member_item.extend(choice_set)
                stage_weight.append(weight * len(group))
                winners.extend((item, weight) for item in group)
            start = end
    return (
        np.asarray(member_stage, dtype=np.int64),
        np.asarray(member_item, dtype=np.int64),
        np.asarray(stage_weight, dtype=float),
        np.asarray(winners, dtype=float).reshape(-1, 2),
    )


def plackett_luce(
    rankings: Sequence[tuple[Sequence[int], Sequence[int]]],
    n_items: int,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    prior: float = 1.0,
    tol: float = 1e-8,
    max_iter: int = 10_000,
) -> BTResult:
    """Plackett-Luce log-strengths (centred to mean 0) of `n_items` items.

    `rankings[r]` is (item codes as shown, their places, 1 best); `weights[r]` scales a
    ranking (a worker's trust, say). `prior` > 0 is required: it is what keeps an item
    that was never beaten (or never beat anything) finite.
    """
    if prior <= 0 or not np.isfinite(prior):
        raise ValueError(f"prior must be a finite number > 0, got {prior}")
    member_stage, member_item, stage_weight, winners = choice_stages(rankings, weights)
    if len(member_item) and (member_item.min() < 0 or member_item.max() >= n_items):
        raise ValueError(f"item codes must be in 0..{n_items - 1}")
    wins = np.bincount(
        winners[:, 0].astype(np.int64), weights=winners[:, 1], minlength=n_items
    ).astype(float)
    wins += prior / 2.0
    gamma = np.ones(n_items)
    # Convergence is judged on scores centred per connected group of items: only the
    # differences within a group mean anything, and the group's common level, which only
    # the weak prior pins down, drifts towards it far more slowly (linear MM steps).
    component = _components(member_stage, member_item, len(stage_weight), n_items)
    size = np.bincount(component).astype(float)
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        stage_sum = np.bincount(
            member_stage, weights=gamma[member_item], minlength=len(stage_weight)
        )
        exposure = np.bincount(
            member_item,
            weights=(stage_weight / stage_sum)[member_stage] if len(stage_weight) else None,
            minlength=n_items,
        ).astype(float)
        exposure += prior / (gamma + 1.0)
        updated = wins / exposure
        step = np.log(updated) - np.log(gamma)
        step -= (np.bincount(component, weights=step) / size)[component]
        change = np.max(np.abs(step)) if n_items else 0.0
        gamma = updated
        if change < tol:
            converged = True
            break
    scores = np.log(gamma)
    return BTResult(
        scores=scores - scores.mean() if n_items else scores,
        iterations=iterations,
        converged=converged,
    )


def _components(
    member_stage: np.ndarray, member_item: np.ndarray, n_stages: int, n_items: int
) -> np.ndarray:
    """Component label per item: items in one choice set are connected."""
    graph = coo_matrix(
        (np.ones(len(member_item)), (member_item, n_items + member_stage)),
        shape=(n_items + n_stages, n_items + n_stages),
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels[:n_items], dtype=np.int64)
