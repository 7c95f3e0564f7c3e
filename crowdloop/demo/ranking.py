"""Inputs for a k-wise ranking campaign on the "top-5 lists" world (campaigns/ranking.yaml).

Six model answers per prompt, from strong to poor, so a ranking of all six has a known
(partly tied) order under the simulator's oracle (`world.response_quality`); and golden
rankings of clear-cut answers (five valid items, three, and a broken answer), whose known
order no attentive reader gets wrong.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from sqlmodel import col, select

from crowdloop.aggregation.rankings import Method
from crowdloop.db import session_scope
from crowdloop.demo.top5 import (
    _broken_response,
    _topics_or_all,
    generate_candidates,
    stable_id,
    write_jsonl,
)
from crowdloop.ids import seeded_rng
from crowdloop.models.tables import Item, Judgment, JudgmentStatus, Prompt, RankingSet, Response
from crowdloop.simulator.world import (
    CATALOG,
    PROMPT_TEMPLATES,
    make_prompt,
    render_list,
    response_quality,
    wrong_items,
)
from crowdloop.stages.ranking import RankingRow, fit_scores, places_of

# Probability of each item slot being a valid catalog item, per model.
RANKING_MODELS: dict[str, float] = {
    "model-strong": 0.97,
    "model-good": 0.85,
    "model-fair": 0.7,
    "model-mediocre": 0.55,
    "model-weak": 0.35,
    "model-poor": 0.15,
}


def generate_golden_rankings(
    topics: Sequence[str] | None, seed: int, n: int
) -> list[dict[str, Any]]:
    """Clear-cut control rankings: five valid items (place 1), three (2), a broken answer (3)."""
    chosen = _topics_or_all(topics)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = seeded_rng(seed, "golden-ranking", i)
        topic = chosen[i % len(chosen)]
        prompt = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
        perfect = render_list(rng.sample(CATALOG[topic], 5))
        partial_items = rng.sample(CATALOG[topic], 3) + wrong_items(topic, rng, 2)
        rng.shuffle(partial_items)
        responses = [perfect, render_list(partial_items), _broken_response(topic, rng)]
        rows.append(
            {
                "id": stable_id("gk", seed, i),
                "prompt": prompt,
                "responses": responses,
                "ranks": [1, 2, 3],
                "reason": f"five valid {topic}, then three, then a broken answer",
            }
        )
    return rows


def write_ranking_inputs(
    folder: Path, *, topics: Sequence[str] | None, prompts_per_topic: int, seed: int, golden: int
) -> tuple[Path, Path]:
    """candidates.jsonl and golden-rankings.jsonl in `folder`."""
    candidates = generate_candidates(
        topics, seed, models=RANKING_MODELS, prompts_per_topic=prompts_per_topic
    )
    return (
        write_jsonl(folder / "candidates.jsonl", candidates),
        write_jsonl(
            folder / "golden-rankings.jsonl", generate_golden_rankings(topics, seed, golden)
        ),
    )


@dataclass(frozen=True)
class RankingTruth:
    """Kendall's tau-b between an order and the simulator's hidden qualities, mean over
    prompts: of the exported rankings, and of the naive baseline (mean rank over every
    valid ranking, nobody excluded)."""

    prompts: int
    tau: float
    baseline_tau: float
    pairs: int
    pairs_right: float  # share of exported TRL pairs whose chosen answer is truly better


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-b; 0 where it is undefined (one side all equal)."""
    tau = kendalltau(scores, truth).statistic
    return 0.0 if math.isnan(tau) else float(tau)


def score_rankings_against_truth(
    campaign_id: str, rankings_path: Path, pairs_path: Path
) -> RankingTruth:
    rows = [json.loads(line) for line in rankings_path.read_text().splitlines() if line]
    taus = [
        kendall_tau(row["scores"], [response_quality(row["prompt"], t) for t in row["responses"]])
        for row in rows
    ]
    pairs = [json.loads(line) for line in pairs_path.read_text().splitlines() if line]
    right = [
        response_quality(p["prompt"], p["chosen"]) > response_quality(p["prompt"], p["rejected"])
        for p in pairs
    ]
    return RankingTruth(
        prompts=len(rows),
        tau=float(np.mean(taus)) if taus else 0.0,
        baseline_tau=_baseline_tau(campaign_id),
        pairs=len(pairs),
        pairs_right=float(np.mean(right)) if right else 0.0,
    )


def _baseline_tau(campaign_id: str) -> float:
    """Mean rank over every valid ranking of the campaign's real sets (excluded ones too)."""
    with session_scope() as s:
        found = s.exec(
            select(RankingSet.prompt_id, RankingSet.shown, Judgment.text)
            .join(Item, col(Item.id) == col(RankingSet.item_id))
            .join(Judgment, col(Judgment.item_id) == col(Item.id))
            .where(
                Item.campaign_id == campaign_id,
                col(Item.is_golden).is_(False),
                Judgment.status == JudgmentStatus.VALID,
            )
        ).all()
    rows = [
        RankingRow(item="", prompt=str(p), shown=list(shown), places=places_of(text), worker="")
        for p, shown, text in found
    ]
    return order_tau(campaign_id, rows, "mean_rank")


def order_tau(campaign_id: str, rows: Sequence[RankingRow], method: Method) -> float:
    """Kendall's tau-b of each prompt's order by `method` on `rows` against the hidden
    qualities, mean over prompts."""
    scores = fit_scores(rows, method)
    with session_scope() as s:
        prompts = {
            p.id: p.text for p in s.exec(select(Prompt).where(Prompt.campaign_id == campaign_id))
        }
        texts = {
            r.id: r.text
            for r in s.exec(select(Response).where(Response.campaign_id == campaign_id))
        }
    prompt_of = {r: row.prompt for row in rows for r in row.shown}
    by_prompt: dict[str, list[str]] = defaultdict(list)
    for rid in scores:
        by_prompt[prompt_of[rid]].append(rid)
    taus = [
        kendall_tau([scores[r] for r in ids], [response_quality(prompts[p], texts[r]) for r in ids])
        for p, ids in by_prompt.items()
    ]
    return float(np.mean(taus)) if taus else 0.0
