"""Per-pair verdicts from a Beta posterior over the share of workers preferring the left side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from crowdloop.aggregation.pairs import PairVerdict, pair_verdict, pair_verdicts


def test_one_left_vote() -> None:
    # Beta(2, 1): P(q > 1/2) = 1 - 0.5**2.
    assert pair_verdict(1, 0, 0) == PairVerdict(winner="left", p_left_better=0.75, confidence=0.75)


def test_three_to_two() -> None:
    verdict = pair_verdict(3, 2, 0)
    # Beta(4, 3): P(q > 1/2) = 21/32.
    assert verdict.winner == "left"
    assert verdict.p_left_better == pytest.approx(21 / 32)
    assert verdict.confidence == pytest.approx(21 / 32)


def test_unanimous_right() -> None:
    verdict = pair_verdict(0, 4, 0)
    # Beta(1, 5): P(q > 1/2) = 0.5**5.
    assert verdict.winner == "right"
    assert verdict.p_left_better == pytest.approx(1 / 32)
    assert verdict.confidence == pytest.approx(31 / 32)


def test_ties_are_half_votes() -> None:
    verdict = pair_verdict(2, 1, 3)
    # Tie share exactly 1/2 is not a majority; Beta(1 + 2 + 1.5, 1 + 1 + 1.5).
    assert verdict.winner == "left"
    assert verdict.p_left_better == pytest.approx(beta.sf(0.5, 4.5, 3.5))
    assert verdict.p_left_better == pytest.approx(0.64551, abs=1e-5)


def test_tie_majority_wins() -> None:
    verdict = pair_verdict(2, 0, 3)
    assert verdict.winner == "tie"
    assert verdict.confidence == pytest.approx(0.6)
    # The posterior still leans left: the tie votes do not hide the left votes.
    assert verdict.p_left_better == pytest.approx(0.79103, abs=1e-5)


def test_even_split_is_a_low_confidence_tie() -> None:
    assert pair_verdict(2, 2, 1) == PairVerdict(winner="tie", p_left_better=0.5, confidence=0.2)
    assert pair_verdict(2, 2, 0) == PairVerdict(winner="tie", p_left_better=0.5, confidence=0.0)


def test_no_votes() -> None:
    assert pair_verdict(0, 0, 0) == PairVerdict(winner="tie", p_left_better=0.5, confidence=0.0)


def test_tie_band() -> None:
    # 51 vs 50: P(q > 1/2) = 0.539, inside the default band of 0.05 around 1/2.
    close = pair_verdict(51, 50, 0)
    assert close.p_left_better == pytest.approx(0.53940, abs=1e-5)
    assert close.winner == "tie"
    assert pair_verdict(51, 50, 0, tie_band=0.0).winner == "left"


def test_prior_strength() -> None:
    weak = pair_verdict(1, 0, 0, prior=0.5)
    strong = pair_verdict(1, 0, 0, prior=5.0)
    assert weak.p_left_better == pytest.approx(beta.sf(0.5, 1.5, 0.5))
    assert weak.p_left_better > 0.75 > strong.p_left_better
    with pytest.raises(ValueError, match="prior"):
        pair_verdict(1, 0, 0, prior=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        pair_verdict(-1, 0, 0)


def test_vectorised_equals_scalar() -> None:
    rng = np.random.default_rng(3)
    judgments = pd.DataFrame(
        {
            "pair": rng.integers(0, 200, 1_000),
            "label": rng.choice(["left", "right", "tie"], 1_000, p=[0.4, 0.3, 0.3]),
        }
    )
    frame = pair_verdicts(judgments)
    assert list(frame.columns) == [
        "pair", "n_left", "n_right", "n_tie", "winner", "p_left_better", "confidence"
    ]  # fmt: skip
    assert frame["pair"].is_monotonic_increasing
    assert frame[["n_left", "n_right", "n_tie"]].to_numpy().sum() == 1_000
    assert set(frame["winner"]) == {"left", "right", "tie"}
    for row in frame.itertuples():
        scalar = pair_verdict(row.n_left, row.n_right, row.n_tie)
        assert scalar.winner == row.winner
        assert scalar.p_left_better == pytest.approx(row.p_left_better, abs=1e-15)
        assert scalar.confidence == pytest.approx(row.confidence, abs=1e-15)


def test_vectorised_counts_and_missing_labels() -> None:
    judgments = pd.DataFrame(
        {"pair": ["p1", "p1", "p1", "p2", "p2"], "label": ["left", "left", "tie", "right", "right"]}
    )
    frame = pair_verdicts(judgments).set_index("pair")
    assert frame.loc["p1", ["n_left", "n_right", "n_tie"]].tolist() == [2, 0, 1]
    assert frame.loc["p2", ["n_left", "n_right", "n_tie"]].tolist() == [0, 2, 0]
    assert frame.loc["p1", "winner"] == "left"
    # Beta(1 + 2 + 0.5, 1 + 0.5)
    assert frame.loc["p1", "p_left_better"] == pytest.approx(beta.sf(0.5, 3.5, 1.5))
    assert frame.loc["p2", "winner"] == "right"
    assert frame.loc["p2", "confidence"] == pytest.approx(7 / 8)  # Beta(1, 3): 1 - 0.5**3
    with pytest.raises(ValueError, match="left/right/tie"):
        pair_verdicts(judgments.assign(label="draw"))


def test_weighted_votes_count_by_weight() -> None:
    frame = pd.DataFrame(
        {
            "pair": ["p", "p", "p", "q"],
            "label": ["left", "right", "right", "left"],
            "weight": [1.0, 0.1, 0.1, 1.0],
        }
    )
    out = pair_verdicts(frame).set_index("pair")
    assert out.loc["p", "n_left"] == pytest.approx(1.0)
    assert out.loc["p", "n_right"] == pytest.approx(0.2)
    # Two near-zero-weight votes for the right do not outvote one trusted vote for the left.
    assert out.loc["p", "winner"] == "left"
    unweighted = pair_verdicts(frame.drop(columns="weight")).set_index("pair")
    assert unweighted.loc["p", "winner"] == "right"


@pytest.mark.parametrize("kind", ["strings", "codes", "categorical"])
@pytest.mark.parametrize("weighted", [False, True])
def test_vote_counts_are_pandas_pivot_bit_for_bit(kind: str, weighted: bool) -> None:
    """`vote_counts` replaced pivot_table / crosstab (their intermediate frames were the
    aggregation's peak at 10^6 judgments): the same pairs in the same order and the same
    counts, to the last bit of the weighted sums (pandas adds a group's weights with Kahan
    compensation, in row order; plain sums differ in the last bits on 3+ votes)."""
    rng = np.random.default_rng(11)
    n = 5_000
    codes = rng.integers(0, 300, n)
    pair: object = {
        "strings": np.array([f"p{c:04d}" for c in codes], dtype=object),
        "codes": codes.astype(np.int32),
        "categorical": pd.Categorical([f"p{c}" for c in codes]),
    }[kind]
    frame = pd.DataFrame(
        {"pair": pair, "label": rng.choice(["left", "right", "tie"], n, p=[0.6, 0.3, 0.1])}
    )
    if weighted:
        weight = rng.uniform(0.05, 1.0, n) / 3.0
        weight[rng.random(n) < 0.02] = np.nan
        frame["weight"] = weight
        expected = (
            frame.pivot_table(
                index="pair", columns="label", values="weight", aggfunc="sum", fill_value=0.0
            )
            .reindex(columns=["left", "right", "tie"], fill_value=0.0)
            .astype(np.float64)
        )
    else:
        expected = (
            pd.crosstab(frame["pair"], frame["label"])
            .reindex(columns=["left", "right", "tie"], fill_value=0)
            .astype(np.int64)
        )
    out = pair_verdicts(frame)
    assert out["pair"].tolist() == expected.index.tolist()
    for side in ("left", "right", "tie"):
        got = out[f"n_{side}"].to_numpy()
        assert got.dtype == expected[side].to_numpy().dtype
        np.testing.assert_array_equal(got, expected[side].to_numpy())
    if weighted:  # the compensation mattered: plain sums would differ somewhere
        plain = (
            frame.dropna()
            .groupby(["pair", "label"], observed=True)["weight"]
            .apply(lambda w: float(np.add.reduce(w.to_numpy())))
        )
        kahan = frame.dropna().groupby(["pair", "label"], observed=True)["weight"].sum()
        assert (plain != kahan).any()
