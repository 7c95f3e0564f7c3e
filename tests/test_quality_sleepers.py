"""sleep10b: workers who pass an exam then click at random, and the content-blind model's
random clickers (`CrowdPolicy.blind_uniform`) and shorter change points
(`CrowdPolicy.drift_min_answers`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdloop.quality import CrowdPolicy, _blind_log_ml, _dirichlet_log_ml, assess_crowd
from tests.test_quality_crowd import _crowd, _kinds, _sequence_frame, exam_start

# The default: the Dirichlet alone, change points 8 answers from the end; and sleep10b's
# opt-in: random clickers in the blind model, change points 5 answers from the end.
BEFORE = CrowdPolicy()
OPT_IN = CrowdPolicy(blind_uniform=0.5, drift_min_answers=5)


def _exam_then_random(after: int, seed: int, golden_share: float) -> tuple[pd.DataFrame, list[str]]:
    """30 honest workers and 6 who answer 12 exam pairs right, then ``after`` answers at
    random (golden pairs among them at ``golden_share``)."""
    honest = {f"honest-{i}": ["honest"] * (12 + after) for i in range(30)}
    sleepers = {f"sleeper-{n}": ["random"] * after for n in range(6)}
    frame = _sequence_frame({**honest, **sleepers}, seed=seed, golden_share=golden_share)
    return pd.concat([frame, exam_start(sleepers)], ignore_index=True), list(sleepers)


def test_the_blind_model_is_a_random_clicker_or_any_fixed_distribution() -> None:
    """With the random clickers' share at u the marginal likelihood is the mixture of
    (1/3)^n and the Dirichlet's; None is the Dirichlet alone."""
    counts = np.array([[7.0, 7.0, 6.0], [20.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    dirichlet = _dirichlet_log_ml(counts)
    assert np.array_equal(_blind_log_ml(counts, None), dirichlet)
    mixed = _blind_log_ml(counts, 0.5)
    expected = np.logaddexp(np.log(0.5) - counts.sum(axis=1) * np.log(3), np.log(0.5) + dirichlet)
    np.testing.assert_allclose(mixed, expected)
    # Evenly spread answers gain (the Dirichlet paid ~2.2 nats to learn that they are even),
    # a constant answerer loses at most log 2, no answers are no evidence either way.
    assert mixed[0] - dirichlet[0] > 1.4
    assert dirichlet[1] - mixed[1] <= np.log(2) + 1e-12
    assert mixed[2] == dirichlet[2] == 0.0


def test_the_crowd_teaches_whether_its_blind_workers_click_at_random() -> None:
    """The share of random clickers is learned from the workers who look blind: a crowd of
    random clickers raises it, constant answerers lower it (their evidence stays the
    Dirichlet's), colluders (a shared coin, never a tie) do not raise it."""
    from crowdloop import quality

    learned: dict[str, list[float]] = {}
    original = quality._uniform_share

    def spy(*args: object) -> float:
        share = original(*args)  # type: ignore[arg-type]
        learned.setdefault(kind, []).append(share)
        return share

    quality._uniform_share = spy  # type: ignore[assignment]
    try:
        for kind in ("spammer", "colluder", "always_left"):
            assess_crowd(_crowd(_kinds(honest=20, **{kind: 8}), answers=25, seed=1), OPT_IN)
    finally:
        quality._uniform_share = original  # type: ignore[assignment]
    # Measured (last iteration): 0.93, 0.48, 0.06 (the colluders, never a tie, do not
    # raise it above its prior, 0.5; on this seed none of them looks blind yet).
    assert learned["spammer"][-1] > 0.8, learned
    assert learned["colluder"][-1] <= OPT_IN.blind_uniform, learned  # type: ignore[operator]
    assert learned["always_left"][-1] < 0.3, learned


def test_an_exam_sleeper_is_caught_on_fewer_careless_answers() -> None:
    """12 right exam answers, then 9 random ones (golden pairs at 0.4, as when golden
    re-asks are aimed at suspects) or 15 (at 0.15): the random clickers' point mass and
    change points 5 answers from the end (the opt-in) block more of them than the default,
    and no honest worker comes near a block. Three seeds, 6 sleepers each."""
    blocked = {"before": 0, "now": 0}
    for after, share in ((9, 0.4), (15, 0.15)):
        for seed in range(3):
            frame, sleepers = _exam_then_random(after, seed, share)
            for name, policy in (("before", BEFORE), ("now", OPT_IN)):
                workers, _ = assess_crowd(frame, policy)
                rows = workers.set_index("worker")
                blocked[name] += sum(
                    policy.blocks(float(rows.loc[w, "p_blind"]), int(rows.loc[w, "answers"]))
                    for w in sleepers
                )
                honest = rows.drop(index=sleepers)
                assert (honest["p_blind"] < 0.5).all(), (after, seed, name)
    # Measured: 4 of 36 before, 11 now.
    assert blocked["now"] >= blocked["before"] + 5, blocked
