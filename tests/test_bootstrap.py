"""Bootstrap intervals for Bradley-Terry scores, position-bias report, connectivity check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from scipy.stats import binomtest

from crowdloop.aggregation.bootstrap import (
    OVERALL,
    ConnectivityReport,
    bootstrap_scores,
    check_connected,
    position_bias_report,
    two_sided_binomial_p,
)
from crowdloop.aggregation.bradley_terry import BradleyTerry

_LABELS = np.array(["left", "right", "tie"])


def _comparisons(seed: int, n_items: int, n_comparisons: int) -> pd.DataFrame:
    """BT comparisons (10% ties) by 5 honest workers."""
    rng = np.random.default_rng(seed)
    strength = np.linspace(-2.0, 2.0, n_items)
    left = rng.integers(0, n_items, n_comparisons)
    right = (left + rng.integers(1, n_items, n_comparisons)) % n_items
    won = rng.random(n_comparisons) < expit(strength[left] - strength[right])
    answer = np.where(won, 0, 1)
    answer[rng.random(n_comparisons) < 0.1] = 2
    return pd.DataFrame(
        {
            "worker": rng.integers(0, 5, n_comparisons),
            "left": [f"item{code}" for code in left],
            "right": [f"item{code}" for code in right],
            "label": _LABELS[answer],
        }
    )


@pytest.fixture(scope="module")
def many() -> pd.DataFrame:
    return _comparisons(0, n_items=12, n_comparisons=6_000)


def test_interval_contains_the_point_estimate(many: pd.DataFrame) -> None:
    result = bootstrap_scores(many, n_boot=200, seed=1)
    assert list(result.columns) == ["item", "score", "low", "high"]
    assert len(result) == 12
    assert result["score"].is_monotonic_decreasing
    assert np.all(result["low"] <= result["score"])
    assert np.all(result["score"] <= result["high"])
    assert np.all(result["low"] < result["high"])
    # The point estimate is plain BradleyTerry on all comparisons.
    expected = BradleyTerry().fit_predict(many)
    np.testing.assert_allclose(
        result.set_index("item")["score"], expected.reindex(result["item"]), atol=1e-12
    )


def test_fewer_comparisons_give_wider_intervals(many: pd.DataFrame) -> None:
    wide = bootstrap_scores(many.head(600), n_boot=100, seed=1)
    narrow = bootstrap_scores(many, n_boot=100, seed=1)
    wide_width = (wide["high"] - wide["low"]).mean()
    narrow_width = (narrow["high"] - narrow["low"]).mean()
    # 10x the data: about sqrt(10) ~ 3.2x narrower.
    assert wide_width > 2.0 * narrow_width


def test_bootstrap_is_reproducible_and_coverage_grows_with_ci(many: pd.DataFrame) -> None:
    first = bootstrap_scores(many.head(1_000), n_boot=50, seed=7)
    again = bootstrap_scores(many.head(1_000), n_boot=50, seed=7)
    pd.testing.assert_frame_equal(first, again)
    broad = bootstrap_scores(many.head(1_000), n_boot=50, seed=7, ci=0.99)
    assert np.all(broad["high"] - broad["low"] >= first["high"] - first["low"] - 1e-12)


def test_bootstrap_weights_match_repetition() -> None:
    frame = pd.DataFrame(
        {
            "left": ["a", "b", "c", "a"],
            "right": ["b", "c", "a", "c"],
            "label": ["left", "left", "tie", "right"],
        }
    )
    weighted = bootstrap_scores(frame.assign(weight=[2.0, 1.0, 1.0, 1.0]), n_boot=5)
    repeated = bootstrap_scores(frame.loc[frame.index.repeat([2, 1, 1, 1])], n_boot=5)
    np.testing.assert_allclose(weighted["score"], repeated["score"], atol=1e-9)


def test_bootstrap_rejects_bad_arguments(many: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_scores(many, n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        bootstrap_scores(many, ci=1.0)
    with pytest.raises(ValueError, match="left/right/tie"):
        bootstrap_scores(many.assign(label="draw"))


def test_position_bias_report_flags_a_left_clicker() -> None:
    rng = np.random.default_rng(3)
    honest = rng.choice(_LABELS, 300, p=[0.45, 0.45, 0.1])
    clicker = rng.choice(_LABELS, 300, p=[0.65, 0.25, 0.1])
    frame = pd.DataFrame(
        {
            "worker": ["honest"] * 300 + ["clicker"] * 300,
            "left": "a",
            "right": "b",
            "label": np.concatenate([honest, clicker]),
        }
    )
    report = position_bias_report(frame)
    assert list(report.columns) == [
        "worker",
        "n",
        "share_left",
        "share_right",
        "share_tie",
        "p_value",
    ]
    rows = report.set_index("worker")
    assert rows.loc["clicker", "p_value"] < 0.01
    assert rows.loc["clicker", "share_left"] > rows.loc["clicker", "share_right"]
    assert rows.loc["honest", "p_value"] > 0.01
    # Most suspicious first, the summary row last.
    assert list(report["worker"]) == ["clicker", "honest", OVERALL]
    assert rows.loc[OVERALL, "n"] == 600
    shares = report[["share_left", "share_right", "share_tie"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)


def test_binomial_p_values_equal_scipy_binomtest() -> None:
    rng = np.random.default_rng(5)
    trials = np.concatenate([np.arange(0, 40), rng.integers(1, 5_000, 200)])
    successes = np.array([rng.integers(0, n + 1) for n in trials])
    expected = [
        binomtest(int(k), int(n), 0.5).pvalue if n else 1.0
        for k, n in zip(successes, trials, strict=True)
    ]
    np.testing.assert_allclose(two_sided_binomial_p(successes, trials), expected, rtol=1e-12)


def test_position_bias_report_worker_without_sides() -> None:
    frame = pd.DataFrame({"worker": [1, 1, 2], "label": ["tie", "tie", "left"]})
    rows = position_bias_report(frame).set_index("worker")
    assert rows.loc[1, "p_value"] == 1.0
    assert rows.loc[1, "share_tie"] == 1.0
    assert rows.loc[2, "n"] == 1


def test_connectivity_counts_components_until_bridged() -> None:
    frame = pd.DataFrame(
        {
            "left": ["a", "c", "d", "x"],
            "right": ["b", "d", "e", "y"],
            "label": ["left", "left", "tie", "right"],
        }
    )
    assert check_connected(frame) == ConnectivityReport(
        components=3, items_per_component=[3, 2, 2], ok=False
    )
    bridged = pd.concat(
        [
            frame,
            pd.DataFrame({"left": ["b", "e"], "right": ["c", "x"], "label": ["left", "tie"]}),
        ],
        ignore_index=True,
    )
    assert check_connected(bridged) == ConnectivityReport(
        components=1, items_per_component=[7], ok=True
    )


def test_connectivity_detects_two_leagues(many: pd.DataFrame) -> None:
    other = _comparisons(1, n_items=5, n_comparisons=50)
    other[["left", "right"]] = "other-" + other[["left", "right"]]
    report = check_connected(pd.concat([many, other], ignore_index=True))
    assert report.components == 2
    assert report.items_per_component == [12, 5]
    assert not report.ok


def test_agreement_equals_evalica_alpha() -> None:
    """Krippendorff's alpha from label counts equals evalica's on the worker x pair matrix."""
    import evalica

    from crowdloop.stages.quality_report import _agreement

    rng = np.random.default_rng(7)
    n = 2000
    frame = pd.DataFrame(
        {
            "worker": rng.integers(0, 30, n).astype(str),
            "pair": rng.integers(0, 300, n).astype(str),
            "label": rng.choice(["left", "right", "tie"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    truth = rng.choice(["left", "right"], 300)
    agree = rng.random(n) < 0.6
    frame.loc[agree, "label"] = truth[frame.loc[agree, "pair"].astype(int)]
    wide = frame.pivot_table(index="worker", columns="pair", values="label", aggfunc="first")
    ours = _agreement(frame)
    assert ours is not None and 0.1 < ours < 0.9
    assert ours == pytest.approx(float(evalica.alpha(wide).alpha), abs=1e-12)
    # One label only: no expected disagreement, so no alpha.
    assert _agreement(frame.assign(label="left")) is None
