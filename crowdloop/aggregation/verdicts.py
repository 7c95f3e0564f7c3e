"""Aggregation of categorical verdicts (e.g. "is this response acceptable?") over workers.

Input is a long frame with one row per answer: ``task``, ``worker``, ``label``.

* ``MajorityVote``: vote shares per task; ties between labels go to the label that sorts
  first (``sorted`` on the labels, falling back to their ``str`` form for mixed types), so
  the result never depends on row order.
* ``DawidSkene``: wraps ``crowdloop.aggregation.dawid_skene.NumpyDawidSkene`` (vectorised
  numpy EM over per-worker confusion matrices, ~50x faster than crowd-kit's at equal
  accuracy; its ``tol`` is on the log-likelihood per answer). It learns that spammers'
  answers carry no information, which majority vote cannot. Any task whose posterior comes
  back non-finite, and the one-label case, fall back to majority-vote shares, so callers
  never see NaN.
* ``WeightedVote``: a regularised Dawid-Skene for sparse data. Each worker's confusion
  matrix has a Dirichlet prior centred on the crowd's pooled confusion matrix, worth
  ``prior_strength`` answers, so a worker seen a handful of times votes with the crowd's
  weight and only evidence (golden items, clamped at their known label, and many answers)
  moves it. Plain Dawid-Skene fits a matrix per worker from three or four answers and
  overturned unanimous votes on the demo's verification data (issue 14); this does not
  unless the voters are shown to be unreliable.
  Its ``evidence_`` is the posterior with the verdicts' prevalence divided out: what the
  answers alone say. With 90% of texts good, a 2-2 split among equally trusted verifiers
  is a 0.9 accept; its evidence is 0.5.
* ``aggregate_verdicts``: one row per task with the chosen label, its posterior and the
  answers' own evidence for it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Literal

import numpy as np
import pandas as pd

from crowdloop.aggregation.dawid_skene import NumpyDawidSkene

__all__ = ["DawidSkene", "MajorityVote", "WeightedVote", "aggregate_verdicts"]

_COLUMNS = ("task", "worker", "label")


class MajorityVote:
    """Majority vote with deterministic tie-breaking (first label in sorted order).

    Learned attributes:
        probas_: DataFrame (index task, one column per label in sorted order) of vote shares.
        labels_: Series task -> label with the largest share.
    """

    probas_: pd.DataFrame
    labels_: pd.Series

    def fit(self, data: pd.DataFrame) -> MajorityVote:
        answers = _validated(data)
        self.probas_ = _vote_shares(answers)
        self.labels_ = _most_probable(self.probas_)
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_


class DawidSkene:
    """Dawid-Skene EM aggregation (numpy EM, see dawid_skene.py) that never returns NaN.

    Learned attributes:
        probas_: DataFrame (index task, columns labels in sorted order): posterior of each
            true label.
        labels_: Series task -> maximum-posterior label (ties as in MajorityVote).
        priors_: Series label -> estimated share of tasks with that true label.
        errors_: DataFrame indexed by (worker, observed label), one column per true label:
            P(worker answers observed | true label). Only labels a worker used appear.
        skills_: Series worker -> expected accuracy, sum_k prior_k * P(answer k | true k).
    """

    probas_: pd.DataFrame
    labels_: pd.Series
    priors_: pd.Series
    errors_: pd.DataFrame
    skills_: pd.Series

    def __init__(self, n_iter: int = 100, tol: float = 1e-6) -> None:
        self.n_iter = n_iter
        self.tol = tol

    def __repr__(self) -> str:
        return f"DawidSkene(n_iter={self.n_iter}, tol={self.tol})"

    def fit(self, data: pd.DataFrame) -> DawidSkene:
        answers = _validated(data)
        shares = _vote_shares(answers)
        if answers.empty or shares.shape[1] == 1:
            # EM has nothing to learn with one label: every posterior is 1 for it.
            self._fit_degenerate(answers, shares)
            return self
        model = NumpyDawidSkene(n_iter=self.n_iter, tol=self.tol).fit(answers)
        self.probas_ = _guard_posteriors(model.probas_, shares)
        self.labels_ = _most_probable(self.probas_)
        self.priors_ = model.priors_.reindex(shares.columns).fillna(0.0).rename("prior")
        self.errors_ = model.errors_.reindex(columns=shares.columns).fillna(0.0).sort_index()
        self.skills_ = _skills(self.errors_, self.priors_)
        return self

    def fit_predict(self, data: pd.DataFrame) -> pd.Series:
        return self.fit(data).labels_

    def _fit_degenerate(self, answers: pd.DataFrame, shares: pd.DataFrame) -> None:
        self.probas_ = shares
        self.labels_ = _most_probable(shares)
        self.priors_ = pd.Series(1.0, index=shares.columns, name="prior")
        index = pd.MultiIndex.from_frame(answers[["worker", "label"]].drop_duplicates())
        self.errors_ = pd.DataFrame(1.0, index=index, columns=shares.columns).sort_index()
        workers = pd.Index(answers["worker"].unique(), name="worker")
        self.skills_ = pd.Series(1.0, index=workers, name="skill").sort_index()


class WeightedVote:
    """Dawid-Skene with a pooled prior on every worker's confusion matrix (see module doc).

    Learned attributes:
        probas_: DataFrame (index task, columns labels in sorted order): posteriors.
        labels_: Series task -> maximum-posterior label (ties as in MajorityVote).
        pooled_: DataFrame (true label x observed label): the crowd's confusion matrix.
        errors_: dict worker -> DataFrame (true x observed): each worker's matrix.
        prevalence_: Series label -> share among real (not golden) texts.
        evidence_: DataFrame like probas_: the posterior under a flat prior (golden tasks
            at their label).
    """

    probas_: pd.DataFrame
    labels_: pd.Series
    pooled_: pd.DataFrame
    errors_: dict[Hashable, pd.DataFrame]
    prevalence_: pd.Series
    evidence_: pd.DataFrame

    def __init__(
        self,
        prior_strength: float = 8.0,
        pool_strength: float = 20.0,
        prior_accuracy: float = 0.8,
        n_iter: int = 100,
        tol: float = 1e-6,
    ) -> None:
        self.prior_strength = prior_strength
        self.pool_strength = pool_strength
        self.prior_accuracy = prior_accuracy
        self.n_iter = n_iter
        self.tol = tol

    def fit(
        self, data: pd.DataFrame, golden: Mapping[Hashable, Hashable] | None = None
    ) -> WeightedVote:
        """`golden`: task -> known label; those tasks stay at their label and teach the
        workers' matrices (a label no worker used is ignored)."""
        answers = _validated(data)
        shares = _vote_shares(answers)
        labels = list(shares.columns)
        tasks = shares.index
        if answers.empty:
            self.probas_, self.labels_ = shares, _most_probable(shares)
            self.pooled_, self.errors_ = pd.DataFrame(), {}
            self.prevalence_, self.evidence_ = pd.Series(dtype=np.float64), shares
            return self
        k = len(labels)
        t_idx = tasks.get_indexer(answers["task"])
        workers = pd.Index(pd.unique(answers["worker"]))
        w_idx = workers.get_indexer(answers["worker"])
        l_idx = pd.Index(labels).get_indexer(answers["label"])
        onehot = np.eye(k)[l_idx]  # answers x observed
        clamp = np.zeros((len(tasks), k))
        clamped = np.zeros(len(tasks), dtype=bool)
        for task, label in (golden or {}).items():
            if task in tasks and label in labels:
                row = tasks.get_loc(task)
                clamp[row, labels.index(label)] = 1.0
                clamped[row] = True
        q = shares.to_numpy(dtype=np.float64).copy()
        q[clamped] = clamp[clamped]
        off = (1.0 - self.prior_accuracy) / max(k - 1, 1)
        base = self.pool_strength * np.where(np.eye(k) > 0, self.prior_accuracy, off)
        free = ~clamped
        for _ in range(self.n_iter):
            # The verdicts' prevalence among real texts only: the golden set's mix of
            # verdicts is a design choice (mostly known-bad texts, to catch rubber-stampers),
            # and golden items outnumber real ones when verifiers are assessed early.
            pi = (q[free].sum(axis=0) + 1.0) / (int(free.sum()) + k)
            # counts[w, true, observed]
            per_answer = q[t_idx][:, :, None] * onehot[:, None, :]
            counts = np.zeros((len(workers), k, k))
            np.add.at(counts, w_idx, per_answer)
            # The pooled matrix has its own prior (diagonal `prior_accuracy`, worth
            # `pool_strength` answers per true label): on a few tasks that are nearly all
            # one label, the row of the other label would otherwise be learned from nothing.
            pooled = counts.sum(axis=0) + base
            pooled /= pooled.sum(axis=1, keepdims=True)
            errors = counts + self.prior_strength * pooled[None, :, :]
            errors /= errors.sum(axis=2, keepdims=True)
            log_e = np.log(errors)
            # log P(answer | true k) per answer: log_e[w, :, observed]
            contrib = log_e[w_idx, :, l_idx]
            log_q = np.tile(np.log(pi), (len(tasks), 1))
            np.add.at(log_q, t_idx, contrib)
            log_q -= log_q.max(axis=1, keepdims=True)
            new_q = np.exp(log_q)
            new_q /= new_q.sum(axis=1, keepdims=True)
            new_q[clamped] = clamp[clamped]
            delta = float(np.abs(new_q - q).max())
            q = new_q
            if delta < self.tol:
                break
        self.probas_ = _guard_posteriors(pd.DataFrame(q, index=tasks, columns=labels), shares)
        self.labels_ = _most_probable(self.probas_)
        self.prevalence_ = pd.Series(pi, index=labels)
        flat = self.probas_.to_numpy() / pi[None, :]
        flat /= flat.sum(axis=1, keepdims=True)
        flat[clamped] = clamp[clamped]
        self.evidence_ = _guard_posteriors(pd.DataFrame(flat, index=tasks, columns=labels), shares)
        self.pooled_ = pd.DataFrame(pooled, index=labels, columns=labels)
        self.errors_ = {
            w: pd.DataFrame(errors[i], index=labels, columns=labels) for i, w in enumerate(workers)
        }
        return self


