"""The quality check's CPU paths (docs/at-scale.md, check12): SQLite's answer times parsed by numpy,
the collector paused around bulk loops, the cross-fit's sorted-rows Bradley-Terry entry."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from crowdloop.aggregation.bradley_terry import bradley_terry, fit_sorted_rows
from crowdloop.stages.quality_check import _parse_us, _present

# The query's formula before: whole seconds from strftime, microseconds from the text.
_SQL_US = (
    "SELECT CAST(strftime('%s', substr(?1, 1, 19)) AS INTEGER) * 1000000"
    " + CAST(substr(?1 || '000000', 21, 6) AS INTEGER)"
)


@pytest.mark.parametrize(
    "stored",
    [
        "2026-12-07 10:23:40.076489",
        "2026-12-07 10:23:40",  # stored without a fraction
        "2026-12-07 10:23:40.5",
        "1969-12-31 23:59:59.500000",
        "2000-02-29 00:00:00.000001",
    ],
)
def test_parsed_times_equal_sqlite_formula(stored: str) -> None:
    with sqlite3.connect(":memory:") as con:
        expected = con.execute(_SQL_US, (stored,)).fetchone()[0]
    assert _parse_us((stored,)).tolist() == [expected]


def test_present_is_union1d() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 50, 200), rng.integers(0, 50, 30)
    assert np.array_equal(_present(60, a, b), np.union1d(a, b))
    assert _present(5).size == 0


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_sorted_rows_equals_bradley_terry(weighted: bool) -> None:
    rng = np.random.default_rng(1)
    n_items, size = 40, 3_000
    left = rng.integers(0, n_items, size)
    right = (left + rng.integers(1, n_items, size)) % n_items
    outcome = rng.choice([0.0, 0.5, 1.0], size)
    weights = rng.uniform(0, 2, size) * (rng.uniform(size=size) > 0.1) if weighted else None
    expected = bradley_terry(left, right, outcome, n_items, weights=weights, tol=1e-5)
    # Rows sorted by pair, ties in row order; each pair's key and the lower side's share.
    low, high = np.minimum(left, right), np.maximum(left, right)
    key = low * n_items + high
    order = np.argsort(key, kind="stable")
    pair_keys, pair_of = np.unique(key[order], return_inverse=True)
    share = np.where(left > right, 1.0 - outcome, outcome)[order]
    got = fit_sorted_rows(
        n_items,
        pair_keys,
        pair_of,
        share,
        None if weights is None else weights[order],
        tol=1e-5,
    )
    assert np.array_equal(got.scores, expected.scores)
    assert got.iterations == expected.iterations
