"""k-wise rankings: the models, the spec, answer checks, preflight and the simulated crowd."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from crowdloop.aggregation.bradley_terry import bradley_terry
from crowdloop.aggregation.plackett_luce import choice_stages, plackett_luce
from crowdloop.aggregation.rankings import (
    concordance,
    implied_pairs,
    mean_rank,
    pair_weight,
    rankdata,
    ranking_scores,
    worker_weights,
)
from crowdloop.connectors.errors import NotSupported
from crowdloop.models.domain import RankingAnswer, RankTask
from crowdloop.models.spec import SpecError, load_campaign
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd, Worker
from crowdloop.simulator.world import render_list, response_quality
from crowdloop.stages.preflight import check_capabilities
from crowdloop.stages.ranking import ranking_inputs, ranking_problem, ranking_sets


def _pl_sample(strength: np.ndarray, rng: random.Random) -> list[int]:
    """Places of one Plackett-Luce draw over all items."""
    left = list(range(len(strength)))
    places = [0] * len(strength)
    for place in range(1, len(strength) + 1):
        w = [float(strength[i]) for i in left]
        pick = rng.choices(left, weights=w)[0]
        places[pick] = place
        left.remove(pick)
    return places


def test_plackett_luce_recovers_the_order_of_simulated_rankings() -> None:
    rng = random.Random(0)
    truth = np.log(np.array([8.0, 4.0, 2.0, 1.0, 0.5]))
    rankings = [(list(range(5)), _pl_sample(np.exp(truth), rng)) for _ in range(400)]
    fit = plackett_luce(rankings, 5)
    assert fit.converged
    assert list(np.argsort(-fit.scores)) == [0, 1, 2, 3, 4]
    # The MLE is consistent: with 400 rankings the log-strength gaps are close to truth.
    assert np.allclose(fit.scores - fit.scores.mean(), truth - truth.mean(), atol=0.25)


def test_plackett_luce_on_pairs_is_bradley_terry_with_the_same_prior() -> None:
    """A ranking of two is one choice: PL and BT are then the same model and prior."""
    rng = np.random.default_rng(1)
    left = rng.integers(0, 6, 300)
    right = (left + rng.integers(1, 6, 300)) % 6
    won = rng.random(300) < 0.5 + 0.08 * (right - left)
    rankings = [
        ([int(a), int(b)], [1, 2] if w else [2, 1])
        for a, b, w in zip(left, right, won, strict=True)
    ]
    pl = plackett_luce(rankings, 6, tol=1e-12).scores
    bt = bradley_terry(left, right, won.astype(float), 6, tol=1e-12).scores
    assert np.allclose(pl, bt, atol=1e-6)


def test_ties_are_choices_from_the_whole_remaining_set_breslow() -> None:
    stage, item, weight, winners = choice_stages([([0, 1, 2, 3], [1, 1, 3, 3])])
    # Stage 0: {0, 1} tied first, each chosen from all four; the tied last pair chooses
    # nothing (every remaining item is tied), so it is dropped.
    assert list(stage) == [0, 0, 0, 0]
    assert sorted(item) == [0, 1, 2, 3]
    assert list(weight) == [2.0]
    assert sorted(winners[:, 0]) == [0, 1]
    fit = plackett_luce([([0, 1, 2, 3], [1, 1, 3, 3])], 4)
    assert fit.scores[0] == pytest.approx(fit.scores[1])
    assert fit.scores[1] > fit.scores[2] == pytest.approx(fit.scores[3])


def test_one_ranking_gives_finite_ordered_scores() -> None:
    fit = plackett_luce([([3, 1, 0, 2], [1, 2, 3, 4])], 4)
    assert np.all(np.isfinite(fit.scores))
    assert list(np.argsort(-fit.scores)) == [3, 1, 0, 2]
    with pytest.raises(ValueError, match="prior"):
        plackett_luce([([0, 1, 2], [1, 2, 3])], 3, prior=0)


def test_implied_pairs_and_their_weights() -> None:
    left, right, outcome, weight = implied_pairs([([5, 6, 7, 8], [2, 1, 3, 3])], "choices")
    assert len(left) == 6  # K(K-1)/2
    pairs = zip(left.tolist(), right.tolist(), strict=True)
    assert dict(zip(pairs, outcome.tolist(), strict=True)) == {
        (5, 6): 0.0,
        (5, 7): 1.0,
        (5, 8): 1.0,
        (6, 7): 1.0,
        (6, 8): 1.0,
        (7, 8): 0.5,
    }
    # A ranking of K weighs its K-1 choices, one vote, or K(K-1)/2 votes.
    assert weight.sum() == pytest.approx(3.0)
    assert pair_weight(4, "one") * 6 == pytest.approx(1.0)
    assert pair_weight(4, "pairs") == 1.0


def test_concordance_and_mean_rank() -> None:
    assert concordance([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert concordance([4, 3, 2, 1], [1, 2, 3, 4]) == 0.0
    assert concordance([1, 1, 3, 4], [1, 2, 3, 4]) == pytest.approx(5.5 / 6)
    # Pairs the known order ties are not graded.
    assert concordance([2, 1, 3], [1, 1, 2]) == 1.0
    with pytest.raises(ValueError, match="orders nothing"):
        concordance([1, 2, 3], [1, 1, 1])
    scores = mean_rank([([0, 1, 2], [1, 2, 3]), ([1, 2, 3], [1, 2, 3])], 5)
    assert scores[0] > scores[1] > scores[3]
    assert scores[4] == 0.0  # never shown


@pytest.mark.parametrize("method", ["average", "min"])
def test_rankdata_gives_scipys_ranks_with_ties(method: str) -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 7, 50):
        for values in (rng.integers(0, 4, size), rng.normal(size=size), -rng.integers(0, 2, size)):
            expected = stats.rankdata(values, method=method)
            np.testing.assert_array_equal(rankdata(values, method), expected)
    assert rankdata([3.0, 1.0, 3.0, 2.0], method).tolist() == (
        [3.5, 1.0, 3.5, 2.0] if method == "average" else [3.0, 1.0, 3.0, 2.0]
    )


@pytest.mark.parametrize("method", ["plackett_luce", "bradley_terry", "mean_rank"])
def test_every_method_orders_consistent_rankings(method: str) -> None:
    rankings = [([0, 1, 2, 3], [1, 2, 3, 4]), ([3, 2, 1, 0], [4, 3, 2, 1]), ([0, 2, 3], [1, 2, 3])]
    scores = ranking_scores(rankings, 4, method)  # type: ignore[arg-type]
    assert list(np.argsort(-scores)) == [0, 1, 2, 3]


def test_ranking_sets_cover_every_candidate_and_stay_connected() -> None:
    ids = [f"r{i}" for i in range(11)]
    sets = ranking_sets(ids, 4, 3, "seed")
    assert all(len(s) == len(set(s)) == 4 for s in sets)
    seen = [x for s in sets for x in s]
    assert set(seen) == set(ids)
    assert len(sets) >= 11 * 3 / 4
    # Connected: a union-find over the sets reaches every candidate from the first.
    reach = set(sets[0])
    grew = True
    while grew:
        grew = False
        for s in sets:
            if reach & set(s) and not set(s) <= reach:
                reach |= set(s)
                grew = True
    assert reach == set(ids)
    assert ranking_sets(ids[:5], None, 2, "seed") == [sorted(ids[:5])]


def test_answers_that_do_not_fit_their_task_are_named() -> None:
    payload = RankTask(instruction="Rank", prompt="p", responses=("a", "b", "c")).model_dump()
    assert ranking_problem(payload, [1, 2, 3]) is None
    assert "3 responses got 4 places" in str(ranking_problem(payload, [1, 2, 3, 4]))
    assert "does not allow ties" in str(ranking_problem(payload, [1, 1, 3]))
    assert ranking_problem({**payload, "ties": True}, [1, 1, 3]) is None
    with pytest.raises(ValueError, match="between 1 and 3"):
        RankingAnswer(ranks=(1, 2, 7))


def _campaign(tmp_path: Path, ranking: str, extra: str = "") -> Path:
    rows = [
        f'{{"prompt_id": "p{p}", "prompt": "List the top 5 fruits.", '
        f'"response_id": "p{p}r{i}", "response": "1. apple {i}"}}'
        for p in range(2)
        for i in range(4)
    ]
    (tmp_path / "candidates.jsonl").write_text("\n".join(rows) + "\n")
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "name: rk\n"
        f"{extra}"
        "ranking:\n"
        "  candidates_file: candidates.jsonl\n"
        f"{ranking}"
        "  export: {pairs_path: pairs.jsonl, rankings_path: rankings.jsonl}\n"
    )
    return path


def test_spec_errors_are_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as bad_k:
        load_campaign(_campaign(tmp_path, "  k: 12\n"))
    assert str(bad_k.value) == (
        f"{tmp_path / 'campaign.yaml'}:4: field 'ranking.k': "
        "Input should be less than or equal to 9"
    )
    prefs = "preferences: {candidates_file: candidates.jsonl, export: {path: p.jsonl}}\n"
    with pytest.raises(SpecError, match=r"field 'ranking': .*not both"):
        load_campaign(_campaign(tmp_path, "", extra=prefs))
    spec = load_campaign(_campaign(tmp_path, "  k: 3\n"))
    assert spec.ranking is not None
    (tmp_path / "candidates.jsonl").write_text(
        (tmp_path / "candidates.jsonl").read_text().splitlines()[0] + "\n"
    )
    with pytest.raises(SpecError) as few:
        ranking_inputs(spec.ranking)
    assert "\n" not in str(few.value)
    assert str(few.value).endswith(
        "candidates.jsonl:1: field 'prompt_id': prompt 'p0' has 1 candidate(s); "
        "a ranking needs at least 3"
    )


def test_connectors_without_the_capability_are_refused_at_preflight(tmp_path: Path) -> None:
    from crowdloop.connectors.registry import get_connector_class as connector_class

    spec = load_campaign(_campaign(tmp_path, ""))
    for name in ("toloka", "prolific", "scale", "replay"):
        connector = object.__new__(connector_class(name))
        with pytest.raises(NotSupported) as refused:
            check_capabilities(spec, connector)
        message = str(refused.value)
        assert name in message and "ranking" in message
    simulator = object.__new__(connector_class("simulator"))
    labelstudio = object.__new__(connector_class("labelstudio"))
    check_capabilities(spec, simulator)
    check_capabilities(spec, labelstudio)
    # A reordered list (Label Studio's Ranker) cannot say "tied".
    tied = load_campaign(_campaign(tmp_path, "  ties: true\n"))
    check_capabilities(tied, simulator)
    # The AI judge ranks, ties included (connectors/aijudge/kinds.py).
    aijudge = object.__new__(connector_class("aijudge"))
    check_capabilities(spec, aijudge)
    check_capabilities(tied, aijudge)
    with pytest.raises(NotSupported, match=r"labelstudio.*ranking.ties: true"):
        check_capabilities(tied, labelstudio)


def _responses() -> tuple[str, tuple[str, ...]]:
    prompt = "List the top 5 fruits."
    lists = [
        ["apple", "banana", "cherry", "mango", "pear"],
        ["apple", "banana", "cherry", "x", "y"],
        ["apple", "z", "x", "y", "w"],
        ["q", "z", "x", "y", "w"],
    ]
    return prompt, tuple(render_list(items) for items in lists)


def test_simulated_workers_rank_by_quality_or_by_their_archetype() -> None:
    prompt, texts = _responses()
    assert [response_quality(prompt, t) for t in texts] == [1.0, 0.6, 0.2, 0.0]
    crowd = Crowd(CrowdConfig(), seed=0)
    task = RankTask(instruction="Rank", prompt=prompt, responses=texts)
    rng = random.Random(0)

    def rank(archetype: str, t: RankTask = task) -> list[int]:
        return crowd._rank(Worker("w", archetype, "fast"), rng, t)  # type: ignore[arg-type]

    honest = [rank("honest") for _ in range(200)]
    assert np.mean([concordance(r, [1, 2, 3, 4]) for r in honest]) > 0.9
    spam = [rank("spammer") for _ in range(200)]
    assert 0.4 < np.mean([concordance(r, [1, 2, 3, 4]) for r in spam]) < 0.6
    assert rank("same_side") == [1, 2, 3, 4]
    assert rank("always_tie") == [1, 2, 3, 4]
    tied = task.model_copy(update={"ties": True})
    assert rank("always_tie", tied) == [1, 1, 1, 1]
    assert all(sorted(r) == [1, 2, 3, 4] for r in honest)  # no ties unless allowed


def test_worker_weights_discount_random_and_fixed_order_rankers() -> None:
    rng = random.Random(3)
    truth = np.arange(8, 0, -1, dtype=float)  # item 0 best
    rankings: list[tuple[list[int], list[int]]] = []
    workers: list[str] = []
    for _ in range(120):
        items = rng.sample(range(8), 4)
        for w in ("careful-1", "careful-2", "random", "shown-order"):
            if w.startswith("careful"):
                noisy = [truth[i] + rng.gauss(0, 1.0) for i in items]
                places = [sorted(noisy, reverse=True).index(x) + 1 for x in noisy]
            elif w == "random":
                places = rng.sample(range(1, 5), 4)
            else:
                places = [1, 2, 3, 4]
            rankings.append((items, places))
            workers.append(w)
    weights = worker_weights(rankings, workers, 8, "plackett_luce")
    by = {
        w: float(np.mean(weights[[i for i, x in enumerate(workers) if x == w]]))
        for w in set(workers)
    }
    assert by["careful-1"] > 0.6 and by["careful-2"] > 0.6
    assert by["random"] < 0.15 and by["shown-order"] < 0.15
    weighted = ranking_scores(rankings, 8, "plackett_luce", weights=weights)
    assert list(np.argsort(-weighted)) == list(range(8))


def test_the_estimate_prices_the_demo_campaigns_ranking_sets() -> None:
    from decimal import Decimal

    from crowdloop.stages.estimate import estimate_spec

    spec = load_campaign(Path(__file__).resolve().parent.parent / "campaigns" / "ranking.yaml")
    estimate = estimate_spec(spec)
    # 12 prompts x 6 answers in sets of 4, 3 per candidate: 5 sets each; 15 golden sets
    # (share 0.2); 3 rankings per set at 0.08 (the simulator charges no fee).
    assert estimate.expected == Decimal("75") * 3 * Decimal("0.08")
    assert estimate.worst > estimate.expected


def test_label_studio_ranker_results_become_places_or_are_refused() -> None:
    from crowdloop.connectors.labelstudio.connector import _answer

    def result(order: object) -> list[dict[str, object]]:
        return [{"from_name": "ranking", "type": "ranker", "value": {"ranker": {"ranking": order}}}]

    assert _answer("ranking", result(["2", "0", "1"]), 3) == RankingAnswer(ranks=(2, 3, 1))
    for bad in (["2", "0"], ["0", "0", "1"], "012", ["0", "1", "7"]):
        with pytest.raises(ValueError, match="each of the 3 answers once"):
            _answer("ranking", result(bad), 3)