def aggregate_verdicts(
    data: pd.DataFrame,
    method: Literal["majority_vote", "dawid_skene", "weighted_vote"] = "weighted_vote",
    golden: Mapping[Hashable, Hashable] | None = None,
) -> pd.DataFrame:
    """One row per task: ``task``, ``label`` (aggregated), ``confidence`` (its posterior)
    and ``evidence`` (the label's posterior under a flat prior: the weighted vote's
    `evidence_`; the confidence for the other methods).

    For majority vote the "posterior" is the winning vote share. Rows are sorted by task.
    `golden` (task -> known label) is used by the weighted vote only.
    """
    model: MajorityVote | DawidSkene | WeightedVote
    if method == "majority_vote":
        model = MajorityVote().fit(data)
    elif method == "dawid_skene":
        model = DawidSkene().fit(data)
    elif method == "weighted_vote":
        model = WeightedVote().fit(data, golden)
    else:
        raise ValueError(f"unknown aggregation method {method!r}")
    probas = model.probas_
    labels = model.labels_
    if probas.empty:
        empty = np.array([], dtype=float)
        return pd.DataFrame({"task": [], "label": [], "confidence": empty, "evidence": empty})
    column = probas.columns.get_indexer(labels.reindex(probas.index))
    rows = np.arange(len(probas))
    confidence = probas.to_numpy(dtype=np.float64)[rows, column]
    evidence = (
        model.evidence_.reindex(index=probas.index, columns=probas.columns).to_numpy()[rows, column]
        if isinstance(model, WeightedVote)
        else confidence
    )
    result = pd.DataFrame(
        {"task": probas.index.to_numpy(), "label": labels.to_numpy(), "confidence": confidence,
         "evidence": evidence}
    )  # fmt: skip
    return result.sort_values("task", kind="stable", ignore_index=True)


