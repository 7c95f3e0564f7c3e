"""Vectorised numpy Dawid-Skene: EM over one confusion matrix per worker.

Model (Dawid & Skene 1979): task ``j`` has a hidden true label ``z_j`` drawn from
``priors``; worker ``w`` answering a task whose true label is ``k`` says ``l`` with
probability ``confusions[w, k, l]`` (one row per true class, a distribution over the
observed labels). EM alternates

* **E-step**: ``log P(z_j = k | answers) = log prior_k + sum_answers log confusions[w, k, l]``
  up to a per-task constant, normalised with log-sum-exp (so it never overflows);
* **M-step**: ``confusions[w, k, l]`` proportional to the posterior mass of class ``k`` over
  the tasks where ``w`` said ``l``, plus ``smoothing``; ``priors`` are the mean posterior.

It starts from majority-vote shares (as crowd-kit does) and stops when the observed-data
log-likelihood per answer changes by less than ``tol`` between two iterations. crowd-kit
1.4.2 applies its ``tol`` to its own evidence-lower-bound estimate instead (which adds the
log-prior once per answer rather than once per task); near the optimum that quantity still
moves by ~1e-4 per answer per iteration when the log-likelihood moves by < 1e-5, so at the
same ``tol`` crowd-kit typically runs 2-3x more iterations. Predicted labels then agree on
99-99.95 % of tasks (the rest sit near a decision boundary, where EM creeps along a flat
ridge of the likelihood) at the same accuracy (0.9386 vs crowd-kit's 0.9382 averaged over
40 simulated binary data sets).

Every sum over answers is an ``np.bincount`` scatter-add over the answers' integer codes
(one call per class, the only Python loop): there is no loop over answers, tasks or
workers, so an iteration costs a few passes over ``n_answers * n_labels`` floats.

Smoothing. ``smoothing`` is a Laplace pseudo-count added to every confusion cell
``(w, k, l)`` whose observed label ``l`` the worker ``w`` has used at least once, so every
probability the likelihood ever looks up is > 0 and no ``log(0)`` happens. Cells of labels
a worker never used stay exactly 0: they never enter the likelihood, and smoothing them too
would make a worker who always gives the same answer look informative (the mass moved onto
the unused labels differs between true classes), whereas that worker carries no
information at all: ``confusions[w, k, l] = 1`` for every class ``k``, as in crowd-kit.
Priors are the mean posterior, floored at ``_PRIOR_FLOOR`` before their log is taken.

``NumpyDawidSkene`` is the estimator over a long ``task``/``worker``/``label`` frame, with
the attributes of ``crowdloop.aggregation.verdicts.DawidSkene`` (``probas_``, ``labels_``,
``priors_``, ``errors_``, ``skills_``). It never returns NaN, also for one label, one
worker, one task or no answers at all.

A. P. Dawid and A. M. Skene. Maximum Likelihood Estimation of Observer Error-Rates Using
the EM Algorithm. Journal of the Royal Statistical Society C 28(1), 20-28 (1979).
https://doi.org/10.2307/2346806
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

__all__ = ["DSResult", "NumpyDawidSkene", "dawid_skene"]

_COLUMNS: Final[tuple[str, str, str]] = ("task", "worker", "label")
# Floor of a class prior before its log is taken: a class whose posterior mass underflowed
# to 0 gets a very small but finite log-prior (and can come back if the data say so).
_PRIOR_FLOOR: Final[float] = 1e-300


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class DSResult:
    """Fitted Dawid-Skene model (all arrays float64, in code order).

    Attributes:
        posteriors: ``(n_tasks, n_labels)``, P(true label of task = k | answers); rows sum
            to 1. A task without answers gets the priors.
        confusions: ``(n_workers, n_labels, n_labels)``, ``confusions[w, k, l]`` =
            P(worker w answers l | true label k); each row ``[w, k, :]`` sums to 1 and is 0
            on the labels ``w`` never used. A worker without answers gets uniform rows.
        priors: ``(n_labels,)``, estimated share of each true label; sums to 1.
        n_iter: EM iterations run (one M-step followed by one E-step each).
        converged: whether the log-likelihood per answer changed by less than ``tol``.
        log_likelihood: observed-data log-likelihood ``sum_j log sum_k prior_k
            prod_answers confusions[w, k, l]`` of ``priors``/``confusions`` (``posteriors``
            are the E-step of the same parameters).
    """

    posteriors: np.ndarray
    confusions: np.ndarray
    priors: np.ndarray
    n_iter: int
    converged: bool
    log_likelihood: float


@dataclass(frozen=True, eq=False)
class _Cells:
    """Codes of the answers that the EM scatter-adds use (built once per fit)."""

    tasks: np.ndarray  # (n_answers,): task code of each answer
    worker_label: np.ndarray  # (n_answers,): worker * K + observed label, a "cell"
    used: np.ndarray  # (n_workers * K,) bool: the worker used the label at least once
    answered: np.ndarray  # (n_tasks,) bool: the task has at least one answer
    all_answered: bool
    n_workers: int
    n_labels: int


def dawid_skene(
    task_idx: np.ndarray,
    worker_idx: np.ndarray,
    label_idx: np.ndarray,
    n_tasks: int,
    n_workers: int,
    n_labels: int,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
    smoothing: float = 0.01,
) -> DSResult:
    """Fit Dawid-Skene by EM to integer-coded answers (one array element per answer).

    Args:
        task_idx: task code of each answer, ``0 <= code < n_tasks``.
        worker_idx: worker code of each answer, ``0 <= code < n_workers``.
        label_idx: observed label code of each answer, ``0 <= code < n_labels``.
        n_tasks, n_workers, n_labels: sizes of the code ranges (codes may be unused).
        n_iter: maximum number of EM iterations; 0 returns the majority-vote shares with
            the parameters fitted to them.
        tol: stop when the log-likelihood per answer changes by less than this.
        smoothing: Laplace pseudo-count (> 0) per confusion cell of a label the worker used.

    Returns:
        DSResult; see its docstring for shapes and conventions.
    """
    tasks, workers, labels = _validated_codes(
        task_idx, worker_idx, label_idx, n_tasks, n_workers, n_labels
    )
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise ValueError(f"smoothing must be a finite number > 0, got {smoothing}")
    n_labels_ = int(n_labels)
    if tasks.size == 0:
        uniform = np.full(n_labels_, 1.0 / n_labels_)
        return DSResult(
            posteriors=np.tile(uniform, (n_tasks, 1)),
            confusions=np.full((n_workers, n_labels_, n_labels_), 1.0 / n_labels_),
            priors=uniform,
            n_iter=0,
            converged=True,
            log_likelihood=0.0,
        )

    worker_label = workers * n_labels_ + labels
    answered = np.bincount(tasks, minlength=n_tasks) > 0
    cells = _Cells(
        tasks=tasks,
        worker_label=worker_label,
        used=np.bincount(worker_label, minlength=n_workers * n_labels_) > 0,
        answered=answered,
        all_answered=bool(answered.all()),
        n_workers=n_workers,
        n_labels=n_labels_,
    )
    # Internally posteriors are class-major, (K, n_tasks): every gather and scatter-add is
    # then over a contiguous 1-D row, and reductions over classes are elementwise.
    posteriors = _majority_vote(cells, labels)
    confusions, priors = _m_step(posteriors, cells, smoothing)
    if n_iter == 0:
        _, log_likelihood = _e_step(confusions, priors, cells)
        return DSResult(posteriors.T.copy(), confusions, priors, 0, False, log_likelihood)

    threshold = tol * tasks.size  # tol is per answer, as in crowd-kit
    previous = -np.inf
    converged = False
    iterations = 0
    while iterations < n_iter:
        iterations += 1
        if iterations > 1:
            confusions, priors = _m_step(posteriors, cells, smoothing)
        posteriors, log_likelihood = _e_step(confusions, priors, cells)
        if abs(log_likelihood - previous) < threshold:
            converged = True
            break
        previous = log_likelihood
    return DSResult(posteriors.T.copy(), confusions, priors, iterations, converged, log_likelihood)


def _validated_codes(
    task_idx: np.ndarray,
    worker_idx: np.ndarray,
    label_idx: np.ndarray,
    n_tasks: int,
    n_workers: int,
    n_labels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    if n_tasks < 0 or n_workers < 0:
        raise ValueError("n_tasks and n_workers must be >= 0")
    arrays = [np.asarray(codes) for codes in (task_idx, worker_idx, label_idx)]
    if any(codes.ndim != 1 for codes in arrays) or len({codes.size for codes in arrays}) != 1:
        raise ValueError("task_idx, worker_idx and label_idx must be 1-D of the same length")
    result: list[np.ndarray] = []
    for name, codes, size in zip(
        ("task_idx", "worker_idx", "label_idx"), arrays, (n_tasks, n_workers, n_labels), strict=True
    ):
        if codes.size and not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"{name} must hold integer codes")
        codes = codes.astype(np.int64, copy=False)
        if codes.size and (codes.min() < 0 or codes.max() >= size):
            raise ValueError(f"{name} codes must be in [0, {size})")
        result.append(codes)
    return result[0], result[1], result[2]


def _majority_vote(cells: _Cells, labels: np.ndarray) -> np.ndarray:
    """Vote shares, class-major ``(K, n_tasks)``; unanswered tasks get uniform shares."""
    n_tasks, n_labels = cells.answered.size, cells.n_labels
    votes = np.bincount(labels * n_tasks + cells.tasks, minlength=n_labels * n_tasks)
    votes = votes.reshape(n_labels, n_tasks).astype(np.float64)
    totals = votes.sum(axis=0)
    # Unanswered tasks: uniform for now; the first E-step gives them the priors.
    return np.divide(votes, totals, out=np.full_like(votes, 1.0 / n_labels), where=totals > 0)


def _m_step(
    posteriors: np.ndarray, cells: _Cells, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Confusions ``(W, K, K)`` and priors ``(K,)`` from class-major posteriors."""
    n_workers, n_labels = cells.n_workers, cells.n_labels
    n_cells = n_workers * n_labels
    # mass[k, w * K + l]: posterior mass of true class k over the answers where w said l.
    mass = np.empty((n_labels, n_cells))
    for k in range(n_labels):  # a loop over classes only: each pass is one bincount
        mass[k] = np.bincount(
            cells.worker_label, weights=posteriors[k][cells.tasks], minlength=n_cells
        )
    mass += smoothing * cells.used
    counts = mass.reshape(n_labels, n_workers, n_labels).transpose(1, 0, 2)  # [w, k, l]
    totals = counts.sum(axis=2, keepdims=True)
    confusions = np.divide(
        counts, totals, out=np.full_like(counts, 1.0 / n_labels), where=totals > 0
    )
    share = (posteriors if cells.all_answered else posteriors[:, cells.answered]).mean(axis=1)
    priors = np.maximum(share, _PRIOR_FLOOR)
    return confusions, priors / priors.sum()


