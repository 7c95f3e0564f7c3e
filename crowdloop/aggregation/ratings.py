"""Multi-aspect Likert ratings: a consensus per (response, aspect) that corrects each
worker's bias and scale use, and the mean of the votes it is measured against.

The model (`worker_linear`). Scores are first put on one footing: each aspect's scale is
centred and halved, so every aspect runs from -1 (low) to +1 (high). Then a worker w's
score on aspect j of response i is

    u = a[w, j] + b[w] * x[i, j] + noise,   noise ~ N(0, s[w]^2)

- `x[i, j]`: the hidden truth, prior N(m, tau_x^2);
- `a[w, j]`: the worker's bias on that aspect (a lenient rater scores everything higher),
  prior N(0, tau_a^2);
- `b[w]`: the worker's scale use, the same on every aspect (below 1: they keep to the
  middle of the scale; above 1: they use the ends), prior N(1, tau_b^2), kept >= 0 (a
  worker whose scores go against the consensus is treated as uninformative rather than
  turning the scale round);
- `s[w]`: their noise, pooled with the crowd's (`NU0` pseudo-answers at the crowd's
  residual variance) and at least the rounding of an integer scale.

The priors' spreads are learned from the crowd (EM on the hyperparameters: each update
adds the estimates' posterior variances, so they do not collapse), so a crowd of
consistent raters gets little shrinkage. Golden items enter with their known scores fixed:
they anchor every worker who answered them to the golden scale. A random clicker's scores
do not follow the truth, so their `b` goes to ~0 and their answers count for nothing; a
constant clicker's too. Fitting alternates closed-form updates (conditional posterior
modes) until the truths move less than `tol`.

What it does not model: Likert scores are rounded and clipped at the ends, which a
linear-Gaussian model treats as noise (a strongly expanding rater piles up at the ends).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

# Pseudo-answers of the crowd's residual variance every worker's noise is pooled with.
NU0 = 3.0
# The variance of rounding a continuous score to the nearest integer point is 1/12 of a
# point squared; in half-range units that is divided by the half-range squared. No rater
# of an integer scale is more precise than that.
ROUNDING_VAR = 1.0 / 12.0
SCALE_MAX = 4.0  # b above this is a rater using far more than the scale (clipped)


@dataclass(frozen=True)
class Vote:
    cell: int  # (response, aspect) index
    aspect: int
    worker: int
    value: float  # the score as given, on the aspect's scale


@dataclass(frozen=True)
class Scale:
    low: float
    high: float

    @property
    def center(self) -> float:
        return (self.low + self.high) / 2

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class RatingFit:
    score: NDArray[np.float64]  # per cell, on its aspect's scale (clipped to it)
    sd: NDArray[np.float64]  # per cell, on its aspect's scale (0 for an anchored cell)
    bias: NDArray[np.float64]  # per (worker, aspect), in scale points
    scale: NDArray[np.float64]  # per worker
    noise: NDArray[np.float64]  # per worker, in half-ranges
    reliability: NDArray[np.float64]  # per worker: share of their variance from the truth
    iterations: int
    converged: bool


def _arrays(
    votes: Sequence[Vote], scales: Sequence[Scale]
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    cell = np.array([v.cell for v in votes], dtype=np.int64)
    aspect = np.array([v.aspect for v in votes], dtype=np.int64)
    worker = np.array([v.worker for v in votes], dtype=np.int64)
    center = np.array([s.center for s in scales])
    half = np.array([s.half for s in scales])
    value = np.array([v.value for v in votes], dtype=np.float64)
    return cell, aspect, worker, value, center, half


def worker_linear(
    votes: Sequence[Vote],
    n_cells: int,
    n_workers: int,
    cell_aspect: Sequence[int],
    scales: Sequence[Scale],
    anchors: Mapping[int, float] | None = None,
    *,
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> RatingFit:
    """Fit the model above. `cell_aspect[c]`: the aspect of cell c; `anchors`: cells whose
    truth is known (golden items), on their aspect's scale. Converged when no truth moves
    more than `tol` half-ranges in an iteration (the hyperparameter updates make the last
    digits slow: a few hundred iterations on small crowds, each a handful of bincounts)."""
    n_aspects = len(scales)
    cell, aspect, worker, value, center, half = _arrays(votes, scales)
    cell_aspect_a = np.asarray(cell_aspect, dtype=np.int64)
    u = (value - center[aspect]) / half[aspect]
    wa = worker * n_aspects + aspect  # (worker, aspect) bias index
    n_wa = n_workers * n_aspects
    floor = ROUNDING_VAR / float(np.max(half) ** 2) if len(half) else ROUNDING_VAR

    fixed = np.zeros(n_cells, dtype=bool)
    x = np.zeros(n_cells)
    counts = np.bincount(cell, minlength=n_cells).astype(float)
    sums = np.bincount(cell, weights=u, minlength=n_cells)
    x = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    for c, known in (anchors or {}).items():
        a_j = int(cell_aspect_a[c])
        x[c] = (known - center[a_j]) / half[a_j]
        fixed[c] = True

    a = np.zeros(n_wa)
    b = np.ones(n_workers)
    s2 = np.full(n_workers, max(float(np.var(u - x[cell])) if len(u) else 1.0, floor))
    tau_a2, tau_b2 = 0.25, 0.25
    free = ~fixed & (counts > 0)
    m = float(np.mean(x[free])) if free.any() else 0.0
    tau_x2 = max(float(np.var(x[free])) if free.any() else 0.25, 0.01)
    var_x = np.zeros(n_cells)

    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        prec = 1.0 / s2[worker]
        # Biases, given scale use.
        n_a = np.bincount(wa, weights=prec, minlength=n_wa)
        r_a = np.bincount(wa, weights=prec * (u - b[worker] * x[cell]), minlength=n_wa)
        a = r_a / (n_a + 1.0 / tau_a2)
        var_a = 1.0 / (n_a + 1.0 / tau_a2)
        # Scale use, given biases (the truths' own uncertainty counted in E[x^2]).
        ex2 = x[cell] ** 2 + var_x[cell]
        sxx = np.bincount(worker, weights=prec * ex2, minlength=n_workers)
        sxu = np.bincount(worker, weights=prec * x[cell] * (u - a[wa]), minlength=n_workers)
        b = np.clip((sxu + 1.0 / tau_b2) / (sxx + 1.0 / tau_b2), 0.0, SCALE_MAX)
        var_b = 1.0 / (sxx + 1.0 / tau_b2)
        # Noise, pooled with the crowd's.
        resid2 = (u - a[wa] - b[worker] * x[cell]) ** 2 + b[worker] ** 2 * var_x[cell]
        s0 = float(np.mean(resid2)) if len(resid2) else 1.0
        n_w = np.bincount(worker, minlength=n_workers).astype(float)
        ss = np.bincount(worker, weights=resid2, minlength=n_workers)
        s2 = np.maximum((ss + NU0 * s0) / (n_w + NU0), floor)
        # Truths, given the workers.
        prec = 1.0 / s2[worker]
        p = np.bincount(cell, weights=prec * b[worker] ** 2, minlength=n_cells) + 1.0 / tau_x2
        r = np.bincount(cell, weights=prec * b[worker] * (u - a[wa]), minlength=n_cells)
        new_x = np.where(fixed, x, (r + m / tau_x2) / p)
        var_x = np.where(fixed, 0.0, 1.0 / p)
        # The priors' spreads, from the crowd (EM: estimates plus posterior variances).
        if free.any():
            m = float(np.mean(new_x[free]))
            tau_x2 = max(float(np.mean((new_x[free] - m) ** 2 + var_x[free])), 0.01)
        seen = n_a > 0
        if seen.any():
            tau_a2 = max(float(np.mean(a[seen] ** 2 + var_a[seen])), 1e-3)
        active = n_w > 0
        if active.any():
            tau_b2 = max(float(np.mean((b[active] - 1.0) ** 2 + var_b[active])), 1e-3)
        shift = float(np.max(np.abs(new_x - x))) if n_cells else 0.0
        x = new_x
        if shift < tol:
            converged = True
            break

    half_c = half[cell_aspect_a]
    center_c = center[cell_aspect_a]
    low = center_c - half_c
    high = center_c + half_c
    score = np.clip(center_c + half_c * x, low, high)
    spread = float(tau_x2)
    reliability = b**2 * spread / (b**2 * spread + s2)
    return RatingFit(
        score=score,
        sd=half_c * np.sqrt(var_x),
        bias=a * np.tile(half, n_workers),
        scale=b,
        noise=np.sqrt(s2),
        reliability=reliability,
        iterations=iterations,
        converged=converged,
    )


def mean_of_votes(
    votes: Sequence[Vote], n_cells: int, cell_aspect: Sequence[int], scales: Sequence[Scale]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The naive baseline: each cell's plain mean score and its standard error (the
    scale's uniform spread / sqrt(n) where there is a single vote); NaN where unrated."""
    cell = np.array([v.cell for v in votes], dtype=np.int64)
    value = np.array([v.value for v in votes], dtype=np.float64)
    n = np.bincount(cell, minlength=n_cells).astype(float)
    total = np.bincount(cell, weights=value, minlength=n_cells)
    total2 = np.bincount(cell, weights=value**2, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        var = np.maximum(total2 / n - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    width = np.array([scales[j].high - scales[j].low for j in cell_aspect], dtype=float)
    uniform = width**2 / 12.0
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.where(n > 1, var, uniform) / n)
    return mean, se
