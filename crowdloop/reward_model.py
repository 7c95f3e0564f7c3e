"""A small, real reward model for the reference retraining deployment.

A linear Bradley-Terry model r(x) = w . phi(prompt, response) fitted on exported preference
pairs: P(chosen > rejected) = sigmoid(r(chosen) - r(rejected)), which is logistic
regression on feature differences. Features are hashed response words, response words
crossed with the prompt's content words, and a few shape features; it runs on a CPU in
seconds and downloads nothing, so the loop closes anywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from crowdloop.ids import digest

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import HashingVectorizer

_LINE = re.compile(r"^\s*\d+[.)]\s*\S", re.MULTILINE)


@dataclass(frozen=True)
class RewardModelReport:
    train_pairs: int
    heldout_pairs: int
    heldout_accuracy: float | None  # pairwise: r(chosen) > r(rejected) on held-out prompts
    train_accuracy: float


_WORD = re.compile(r"[a-z0-9+#]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "and",
        "or",
        "for",
        "in",
        "on",
        "with",
        "is",
        "are",
        "what",
        "which",
        "give",
        "me",
        "list",
        "top",
        "five",
        "5",
        "please",
        "some",
        "good",
        "best",
        "examples",
        "your",
        "my",
        "name",
    ]
)


def _cross_tokens(pair: tuple[str, str]) -> list[str]:
    """Response words, and response words conditioned on the prompt's content words.

    The cross terms let a linear model learn that "apple" is good under a prompt about
    fruit and bad under one about vegetables, which response words alone cannot express.
    """
    prompt, response = pair
    p_words = [w for w in _WORD.findall(prompt.lower()) if w not in _STOP]
    r_words = _WORD.findall(response.lower())
    return r_words + [f"{p}|{r}" for p in p_words for r in r_words]


def _features(vec: HashingVectorizer, pairs: list[tuple[str, str]]) -> sparse.csr_matrix:
    words = vec.transform(pairs)
    shape = np.array(
        [
            [
                len(_LINE.findall(r)) / 5.0,
                min(len(r), 2000) / 500.0,
                len(set(r.lower().split())) / 50,
            ]
            for _, r in pairs
        ]
    )
    return sparse.hstack([words, sparse.csr_matrix(shape)]).tocsr()


def load_pairs(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def train_reward_model(
    rows: list[dict[str, object]], *, heldout_share: float = 0.25, seed: int = 0
) -> RewardModelReport:
    """Fit on pairs from most prompts; report pairwise accuracy on the held-out prompts."""
    # scikit-learn only here: a campaign's flow process reaches this module through the
    # retraining flow, and importing it there cost every campaign ~20 MiB of resident
    # memory it does not use unless it trains (docs/at-scale.md, the Prefect flow at 10^6).
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    if not rows:
        raise ValueError("no preference pairs to train on")
    vec = HashingVectorizer(
        n_features=2**18, analyzer=_cross_tokens, alternate_sign=False, norm="l2"
    )
    heldout = [
        int(digest(seed, r["prompt_id"], length=8), 16) / 16**8 < heldout_share for r in rows
    ]
    chosen = _features(vec, [(str(r["prompt"]), str(r["chosen"])) for r in rows])
    rejected = _features(vec, [(str(r["prompt"]), str(r["rejected"])) for r in rows])
    diff = (chosen - rejected).tocsr()
    # Logistic regression needs both classes: mirror every pair (x, 1) as (-x, 0).
    mask = ~np.array(heldout)
    train = diff[mask]
    if train.shape[0] == 0:
        raise ValueError("every pair fell in the held-out split; add prompts or lower the share")
    x = sparse.vstack([train, -train])
    y = np.r_[np.ones(train.shape[0]), np.zeros(train.shape[0])]
    model = LogisticRegression(C=10.0, fit_intercept=False, max_iter=2000)
    model.fit(x, y)
    margin = diff @ model.coef_.ravel()
    train_acc = float(np.mean(margin[mask] > 0))
    test = margin[~mask]
    return RewardModelReport(
        train_pairs=int(mask.sum()),
        heldout_pairs=int((~mask).sum()),
        heldout_accuracy=float(np.mean(test > 0)) if test.size else None,
        train_accuracy=train_acc,
    )