def _e_step(confusions: np.ndarray, priors: np.ndarray, cells: _Cells) -> tuple[np.ndarray, float]:
    """Class-major posteriors ``(K, n_tasks)`` and the log-likelihood of the parameters."""
    n_workers, n_labels = cells.n_workers, cells.n_labels
    n_tasks = cells.answered.size
    # log_lookup[k, w * K + l] = log confusions[w, k, l]. Only used cells are ever gathered
    # and those are > 0 thanks to the smoothing; unused cells are set to log(1) = 0.
    by_cell = confusions.transpose(1, 0, 2).reshape(n_labels, n_workers * n_labels)
    log_lookup = np.log(np.where(cells.used, by_cell, 1.0))
    scores = np.empty((n_labels, n_tasks))
    log_priors = np.log(priors)
    for k in range(n_labels):
        scores[k] = np.bincount(
            cells.tasks, weights=log_lookup[k][cells.worker_label], minlength=n_tasks
        )
        scores[k] += log_priors[k]
    top = scores.max(axis=0)
    scores -= top
    posteriors = np.exp(scores, out=scores)
    totals = posteriors.sum(axis=0)
    posteriors /= totals
    # Unanswered tasks contribute log(sum_k prior_k) = 0.
    per_task = top + np.log(totals)
    log_likelihood = float((per_task if cells.all_answered else per_task[cells.answered]).sum())
    return posteriors, log_likelihood


