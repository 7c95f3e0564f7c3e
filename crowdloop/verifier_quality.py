"""Verifiers held to account from every verification answer: the verification analogue of
the comparison engine's content-blind posterior (`crowdloop.quality.assess_crowd`).

A verifier who accepts everything, rejects nearly everything or answers at random gives
answers that do not follow the text. Every answer a worker gave is read against two models:

* **content-dependent**: the answer is the text's true verdict with the worker's accuracy
  ``q`` (integrated over ``accuracy_grid``). The true verdict of a golden item is its
  known one with probability ``clear_cut``; of a real text, the pooled weighted vote's
  posterior (`crowdloop.aggregation.verdicts.WeightedVote`, golden items at their verdict)
  with this worker's own answer taken out, so a worker never vouches for themself;
* **content-blind**: the answers are draws from the worker's own fixed accept rate,
  whatever the text (Beta(1, 1) marginal likelihood).

Their Bayes factor, with the crowd's share of content-blind verifiers learned from the
whole crowd (empirical Bayes, ``Beta(*prior_blind)`` hyperprior), gives one posterior
``p_blind`` per worker. The truth is fitted twice: the second time without the answers of
workers the first pass found content-blind, so that a crowd full of rubber-stampers does
not make a bad text look good and the careful worker who rejected it look harsh.

With a handful of answers per verifier (the demo's size) the evidence that convicts is a
known-bad text accepted, a known-good one rejected, or a text everyone careful agrees on
answered the other way; one slip by an honest verifier is not enough (see
`VerifierPolicy.blind_confidence`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdloop.aggregation.verdicts import WeightedVote
from crowdloop.quality import _dirichlet_log_ml, _logmeanexp, _sigmoid

__all__ = ["VerifierPolicy", "assess_verifiers"]


@dataclass(frozen=True)
class VerifierPolicy:
    """Thresholds of `assess_verifiers` (see the module docstring).

    ``blind_confidence`` 0.9 rather than the comparison engine's 0.95: a verifier gives a
    handful of answers, so the posterior of a rubber-stamper after three or four golden
    items is 0.8-0.99; an honest verifier (accuracy 0.93) reaches 0.9 only after getting
    two of four golden items wrong."""

    blind_confidence: float = 0.9
    accuracy_grid: tuple[float, ...] = (0.75, 0.85, 0.95)
    clear_cut: float = 0.97
    prior_blind: tuple[float, float] = (1.0, 4.0)
    # Below this many answers nobody is blocked, whatever the evidence.
    min_answers: int = 2

    def __post_init__(self) -> None:
        if not 0.5 < self.blind_confidence < 1:
            raise ValueError("blind_confidence must be in (0.5, 1)")
        if not self.accuracy_grid or not all(0.5 < q < 1 for q in self.accuracy_grid):
            raise ValueError("accuracy_grid values must be in (0.5, 1)")
        if not 0.5 < self.clear_cut < 1:
            raise ValueError("clear_cut must be in (0.5, 1)")


def assess_verifiers(frame: pd.DataFrame, policy: VerifierPolicy | None = None) -> pd.DataFrame:
    """One posterior per verifier from all their verification answers.

    Args:
        frame: one row per answer: ``task``, ``worker``, ``label`` and ``golden`` (the
            known verdict of a golden item, None for a real text).

    Returns:
        One row per worker, sorted by worker: ``answers``, ``golden_total``,
        ``golden_correct``, ``accept_rate``, ``log_bf`` (content-blind vs dependent),
        ``p_blind``, ``blind`` (p_blind at least ``blind_confidence`` on at least
        ``min_answers`` answers) and ``prior_blind`` (the crowd's learned share).
    """
    policy = policy or VerifierPolicy()
    columns = ["worker", "answers", "golden_total", "golden_correct", "accept_rate",
               "log_bf", "p_blind", "blind", "prior_blind"]  # fmt: skip
    needed = {"task", "worker", "label", "golden"}
    if missing := needed - set(frame.columns):
        raise ValueError(f"verification frame lacks columns {sorted(missing)}")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.reset_index(drop=True)
    labels = sorted(set(frame["label"]) | set(frame["golden"].dropna()))
    k = max(len(labels), 2)
    label = pd.Index(labels).get_indexer(frame["label"])
    workers, wcode = np.unique(frame["worker"].astype(str).to_numpy(), return_inverse=True)
    n_w = len(workers)
    counts = np.zeros((n_w, k))
    np.add.at(counts, (wcode, label), 1.0)
    log_blind = _dirichlet_log_ml(counts)
    golden = frame["golden"].to_numpy(dtype=object)
    is_golden = pd.notna(frame["golden"]).to_numpy()
    grid = np.asarray(policy.accuracy_grid, dtype=np.float64)

    keep = np.ones(len(frame), dtype=bool)
    p_blind = np.zeros(n_w)
    prior = 0.2
    for _ in range(2):
        truth = _truth_without_own_answer(frame, keep, labels)
        g_rows = np.flatnonzero(is_golden)
        g_label = pd.Index(labels).get_indexer(golden[g_rows])
        truth[g_rows] = (1.0 - policy.clear_cut) / (k - 1)
        truth[g_rows, g_label] = policy.clear_cut
        # P(answer | q) = P(truth = answer) q + P(truth != answer) (1 - q) / (k - 1).
        p_same = truth[np.arange(len(frame)), label][:, None]
        lik = p_same * grid[None, :] + (1 - p_same) * (1 - grid[None, :]) / (k - 1)
        per_worker = np.zeros((n_w, grid.size))
        np.add.at(per_worker, wcode, np.log(lik))
        log_bf = log_blind - _logmeanexp(per_worker)
        for _ in range(20):  # empirical Bayes: the crowd's share of content-blind verifiers
            p_blind = _sigmoid(np.log(prior / (1 - prior)) + log_bf)
            a, b = policy.prior_blind
            prior = float(np.clip((a - 1 + p_blind.sum()) / (a + b - 2 + n_w), 0.01, 0.5))
        keep = p_blind[wcode] < 0.5
    answers = counts.sum(axis=1)
    correct = is_golden & (frame["label"].to_numpy(dtype=object) == golden)
    accept = labels.index("accept") if "accept" in labels else 0
    return pd.DataFrame(
        {
            "worker": workers,
            "answers": answers.astype(np.int64),
            "golden_total": np.bincount(wcode, is_golden, n_w).astype(np.int64),
            "golden_correct": np.bincount(wcode, correct, n_w).astype(np.int64),
            "accept_rate": counts[:, accept] / np.maximum(answers, 1),
            "log_bf": log_bf,
            "p_blind": p_blind,
            "blind": (p_blind >= policy.blind_confidence) & (answers >= policy.min_answers),
            "prior_blind": prior,
        },
        columns=columns,
    )


def _truth_without_own_answer(
    frame: pd.DataFrame, keep: np.ndarray, labels: list[Hashable]
) -> np.ndarray:
    """Per answer, P(true verdict) of its task from the other kept answers: the pooled
    weighted vote's posterior with this answer's own likelihood divided out (a dropped
    answer had none in it). A task nobody else spoke to gets the crowd's verdict shares."""
    k = len(labels)
    kept = frame.loc[keep]
    if kept.empty:
        return np.full((len(frame), k), 1.0 / k)
    golden: Mapping[Hashable, Hashable] = dict(
        kept.loc[pd.notna(kept["golden"]), ["task", "golden"]].itertuples(index=False)
    )
    model = WeightedVote().fit(kept[["task", "worker", "label"]], golden)
    probas = model.probas_.reindex(columns=labels, fill_value=0.0)
    base = probas.to_numpy().mean(axis=0)
    post = probas.reindex(frame["task"]).to_numpy()
    post = np.where(np.isnan(post), base[None, :], post)
    # errors[w, true, observed] of each kept answer's worker, at the observed label.
    names = list(model.errors_)
    errors = np.stack(
        [model.errors_[w].reindex(index=labels, columns=labels).to_numpy() for w in names]
    )
    rows = np.flatnonzero(keep)
    w_idx = pd.Index(names).get_indexer(frame.loc[keep, "worker"])
    l_idx = pd.Index(labels).get_indexer(frame.loc[keep, "label"])
    without = post[rows] / np.maximum(errors[w_idx, :, l_idx], 1e-12)
    out = post.copy()
    out[rows] = without / without.sum(axis=1, keepdims=True)
    # A task only this worker answered: nothing is left of its posterior but the prior.
    n_kept = frame["task"].map(kept["task"].value_counts()).fillna(0).to_numpy()
    out[keep & (n_kept <= 1)] = base
    return np.clip(out, 1e-6, 1.0)
