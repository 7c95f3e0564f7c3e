"""Bradley-Terry with ties: agreement with evalica, the LLMFAO reference, degenerate data."""

from __future__ import annotations

from pathlib import Path

import evalica
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import spearmanr

from crowdloop.aggregation import bradley_terry as bt_module
from crowdloop.aggregation.bradley_terry import (
    BradleyTerry,
    bradley_terry,
    connected_components,
    win_probability,
)

LLMFAO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "llmfao"
_EVALICA_WINNER = {"left": evalica.Winner.X, "right": evalica.Winner.Y, "tie": evalica.Winner.Draw}
_OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}


def _simulate(
    seed: int, n_items: int, n_comparisons: int, tie_rate: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Comparisons drawn from a BT model; a fixed share of them is replaced by ties."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n_items)
    left = rng.integers(0, n_items, n_comparisons)
    right = (left + rng.integers(1, n_items, n_comparisons)) % n_items
    outcome = (rng.random(n_comparisons) < expit(strength[left] - strength[right])).astype(float)
    outcome[rng.random(n_comparisons) < tie_rate] = 0.5
    return left, right, outcome, strength


def _centred_log(strengths: np.ndarray) -> np.ndarray:
    logs = np.log(strengths)
    return logs - logs.mean()


def _evalica_log_scores(
    left: np.ndarray, right: np.ndarray, outcome: np.ndarray, n: int
) -> np.ndarray:
    labels = pd.Series(outcome).map({1.0: "left", 0.0: "right", 0.5: "tie"}).map(_EVALICA_WINNER)
    result = evalica.bradley_terry(
        left, right, labels.tolist(), index=pd.Index(range(n)), tolerance=1e-12, limit=10_000
    )
    return _centred_log(result.scores.reindex(range(n)).to_numpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_evalica_without_prior(seed: int) -> None:
    left, right, outcome, _ = _simulate(seed, n_items=8, n_comparisons=2_000)
    ours = bradley_terry(left, right, outcome, 8, prior=0.0, tol=1e-12)
    theirs = _evalica_log_scores(left, right, outcome, 8)
    assert ours.converged
    np.testing.assert_allclose(ours.scores, theirs, atol=1e-7)
    assert list(np.argsort(-ours.scores)) == list(np.argsort(-theirs))


def test_default_prior_barely_moves_non_degenerate_scores() -> None:
    left, right, outcome, _ = _simulate(3, n_items=8, n_comparisons=2_000)
    regularised = bradley_terry(left, right, outcome, 8).scores
    plain = bradley_terry(left, right, outcome, 8, prior=0.0).scores
    # 1 virtual tie per item against 500 real comparisons per item: shrinkage < 1%.
    assert np.max(np.abs(regularised - plain)) < 0.01 * np.ptp(plain)
    assert list(np.argsort(-regularised)) == list(np.argsort(-plain))


@pytest.fixture(scope="module")
def llmfao() -> tuple[pd.DataFrame, pd.Series]:
    comparisons = LLMFAO / "crowd-comparisons.csv"
    reference = LLMFAO / "evalica-reference-scores.csv"
    if not comparisons.exists() or not reference.exists():
        pytest.skip(f"LLMFAO data not found under {LLMFAO} (shared data checkout absent)")
    frame = pd.read_csv(comparisons)
    scores = pd.read_csv(reference).query("algorithm == 'bradley_terry'").set_index("item")["score"]
    return frame, scores


def _llmfao_pairwise(frame: pd.DataFrame) -> pd.DataFrame:
    # Items are the model names (the reference is keyed by them), not the numeric model ids.
    return pd.DataFrame(
        {
            "worker": frame["worker"],
            "left": frame["left"],
            "right": frame["right"],
            "label": frame["winner"],
        }
    )


def test_llmfao_matches_evalica_reference(llmfao: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, reference = llmfao
    model = BradleyTerry(prior=0.0, tol=1e-12).fit(_llmfao_pairwise(frame))
    assert model.result_.converged
    assert len(model.scores_) == len(reference) == 59
    # The reference stores strengths normalised to sum 1; ours are centred log-strengths.
    strengths = np.exp(model.scores_)
    strengths /= strengths.sum()
    np.testing.assert_allclose(strengths.reindex(reference.index), reference, rtol=1e-6)
    assert list(model.scores_.index) == list(reference.sort_values(ascending=False).index)


def test_llmfao_default_prior_keeps_the_ranking(llmfao: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, reference = llmfao
    scores = BradleyTerry().fit_predict(_llmfao_pairwise(frame))
    reference_log = _centred_log(reference.reindex(scores.index).to_numpy())
    # Measured: identical ranking, log-scores within 0.007 of the unregularised ones.
    assert list(scores.index) == list(reference.sort_values(ascending=False).index)
    assert np.max(np.abs(scores.to_numpy() - reference_log)) < 0.01


def test_transitive_chain_gives_strictly_ordered_finite_scores() -> None:
    # a > b > c > d: evalica returns equal scores here, the MLE does not exist.
    result = bradley_terry(np.array([0, 1, 2]), np.array([1, 2, 3]), np.ones(3), 4)
    assert result.converged
    assert np.all(np.isfinite(result.scores))
    assert np.all(np.diff(result.scores) < -0.1)
    assert result.scores.mean() == pytest.approx(0.0, abs=1e-12)
    # The chain is symmetric around its middle.
    np.testing.assert_allclose(result.scores, -result.scores[::-1], atol=1e-7)


def test_transitive_prompt_with_repeated_votes() -> None:
    # 4 candidates for one prompt, all 6 pairs judged by 3 workers, perfectly transitive.
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)] * 3
    left = np.array([i for i, _ in pairs])
    right = np.array([j for _, j in pairs])
    result = bradley_terry(left, right, np.ones(len(pairs)), 4)
    assert np.all(np.isfinite(result.scores))
    assert list(np.argsort(-result.scores)) == [0, 1, 2, 3]
    assert win_probability(result.scores, 0, 3) > 0.9


def test_single_item_and_item_without_comparisons() -> None:
    single = bradley_terry(np.array([], dtype=int), np.array([], dtype=int), np.array([]), 1)
    np.testing.assert_array_equal(single.scores, [0.0])
    # Item 2 never plays: the prior puts it at the reference strength, between 0 and 1.
    lone = bradley_terry(np.array([0, 0]), np.array([1, 1]), np.array([1.0, 1.0]), 3)
    assert np.all(np.isfinite(lone.scores))
    assert lone.scores[0] > lone.scores[2] > lone.scores[1]


def test_disconnected_graph_is_finite_and_reported() -> None:
    # Two separate leagues: 0 > 1 and 2 > 3 > 4, never compared with each other.
    left, right = np.array([0, 2, 3]), np.array([1, 3, 4])
    result = bradley_terry(left, right, np.ones(3), 5)
    assert np.all(np.isfinite(result.scores))
    assert result.scores[0] > result.scores[1]
    assert result.scores[2] > result.scores[3] > result.scores[4]
    labels = connected_components(5, left, right)
    assert labels[0] == labels[1] != labels[2] == labels[3] == labels[4]
    assert len(np.unique(labels)) == 2
    assert len(np.unique(connected_components(3, np.array([0, 1]), np.array([1, 2])))) == 1


def test_recovers_simulated_strengths() -> None:
    left, right, outcome, strength = _simulate(7, n_items=30, n_comparisons=3_000)
    result = bradley_terry(left, right, outcome, 30)
    assert result.converged
    assert spearmanr(result.scores, strength).statistic >= 0.95


def test_a_tie_is_half_a_win_for_each_side() -> None:
    rng = np.random.default_rng(11)
    left = rng.integers(0, 5, 300)
    right = (left + rng.integers(1, 5, 300)) % 5
    outcome = rng.choice([0.0, 0.5, 1.0], 300)
    with_ties = bradley_terry(left, right, outcome, 5).scores
    is_tie = outcome == 0.5
    # Each tie rewritten as a half-weight left win plus a half-weight right win.
    split_left = np.concatenate([left[~is_tie], left[is_tie], left[is_tie]])
    split_right = np.concatenate([right[~is_tie], right[is_tie], right[is_tie]])
    split_outcome = np.concatenate(
        [outcome[~is_tie], np.ones(is_tie.sum()), np.zeros(is_tie.sum())]
    )
    split_weight = np.concatenate([np.ones((~is_tie).sum()), np.full(2 * is_tie.sum(), 0.5)])
    split = bradley_terry(split_left, split_right, split_outcome, 5, weights=split_weight).scores
    np.testing.assert_allclose(with_ties, split, atol=1e-7)


def test_weight_equals_repetition() -> None:
    left, right, outcome = np.array([0, 1, 2, 0]), np.array([1, 2, 0, 2]), np.array([1, 0.5, 0, 1])
    weighted = bradley_terry(left, right, outcome, 3, weights=np.array([3.0, 1, 1, 2])).scores
    repeated = bradley_terry(
        np.repeat(left, [3, 1, 1, 2]),
        np.repeat(right, [3, 1, 1, 2]),
        np.repeat(outcome, [3, 1, 1, 2]),
        3,
    ).scores
    np.testing.assert_allclose(weighted, repeated, atol=1e-9)


def test_million_comparisons_converge() -> None:
    # Speed is measured in bench/bench_aggregation.py, side by side with evalica; a timed
    # assertion here would only measure how loaded the machine is.
    left, right, outcome, strength = _simulate(5, n_items=200, n_comparisons=1_000_000)
    result = bradley_terry(left, right, outcome, 200)
    assert result.converged
    assert spearmanr(result.scores, strength).statistic > 0.99


def test_win_probability() -> None:
    scores = np.array([np.log(3.0), 0.0])
    assert win_probability(scores, 0, 1) == pytest.approx(0.75)
    assert win_probability(scores, 1, 0) == pytest.approx(0.25)
    assert win_probability(scores, 1, 1) == pytest.approx(0.5)


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="itself"):
        bradley_terry(np.array([0]), np.array([0]), np.array([1.0]), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        bradley_terry(np.array([0]), np.array([2]), np.array([1.0]), 2)
    with pytest.raises(ValueError, match="outcome"):
        bradley_terry(np.array([0]), np.array([1]), np.array([2.0]), 2)
    with pytest.raises(ValueError, match="never win or never lose"):
        bradley_terry(np.array([0, 1]), np.array([1, 2]), np.ones(2), 3, prior=0.0)


def test_estimator_on_hashable_ids() -> None:
    data = pd.DataFrame(
        {
            "worker": ["w1", "w2", "w1", "w2", "w3"],
            "left": ["gpt", "llama", "gpt", "mistral", "llama"],
            "right": ["llama", "mistral", "mistral", "gpt", "gpt"],
            "label": ["left", "left", "left", "right", "tie"],
        }
    )
    model = BradleyTerry()
    scores = model.fit_predict(data)
    assert list(scores.index) == ["gpt", "llama", "mistral"]
    assert scores.is_monotonic_decreasing
    assert scores.name == "score"
    codes = {item: code for code, item in enumerate(model.items_)}
    direct = bradley_terry(
        data["left"].map(codes).to_numpy(),
        data["right"].map(codes).to_numpy(),
        data["label"].map(_OUTCOME).to_numpy(),
        3,
    )
    np.testing.assert_allclose(model.result_.scores, direct.scores)
    with pytest.raises(ValueError, match="left/right/tie"):
        BradleyTerry().fit(data.assign(label="draw"))


def test_estimator_weight_column() -> None:
    data = pd.DataFrame({"left": ["a", "b"], "right": ["b", "a"], "label": ["left", "left"]})
    scores = BradleyTerry().fit_predict(data.assign(weight=[3.0, 1.0]))
    assert scores["a"] > scores["b"]
    even = BradleyTerry().fit_predict(data)
    assert even["a"] == pytest.approx(even["b"])


# --- the fast solver against a slow reference ------------------------------------------------


def _reference_mm(
    left: np.ndarray,
    right: np.ndarray,
    outcome: np.ndarray,
    n_items: int,
    weights: np.ndarray | None = None,
    prior: float = 1.0,
    tol: float = 1e-13,
    max_iter: int = 200_000,
) -> np.ndarray:
    """The previous implementation, kept as the reference: Hunter's MM update on every
    comparison (no pair table), each iterate followed by the exact Brent rescale (prior > 0)
    or mean-centring (prior = 0). Slow but simple."""
    weight = np.ones(left.size) if weights is None else np.asarray(weights, dtype=float)
    wins = np.bincount(left, weight * outcome, n_items) + np.bincount(
        right, weight * (1.0 - outcome), n_items
    )
    log_wins = np.log(wins + prior / 2.0)
    scores = np.zeros(n_items)
    for _ in range(max_iter):
        strength = np.exp(scores)
        per_game = weight / (strength[left] + strength[right])
        denominator = (
            np.bincount(left, per_game, n_items)
            + np.bincount(right, per_game, n_items)
            + prior / (strength + 1.0)
        )
        updated = log_wins - np.log(denominator)
        if prior == 0:
            updated -= updated.mean()
        else:
            updated += _reference_shift(updated)
        delta = np.max(np.abs(updated - scores))
        scores = updated
        if delta < tol:
            return scores - scores.mean()
    raise AssertionError("the reference MM did not converge")


def _reference_shift(scores: np.ndarray) -> float:
    """The t maximising the prior terms along the common shift: sum sigmoid(s + t) = n/2."""

    def excess(shift: float) -> float:
        return float(expit(scores + shift).sum() - scores.size / 2.0)

    return float(brentq(excess, -scores.max() - 1.0, -scores.min() + 1.0, xtol=1e-15))


@pytest.mark.parametrize("prior", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_mm(seed: int, weighted: bool, prior: float) -> None:
    left, right, outcome, _ = _simulate(20 + seed, n_items=25, n_comparisons=1_500)
    rng = np.random.default_rng(seed)
    weights = None
    if weighted:
        weights = rng.gamma(2.0, 0.5, left.size)
        weights[rng.random(left.size) < 0.05] = 0.0  # zero weights must simply not count
    ours = bradley_terry(left, right, outcome, 25, weights=weights, prior=prior, tol=1e-12)
    reference = _reference_mm(left, right, outcome, 25, weights, prior)
    assert ours.converged
    np.testing.assert_allclose(ours.scores, reference, rtol=0, atol=1e-7)


@pytest.mark.parametrize("prior", [0.5, 1.0])
def test_matches_reference_mm_on_sparse_fractional_data(prior: float) -> None:
    # 60 items, 150 comparisons (some items play once or never), outcomes anywhere in
    # [0, 1]: the weighted collapse path, and far from the asymptotic regime.
    rng = np.random.default_rng(3)
    left = rng.integers(0, 60, 150)
    right = (left + rng.integers(1, 60, 150)) % 60
    outcome = rng.choice([0.0, 0.25, 0.5, 1.0], 150)
    ours = bradley_terry(left, right, outcome, 60, prior=prior, tol=1e-12)
    reference = _reference_mm(left, right, outcome, 60, prior=prior)
    assert ours.converged
    np.testing.assert_allclose(ours.scores, reference, rtol=0, atol=1e-7)


def test_int64_pair_codes_collapse_like_the_weighted_path() -> None:
    # 24,000 items: 4 * n^2 >= 2^31, so the coded sort runs on int64.
    left, right, outcome, _ = _simulate(4, n_items=24_000, n_comparisons=30_000)
    coded = bt_module._collapse(left, right, outcome, 24_000, None)
    weighted = bt_module._collapse(left, right, outcome, 24_000, np.ones(left.size))
    assert coded.high.dtype == np.int64
    for name in ("bounds", "high", "wins_low", "wins_high"):
        np.testing.assert_array_equal(getattr(coded, name), getattr(weighted, name))
    assert bradley_terry(left, right, outcome, 24_000).converged


def test_collapse_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    left, right, outcome, _ = _simulate(9, n_items=40, n_comparisons=5_000)
    coded = bradley_terry(left, right, outcome, 40, prior=0.0, tol=1e-12).scores
    ones = np.ones(left.size)
    weighted = bradley_terry(left, right, outcome, 40, weights=ones, prior=0.0, tol=1e-12)
    np.testing.assert_allclose(weighted.scores, coded, rtol=0, atol=1e-12)
    # The stable-argsort fallback for codes that cannot carry the row index.
    monkeypatch.setattr(bt_module, "_PACKED_SORT_LIMIT", 0)
    fallback = bradley_terry(left, right, outcome, 40, weights=ones, prior=0.0, tol=1e-12)
    np.testing.assert_allclose(fallback.scores, coded, rtol=0, atol=1e-12)


def test_pair_table_counts_each_pair_once() -> None:
    # Pairs in both orientations, repeated, ties: the table holds unordered pairs with the
    # lower code's wins, whichever side it was on.
    left = np.array([0, 1, 0, 2, 1, 2, 0])
    right = np.array([1, 0, 1, 0, 2, 1, 2])
    outcome = np.array([1.0, 1.0, 0.5, 0.0, 0.5, 1.0, 1.0])
    for weights in (None, np.ones(7)):
        pairs = bt_module._collapse(left, right, outcome, 3, weights)
        np.testing.assert_array_equal(pairs.bounds, [0, 2, 3, 3])
        np.testing.assert_array_equal(pairs.high, [1, 2, 2])
        np.testing.assert_array_equal(pairs.wins_low, [1.5, 2.0, 0.5])
        np.testing.assert_array_equal(pairs.wins_high, [1.5, 0.0, 1.5])


def test_iteration_cap_and_a_diverging_mle() -> None:
    left, right, outcome, _ = _simulate(2, n_items=10, n_comparisons=500)
    capped = bradley_terry(left, right, outcome, 10, max_iter=2)
    assert capped.iterations == 2
    assert not capped.converged
    assert np.all(np.isfinite(capped.scores))
    # Every item wins and loses, but {0, 1} always beat {2, 3}: no MLE exists (the gap
    # runs off to infinity, ever more slowly). The fit must stay finite and ordered.
    left = np.array([0, 1, 2, 3, 0, 1, 0, 1])
    right = np.array([1, 0, 3, 2, 2, 3, 3, 2])
    diverging = bradley_terry(left, right, np.ones(8), 4, prior=0.0, max_iter=2_000)
    assert np.all(np.isfinite(diverging.scores))
    assert min(diverging.scores[:2]) > max(diverging.scores[2:])


def _transitive(n_items: int, repeats: int, all_pairs: bool) -> tuple[np.ndarray, np.ndarray]:
    if all_pairs:
        pairs = [(i, j) for i in range(n_items) for j in range(i + 1, n_items)] * repeats
    else:
        pairs = [(i, i + 1) for i in range(n_items - 1)] * repeats
    return np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])


@pytest.mark.parametrize(
    ("n_items", "repeats", "all_pairs", "prior"),
    [
        (4, 3, True, 1.0),
        (5, 1, True, 1.0),
        (9, 3, True, 0.1),
        (12, 3, False, 0.1),
        (8, 2, False, 3.0),
    ],
)
def test_transitive_data_matches_reference_mm(
    n_items: int, repeats: int, all_pairs: bool, prior: float
) -> None:
    # Held together only by the prior, where plain Newman iteration falls into a 2-cycle
    # (measured: 4 items, all 6 pairs x 3 votes, prior 1).
    left, right = _transitive(n_items, repeats, all_pairs)
    outcome = np.ones(left.size)
    ours = bradley_terry(left, right, outcome, n_items, prior=prior, tol=1e-12)
    reference = _reference_mm(left, right, outcome, n_items, prior=prior)
    assert ours.converged
    np.testing.assert_allclose(ours.scores, reference, rtol=0, atol=1e-7)


def test_stalled_newman_falls_back_to_mm(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without acceleration, Newman's iteration cycles on this data; MM must take over.
    monkeypatch.setattr(bt_module._Anderson, "step", lambda self, residual, image: image)
    left, right = _transitive(4, 3, all_pairs=True)
    outcome = np.ones(left.size)
    ours = bradley_terry(left, right, outcome, 4, tol=1e-12)
    reference = _reference_mm(left, right, outcome, 4)
    assert ours.converged
    assert ours.iterations > 30  # MM's pace, not Newman's
    np.testing.assert_allclose(ours.scores, reference, rtol=0, atol=1e-7)


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_mm_fallback_matches_reference_mm(monkeypatch: pytest.MonkeyPatch, prior: float) -> None:
    # A Newman step that is not finite sends the fit to MM from the start.
    def broken(self: object, strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(strength.size, np.nan), np.ones(strength.size)

    monkeypatch.setattr(bt_module._Pairs, "newman_sums", broken)
    left, right, outcome, _ = _simulate(6, n_items=15, n_comparisons=800)
    outcome[:40] = 0.25
    weights = np.random.default_rng(6).uniform(0.5, 2.0, left.size)
    ours = bradley_terry(left, right, outcome, 15, weights=weights, prior=prior, tol=1e-12)
    reference = _reference_mm(left, right, outcome, 15, weights, prior=prior)
    assert ours.converged
    assert ours.iterations > 30
    np.testing.assert_allclose(ours.scores, reference, rtol=0, atol=1e-7)
