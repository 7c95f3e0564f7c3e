"""Worker quality from golden (known-answer) tasks.

A worker's accuracy on golden tasks gets a ``Beta(prior_correct, prior_incorrect)`` prior;
after ``correct`` of ``total`` golden answers the posterior is
``Beta(prior_correct + correct, prior_incorrect + total - correct)``. Decisions use the
posterior probability that the accuracy is below ``min_accuracy`` (``p_below``) rather than
the raw hit rate, so one unlucky answer early on does not block an honest worker and a lucky
streak (2/2) does not read as accuracy 1.0.

Status, in order of precedence:
    probation  fewer than ``min_golden`` golden answers: no decision yet, never blocked;
    blocked    p_below >= block_confidence;
    warned     p_below >= warn_confidence;
    trusted    otherwise.

Measured (exact binomial sums, spammer accuracy 1/3 as on a 3-way left/right/tie golden
pair, honest accuracy 0.92): with the default ``block_confidence=0.8`` one assessment after
8 golden answers blocks 91% of spammers and 0.2% of honest workers. At 0.9 it would block
only 74% of spammers after 8 answers (it needs <= 3 correct; 4/8 gives p_below 0.85) and
93% after 12, which is why the default is 0.8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import beta

__all__ = ["GoldenPolicy", "WorkerAssessment", "WorkerStatus", "assess_worker", "assess_workers"]

WorkerStatus = Literal["trusted", "probation", "warned", "blocked"]


@dataclass(frozen=True)
class GoldenPolicy:
    """Thresholds of the golden-set assessment (see the module docstring)."""

    prior_correct: float = 2.0
    prior_incorrect: float = 1.0
    min_golden: int = 4
    min_accuracy: float = 0.7
    block_confidence: float = 0.8
    warn_confidence: float = 0.6

    def __post_init__(self) -> None:
        if self.prior_correct <= 0 or self.prior_incorrect <= 0:
            raise ValueError("Beta prior parameters must be > 0")
        if self.min_golden < 0:
            raise ValueError("min_golden must be >= 0")
        if not 0 < self.min_accuracy < 1:
            raise ValueError("min_accuracy must be in (0, 1)")
        if not 0 < self.warn_confidence <= self.block_confidence <= 1:
            raise ValueError("need 0 < warn_confidence <= block_confidence <= 1")


@dataclass(frozen=True)
class WorkerAssessment:
    status: WorkerStatus
    accuracy: float  # posterior mean accuracy
    p_below: float  # P(accuracy < min_accuracy | golden answers)
    golden_total: int
    golden_correct: int


def assess_worker(correct: int, total: int, policy: GoldenPolicy | None = None) -> WorkerAssessment:
    """Assess one worker from ``correct`` right answers out of ``total`` golden tasks."""
    policy = policy or GoldenPolicy()
    status, accuracy, p_below = _assess(
        np.array([correct], dtype=np.int64), np.array([total], dtype=np.int64), policy
    )
    return WorkerAssessment(
        status=status[0],
        accuracy=float(accuracy[0]),
        p_below=float(p_below[0]),
        golden_total=int(total),
        golden_correct=int(correct),
    )


def assess_workers(frame: pd.DataFrame, policy: GoldenPolicy | None = None) -> pd.DataFrame:
    """Assess every worker from one row per golden answer.

    Args:
        frame: columns ``worker`` and ``correct`` (bool: the answer matched the golden one).

    Returns:
        One row per worker, sorted by worker: ``worker, golden_total, golden_correct,
        accuracy, p_below, status``.
    """
    policy = policy or GoldenPolicy()
    missing = {"worker", "correct"} - set(frame.columns)
    if missing:
        raise ValueError(f"golden answer frame lacks columns {sorted(missing)}")
    if frame["correct"].isna().any():
        raise ValueError("correct must not be missing")
    answered = frame["correct"].astype(bool)
    counts = answered.groupby(frame["worker"]).agg(["size", "sum"])
    golden_total = counts["size"].to_numpy(np.int64)
    golden_correct = counts["sum"].to_numpy(np.int64)
    status, accuracy, p_below = _assess(golden_correct, golden_total, policy)
    return pd.DataFrame(
        {
            "worker": counts.index.to_numpy(),
            "golden_total": golden_total,
            "golden_correct": golden_correct,
            "accuracy": accuracy,
            "p_below": p_below,
            "status": status,
        }
    )


def _assess(
    correct: np.ndarray, total: np.ndarray, policy: GoldenPolicy
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised status, posterior mean accuracy and p_below."""
    if np.any(total < 0) or np.any(correct < 0) or np.any(correct > total):
        raise ValueError("need 0 <= correct <= total")
    a = policy.prior_correct + correct
    b = policy.prior_incorrect + (total - correct)
    accuracy = a / (a + b)
    p_below = beta.cdf(policy.min_accuracy, a, b)
    status = np.select(
        [
            total < policy.min_golden,
            p_below >= policy.block_confidence,
            p_below >= policy.warn_confidence,
        ],
        ["probation", "blocked", "warned"],
        default="trusted",
    ).astype(object)
    return status, accuracy, p_below
