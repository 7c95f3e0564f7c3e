"""The `ranking:` section of a campaign file and its golden-rankings JSONL rows.

A k-wise ranking task shows a worker 3-9 responses to one prompt and asks for their order,
best first (InstructGPT's labelers ranked K = 4-9). One ranking of K implies K(K-1)/2
pairwise preferences for the price of one task; crowdloop keeps the raw ranking on the
judgment and aggregates it with Plackett-Luce or with Bradley-Terry over the implied pairs
(crowdloop/stages/ranking.py).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crowdloop.models.domain import Money

MIN_K = 3
MAX_K = 9
# How `CampaignSpec.resolved` makes a relative path absolute (None: leave it as it is).
PathFix: TypeAlias = Callable[[Path | None], Path | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoldenRankingRow(_Strict):
    """A control ranking with a known order: `ranks[i]` is the place of `responses[i]`
    (1 best; equal places are a tie the worker may give or break)."""

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    responses: list[str] = Field(min_length=MIN_K, max_length=MAX_K)
    ranks: list[int] = Field(min_length=MIN_K, max_length=MAX_K)
    reason: str = ""

    @model_validator(mode="after")
    def _one_place_each(self) -> GoldenRankingRow:
        if len(self.ranks) != len(self.responses):
            raise ValueError(
                f"ranks has {len(self.ranks)} places for {len(self.responses)} responses"
            )
        if any(r < 1 or r > len(self.ranks) for r in self.ranks):
            raise ValueError(f"every place must be between 1 and {len(self.ranks)}")
        if len(set(self.ranks)) < 2:
            raise ValueError("a golden ranking must order something (all places are equal)")
        return self


class RankingExportSpec(_Strict):
    # TRL preference pairs (prompt/chosen/rejected/margin), from the aggregated order.
    pairs_path: Path
    # One row per prompt: its responses in the aggregated order, with scores.
    rankings_path: Path


class RankingSpec(_Strict):
    """Collect k-wise rankings of each prompt's candidate responses.

    Each prompt's candidates (the candidates JSONL file, as for `preferences`) are cut into
    ranking sets of `k` (all of them when `k` is null: a prompt then needs 3-9 candidates);
    with more candidates than `k`, every candidate appears in `sets_per_candidate` sets,
    chained so the prompt's sets stay connected. Each set is ranked by `overlap` workers.
    """

    candidates_file: Path
    k: int | None = Field(default=None, ge=MIN_K, le=MAX_K)
    sets_per_candidate: int = Field(default=2, ge=1, le=10)
    # May a worker give two responses the same place?
    ties: bool = False
    overlap: int = Field(default=3, ge=1, le=15)
    instruction: str = "Rank the answers from best (1) to worst."
    golden_file: Path | None = None
    golden_share: float = Field(default=0.10, ge=0, lt=1)
    # A golden ranking is passed when at least this share of the pairs its known order
    # orders strictly are ordered the same way by the worker (a tie counts half).
    golden_min_agreement: float = Field(default=0.8, gt=0.5, le=1)
    # plackett_luce: the MM algorithm (Hunter 2004) on the rankings themselves;
    # bradley_terry: BT over the K(K-1)/2 implied pairs, each weighted `pair_weight`;
    # mean_rank: the naive baseline (mean place, normalised to the set's size).
    aggregation: Literal["plackett_luce", "bradley_terry", "mean_rank"] = "plackett_luce"
    # Weight of each implied pair in `bradley_terry`: `choices` gives a ranking of K the
    # weight of its K-1 Plackett-Luce choices (2/K per pair), `one` a single vote
    # (1/C(K,2) per pair), `pairs` treats every pair as an independent vote (1).
    pair_weight: Literal["choices", "one", "pairs"] = "choices"
    # Weigh each ranking by its worker's reliability, learned from agreement with the
    # consensus (crowdloop.aggregation.rankings.worker_weights): random and fixed-order
    # rankers count for little even before golden checks catch them. On by default: it
    # was the largest gain measured (bench/bench_ranking.py, README "Ranking tasks").
    weigh_workers: bool = True
    # Pairs exported to the TRL file need P(chosen better) at least this high.
    min_confidence: float = Field(default=0.6, ge=0.5, le=1)
    reward: Money = Money(amount=Decimal("0.08"))
    seed: int = 0
    export: RankingExportSpec

    def resolved(self, fix: PathFix) -> RankingSpec:
        return self.model_copy(
            update={
                "candidates_file": fix(self.candidates_file) or self.candidates_file,
                "golden_file": fix(self.golden_file) or self.golden_file,
                "export": RankingExportSpec(
                    pairs_path=fix(self.export.pairs_path) or self.export.pairs_path,
                    rankings_path=fix(self.export.rankings_path) or self.export.rankings_path,
                ),
            }
        )
