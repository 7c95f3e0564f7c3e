"""Worker-aware Bradley-Terry with ties: item strengths, worker attentiveness and position bias.

Model, for comparison ``k`` of left item ``i`` and right item ``j`` by worker ``w``:

* with probability ``a_w`` (attentiveness) the worker judges. Their answer follows the
  Bradley-Terry model with ties of Davidson (1970), with the worker's position bias ``b_w``
  added to the left item's log-strength. With ``d = s_i - s_j + b_w``::

      P(left)  ∝ exp(d / 2),   P(right) ∝ exp(-d / 2),   P(tie) ∝ ν

  (Davidson's ``π_i``, ``π_j``, ``ν·sqrt(π_i π_j)``, each divided by ``sqrt(π_i π_j)``);
* otherwise the worker answers at random, from one distribution ``r`` over
  left/right/tie shared by all workers (learned, or fixed uniform).

So ``P(answer) = a_w · P_Davidson(answer) + (1 - a_w) · r(answer)``. The fit is a MAP
estimate: L-BFGS-B on the negative log-posterior with an analytic gradient, vectorised over
comparisons (``np.bincount`` for the scatter-adds), with these priors:

* ``s_i ~ N(0, 1 / score_l2)``: keeps scores finite on transitive or sparse data and fixes
  the location that comparisons alone leave free;
* ``b_w ~ N(0, 1 / bias_l2)``: one shared prior pulls every worker's bias to 0, so a worker
  with few answers is not called biased on the strength of a handful of "left" clicks;
* ``a_w``: pseudo-counts ``attention_prior = (attentive, inattentive)``, i.e. a
  ``Beta(attentive, inattentive)`` density on ``a_w`` times the Jacobian of the logit
  parametrisation (the penalty is ``-attentive·log a - inattentive·log(1 - a)``);
* ``log ν ~ N(0, 1 / tie_l2)``: weak, only so that data without a single tie still give a
  finite optimum;
* random-answer logits ``~ N(0, 1 / random_l2)``: pulls the random-answer distribution
  towards uniform, so that on a handful of comparisons (one prompt, a few workers) it does
  not fit the observed answers by itself (measured: with a near-flat prior, five answers
  produced a "random" distribution of 99% ties).

Why not crowd-kit's ``NoisyBradleyTerry``: as measured for this project on crowd-kit 1.4.2,
its analytic gradient disagrees with finite differences, L-BFGS stops after about 5
iterations and its worker skills do not track the truth on simulated crowds. Keep crowd-kit
out of this module.

The optimiser works on rescaled parameters (each multiplied by ``sqrt(curvature)``, the
curvature estimated from the weight of the comparisons that touch the parameter): items,
workers and the global parameters are touched by very different numbers of comparisons.
Measured on the 1e6-comparison benchmark (``bench/bench_worker_aware.py``): 45 L-BFGS-B
iterations with the rescaling, 723 without.

Davidson, R.R.: On extending the Bradley-Terry model to accommodate ties in paired
comparison experiments. JASA 65(329), 317-328 (1970). https://doi.org/10.2307/2283595
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from crowdloop.aggregation.bradley_terry import LABEL_OUTCOMES, bradley_terry
from crowdloop.codes import side_codes

__all__ = [
    "OUTCOME_CODES",
    "WorkerAwareBT",
    "WorkerAwareData",
    "WorkerAwarePrior",
    "WorkerAwareResult",
    "fit_worker_aware",
    "initial_params",
    "negative_log_likelihood_and_grad",
]

# Code of each outcome in ``WorkerAwareData.outcome`` and in ``random_answer`` arrays.
OUTCOME_CODES: Final[dict[str, int]] = {"left": 0, "right": 1, "tie": 2}
_SHARE_TO_CODE: Final[dict[float, int]] = {1.0: 0, 0.0: 1, 0.5: 2}
_N_AUX: Final[int] = 4  # log ν and the three random-answer logits
_BLOCK: Final[int] = 16_384  # comparisons per block of the objective (see there)

RandomAnswer = Literal["learned", "uniform"]


@dataclass(frozen=True)
class WorkerAwarePrior:
    """Prior strengths of the MAP fit (see the module docstring)."""

    score_l2: float = 0.1
    bias_l2: float = 1.0
    attention_prior: tuple[float, float] = (2.0, 1.0)
    tie_l2: float = 0.01
    random_l2: float = 1.0

    def __post_init__(self) -> None:
        if min(self.score_l2, self.bias_l2, self.tie_l2, self.random_l2) <= 0:
            # A zero L2 on scores leaves their location (and transitive data) unbounded.
            raise ValueError("score_l2, bias_l2, tie_l2 and random_l2 must be > 0")
        attentive, inattentive = self.attention_prior
        if not (attentive > 0 and inattentive > 0):
            raise ValueError("attention_prior pseudo-counts must be > 0")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class WorkerAwareData:
    """Validated comparisons in code form; build with ``WorkerAwareData.from_arrays``.

    Attributes:
        left, right, worker: int32 codes per comparison.
        outcome: int8 code per comparison (``OUTCOME_CODES``: 0 left, 1 right, 2 tie).
        weight: float64 weight per comparison; without weights a read-only view of one 1.0
            (``np.broadcast_to``), no memory per comparison.
        sign, is_tie, not_tie: indicators the gradient needs (``sign`` int8, +1 for a left
            win, -1 for a right win, 0 for a tie; ``is_tie``, ``not_tie`` bool). Narrow
            types: they only ever multiply or are subtracted from float64 blocks, which
            gives the same floats as float64 indicators, at 3 bytes a comparison instead
            of 24 (~20 MB at a million comparisons). The codes are narrow for the same
            reason: they only index (``take``, ``np.bincount``, which widen them a block at
            a time), and the data is alive through the whole L-BFGS-B run, whose workspace
            is the aggregation's peak at 10^6 judgments (int64 codes and float64 ones were
            41 bytes a comparison, these 16).
        weighted: False when every weight is 1, which saves a few passes over the data.
        total_weight, outcome_weight, item_weight, worker_weight: total weight of all
            comparisons, and per outcome code, per item and per worker.
    """

    left: np.ndarray
    right: np.ndarray
    worker: np.ndarray
    outcome: np.ndarray
    weight: np.ndarray
    n_items: int
    n_workers: int
    sign: np.ndarray
    is_tie: np.ndarray
    not_tie: np.ndarray
    weighted: bool
    total_weight: float
    outcome_weight: np.ndarray
    item_weight: np.ndarray
    worker_weight: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        left: np.ndarray,
        right: np.ndarray,
        worker: np.ndarray,
        outcome: np.ndarray,
        n_items: int,
        n_workers: int,
        weights: np.ndarray | None = None,
    ) -> WorkerAwareData:
        """Validate and encode. ``outcome`` as in ``bradley_terry``: 1.0, 0.0 or 0.5."""
        left_codes = _codes(left, n_items, "left")
        right_codes = _codes(right, n_items, "right")
        worker_codes = _codes(worker, n_workers, "worker")
        size = left_codes.size
        if right_codes.size != size or worker_codes.size != size:
            raise ValueError("left, right and worker must have the same length")
        if np.any(left_codes == right_codes):
            raise ValueError("an item cannot be compared with itself (left == right)")
        share = np.asarray(outcome, dtype=np.float64)
        if share.shape != (size,):
            raise ValueError("outcome must have one value per comparison")
        codes = np.full(size, -1, dtype=np.int8)
        for value, code in _SHARE_TO_CODE.items():
            codes[share == value] = code
        if np.any(codes < 0):
            raise ValueError("outcome values must be 1.0 (left won), 0.0 (right won) or 0.5 (tie)")
        if weights is None:
            weight = np.broadcast_to(np.float64(1.0), (size,))
        else:
            weight = np.asarray(weights, dtype=np.float64)
            if weight.shape != (size,):
                raise ValueError("weights must have one value per comparison")
            if size and not (np.all(np.isfinite(weight)) and weight.min() >= 0.0):
                raise ValueError("weights must be finite and >= 0")
        is_left = codes == OUTCOME_CODES["left"]
        is_right = codes == OUTCOME_CODES["right"]
        tie_mask = codes == OUTCOME_CODES["tie"]
        return cls(
            left=left_codes,
            right=right_codes,
            worker=worker_codes,
            outcome=codes,
            weight=weight,
            n_items=n_items,
            n_workers=n_workers,
            sign=is_left.astype(np.int8) - is_right.astype(np.int8),
            is_tie=tie_mask,
            not_tie=~tie_mask,
            weighted=bool(np.any(weight != 1.0)),
            total_weight=float(weight.sum()),
            outcome_weight=np.bincount(codes, weight, 3),
            item_weight=np.bincount(left_codes, weight, n_items)
            + np.bincount(right_codes, weight, n_items),
            worker_weight=np.bincount(worker_codes, weight, n_workers),
        )

    @property
    def n_params(self) -> int:
        return self.n_items + 2 * self.n_workers + _N_AUX


@dataclass(frozen=True, eq=False)
class WorkerAwareResult:
    """Fitted worker-aware model (arrays in code order).

    Attributes:
        scores: log-strength per item, centred to mean 0.
        attentiveness: ``a_w`` per worker.
        position_bias: ``b_w`` per worker (log-odds shift toward the left item).
        tie: Davidson's ``ν``.
        random_answer: probabilities of left/right/tie (``OUTCOME_CODES`` order) of a random
            answer.
        params: the raw parameter vector at the optimum (layout of
            ``negative_log_likelihood_and_grad``).
        objective: negative log-posterior at the optimum.
        n_iter: L-BFGS-B iterations.
        converged: whether L-BFGS-B reported convergence.
        message: L-BFGS-B's stop message.
    """

    scores: np.ndarray
    attentiveness: np.ndarray
    position_bias: np.ndarray
    tie: float
    random_answer: np.ndarray
    params: np.ndarray
    objective: float
    n_iter: int
    converged: bool
    message: str


def negative_log_likelihood_and_grad(
    params: np.ndarray, data: WorkerAwareData, prior: WorkerAwarePrior | None = None
) -> tuple[float, np.ndarray]:
    """Negative log-posterior of the model and its exact gradient.

    ``params`` layout: ``[s (n_items), b (n_workers), logit a (n_workers), log ν,
    random-answer logits for left, right, tie]``.
    """
    prior = prior or WorkerAwarePrior()
    n_items, n_workers = data.n_items, data.n_workers
    if params.shape != (data.n_params,):
        raise ValueError(f"params must have shape ({data.n_params},), got {params.shape}")
    scores = params[:n_items]
    bias = params[n_items : n_items + n_workers]
    logit_a = params[n_items + n_workers : n_items + 2 * n_workers]
    log_tie = float(params[-_N_AUX])
    random_logits = params[-3:]
    attentive = expit(logit_a)
    inattentive = expit(-logit_a)  # not 1 - attentive: no cancellation near a = 1
    random_p = np.exp(random_logits - np.logaddexp.reduce(random_logits))

    sums = _Sums(n_items, n_workers)
    # Blocks small enough to stay in cache: the per-comparison work is a few dozen passes
    # over the data, and on whole 1e6-long arrays each pass was bound by memory bandwidth
    # (measured on a 2-core VM, 1e6 comparisons: 69 ms CPU per evaluation on whole arrays,
    # 41-54 ms in blocks of 16,384).
    buffers = np.empty((9, min(_BLOCK, data.left.size)))
    for start in range(0, data.left.size, _BLOCK):
        _add_block(
            slice(start, start + _BLOCK),
            data,
            scores,
            bias,
            attentive,
            inattentive,
            float(np.exp(log_tie)),
            random_p,
            buffers,
            sums,
        )

    # d(-log L)/d diff = -responsibility * (sign - margin) / 2; the blocks summed
    # responsibility * (margin - sign), so the factor 1/2 is applied here.
    grad_scores = 0.5 * sums.scores
    grad_bias = 0.5 * sums.bias
    # a(1-a) d(-log L)/da simplifies to a - responsibility: no per-comparison division.
    grad_logit_a = attentive * data.worker_weight - sums.worker_resp
    grad_log_tie = sums.tie_resp - float(sums.outcome_resp[OUTCOME_CODES["tie"]])
    resp_total = float(sums.outcome_resp.sum())
    random_resp = data.outcome_weight - sums.outcome_resp
    grad_random = random_p * (data.total_weight - resp_total) - random_resp

    attentive_count, inattentive_count = prior.attention_prior
    log_a = log_expit(logit_a)
    log_not_a = log_expit(-logit_a)
    value = (
        -sums.log_likelihood
        + 0.5 * prior.score_l2 * float(scores @ scores)
        + 0.5 * prior.bias_l2 * float(bias @ bias)
        - float(attentive_count * log_a.sum() + inattentive_count * log_not_a.sum())
        + 0.5 * prior.tie_l2 * log_tie**2
        + 0.5 * prior.random_l2 * float(random_logits @ random_logits)
    )
    grad = np.concatenate(
        [
            grad_scores + prior.score_l2 * scores,
            grad_bias + prior.bias_l2 * bias,
            grad_logit_a - attentive_count * inattentive + inattentive_count * attentive,
            [grad_log_tie + prior.tie_l2 * log_tie],
            grad_random + prior.random_l2 * random_logits,
        ]
    )
    return value, grad


class _Sums:
    """Per-block contributions to the objective and the gradient, summed over blocks."""

    def __init__(self, n_items: int, n_workers: int) -> None:
        self.log_likelihood = 0.0
        self.scores = np.zeros(n_items)  # sum of responsibility * (margin - sign), signed
        self.bias = np.zeros(n_workers)
        self.worker_resp = np.zeros(n_workers)
        self.outcome_resp = np.zeros(3)
        self.tie_resp = 0.0  # sum of responsibility * P(tie)


def _add_block(
    rows: slice,
    data: WorkerAwareData,
    scores: np.ndarray,
    bias: np.ndarray,
    attentive: np.ndarray,
    inattentive: np.ndarray,
    tie_ratio: float,
    random_p: np.ndarray,
    buffers: np.ndarray,
    sums: _Sums,
) -> None:
    left, right, worker = data.left[rows], data.right[rows], data.worker[rows]
    outcome, sign = data.outcome[rows], data.sign[rows]
    size = left.size
    diff, p_tie, p_weak, p_strong, margin, p_davidson, responsibility, likelihood, scratch = (
        buffers[:, :size]
    )

    # mode="clip": codes were validated, and mode="raise" would buffer the output.
    scores.take(left, out=diff, mode="clip")
    diff -= scores.take(right, out=scratch, mode="clip")
    diff += bias.take(worker, out=scratch, mode="clip")
    # Odds relative to the likelier side, so no exponent is positive and nothing overflows
    # however far apart scores get: with h = exp(-|d| / 2), the less likely side has odds
    # h², a tie ν·h.
    np.abs(diff, out=p_tie)
    p_tie *= -0.5
    np.exp(p_tie, out=p_tie)
    np.square(p_tie, out=p_weak)
    p_tie *= tie_ratio
    np.add(p_weak, 1.0, out=p_strong)
    p_strong += p_tie
    np.reciprocal(p_strong, out=p_strong)
    p_weak *= p_strong
    p_tie *= p_strong
    np.subtract(p_strong, p_weak, out=margin)
    # Davidson probability of the observed answer: p_weak + [observed side is the likelier
    # one] * (p_strong - p_weak) is exact for the unlikely side and accurate to rounding
    # relative to p_strong for the likely one, so an unlikely answer keeps its relative
    # precision ((1 - p_tie ± margin) / 2 would not). Ties (sign 0) are swapped in after.
    on_strong = np.multiply(diff, sign, out=scratch)
    np.greater_equal(on_strong, 0.0, out=on_strong)
    on_strong *= margin
    np.add(p_weak, on_strong, out=p_davidson)
    p_davidson *= data.not_tie[rows]
    p_davidson += np.multiply(p_tie, data.is_tie[rows], out=scratch)
    np.copysign(margin, diff, out=margin)  # P(left) - P(right)

    attentive.take(worker, out=responsibility, mode="clip")
    responsibility *= p_davidson
    inattentive.take(worker, out=likelihood, mode="clip")
    likelihood *= random_p.take(outcome, out=scratch, mode="clip")
    likelihood += responsibility
    np.maximum(likelihood, np.finfo(np.float64).tiny, out=likelihood)
    # Posterior probability that the worker was attentive on this comparison.
    responsibility /= likelihood
    np.log(likelihood, out=likelihood)
    if data.weighted:
        weight = data.weight[rows]
        responsibility *= weight
        likelihood *= weight
    sums.log_likelihood += float(likelihood.sum())

    margin -= sign
    margin *= responsibility
    # Added in place: a bincount makes an array of every item for each block, which at
    # 10^6 judgments (192k items, 75 blocks an evaluation) was quadratic: ~280 MB of fresh
    # pages faulted in per fit evaluation (numpy >= 1.25's add.at is a loop in C).
    np.add.at(sums.scores, left, margin)
    np.subtract.at(sums.scores, right, margin)
    sums.bias += np.bincount(worker, margin, sums.bias.size)
    sums.worker_resp += np.bincount(worker, responsibility, sums.worker_resp.size)
    sums.outcome_resp += np.bincount(outcome, responsibility, 3)
    # einsum rather than a BLAS dot: no thread start-up for a short vector.
    sums.tie_resp += float(np.einsum("i,i->", responsibility, p_tie))


def initial_params(data: WorkerAwareData, random_answer: RandomAnswer = "learned") -> np.ndarray:
    """Start from plain Bradley-Terry scores, no bias, a = 0.7 and the observed tie share.

    A start near the answer matters for speed: plain BT costs a fraction of one L-BFGS run.
    """
    share = np.array([1.0, 0.0, 0.5])[data.outcome]
    # Unit weights as none: the same pair table (wins are sums of 0, 1/2 and 1, exact either
    # way), collapsed without the weighted path's sorted copies of every column.
    weights = data.weight if data.weighted else None
    scores = bradley_terry(data.left, data.right, share, data.n_items, weights=weights).scores
    del share, weights
    total = max(float(data.weight.sum()), 1.0)
    shares = (np.bincount(data.outcome, data.weight, 3) + 1.0) / (total + 3.0)
    # Davidson at d = 0: P(tie) = ν / (2 + ν).
    tie_share = shares[OUTCOME_CODES["tie"]]
    log_tie = np.log(2.0 * tie_share / (1.0 - tie_share))
    random_logits = np.log(shares) - np.log(shares).mean()
    if random_answer == "uniform":
        random_logits = np.zeros(3)
    return np.concatenate(
        [
            scores,
            np.zeros(data.n_workers),
            np.full(data.n_workers, np.log(0.7 / 0.3)),
            [log_tie],
            random_logits,
        ]
    )


def fit_worker_aware(
    left: np.ndarray,
    right: np.ndarray,
    worker: np.ndarray,
    outcome: np.ndarray,
    n_items: int,
    n_workers: int,
    *,
    weights: np.ndarray | None = None,
    prior: WorkerAwarePrior | None = None,
    random_answer: RandomAnswer = "learned",
    tol: float = 1e-10,
    max_iter: int = 2_000,
) -> WorkerAwareResult:
    """Fit the worker-aware model (module docstring) by L-BFGS-B.

    Args:
        left, right: item codes in ``[0, n_items)``; ``left != right``.
        worker: worker codes in ``[0, n_workers)``.
        outcome: 1.0 when left won, 0.0 when right won, 0.5 for a tie.
        weights: non-negative weight per comparison (default 1).
        prior: prior strengths (default ``WorkerAwarePrior()``).
        random_answer: "learned" estimates the distribution of random answers; "uniform"
            fixes it at 1/3 each.
        tol: L-BFGS-B's ``ftol`` (relative decrease of the objective between iterations).
        max_iter: L-BFGS-B iteration cap; ``converged`` is False when it is hit.
    """
    data = WorkerAwareData.from_arrays(left, right, worker, outcome, n_items, n_workers, weights)
    return fit_data(data, prior=prior, random_answer=random_answer, tol=tol, max_iter=max_iter)


def fit_data(
    data: WorkerAwareData,
    *,
    prior: WorkerAwarePrior | None = None,
    random_answer: RandomAnswer = "learned",
    tol: float = 1e-10,
    max_iter: int = 2_000,
) -> WorkerAwareResult:
    """`fit_worker_aware` on comparisons already validated and coded (a caller that drops
    its own arrays first keeps them out of the L-BFGS-B run's memory)."""
    if random_answer not in ("learned", "uniform"):
        raise ValueError(f"random_answer must be 'learned' or 'uniform', got {random_answer!r}")
    prior = prior or WorkerAwarePrior()
    n_items, n_workers = data.n_items, data.n_workers
    start = initial_params(data, random_answer)

    # Diagonal preconditioning: optimise x = params * scale with scale ~ sqrt(curvature).
    scale = np.sqrt(
        np.concatenate(
            [
                0.25 * data.item_weight + prior.score_l2,
                0.25 * data.worker_weight + prior.bias_l2,
                0.25 * data.worker_weight + 1.0,
                np.full(_N_AUX, 0.25 * float(data.weight.sum()) + 1.0),
            ]
        )
    )

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = negative_log_likelihood_and_grad(x / scale, data, prior)
        return value, grad / scale

    # Only the fixed uniform random-answer logits are bounded (pinned at 0).
    bounds: list[tuple[float | None, float | None]] | None = None
    if random_answer == "uniform":
        bounds = [(None, None)] * (data.n_params - 3) + [(0.0, 0.0)] * 3
    result = minimize(
        objective,
        start * scale,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-8, "maxcor": 20},
    )
    params = np.asarray(result.x) / scale
    scores = params[:n_items]
    logit_a = params[n_items + n_workers : n_items + 2 * n_workers]
    random_logits = params[-3:]
    return WorkerAwareResult(
        scores=scores - scores.mean(),
        attentiveness=expit(logit_a),
        position_bias=params[n_items : n_items + n_workers].copy(),
        tie=float(np.exp(params[-_N_AUX])),
        random_answer=np.exp(random_logits - np.logaddexp.reduce(random_logits)),
        params=params,
        objective=float(result.fun),
        n_iter=int(result.nit),
        converged=bool(result.success),
        message=str(result.message),
    )


