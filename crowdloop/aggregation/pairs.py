"""Winner of a single compared pair from its (few) crowd judgments, with a confidence.

Let ``q`` be the probability that a random worker prefers the left response. Its posterior
after ``n_left`` / ``n_right`` / ``n_tie`` judgments, with ties counted as half a vote for
each side and a symmetric ``Beta(prior, prior)`` prior, is

    Beta(prior + n_left + n_tie / 2, prior + n_right + n_tie / 2)

and ``p_left_better = P(q > 0.5 | judgments)``.

The verdict is "tie" when ties are the strict majority of the votes (tie share > 1/2), or
when ``|p_left_better - 0.5| <= tie_band`` (default 0.05): the crowd is split evenly, e.g.
2 left vs 2 right. Otherwise the side that ``p_left_better`` favours wins.

Confidence: ``max(p, 1 - p)`` for a side; the tie share for a tie. An even split without
tie votes is thus a tie with low confidence, which is what a training-data filter wants:
nobody said the responses were equal, the crowd just disagreed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd
from scipy.special import betaincc

__all__ = ["DEFAULT_TIE_BAND", "PairVerdict", "pair_verdict", "pair_verdicts"]

DEFAULT_TIE_BAND: Final[float] = 0.05
_LABELS: Final[tuple[str, ...]] = ("left", "right", "tie")

Winner = Literal["left", "right", "tie"]


@dataclass(frozen=True)
class PairVerdict:
    winner: Winner
    p_left_better: float
    confidence: float


def pair_verdict(
    n_left: float,
    n_right: float,
    n_tie: float,
    *,
    prior: float = 1.0,
    tie_band: float = DEFAULT_TIE_BAND,
) -> PairVerdict:
    """Verdict for one pair from its (possibly weighted) vote counts; see the module doc."""
    frame = _verdicts(
        np.array([n_left], dtype=np.float64),
        np.array([n_right], dtype=np.float64),
        np.array([n_tie], dtype=np.float64),
        prior=prior,
        tie_band=tie_band,
    )
    winner: Winner = frame["winner"][0]
    return PairVerdict(
        winner=winner,
        p_left_better=float(frame["p_left_better"][0]),
        confidence=float(frame["confidence"][0]),
    )


def pair_verdicts(
    frame: pd.DataFrame, *, prior: float = 1.0, tie_band: float = DEFAULT_TIE_BAND
) -> pd.DataFrame:
    """Vectorised ``pair_verdict`` over judgments: one input row per judgment.

    Args:
        frame: columns ``pair`` (hashable pair id) and ``label`` in {"left", "right", "tie"};
            an optional ``weight`` column (e.g. a worker's estimated attentiveness) makes
            each vote count that much instead of 1.

    Returns:
        One row per pair, sorted by pair: ``pair, n_left, n_right, n_tie, winner,
        p_left_better, confidence`` (counts as int64, or float64 when weighted).
    """
    missing = {"pair", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"judgment frame lacks columns {sorted(missing)}")
    unknown = ~frame["label"].isin(_LABELS)
    if unknown.any():
        bad = sorted(map(str, frame.loc[unknown, "label"].unique()))
        raise ValueError(f"label must be one of left/right/tie, got {bad}")
    if "weight" in frame.columns:
        counts = (
            frame.pivot_table(
                index="pair", columns="label", values="weight", aggfunc="sum", fill_value=0.0
            )
            .reindex(columns=list(_LABELS), fill_value=0.0)
            .astype(np.float64)
        )
    else:
        counts = (
            pd.crosstab(frame["pair"], frame["label"])
            .reindex(columns=list(_LABELS), fill_value=0)
            .astype(np.int64)
        )
    result = _verdicts(
        counts["left"].to_numpy(np.float64),
        counts["right"].to_numpy(np.float64),
        counts["tie"].to_numpy(np.float64),
        prior=prior,
        tie_band=tie_band,
    )
    return pd.DataFrame(
        {
            "pair": counts.index.to_numpy(),
            "n_left": counts["left"].to_numpy(),
            "n_right": counts["right"].to_numpy(),
            "n_tie": counts["tie"].to_numpy(),
            **result,
        }
    )


def _verdicts(
    n_left: np.ndarray, n_right: np.ndarray, n_tie: np.ndarray, *, prior: float, tie_band: float
) -> dict[str, np.ndarray]:
    """The shared computation behind the scalar and the vectorised API."""
    if prior <= 0:
        raise ValueError(f"prior must be > 0 (it keeps the Beta posterior proper), got {prior}")
    if not 0 <= tie_band < 0.5:
        raise ValueError(f"tie_band must be in [0, 0.5), got {tie_band}")
    if np.any(n_left < 0) or np.any(n_right < 0) or np.any(n_tie < 0):
        raise ValueError("vote counts must be >= 0")

    # The Beta posterior's P(share > 1/2): scipy.stats.beta.sf's own kernel, from
    # scipy.special (scipy.stats costs a campaign process ~22 MiB of imports).
    p_left = betaincc(prior + n_left + n_tie / 2.0, prior + n_right + n_tie / 2.0, 0.5)
    total = n_left + n_right + n_tie
    # No votes: the tie share is 0, not 0/0.
    tie_share = np.divide(n_tie, total, out=np.zeros_like(total), where=total > 0)

    is_tie = (tie_share > 0.5) | (np.abs(p_left - 0.5) <= tie_band)
    side = np.where(p_left > 0.5, "left", "right")
    winner = np.where(is_tie, "tie", side).astype(object)
    confidence = np.where(is_tie, tie_share, np.maximum(p_left, 1.0 - p_left))
    return {"winner": winner, "p_left_better": p_left, "confidence": confidence}
