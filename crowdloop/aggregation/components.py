"""Bradley-Terry refits many times over, one connected component at a time.

A preference campaign compares the 3-5 responses of each prompt with each other and never
across prompts, so its comparison graph is thousands of tiny components. The posterior of
``bradley_terry`` (``prior`` virtual ties per item against a reference of strength 1)
factorises over components: the MAP of the whole is the MAP of each component, each
anchored by its own prior terms. ``bradley_terry`` fits them all at once with one common
scale step (``_rescale``), which cannot move thousands of components to their own levels:
on campaign-shaped data it needed ~60-70 iterations per fit, where dense data needs 7-8.

Here every component of up to ``MAX_BATCHED`` items gets a damped Newton iteration on its
own k x k problem, vectorised over components of one size and over replicates (one
``np.linalg.solve`` over a stack of small matrices per iteration). The log-posterior is
strictly concave (the prior makes the Hessian positive definite), so Newton converges
quadratically: 3-5 iterations from a warm start at the full-data fit. A step that would
lower the posterior is halved until it does not (vectorised backtracking), so the
iteration cannot cycle on near-separable data. Larger components (a dense design) go to
``bradley_terry``, fitted together, then put on their anchored levels one by one.

The same Hessian at the point estimate gives a Laplace (normal-approximation) interval
without any refit, ``laplace_sd``; ``bench/bench_intervals.py`` measures both against the
truth of simulated campaigns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.special import expit, log_expit

from crowdloop.aggregation.bradley_terry import _rescale, bradley_terry, connected_components

__all__ = [
    "LAPLACE_DENSE_LIMIT",
    "MAX_BATCHED",
    "ComponentLayout",
    "RowGroups",
    "fit_replicates",
    "laplace_sd",
]

# Components up to this many items are fitted by the batched Newton iteration. Its cost per
# component grows as k^3 (the solve) and its memory as k^2 per replicate; bradley_terry's
# iteration is the better tool for a few large components.
MAX_BATCHED: Final = 16
# Entries of one (replicates x components x k x k) block: 2^19 float64 = 4 MiB per array,
# a handful of arrays alive at once, whatever the campaign's size.
_BLOCK_ENTRIES: Final = 2**19
# Largest Newton step (in log-strength) taken at once: far from the optimum a full Newton
# step of a logistic likelihood can overshoot by orders of magnitude.
_MAX_STEP: Final = 4.0
_MAX_NEWTON: Final = 100
# Items of the components above MAX_BATCHED that laplace_sd handles as one dense matrix
# (2,048^2 float64 = 32 MiB per matrix).
LAPLACE_DENSE_LIMIT: Final = 2_048
_MAX_HALVINGS: Final = 30
# Newton steps up to this size (largest log-strength change) skip the posterior check.
_CHECKED_STEP: Final = 0.25


@dataclass(frozen=True, eq=False)
class RowGroups:
    """Comparisons collapsed to distinct (pair, lower item's share, weight) rows.

    A bootstrap that draws every comparison a Poisson(1) number of times draws a group of
    ``count`` identical comparisons Poisson(count) times, so replicates cost one draw per
    group, not per comparison.
    """

    low: np.ndarray  # lower item code of the pair
    high: np.ndarray  # higher item code
    share: np.ndarray  # share of the comparison won by the lower item
    weight: np.ndarray  # weight of one comparison
    count: np.ndarray  # comparisons in the group

    @classmethod
    def collapse(
        cls, left: np.ndarray, right: np.ndarray, outcome: np.ndarray, weight: np.ndarray
    ) -> RowGroups:
        low = np.minimum(left, right)
        high = np.maximum(left, right)
        share = np.where(left == low, outcome, 1.0 - outcome)
        order = np.lexsort((weight, share, high, low))
        keys = [low[order], high[order], share[order], weight[order]]
        same = np.zeros(order.size, dtype=bool)  # same key as the row before
        same[1:] = True
        for key in keys:
            same[1:] &= key[1:] == key[:-1]
        starts = np.flatnonzero(~same)
        count = np.diff(np.append(starts, order.size))
        low, high, share, weight = (key[starts] for key in keys)
        return cls(low, high, share, weight, count)

    def pair_wins(self, multiplicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per group: weighted wins of the lower and of the higher item, for the given
        number of copies of each comparison (any leading replicate axes)."""
        total = multiplicity * self.weight
        return total * self.share, total * (1.0 - self.share)


@dataclass(frozen=True, eq=False)
class ComponentLayout:
    """Each item's component and its position inside it, components ordered by size."""

    labels: np.ndarray  # component per item, renumbered so that sizes ascend
    sizes: np.ndarray  # items per component (in the new numbering)
    local: np.ndarray  # position of each item inside its component
    members: np.ndarray  # items ordered by (component, position)

    @classmethod
    def of(cls, n_items: int, left: np.ndarray, right: np.ndarray) -> ComponentLayout:
        raw = connected_components(n_items, left, right)
        raw_sizes = np.bincount(raw)
        rank = np.empty(raw_sizes.size, dtype=np.int64)
        rank[np.lexsort((np.arange(raw_sizes.size), raw_sizes))] = np.arange(raw_sizes.size)
        labels = rank[raw]
        sizes = np.bincount(labels)
        members = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        local = np.empty(n_items, dtype=np.int64)
        local[members] = np.arange(n_items) - np.repeat(starts, sizes)
        return cls(labels, sizes, local, members)

    def batches(self, n_rep: int) -> Iterator[tuple[int, int, int]]:
        """(k, first, stop): runs of components of one size k <= MAX_BATCHED, cut so that a
        (n_rep x components x k x k) block stays near _BLOCK_ENTRIES."""
        k_values, firsts = np.unique(self.sizes, return_index=True)
        ends = np.append(firsts[1:], self.sizes.size)
        for k, first, end in zip(k_values.tolist(), firsts.tolist(), ends.tolist(), strict=True):
            if k > MAX_BATCHED:
                break
            step = max(1, _BLOCK_ENTRIES // (n_rep * k * k))
            for start in range(first, end, step):
                yield k, start, min(start + step, end)

    def first_large(self) -> int:
        """Label of the first component too large for the batched iteration."""
        return int(np.searchsorted(self.sizes, MAX_BATCHED, side="right"))


def fit_replicates(
    groups: RowGroups,
    layout: ComponentLayout,
    draw: Callable[[np.ndarray], np.ndarray],
    n_rep: int,
    *,
    start: np.ndarray | None,
    prior: float,
    tol: float,
    out: np.ndarray,
) -> None:
    """Anchored (uncentred) MAP log-strengths of ``n_rep`` reweightings of the data.

    ``draw(index)`` returns the multiplicity of the groups ``index`` (positions in
    ``groups``) per replicate, shape ``(n_rep, len(index))``; it is called block by block in
    a fixed order, so a seeded generator gives the same replicates on every run. ``start``
    (anchored scores per item, e.g. the full-data fit) is the warm start; zeros otherwise.
    Scores go to ``out[replicate, item]``.
    """
    if prior <= 0:
        raise ValueError("component-wise fits need prior > 0 (it anchors each component)")
    component = layout.labels[groups.low]
    order = np.argsort(component, kind="stable")
    component = component[order]
    g_low, g_high = groups.low[order], groups.high[order]
    g_share, g_weight = groups.share[order], groups.weight[order]
    members_start = np.concatenate([[0], np.cumsum(layout.sizes)])
    for k, first, stop in layout.batches(n_rep):
        rows = slice(*np.searchsorted(component, [first, stop]).tolist())
        n_comp = stop - first
        multiplicity = draw(order[rows]).astype(np.float64)
        total = multiplicity * g_weight[rows]
        wins_low, wins_high = total * g_share[rows], total * (1.0 - g_share[rows])
        _, edge, _, _ = _edges(k)
        m = k * (k - 1) // 2
        i, j = layout.local[g_low[rows]], layout.local[g_high[rows]]
        # The lower-coded item is the edge's first item when it sits first in the component.
        lower_first = i < j
        slot = (component[rows] - first) * m + edge[i, j]
        offsets = (np.arange(n_rep) * (n_comp * m))[:, None]
        index = (offsets + slot).ravel()
        size = n_rep * n_comp * m
        wins_first = np.bincount(index, np.where(lower_first, wins_low, wins_high).ravel(), size)
        wins_second = np.bincount(index, np.where(lower_first, wins_high, wins_low).ravel(), size)
        items = layout.members[members_start[first] : members_start[stop]]
        if start is None:
            initial = np.zeros((n_rep * n_comp, k))
        else:
            initial = np.broadcast_to(start[items].reshape(1, n_comp, k), (n_rep, n_comp, k))
            initial = initial.reshape(n_rep * n_comp, k)
        scores = newton(
            wins_first.reshape(-1, m), wins_second.reshape(-1, m), initial, prior=prior, tol=tol
        )
        out[:, items] = scores.reshape(n_rep, n_comp * k)
    first_large = layout.first_large()
    if first_large < layout.sizes.size:
        _fit_large(groups, layout, draw, n_rep, first_large, prior=prior, tol=tol, out=out)


def _fit_large(
    groups: RowGroups,
    layout: ComponentLayout,
    draw: Callable[[np.ndarray], np.ndarray],
    n_rep: int,
    first_large: int,
    *,
    prior: float,
    tol: float,
    out: np.ndarray,
) -> None:
    """Components above MAX_BATCHED: one bradley_terry fit over all of them per replicate,
    then each component moved to its anchored level (bradley_terry centres the whole)."""
    rows = layout.labels[groups.low] >= first_large
    items = np.flatnonzero(layout.labels >= first_large)
    code = np.full(layout.labels.size, -1, dtype=np.int64)
    code[items] = np.arange(items.size)
    low, high = code[groups.low[rows]], code[groups.high[rows]]
    share, weight = groups.share[rows], groups.weight[rows]
    multiplicity = draw(np.flatnonzero(rows)).astype(np.float64)
    comp = layout.labels[items]
    cuts = np.flatnonzero(np.diff(comp)) + 1
    for replicate in range(n_rep):
        fit = bradley_terry(
            low,
            high,
            share,
            items.size,
            weights=weight * multiplicity[replicate],
            prior=prior,
            tol=tol,
        ).scores
        for part in np.split(np.arange(items.size), cuts):
            out[replicate, items[part]] = _rescale(fit[part])


def _edges(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k(k-1)/2 pairs (a < b) of a k-item component, a (k x k) table giving each
    ordered pair's edge, the edges' incidence vectors (m x k: +1 at a, -1 at b) and their
    outer products (m x k*k): per-edge gradient terms times the incidence give the
    gradient, per-edge curvatures times the outer products the Hessian."""
    first, second = np.triu_indices(k, 1)
    edge = np.zeros((k, k), dtype=np.int64)
    edge[first, second] = edge[second, first] = np.arange(first.size)
    incidence = np.zeros((first.size, k))
    incidence[np.arange(first.size), first] = 1.0
    incidence[np.arange(first.size), second] = -1.0
    outer = np.einsum("ei,ej->eij", incidence, incidence).reshape(first.size, k * k)
    return np.stack([first, second]), edge, incidence, outer


def newton(
    wins_first: np.ndarray,
    wins_second: np.ndarray,
    initial: np.ndarray,
    *,
    prior: float,
    tol: float,
) -> np.ndarray:
    """MAP log-strengths of a stack of small Bradley-Terry problems of k items each.

    ``wins_first[b, e]`` / ``wins_second[b, e]``: weighted wins (ties half a win each way)
    of the first / second item of edge e of problem b, edges as ``_edges(k)`` lists them;
    ``initial[b]``: the start. Each item also plays ``prior`` virtual ties against a
    reference of log-strength 0. Stops per problem when it is within about ``tol``.
    Works on edges, not k x k matrices: P(j beats i) = 1 - P(i beats j), so each edge
    needs one sigmoid and one log-sigmoid, not two of each.
    """
    k = initial.shape[1]
    (first, second), _, incidence, outer = _edges(k)
    games = wins_first + wins_second
    half = prior / 2.0
    diagonal = np.arange(k)
    scores = np.array(initial, dtype=np.float64)
    active = np.arange(scores.shape[0])
    # Newton converges quadratically: once a step is below sqrt(tol), the distance left to
    # the optimum is of the order of its square, so that step is the last one (saves one
    # full pass over every problem; tests check the result against bradley_terry at tol).
    stop_step = np.sqrt(tol)

    def objective(rows: np.ndarray, s: np.ndarray) -> np.ndarray:
        # log P(a beats b) = log_expit(d) and log P(b beats a) = log_expit(d) - d.
        difference = s[:, first] - s[:, second]
        data = games[rows] * log_expit(difference) - wins_second[rows] * difference
        return data.sum(1) + half * (2.0 * log_expit(s) - s).sum(1)

    for _ in range(_MAX_NEWTON):
        if active.size == 0:
            break
        s = scores[active]
        n = games[active]
        p = expit(s[:, first] - s[:, second])
        q = expit(s)
        residual = wins_first[active] - n * p  # d log-likelihood / d difference, per edge
        gradient = residual @ incidence + half * (1.0 - 2.0 * q)
        hessian = ((n * p * (1.0 - p)) @ outer).reshape(-1, k, k)
        hessian[:, diagonal, diagonal] += prior * q * (1.0 - q)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        largest = np.abs(step).max(1)
        step *= np.minimum(1.0, _MAX_STEP / np.maximum(largest, 1e-300))[:, None]
        proposal = s + step
        # Near the optimum a Newton step of this concave objective is safe; only large
        # steps are checked (and halved until the posterior does not drop), which spares
        # the log-sigmoids of most problems.
        check = np.flatnonzero(largest > _CHECKED_STEP)
        if check.size:
            rows = active[check]
            current = objective(rows, s[check])
            for _ in range(_MAX_HALVINGS):
                worse = objective(rows, proposal[check]) < current - 1e-12 * np.abs(current)
                if not worse.any():
                    break
                bad = check[worse]
                step[bad] /= 2.0
                proposal[bad] = s[bad] + step[bad]
        scores[active] = proposal
        active = active[np.abs(step).max(1) >= stop_step]
    return scores


def laplace_sd(
    groups: RowGroups, layout: ComponentLayout, scores: np.ndarray, *, prior: float
) -> np.ndarray:
    """Standard deviation of each *centred* log-strength (minus the mean over all items)
    under the normal approximation at ``scores`` (the anchored MAP).

    The covariance is block-diagonal by component, and the centred score is the contrast
    ``s_i - mean(s)``: ``Var = C_ii - 2/n sum_j C_ij + 1/n^2 sum_jl C_jl`` with the sums
    inside i's block. Components above MAX_BATCHED are handled together as one dense block,
    up to LAPLACE_DENSE_LIMIT items (a ValueError beyond: use the bootstrap).
    """
    n_items = layout.labels.size
    diagonal_cov = np.empty(n_items)
    row_sums = np.empty(n_items)
    total = 0.0
    members_start = np.concatenate([[0], np.cumsum(layout.sizes)])
    component = layout.labels[groups.low]
    order = np.argsort(component, kind="stable")
    component = component[order]
    g_low, g_high = groups.low[order], groups.high[order]
    games_per_group = groups.count[order] * groups.weight[order]
    first_large = layout.first_large()
    blocks: list[tuple[int, int, int]] = list(layout.batches(1))
    if first_large < layout.sizes.size:
        n_large = int(layout.sizes[first_large:].sum())
        if n_large > LAPLACE_DENSE_LIMIT:
            raise ValueError(
                f"laplace intervals handle components of more than {MAX_BATCHED} items up to "
                f"{LAPLACE_DENSE_LIMIT} items in all, got {n_large}: use the bootstrap"
            )
        blocks.append((n_large, first_large, layout.sizes.size))
    for k, first, stop in blocks:
        rows = slice(*np.searchsorted(component, [first, stop]).tolist())
        items = layout.members[members_start[first] : members_start[stop]]
        if first == first_large:  # the large components as one block of k items
            n_comp, base = 1, np.zeros(rows.stop - rows.start, dtype=np.int64)
            position = np.empty(n_items, dtype=np.int64)
            position[items] = np.arange(items.size)
        else:
            n_comp, base, position = stop - first, (component[rows] - first) * (k * k), layout.local
        i, j = position[g_low[rows]], position[g_high[rows]]
        size = n_comp * k * k
        games = np.bincount(base + i * k + j, games_per_group[rows], size)
        games += np.bincount(base + j * k + i, games_per_group[rows], size)
        covariance = _sandwich(games.reshape(n_comp, k, k), scores[items].reshape(n_comp, k), prior)
        diagonal_cov[items] = np.diagonal(covariance, axis1=1, axis2=2).ravel()
        row_sums[items] = covariance.sum(2).ravel()
        total += float(covariance.sum())
    variance = diagonal_cov - 2.0 * row_sums / n_items + total / n_items**2
    return np.sqrt(np.maximum(variance, 0.0))


def _sandwich(games: np.ndarray, scores: np.ndarray, prior: float) -> np.ndarray:
    """Per problem, the sampling covariance of the MAP, H^-1 J H^-1: J is the data's
    information (``games[b, i, j]`` comparisons of i and j), H = J + the prior's curvature.
    The plain posterior covariance H^-1 would add the prior's uncertainty about each
    component's level, which no resampling of the data moves (measured: intervals 2.3x the
    bootstrap's on campaign-shaped data)."""
    k = scores.shape[1]
    p = expit(scores[:, :, None] - scores[:, None, :])
    curvature = games * p * (1.0 - p)
    information = -curvature
    diagonal = np.arange(k)
    information[:, diagonal, diagonal] = curvature.sum(2)
    hessian = information.copy()
    q = expit(scores)
    hessian[:, diagonal, diagonal] += prior * q * (1.0 - q)
    inverse = np.linalg.inv(hessian)
    return inverse @ information @ inverse
