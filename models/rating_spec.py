"""The `rating:` section of a campaign file and its golden-ratings JSONL rows.

A multi-aspect rating task shows a worker one response to a prompt and asks for a Likert
score on each of several aspects (HelpSteer: helpfulness, correctness, coherence,
complexity, verbosity, each 0-4). crowdloop keeps the raw scores on the judgment and
aggregates each aspect with a per-worker linear model that corrects every worker's bias
(shift) and scale use (crowdloop.aggregation.ratings), then exports one reward-regression
row per response (crowdloop/stages/rating.py).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crowdloop.models.domain import Money

MAX_ASPECTS = 12
# An aspect's score is an exported column beside these: a name among them would clash.
RESERVED_NAMES = frozenset(
    {"prompt", "response", "scores", "uncertainty", "votes", "model", "method", "campaign"}
)
PathFix: TypeAlias = Callable[[Path | None], Path | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AspectSpec(_Strict):
    """One aspect rated on the integer scale `low`..`high` (labels, when given, name each
    point from `low` up)."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(default="", max_length=500)
    low: int = Field(default=0, ge=-10, le=10)
    high: int = Field(default=4, ge=-10, le=10)
    labels: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _scale(self) -> AspectSpec:
        if self.high <= self.low:
            raise ValueError(f"high ({self.high}) must be above low ({self.low})")
        if self.high - self.low > 10:
            raise ValueError("a Likert scale has at most 11 points (high - low <= 10)")
        if self.labels and len(self.labels) != self.high - self.low + 1:
            raise ValueError(
                f"labels name each point from low to high: {self.high - self.low + 1} "
                f"labels, got {len(self.labels)}"
            )
        if self.name in RESERVED_NAMES:
            raise ValueError(f"{self.name!r} is a column of the exported rows; rename the aspect")
        return self

    @property
    def center(self) -> float:
        return (self.low + self.high) / 2


# HelpSteer's five attributes, each on 0-4 (Wang et al. 2023, "HelpSteer").
HELPSTEER_ASPECTS: tuple[AspectSpec, ...] = (
    AspectSpec(name="helpfulness", description="Overall helpfulness of the response."),
    AspectSpec(name="correctness", description="Inclusion of all pertinent facts, no errors."),
    AspectSpec(name="coherence", description="Consistency and clarity of expression."),
    AspectSpec(name="complexity", description="Intellectual depth needed to write it."),
    AspectSpec(name="verbosity", description="Amount of detail relative to what was asked."),
)


class GoldenRatingRow(_Strict):
    """A control rating with known per-aspect scores. Each aspect is one golden answer,
    passed when the worker's score is within `tolerance` points of the known one (the
    section's `golden_tolerance` when null). Scores are checked against the aspects when
    loaded."""

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    response: str
    scores: dict[str, int] = Field(min_length=1)
    tolerance: float | None = Field(default=None, ge=0)
    reason: str = ""


class RatingExportSpec(_Strict):
    # One reward-regression row per response: its aggregated score per aspect, with sd.
    path: Path


class RatingSpec(_Strict):
    """Collect multi-aspect Likert ratings of each candidate response.

    Every response of the candidates JSONL file (as for `preferences`) is one rating task
    asking for every aspect, answered by `overlap` workers. Golden ratings are mixed in at
    `golden_share` and graded by distance.
    """

    candidates_file: Path
    # At least one, checked below: a `min_length` here would add a second error line
    # ("at least 1 item") to every error inside an aspect.
    aspects: tuple[AspectSpec, ...] = Field(default=HELPSTEER_ASPECTS, max_length=MAX_ASPECTS)
    overlap: int = Field(default=3, ge=1, le=15)
    instruction: str = "Rate the answer on each aspect."
    # Offer an optional free-text rationale beside the scores (kept with the raw answer).
    rationale: bool = False
    golden_file: Path | None = None
    golden_share: float = Field(default=0.10, ge=0, lt=1)
    # Each aspect of a golden rating is one golden answer, passed when the worker's score is
    # within this many points of the known one. Per aspect rather than one verdict per
    # item: a random clicker misses some aspect of nearly every item, and a worker gets
    # enough evidence from a couple of golden items (min_golden counts aspects). The
    # aspects of one item are not independent for a biased but careful rater, so keep the
    # tolerance at a point or more: a bias the aggregation corrects should not block.
    golden_tolerance: float = Field(default=1.0, ge=0)
    # worker_linear: per aspect, each worker answers a_w + b_w * truth + noise (bias,
    # scale use, reliability), pooled priors, golden items anchoring the scale
    # (crowdloop.aggregation.ratings); mean: the naive baseline (mean of the votes).
    aggregation: Literal["worker_linear", "mean"] = "worker_linear"
    reward: Money = Money(amount=Decimal("0.05"))
    export: RatingExportSpec

    @model_validator(mode="after")
    def _distinct(self) -> RatingSpec:
        if not self.aspects:
            raise ValueError("list at least one aspect")
        names = [a.name for a in self.aspects]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"aspect {name!r} is listed twice")
        return self

    def aspect(self, name: str) -> AspectSpec | None:
        return next((a for a in self.aspects if a.name == name), None)

    def resolved(self, fix: PathFix) -> RatingSpec:
        return self.model_copy(
            update={
                "candidates_file": fix(self.candidates_file) or self.candidates_file,
                "golden_file": fix(self.golden_file) or self.golden_file,
                "export": RatingExportSpec(path=fix(self.export.path) or self.export.path),
            }
        )