def _validated(data: pd.DataFrame) -> pd.DataFrame:
    missing = set(_COLUMNS) - set(data.columns)
    if missing:
        raise ValueError(f"verdict frame lacks columns {sorted(missing)}")
    answers = data.loc[:, list(_COLUMNS)]
    if answers.isna().any().any():
        raise ValueError("task, worker and label must not be missing")
    return answers.reset_index(drop=True)


def _sorted_labels(labels: Iterable[Hashable]) -> list[Hashable]:
    unique = list(dict.fromkeys(labels))
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:  # mixed label types: str order is still deterministic
        return sorted(unique, key=str)


def _vote_shares(answers: pd.DataFrame) -> pd.DataFrame:
    counts = pd.crosstab(answers["task"], answers["label"])
    counts = counts.reindex(columns=_sorted_labels(counts.columns))
    shares = counts.div(counts.sum(axis=1), axis=0).astype(np.float64)
    shares.index.name, shares.columns.name = "task", "label"
    return shares


def _most_probable(probas: pd.DataFrame) -> pd.Series:
    # argmax returns the first maximum; columns are in sorted label order, hence the tie rule.
    if probas.empty:
        return pd.Series([], index=probas.index, dtype=object, name="agg_label")
    best = probas.to_numpy(dtype=np.float64).argmax(axis=1)
    return pd.Series(probas.columns[best], index=probas.index, name="agg_label")


def _guard_posteriors(probas: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """Align EM posteriors to the vote-share frame; replace broken rows by shares."""
    posterior = probas.reindex(index=shares.index, columns=shares.columns).astype(np.float64)
    values = posterior.to_numpy()
    totals = values.sum(axis=1)
    broken = ~np.isfinite(values).all(axis=1) | ~(totals > 0)
    values = np.where(
        broken[:, None], shares.to_numpy(), values / np.where(broken, 1.0, totals)[:, None]
    )
    return pd.DataFrame(values, index=shares.index, columns=shares.columns)


def _skills(errors: pd.DataFrame, priors: pd.Series) -> pd.Series:
    """Expected accuracy per worker: the prior-weighted diagonal of the confusion matrix."""
    observed = errors.index.get_level_values("label")
    diagonal_column = errors.columns.get_indexer(observed)
    on_diagonal = diagonal_column >= 0
    rows = np.flatnonzero(on_diagonal)
    correct = errors.to_numpy(dtype=np.float64)[rows, diagonal_column[on_diagonal]]
    weighted = correct * priors.to_numpy(dtype=np.float64)[diagonal_column[on_diagonal]]
    workers = errors.index.get_level_values("worker")[rows]
    skills = pd.Series(weighted, index=workers).groupby(level=0).sum()
    every_worker = pd.Index(errors.index.get_level_values("worker").unique(), name="worker")
    return skills.reindex(every_worker, fill_value=0.0).sort_index().rename("skill")
