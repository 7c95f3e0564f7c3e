"""Golden-set worker assessment: spammers get blocked, honest workers do not, history first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from crowdloop.quality import GoldenPolicy, assess_worker, assess_workers

SPAMMER_ACCURACY = 1 / 3  # random pick among left / right / tie on a clear-cut golden pair
HONEST_ACCURACY = 0.92


def _golden_answers(seed: int, n_workers: int, n_golden: int, accuracy: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    correct = rng.random((n_workers, n_golden)) < accuracy
    return pd.DataFrame(
        {
            "worker": np.repeat([f"w{i:04d}" for i in range(n_workers)], n_golden),
            "correct": correct.ravel(),
        }
    )


def _blocked_share(seed: int, accuracy: float, n_golden: int, policy: GoldenPolicy) -> float:
    assessed = assess_workers(_golden_answers(seed, 2_000, n_golden, accuracy), policy)
    return float((assessed["status"] == "blocked").mean())


@pytest.mark.parametrize(
    ("n_golden", "policy", "exact_spammer", "exact_honest"),
    [
        # Exact binomial rates, for reference: at 90% certainty it takes 12 answers.
        (12, GoldenPolicy(block_confidence=0.9), 0.9336, 0.0002),
        # The default (80% certainty) gets there with 8 answers.
        (8, GoldenPolicy(), 0.9121, 0.0022),
    ],
)
def test_blocks_spammers_spares_honest(
    n_golden: int, policy: GoldenPolicy, exact_spammer: float, exact_honest: float
) -> None:
    spammers = _blocked_share(0, SPAMMER_ACCURACY, n_golden, policy)
    honest = _blocked_share(1, HONEST_ACCURACY, n_golden, policy)
    assert spammers >= 0.90
    assert honest <= 0.05
    # 2,000 simulated workers: within ~3 standard errors of the exact rates.
    assert spammers == pytest.approx(exact_spammer, abs=0.02)
    assert honest == pytest.approx(exact_honest, abs=0.005)


def test_stricter_policy_after_eight_answers() -> None:
    # Why the default is 0.8: at 0.9, p_below >= 0.9 needs <= 3/8 correct and 4/8
    # (p_below 0.85) is only warned, so 8 answers block just 74% of spammers.
    strict = GoldenPolicy(block_confidence=0.9)
    assert assess_worker(3, 8, strict).status == "blocked"
    four = assess_worker(4, 8, strict)
    assert (four.status, round(four.p_below, 4)) == ("warned", 0.8497)
    assert assess_worker(4, 8).status == "blocked"  # the default blocks it
    spammers = assess_workers(_golden_answers(2, 2_000, 8, SPAMMER_ACCURACY), strict)
    shares = spammers["status"].value_counts(normalize=True)
    assert shares["blocked"] == pytest.approx(0.7414, abs=0.03)
    assert shares["blocked"] + shares["warned"] >= 0.97
    honest = assess_workers(_golden_answers(3, 2_000, 8, HONEST_ACCURACY), strict)
    assert (honest["status"] == "blocked").mean() <= 0.005


def test_sequential_assessment_never_blocks_before_min_golden() -> None:
    # Re-assess after every golden answer, as the pipeline does, for spammers and honest.
    policy = GoldenPolicy()
    rng = np.random.default_rng(4)
    accuracy = np.r_[np.full(500, SPAMMER_ACCURACY), np.full(500, HONEST_ACCURACY)]
    correct = rng.random((1_000, 12)) < accuracy[:, None]
    first_block = np.full(1_000, np.inf)
    for answered in range(1, 13):
        frame = pd.DataFrame(
            {
                "worker": np.repeat(np.arange(1_000), answered),
                "correct": correct[:, :answered].ravel(),
            }
        )
        status = assess_workers(frame, policy).sort_values("worker")["status"].to_numpy()
        if answered < policy.min_golden:
            assert set(status) == {"probation"}
        newly = (status == "blocked") & np.isinf(first_block)
        first_block[newly] = answered
    assert first_block.min() >= policy.min_golden
    # Even 0/3 correct is probation, not blocked.
    assert assess_worker(0, 3).status == "probation"
    assert np.isfinite(first_block[:500]).mean() >= 0.9  # spammers blocked within 12 answers
    assert np.isfinite(first_block[500:]).mean() <= 0.05


def test_prior_keeps_a_lucky_streak_from_reading_as_perfect() -> None:
    two = assess_worker(2, 2)
    assert two.status == "probation"
    assert two.accuracy == pytest.approx(4 / 5)  # Beta(2 + 2, 1 + 0) mean, not 1.0
    assert two.p_below == pytest.approx(0.7**4)  # Beta(4, 1) cdf at 0.7
    # Even once a decision is allowed, two answers are not "perfect".
    early = assess_worker(2, 2, GoldenPolicy(min_golden=1))
    assert early.status == "trusted"
    assert early.accuracy < 1.0


def test_known_assessments() -> None:
    trusted = assess_worker(8, 8)
    assert trusted.status == "trusted"
    assert trusted.accuracy == pytest.approx(10 / 11)
    assert trusted.p_below == pytest.approx(beta.cdf(0.7, 10, 1))
    assert (trusted.golden_total, trusted.golden_correct) == (8, 8)
    assert assess_worker(5, 8).status == "warned"  # p_below 0.65
    assert assess_worker(6, 8).status == "trusted"  # p_below 0.38
    assert assess_worker(0, 0).accuracy == pytest.approx(2 / 3)


def test_assess_workers_matches_scalar() -> None:
    frame = pd.DataFrame(
        {
            "worker": ["a"] * 5 + ["b"] * 8 + ["c"] * 2,
            "correct": [True] * 5 + [True, False] * 4 + [True, True],
        }
    )
    assessed = assess_workers(frame).set_index("worker")
    assert list(assessed.columns) == [
        "golden_total",
        "golden_correct",
        "accuracy",
        "p_below",
        "status",
    ]
    for worker, row in assessed.iterrows():
        scalar = assess_worker(int(row["golden_correct"]), int(row["golden_total"]))
        assert row["status"] == scalar.status
        assert row["accuracy"] == pytest.approx(scalar.accuracy)
        assert row["p_below"] == pytest.approx(scalar.p_below)
        assert worker in {"a", "b", "c"}
    assert assessed["status"].to_dict() == {"a": "trusted", "b": "blocked", "c": "probation"}


def test_invalid_policy_and_counts() -> None:
    with pytest.raises(ValueError, match="warn_confidence"):
        GoldenPolicy(warn_confidence=0.95, block_confidence=0.9)
    with pytest.raises(ValueError, match="prior"):
        GoldenPolicy(prior_correct=0.0)
    with pytest.raises(ValueError, match="correct <= total"):
        assess_worker(3, 2)
    with pytest.raises(ValueError, match="columns"):
        assess_workers(pd.DataFrame({"worker": ["a"]}))
