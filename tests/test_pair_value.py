"""The value of one more answer on a pair (crowdloop.aggregation.pair_value) and its use by
dynamic overlap (`preferences.unsure_pairs` with `min_answer_value`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from crowdloop.aggregation.pair_value import (
    AnswerModel,
    answer_information,
    difference_sd,
    one_answer_value,
)
from crowdloop.models.spec import DynamicOverlapSpec
from crowdloop.stages.preferences import score_pairs, unsure_pairs


def test_answer_information_is_davidsons_fisher_information_diluted_by_inattention() -> None:
    """At d = 0 an attentive worker's answer carries (1 - P(tie)) / 4 (Davidson's model:
    the score of left, right and tie is (1 - m) / 2, -(1 + m) / 2 and -m / 2); a worker
    answering at random carries none; information falls as |d| grows."""
    model = AnswerModel(tie=0.5)
    p_tie = 0.5 / 2.5
    at_zero = answer_information(np.array([0.0]), np.array([1.0]), model)
    assert np.isclose(at_zero[0], (1 - p_tie) / 4)
    assert answer_information(np.array([0.0]), np.array([0.0]), model)[0] == 0.0
    spread = answer_information(np.array([0.0, 1.0, 3.0]), np.ones(3), model)
    assert spread[0] > spread[1] > spread[2] > 0
    # Symmetric in d.
    assert np.isclose(*answer_information(np.array([1.3, -1.3]), np.ones(2), model))
    # Half attentive: less than a quarter of the information would be a^2 alone.
    half = answer_information(np.array([0.0]), np.array([0.5]), model)[0]
    assert 0.25 * at_zero[0] <= half < at_zero[0]


def test_difference_sd_is_the_laplace_posterior_of_a_score_difference() -> None:
    """Two items, k answers of information f: precision [[l + kf, -kf], [-kf, l + kf]], so
    var(s0 - s1) = 2 / (l + 2kf). A third item compared to both lowers the variance of the
    pair's difference (pooling). Items of different prompts, or untouched, get the prior's."""
    f, k, l2 = 0.2, 3, 0.5
    left, right = np.zeros(k, dtype=np.int64), np.ones(k, dtype=np.int64)
    sd = difference_sd(
        left, right, np.full(k, f), np.array([0, 0]), 2, np.array([0]), np.array([1]), l2
    )
    assert np.isclose(sd[0] ** 2, 2 / (l2 + 2 * k * f))
    # Pooling: item 2 compared with both, same prompt.
    left3 = np.concatenate([left, [2, 2]])
    right3 = np.concatenate([right, [0, 1]])
    pooled = difference_sd(
        left3, right3, np.full(k + 2, f), np.array([0, 0, 0]), 3, np.array([0]), np.array([1]), l2
    )
    assert pooled[0] < sd[0]
    # Another prompt's item, and an unknown one (-1): the prior's sd.
    apart = difference_sd(
        left, right, np.full(k, f), np.array([0, 0, 1]), 3, np.array([0, 0]), np.array([2, -1]), l2
    )
    assert np.allclose(apart, np.sqrt(2 / l2))


def test_one_answer_value_is_the_expected_gain_in_p_right() -> None:
    """The quadrature agrees with a Monte Carlo of the one-step update; the value falls as
    the verdict gets surer (|mean| / sd up) and as the posterior narrows at a fixed mean."""
    rng = np.random.default_rng(0)
    mean, sd, info = 0.4, 1.0, 0.2
    after = sd / np.sqrt(1 + sd * sd * info)
    moves = np.sqrt(sd * sd - after * after)
    z = rng.standard_normal(400_000)
    monte_carlo = ndtr(np.abs(mean + moves * z) / after).mean() - ndtr(abs(mean) / sd)
    value = one_answer_value(np.array([mean]), np.array([sd]), np.array([info]))[0]
    assert np.isclose(value, monte_carlo, atol=1e-3)
    assert value > 0
    surer = one_answer_value(np.array([0.0, 1.0, 3.0]), np.ones(3), np.full(3, info))
    assert surer[0] > surer[1] > surer[2] >= 0
    narrower = one_answer_value(np.full(3, 0.3), np.array([2.0, 1.0, 0.3]), np.full(3, info))
    assert narrower[0] > narrower[2]


def _frame(labels: dict[str, list[str]]) -> pd.DataFrame:
    """One prompt, responses a-d; pair "x-y" compares x (left) with y (right); a worker per
    answer position."""
    rows = [
        (pair, "p", pair.split("-")[0], pair.split("-")[1], f"w{i}", label)
        for pair, given in labels.items()
        for i, label in enumerate(given)
    ]
    return pd.DataFrame(rows, columns=["pair", "prompt", "left", "right", "worker", "label"])


def test_unsure_pairs_with_min_answer_value_asks_again_where_an_answer_is_worth_it() -> None:
    """With `min_answer_value`, a pair with two or more answers is asked again by the value
    of one more answer, not its confidence: two split answers (a verdict a third answer can
    turn) are asked, a pair whose answers and the prompt's other pairs agree is not. A pair
    with one answer keeps the confidence targets."""
    labels = {
        "a-b": ["left", "right"],  # split: unsure, worth an answer
        "a-c": ["left", "left", "left"],  # unanimous, and the other pairs agree
        "b-c": ["left", "left"],
        "c-d": ["left"],  # one answer
        "a-d": ["left", "left", "left"],
        "b-d": ["left", "left", "left"],
    }
    frame = _frame(labels)
    _, verdicts, _ = score_pairs(frame, "bradley_terry", values=True)
    value = dict(zip(verdicts["pair"], verdicts["answer_value"], strict=True))
    assert value["a-b"] > value["a-c"]
    dynamic = DynamicOverlapSpec(min_answer_value=0.01, settle_pairs=False)
    asked = set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic), "pair"])
    assert "a-b" in asked and "a-c" not in asked
    one = verdicts.set_index("pair").loc["c-d", "confidence"]
    assert ("c-d" in asked) == (one < dynamic.single_answer_confidence)
    # Off: the confidence rule, which needs no value columns.
    off = DynamicOverlapSpec(min_answer_value=None)
    plain = verdicts.drop(columns=["answer_value", "p_right"])
    assert set(plain.loc[unsure_pairs(plain, frame, off), "pair"]) == set(
        verdicts.loc[unsure_pairs(verdicts, frame, off), "pair"]
    )


def test_value_rule_on_cleared_pairs_only_keeps_asking_where_an_unjudged_worker_answered() -> None:
    """With `answer_value_pairs` "cleared", the value rule stops only pairs whose answers all
    come from cleared workers; a pair an unjudged worker answered keeps the confidence
    target (its next answer is evidence about that worker too). "any", or nobody
    unjudged: the value rule for every pair with two or more answers."""
    labels = {
        "a-b": ["left", "right"],
        "a-c": ["left", "left", "left"],
        "b-c": ["left", "left"],
        "a-d": ["left", "left", "left"],
        "b-d": ["left", "left", "left"],
    }
    frame = _frame(labels)
    # The unjudged worker "u" gave a-c's last answer.
    frame.loc[(frame["pair"] == "a-c") & (frame["worker"] == "w2"), "worker"] = "u"
    _, verdicts, _ = score_pairs(frame, "bradley_terry", values=True)
    # A target no verdict here reaches: the confidence rule asks every pair.
    spec = {"min_answer_value": 0.01, "settle_pairs": False, "target_confidence": 0.999}
    anywhere = DynamicOverlapSpec(**spec)
    cleared = DynamicOverlapSpec(**spec, answer_value_pairs="cleared")

    def asked(dynamic: DynamicOverlapSpec, unjudged: set[str] | None) -> set[str]:
        return set(verdicts.loc[unsure_pairs(verdicts, frame, dynamic, unjudged), "pair"])

    by_value = asked(anywhere, {"u"})
    assert "a-c" not in by_value and "a-b" in by_value
    assert asked(cleared, {"u"}) == by_value | {"a-c"}
    assert asked(cleared, set()) == by_value
    assert asked(cleared, None) == by_value
    # The same on the coded frame `evidence_frame` gives.
    from crowdloop.stages.preferences import as_coded

    coded = as_coded(frame)
    assert set(verdicts.loc[unsure_pairs(verdicts, coded, cleared, {"u"}), "pair"]) == by_value | {
        "a-c"
    }


def test_value_rule_on_rebought_pairs_only() -> None:
    """With `answer_value_pairs` "rebought", the value rule stops only pairs with an answer
    a block excluded (the ``rebought`` set); every other pair keeps the confidence
    target."""
    labels = {
        "a-b": ["left", "right"],
        "a-c": ["left", "left", "left"],
        "a-d": ["left", "left", "left"],
        "b-d": ["left", "left", "left"],
    }
    frame = _frame(labels)
    _, verdicts, _ = score_pairs(frame, "bradley_terry", values=True)
    spec = {"min_answer_value": 0.01, "settle_pairs": False, "target_confidence": 0.999}
    rebought = DynamicOverlapSpec(**spec, answer_value_pairs="rebought")
    by_value = set(verdicts.loc[unsure_pairs(verdicts, frame, DynamicOverlapSpec(**spec)), "pair"])
    assert "a-c" not in by_value
    asked = set(verdicts.loc[unsure_pairs(verdicts, frame, rebought, rebought={"a-c"}), "pair"])
    assert asked == set(labels) - {"a-c"}
    # Nothing excluded: the confidence rule everywhere.
    assert set(verdicts.loc[unsure_pairs(verdicts, frame, rebought), "pair"]) == set(labels)
