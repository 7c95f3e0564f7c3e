"""What one more answer on a pair is worth: a Laplace posterior of each pair's score
difference and the expected gain in P(verdict right) from one more answer.

Dynamic overlap asked again about a pair while max(P(left better), 1 - P(left better))
from the fitted scores was under a target. That number is the model's prediction of one
worker's answer, not the chance that the verdict is right, and it stays near 1/2 on a pair
near 50/50 however many answers it has, so such pairs were bought up to the cap. Here:

* the posterior of the scores is approximated by a Gaussian at the fitted (MAP) scores
  with the expected Fisher information of every answer as precision (worker parameters
  held at their fit), plus the prior ``N(0, 1 / score_l2)`` of each score. Prompts share
  no responses, so the precision matrix is block diagonal, one small block per prompt;
* a pair's verdict is right with probability ``Phi(|mu| / sd)`` for its difference
  ``d ~ N(mu, sd^2)``;
* one more answer from a typical worker adds its Fisher information ``f`` to the pair's
  difference: the posterior sd becomes ``sd' = sd / sqrt(1 + sd^2 f)`` and the posterior
  mean moves by ``N(0, sd^2 - sd'^2)`` before the answer is seen. The expected P(right)
  after it, minus the one now, is the answer's value (the knowledge gradient for a sign
  decision; Frazier, Powell and Dayanik 2008), computed by quadrature on a fine grid.

A pair with a few split answers on one side of 0 has a small ``|mu|`` *and* a small ``sd``,
and gains little from one more answer; a pair resting on one answer has a large ``sd`` and
gains more. The prior of the scores matters: the fit's own prior is weak (variance 10 a
score), so ``prior_sd`` lets the caller use the spread of the crowd's fitted differences
instead (`difference_prior_sd`).

Frazier, P., Powell, W., Dayanik, S.: A knowledge-gradient policy for sequential
information collection. SIAM J. Control Optim. 47(5), 2410-2439 (2008).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

__all__ = ["AnswerModel", "answer_information", "difference_sd", "one_answer_value"]

# E[g(Z)], Z ~ N(0, 1), on a fine fixed grid: g has a kink where the posterior mean crosses
# 0, which Gauss-Hermite's polynomial exactness does not handle (24 nodes: 10% off).
_NODES = np.linspace(-7.0, 7.0, 281)
_WEIGHTS = np.exp(-0.5 * _NODES**2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
# Pairs per block of the quadrature (a block's array: this many times the nodes).
_CHUNK = 4096


@dataclass(frozen=True)
class AnswerModel:
    """How an answer depends on a pair's score difference ``d`` (worker-aware model,
    `crowdloop.aggregation.worker_aware`): with probability ``attentiveness`` Davidson's
    model with ties (``P(left) ∝ exp(d / 2)``, ``P(right) ∝ exp(-d / 2)``, ``P(tie) ∝
    tie``), otherwise ``random_answer`` (left, right, tie)."""

    tie: float
    random_answer: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)


def answer_information(
    diff: np.ndarray, attentiveness: np.ndarray, model: AnswerModel
) -> np.ndarray:
    """Expected Fisher information about ``d`` of one answer given at difference ``diff``
    (position bias included) by a worker of this attentiveness:
    sum over answers of (dP/dd)^2 / P."""
    d = np.asarray(diff, dtype=float)
    a = np.asarray(attentiveness, dtype=float)
    # Davidson's probabilities, odds relative to the likelier side (no overflow).
    h = np.exp(-0.5 * np.abs(d))
    strong = 1.0 / (1.0 + h * h + model.tie * h)
    weak = h * h * strong
    p_tie = model.tie * h * strong
    p_left = np.where(d >= 0, strong, weak)
    p_right = np.where(d >= 0, weak, strong)
    m = p_left - p_right
    info = np.zeros_like(d)
    for p, slope, r in (
        (p_left, 0.5 * (1.0 - m), model.random_answer[0]),
        (p_right, -0.5 * (1.0 + m), model.random_answer[1]),
        (p_tie, -0.5 * m, model.random_answer[2]),
    ):
        mixed = np.maximum(a * p + (1.0 - a) * r, 1e-300)
        info += (a * p * slope) ** 2 / mixed
    return info


def difference_sd(
    left: np.ndarray,
    right: np.ndarray,
    information: np.ndarray,
    group: np.ndarray,
    n_items: int,
    pair_left: np.ndarray,
    pair_right: np.ndarray,
    score_l2: float,
) -> np.ndarray:
    """Laplace posterior sd of ``s[pair_left] - s[pair_right]``.

    ``left``, ``right``: item codes of each answer, ``information`` its Fisher information
    (`answer_information`); ``group``: each item's block (its prompt; items of different
    blocks share no answer); prior precision ``score_l2`` on every score. A pair whose
    sides are in different blocks, or a code of -1 (an item no answer touches), gets the
    prior's sd ``sqrt(2 / score_l2)``.
    """
    group = np.asarray(group)
    pair_left = np.asarray(pair_left)
    pair_right = np.asarray(pair_right)
    out = np.full(pair_left.size, np.sqrt(2.0 / score_l2))
    # Local index of each item within its block, and blocks grouped by size so each size
    # is one batched inverse.
    order = np.argsort(group, kind="stable")
    blocks, starts, sizes = np.unique(group[order], return_index=True, return_counts=True)
    local = np.empty(n_items, dtype=np.int64)
    local[order] = np.arange(n_items) - np.repeat(starts, sizes)
    block_of = np.searchsorted(blocks, group)
    ok = (pair_left >= 0) & (pair_right >= 0)
    ok[ok] &= block_of[pair_left[ok]] == block_of[pair_right[ok]]
    for n in np.unique(sizes):
        members = np.flatnonzero(sizes == n)  # block numbers of this size
        slot = np.full(blocks.size, -1, dtype=np.int64)
        slot[members] = np.arange(members.size)
        precision = np.zeros((members.size, n, n))
        precision[:, np.arange(n), np.arange(n)] = score_l2
        mine = slot[block_of[left]] >= 0
        b = slot[block_of[left[mine]]]
        i, j, f = local[left[mine]], local[right[mine]], information[mine]
        np.add.at(precision, (b, i, i), f)
        np.add.at(precision, (b, j, j), f)
        np.add.at(precision, (b, i, j), -f)
        np.add.at(precision, (b, j, i), -f)
        covariance = np.linalg.inv(precision)
        rows = np.flatnonzero(ok & (slot[block_of[np.maximum(pair_left, 0)]] >= 0))
        pb = slot[block_of[pair_left[rows]]]
        pi, pj = local[pair_left[rows]], local[pair_right[rows]]
        var = covariance[pb, pi, pi] + covariance[pb, pj, pj] - 2.0 * covariance[pb, pi, pj]
        out[rows] = np.sqrt(np.maximum(var, 1e-12))
    return out


def one_answer_value(mean: np.ndarray, sd: np.ndarray, information: np.ndarray) -> np.ndarray:
    """Expected gain in P(sign of d guessed right) from one more answer of this Fisher
    information, for ``d ~ N(mean, sd^2)`` (the knowledge gradient of a sign decision)."""
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    after = sd / np.sqrt(1.0 + sd * sd * information)
    moves = np.sqrt(np.maximum(sd * sd - after * after, 0.0))
    now = ndtr(np.abs(mean) / sd)
    later = np.empty_like(now)
    for at in range(0, mean.size, _CHUNK):
        rows = slice(at, at + _CHUNK)
        moved = np.abs(mean[rows, None] + moves[rows, None] * _NODES[None, :])
        later[rows] = ndtr(moved / after[rows, None]) @ _WEIGHTS
    return np.asarray(np.maximum(later - now, 0.0))
