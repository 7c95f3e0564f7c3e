"""Component-wise Bradley-Terry refits (crowdloop.aggregation.components) and the
per-component scale step of bradley_terry, against bradley_terry itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from crowdloop.aggregation.bootstrap import bootstrap_scores
from crowdloop.aggregation.bradley_terry import _rescale, bradley_terry, connected_components
from crowdloop.aggregation.components import (
    MAX_BATCHED,
    ComponentLayout,
    RowGroups,
    fit_replicates,
    laplace_sd,
    newton,
)


def _mixed(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Comparisons in components of 2..6 items (prompts) plus one of MAX_BATCHED + 4 items
    (a dense design), with ties, fractional outcomes and repeated comparisons."""
    rng = np.random.default_rng(seed)
    left, right, outcome = [], [], []
    start = 0
    sizes = [2, 3, 4, 4, 5, 6] * 8 + [MAX_BATCHED + 4]
    for k in sizes:
        truth = rng.normal(0.0, 1.5, k)
        n = 3 * k * (k - 1) // 2
        a = rng.integers(0, k, n)
        b = (a + rng.integers(1, k, n)) % k
        won = (rng.random(n) < expit(truth[a] - truth[b])).astype(float)
        won[rng.random(n) < 0.1] = 0.5
        left.append(start + a)
        right.append(start + b)
        outcome.append(won)
        start += k
    return np.concatenate(left), np.concatenate(right), np.concatenate(outcome), start


def _anchored_per_component(
    left: np.ndarray, right: np.ndarray, share: np.ndarray, weight: np.ndarray, n_items: int
) -> np.ndarray:
    """Each component fitted alone by bradley_terry, moved to its prior-anchored level."""
    labels = connected_components(n_items, left, right)
    out = np.empty(n_items)
    for label in np.unique(labels):
        items = np.flatnonzero(labels == label)
        code = np.full(n_items, -1)
        code[items] = np.arange(items.size)
        rows = labels[left] == label
        fit = bradley_terry(
            code[left[rows]],
            code[right[rows]],
            share[rows],
            items.size,
            weights=weight[rows],
            tol=1e-12,
        ).scores
        out[items] = _rescale(fit)
    return out


def test_one_scale_step_per_component_gives_the_joint_fit_in_few_iterations() -> None:
    left, right, outcome, n_items = _mixed(0)
    joint = bradley_terry(left, right, outcome, n_items)
    alone = _anchored_per_component(left, right, outcome, np.ones(left.size), n_items)
    np.testing.assert_allclose(joint.scores, alone - alone.mean(), atol=1e-6)
    # One common scale step needed ~60 iterations on data like this (issue 11); dense
    # data needs 7-8.
    assert joint.converged and joint.iterations <= 30


def test_replicates_match_bradley_terry_refits_on_the_same_draws() -> None:
    left, right, outcome, n_items = _mixed(1)
    weight = np.random.default_rng(2).choice([0.5, 1.0, 2.0], left.size)
    groups = RowGroups.collapse(left, right, outcome, weight)
    assert groups.count.sum() == left.size
    layout = ComponentLayout.of(n_items, groups.low, groups.high)
    assert layout.first_large() == layout.sizes.size - 1  # the dense component
    draws = np.random.default_rng(3).poisson(groups.count, size=(4, groups.count.size))
    out = np.empty((4, n_items))
    fit_replicates(
        groups,
        layout,
        lambda index: draws[:, index],
        4,
        start=None,
        prior=1.0,
        tol=1e-12,
        out=out,
    )
    for replicate in range(4):
        expected = _anchored_per_component(
            groups.low,
            groups.high,
            groups.share,
            groups.weight * draws[replicate],
            n_items,
        )
        np.testing.assert_allclose(out[replicate], expected, atol=1e-7)


def test_newton_reaches_the_optimum_from_far_away_on_separable_data() -> None:
    # Item 0 wins everything: only the prior keeps its score finite, and a full Newton
    # step from 0 overshoots; the damped iteration must still land on bradley_terry's fit.
    wins_first = np.array([[9.0, 9.0, 0.0]])  # edges (0,1), (0,2), (1,2)
    wins_second = np.array([[0.0, 0.0, 1.0]])
    scores = newton(wins_first, wins_second, np.full((1, 3), -5.0), prior=0.2, tol=1e-12)
    fit = bradley_terry(
        np.array([0, 0, 2, 1]),
        np.array([1, 2, 1, 2]),
        np.array([1.0, 1.0, 1.0, 1.0]),
        3,
        weights=np.array([9.0, 9.0, 1.0, 0.0]),
        prior=0.2,
        tol=1e-12,
    ).scores
    np.testing.assert_allclose(scores[0] - scores[0].mean(), fit, atol=1e-8)


def test_laplace_sd_is_the_sandwich_contrast_of_the_dense_hessian() -> None:
    left, right, outcome, n_items = _mixed(4)
    labels = connected_components(n_items, left, right)
    # 40 prompts and the dense component (the last items): batched and dense blocks.
    keep = np.isin(labels[left], [*range(40), labels[-1]])
    codes = np.unique(np.concatenate([left[keep], right[keep]]))
    remap = np.full(n_items, -1)
    remap[codes] = np.arange(codes.size)
    left, right, outcome, n = remap[left[keep]], remap[right[keep]], outcome[keep], codes.size
    groups = RowGroups.collapse(left, right, outcome, np.ones(left.size))
    layout = ComponentLayout.of(n, groups.low, groups.high)
    scores = _anchored_per_component(left, right, outcome, np.ones(left.size), n)
    p = expit(scores[left] - scores[right])
    information = np.zeros((n, n))
    for a, b, c in zip(left, right, p * (1 - p), strict=True):
        information[[a, b], [a, b]] += c
        information[a, b] -= c
        information[b, a] -= c
    q = expit(scores)
    inverse = np.linalg.inv(information + np.diag(q * (1 - q)))
    covariance = inverse @ information @ inverse
    contrast = np.eye(n) - 1.0 / n
    expected = np.sqrt(np.diag(contrast @ covariance @ contrast.T))
    np.testing.assert_allclose(laplace_sd(groups, layout, scores, prior=1.0), expected, rtol=1e-9)


def test_laplace_intervals_are_close_to_the_bootstrap_on_prompts() -> None:
    left, right, outcome, _ = _mixed(5)
    labels = np.array(["right", "tie", "left"])[(outcome * 2).astype(int)]
    frame = pd.DataFrame({"left": left, "right": right, "label": labels})
    boot = bootstrap_scores(frame, n_boot=200, seed=0).set_index("item")
    laplace = bootstrap_scores(frame, method="laplace").set_index("item").loc[boot.index]
    np.testing.assert_allclose(laplace["score"], boot["score"])
    width_ratio = (laplace["high"] - laplace["low"]) / (boot["high"] - boot["low"])
    assert 0.8 < float(np.median(width_ratio)) < 1.25
    with pytest.raises(ValueError, match="prior > 0"):
        bootstrap_scores(frame, method="laplace", prior=0.0)