class WorkerAwareBT:
    """crowd-kit style worker-aware Bradley-Terry aggregator (module docstring).

    ``fit`` takes a DataFrame with columns ``worker``, ``left``, ``right`` (hashable ids),
    ``label`` in {"left", "right", "tie"} and an optional ``weight``.

    Learned attributes:
        scores_: pd.Series item -> log-strength (mean 0, name "score"), strongest first.
        attentiveness_: pd.Series worker -> ``a_w`` (name "attentiveness"), in ``workers_``
            order.
        position_bias_: pd.Series worker -> ``b_w`` (name "position_bias").
        tie_: Davidson's ``ν``.
        random_answer_: pd.Series left/right/tie -> probability of a random answer.
        converged_, n_iter_: L-BFGS-B's verdict and iteration count.
        result_: the underlying WorkerAwareResult (arrays in code order).
        items_, workers_: pd.Index of ids in code order (order of first appearance).
    """

    scores_: pd.Series
    attentiveness_: pd.Series
    position_bias_: pd.Series
    tie_: float
    random_answer_: pd.Series
    converged_: bool
    n_iter_: int
    result_: WorkerAwareResult
    items_: pd.Index
    workers_: pd.Index

    def __init__(
        self,
        score_l2: float = 0.1,
        bias_l2: float = 1.0,
        attention_prior: tuple[float, float] = (2.0, 1.0),
        tie_l2: float = 0.01,
        random_l2: float = 1.0,
        random_answer: RandomAnswer = "learned",
        tol: float = 1e-10,
        max_iter: int = 2_000,
    ) -> None:
        self.score_l2 = score_l2
        self.bias_l2 = bias_l2
        self.attention_prior = attention_prior
        self.tie_l2 = tie_l2
        self.random_l2 = random_l2
        self.random_answer: RandomAnswer = random_answer
        self.tol = tol
        self.max_iter = max_iter

    def __repr__(self) -> str:
        return (
            f"WorkerAwareBT(score_l2={self.score_l2}, bias_l2={self.bias_l2}, "
            f"attention_prior={self.attention_prior}, tie_l2={self.tie_l2}, "
            f"random_l2={self.random_l2}, random_answer={self.random_answer!r}, "
            f"tol={self.tol}, max_iter={self.max_iter})"
        )

    def fit(self, data: pd.DataFrame) -> WorkerAwareBT:
        missing = {"worker", "left", "right", "label"} - set(data.columns)
        if missing:
            raise ValueError(f"pairwise frame lacks columns {sorted(missing)}")
        # Categorical codes: Series.map on a million strings costs more than the fit's setup.
        label_codes = pd.Categorical(data["label"], categories=list(LABEL_OUTCOMES)).codes
        if np.any(label_codes < 0):
            bad = sorted(map(str, data.loc[label_codes < 0, "label"].unique()))
            raise ValueError(f"label must be one of left/right/tie, got {bad}")
        outcome = np.array(list(LABEL_OUTCOMES.values()))[label_codes]
        del label_codes
        if data["worker"].isna().any():
            raise ValueError("worker must not be missing")
        # One numbering over both columns so an item has the same code on either side (in
        # order of first appearance, as one factorisation of both gives).
        left, right, items = side_codes(data["left"], data["right"])
        if items.size == 0:
            raise ValueError("no comparisons to fit")
        wide_codes, workers = pd.factorize(data["worker"])
        worker_codes = wide_codes.astype(np.int32)
        del wide_codes
        weights = data["weight"].to_numpy(dtype=np.float64) if "weight" in data else None
        coded = WorkerAwareData.from_arrays(
            left, right, worker_codes, outcome, len(items), len(workers), weights
        )
        # Only the coded comparisons are alive through the fit.
        del left, right, worker_codes, outcome, weights
        self.result_ = fit_data(
            coded,
            prior=WorkerAwarePrior(
                score_l2=self.score_l2,
                bias_l2=self.bias_l2,
                attention_prior=self.attention_prior,
                tie_l2=self.tie_l2,
                random_l2=self.random_l2,
            ),
            random_answer=self.random_answer,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        del coded
        result = self.result_
        self.items_ = pd.Index(items, name="item")
        self.workers_ = pd.Index(workers, name="worker")
        scores = pd.Series(result.scores, index=self.items_, name="score")
        self.scores_ = scores.sort_values(ascending=False, kind="stable")
        self.attentiveness_ = pd.Series(
            result.attentiveness, index=self.workers_, name="attentiveness"
        )
        self.position_bias_ = pd.Series(
            result.position_bias, index=self.workers_, name="position_bias"
        )
        self.tie_ = result.tie
        self.random_answer_ = pd.Series(
            result.random_answer, index=pd.Index(list(OUTCOME_CODES), name="label"), name="p"
        )
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).scores_


def _codes(values: np.ndarray, size: int, name: str) -> np.ndarray:
    if size < 1:
        raise ValueError(f"the number of {name} codes must be >= 1, got {size}")
    codes = np.asarray(values)
    if codes.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{name} must hold integer codes")
    if codes.size and (codes.min() < 0 or codes.max() >= size):
        raise ValueError(f"{name} codes must be in [0, {size})")
    # int32 (no copy when they are already): see WorkerAwareData.
    return codes.astype(np.int32 if size <= 2**31 else np.int64, copy=False)
