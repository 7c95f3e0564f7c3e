"""mem11i: the quality check's cross-fit and the worker-aware fit in less memory, with the
same floats as before (docs/at-scale.md, mem11i)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from crowdloop.aggregation.bradley_terry import bradley_terry
from crowdloop.aggregation.worker_aware import WorkerAwareBT, WorkerAwareData
from crowdloop.codes import side_codes
from crowdloop.quality import cross_fit_delta

_OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}


def _reference(frame: pd.DataFrame, folds: int, weight: np.ndarray | None) -> np.ndarray:
    """The cross-fit as it was: one `bradley_terry` call on each fold's training rows."""
    codes, items = pd.factorize(
        pd.concat([frame["left"], frame["right"]], ignore_index=True).astype(object)
    )
    left, right = codes[: len(frame)], codes[len(frame) :]
    outcome = frame["label"].astype(object).map(_OUTCOME).to_numpy(np.float64)
    workers, worker_codes = np.unique(frame["worker"].astype(str).to_numpy(), return_inverse=True)
    fold = np.array([zlib.crc32(w.encode()) % folds for w in workers])[worker_codes]
    weight = np.ones(len(frame)) if weight is None else weight
    p = np.zeros(len(frame))
    for k in range(folds):
        held = fold == k
        if not held.any() or held.all():
            continue
        train = ~held
        scores = bradley_terry(
            left[train],
            right[train],
            outcome[train],
            len(items),
            weights=weight[train],
            tol=1e-5,
        ).scores
        p[held] = scores[left[held]] - scores[right[held]]
    return p


def _frame(rng: np.random.Generator, n: int, n_items: int, n_workers: int) -> pd.DataFrame:
    left = rng.integers(0, n_items, n)
    right = (left + rng.integers(1, n_items, n)) % n_items
    names = np.array([f"resp-{i:04d}" for i in rng.permutation(n_items)], dtype=object)
    return pd.DataFrame(
        {
            "worker": [f"w{w}" for w in rng.integers(0, n_workers, n)],
            "left": names[left],
            "right": names[right],
            "label": rng.choice(["left", "right", "tie"], n),
        }
    )


@pytest.mark.parametrize("coded", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_fit_gives_the_floats_of_one_bradley_terry_fit_per_fold(
    coded: bool, weighted: bool
) -> None:
    rng = np.random.default_rng(11 + 2 * coded + weighted)
    frame = _frame(rng, 4_000, 150, 17)
    if coded:  # as the evidence has them: categoricals, the sides sharing one list
        sides = pd.Index(sorted(set(frame["left"]) | set(frame["right"])))
        for column in ("left", "right"):
            frame[column] = pd.Categorical(frame[column], categories=sides)
        frame["worker"] = frame["worker"].astype("category")
        frame["label"] = frame["label"].astype("category")
    # Weights in [0, 1] with zeros, as the second iteration's trust: sums in any other
    # order would differ in the last bits.
    weight = rng.random(len(frame)) * (rng.random(len(frame)) > 0.1) if weighted else None
    got = cross_fit_delta(frame, 5, row_weight=weight)
    assert np.array_equal(got, _reference(frame, 5, weight))


def test_cross_fit_rows_are_the_frame_rows_picked() -> None:
    rng = np.random.default_rng(5)
    frame = _frame(rng, 3_000, 80, 9).assign(other=1.0)
    rows = rng.random(len(frame)) < 0.7
    weight = rng.random(len(frame))
    picked = frame.loc[rows, ["worker", "left", "right", "label"]].reset_index(drop=True)
    assert np.array_equal(
        cross_fit_delta(frame, 5, row_weight=weight, rows=rows),
        _reference(picked, 5, weight[rows]),
    )


def test_side_codes_number_both_sides_as_one_factorize() -> None:
    rng = np.random.default_rng(3)
    values = np.array(list("qwertyuiop"), dtype=object)
    left, right = values[rng.integers(0, 10, 50)], values[rng.integers(0, 10, 50)]
    categories = pd.Index(sorted(values))
    for a, b in (
        (pd.Series(left), pd.Series(right)),
        (
            pd.Series(pd.Categorical(left, categories=categories)),
            pd.Series(pd.Categorical(right, categories=categories)),
        ),
        (pd.Series(rng.integers(3, 40, 50, dtype=np.int32)), pd.Series(rng.integers(3, 40, 50))),
    ):
        codes, uniques = pd.factorize(pd.concat([a, b], ignore_index=True))
        got_left, got_right, got_uniques = side_codes(a, b)
        assert got_left.dtype == got_right.dtype == np.int32
        assert np.array_equal(np.concatenate([got_left, got_right]), codes)
        pd.testing.assert_index_equal(got_uniques, uniques, exact=True)


def test_unit_weights_as_none_give_the_same_bradley_terry_scores() -> None:
    """The worker-aware fit's start takes unit weights as none (`initial_params`)."""
    rng = np.random.default_rng(8)
    left = rng.integers(0, 300, 20_000)
    right = (left + rng.integers(1, 300, 20_000)) % 300
    outcome = rng.choice([0.0, 0.5, 1.0], 20_000)
    unit = bradley_terry(left, right, outcome, 300, weights=np.ones(20_000)).scores
    assert np.array_equal(bradley_terry(left, right, outcome, 300).scores, unit)


def test_worker_aware_data_is_narrow_without_a_weight_per_comparison() -> None:
    rng = np.random.default_rng(2)
    frame = _frame(rng, 2_000, 60, 7)
    left = np.arange(100) % 60
    data = WorkerAwareData.from_arrays(
        left, (left + 1) % 60, rng.integers(0, 7, 100), rng.choice([0.0, 0.5, 1.0], 100), 60, 7
    )
    assert data.left.dtype == data.right.dtype == data.worker.dtype == np.int32
    assert data.outcome.dtype == np.int8
    assert data.weight.strides == (0,) and not data.weighted  # one 1.0, seen 100 times
    model = WorkerAwareBT().fit(frame)
    weighted = WorkerAwareBT().fit(frame.assign(weight=1.0))
    pd.testing.assert_series_equal(model.scores_, weighted.scores_, check_exact=True)