class NumpyDawidSkene:
    """Dawid-Skene over a long ``task``/``worker``/``label`` frame (numpy EM, no NaN).

    Drop-in for ``crowdloop.aggregation.verdicts.DawidSkene``: same constructor arguments
    (plus ``smoothing``), same learned attributes with the same index and column layout.
    Tasks, workers and labels are coded in sorted order (labels of mixed types by their
    ``str`` form); ties of the maximum posterior go to the label that sorts first.

    Learned attributes:
        probas_: DataFrame (index ``task``, columns ``label`` in sorted order): posteriors.
        labels_: Series task -> maximum-posterior label (name ``agg_label``).
        priors_: Series label -> estimated share of tasks with that true label.
        errors_: DataFrame indexed by (worker, observed label), one column per true label:
            P(worker answers observed | true label). Only labels a worker used appear, and
            each worker's columns sum to 1 over them.
        skills_: Series worker -> expected accuracy, sum_k prior_k * P(answer k | true k).
        result_: the underlying DSResult (arrays in the code order of the indexes above).
    """

    probas_: pd.DataFrame
    labels_: pd.Series
    priors_: pd.Series
    errors_: pd.DataFrame
    skills_: pd.Series
    result_: DSResult

    def __init__(self, n_iter: int = 100, tol: float = 1e-5, smoothing: float = 0.01) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def __repr__(self) -> str:
        return f"NumpyDawidSkene(n_iter={self.n_iter}, tol={self.tol}, smoothing={self.smoothing})"

    def fit(self, data: pd.DataFrame) -> NumpyDawidSkene:
        missing = set(_COLUMNS) - set(data.columns)
        if missing:
            raise ValueError(f"verdict frame lacks columns {sorted(missing)}")
        answers = data.loc[:, list(_COLUMNS)]
        if answers.isna().any().any():
            raise ValueError("task, worker and label must not be missing")
        task_codes, tasks = _sorted_codes(answers["task"], "task")
        worker_codes, workers = _sorted_codes(answers["worker"], "worker")
        label_codes, labels = _sorted_codes(answers["label"], "label")
        n_labels = len(labels)
        result = dawid_skene(
            task_codes,
            worker_codes,
            label_codes,
            len(tasks),
            len(workers),
            max(n_labels, 1),  # no answers at all: one placeholder class, no rows anywhere
            n_iter=self.n_iter,
            tol=self.tol,
            smoothing=self.smoothing,
        )
        self.result_ = result
        posteriors = result.posteriors[:, :n_labels]
        self.probas_ = pd.DataFrame(posteriors, index=tasks, columns=labels)
        if len(tasks):
            best = labels.take(posteriors.argmax(axis=1))
            self.labels_ = pd.Series(best, index=tasks, name="agg_label")
        else:
            self.labels_ = pd.Series([], index=tasks, dtype=object, name="agg_label")
        self.priors_ = pd.Series(result.priors[:n_labels], index=labels, name="prior")
        used = np.bincount(worker_codes * n_labels + label_codes, minlength=len(workers) * n_labels)
        worker_rows, label_rows = np.nonzero(used.reshape(len(workers), n_labels))
        # confusions[w, :, l] is the column "P(observed l | true k)" for every true k.
        errors = result.confusions.transpose(0, 2, 1)[worker_rows, label_rows, :n_labels]
        self.errors_ = pd.DataFrame(
            errors,
            index=pd.MultiIndex.from_arrays(
                [workers.take(worker_rows), labels.take(label_rows)], names=["worker", "label"]
            ),
            columns=labels,
        )
        diagonal = np.diagonal(result.confusions, axis1=1, axis2=2)[:, :n_labels]
        self.skills_ = pd.Series(diagonal @ result.priors[:n_labels], index=workers, name="skill")
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_

    def fit_predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        return self.fit(data).probas_


def _sorted_codes(values: pd.Series, name: str) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and the unique values in sorted order (by ``str`` for mixed types)."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # values that do not compare (e.g. str and int): sort by their str
        codes, uniques = pd.factorize(values, sort=False)
        order = np.asarray(sorted(range(len(uniques)), key=lambda i: str(uniques[i])))
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        codes, uniques = rank[codes], uniques.take(order)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques, name=name)
