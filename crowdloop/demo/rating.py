"""Inputs for a multi-aspect rating campaign on the "top-5 lists" world
(campaigns/rating.yaml), and the check of its export against the simulator's hidden truth.

Six model answers per prompt, from strong to poor, each rated on HelpSteer's five aspects
(0-4); every aspect's hidden score is partly the answer's quality and partly its own
(crowdloop.simulator.rating.true_score). Golden ratings are clear-cut answers (five valid
items, or a broken answer) with their hidden scores rounded to the scale.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crowdloop.demo.ranking import RANKING_MODELS
from crowdloop.demo.top5 import (
    _broken_response,
    _topics_or_all,
    generate_candidates,
    stable_id,
    write_jsonl,
)
from crowdloop.ids import seeded_rng
from crowdloop.models.domain import RatedAspect, RateTask
from crowdloop.models.rating_spec import HELPSTEER_ASPECTS, AspectSpec, RatingSpec
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd
from crowdloop.simulator.rating import true_score
from crowdloop.simulator.world import CATALOG, PROMPT_TEMPLATES, make_prompt, render_list
from crowdloop.stages.rating import RatingRow, fit_ratings, ratings_frame


def rated(aspect: AspectSpec) -> RatedAspect:
    return RatedAspect(name=aspect.name, low=aspect.low, high=aspect.high)


def generate_golden_ratings(
    topics: Sequence[str] | None,
    seed: int,
    n: int,
    aspects: Sequence[AspectSpec] = HELPSTEER_ASPECTS,
) -> list[dict[str, Any]]:
    """Clear-cut control ratings, alternately a perfect and a broken answer, each with its
    hidden per-aspect scores rounded to the scale."""
    chosen = _topics_or_all(topics)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = seeded_rng(seed, "golden-rating", i)
        topic = chosen[i % len(chosen)]
        prompt = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
        good = i % 2 == 0
        response = (
            render_list(rng.sample(CATALOG[topic], 5)) if good else _broken_response(topic, rng)
        )
        rows.append(
            {
                "id": stable_id("gt", seed, i),
                "prompt": prompt,
                "response": response,
                "scores": {a.name: round(true_score(prompt, response, rated(a))) for a in aspects},
                "reason": f"five valid {topic}" if good else "a broken answer",
            }
        )
    return rows


def write_rating_inputs(
    folder: Path, *, topics: Sequence[str] | None, prompts_per_topic: int, seed: int, golden: int
) -> tuple[Path, Path]:
    """candidates.jsonl and golden-ratings.jsonl in `folder`."""
    candidates = generate_candidates(
        topics, seed, models=RANKING_MODELS, prompts_per_topic=prompts_per_topic
    )
    return (
        write_jsonl(folder / "candidates.jsonl", candidates),
        write_jsonl(folder / "golden-ratings.jsonl", generate_golden_ratings(topics, seed, golden)),
    )


@dataclass(frozen=True)
class RatingTruth:
    """Mean absolute error against the simulator's hidden scores, per aspect (in scale
    points), of the exported consensus and of the naive baseline: the mean of every valid
    vote, nobody excluded."""

    responses: int
    error: dict[str, float]
    baseline_error: dict[str, float]
    # Share of exported (response, aspect) scores whose truth lies within 2 sd.
    covered: float

    @property
    def mean_error(self) -> float:
        return float(np.mean(list(self.error.values())))

    @property
    def mean_baseline_error(self) -> float:
        return float(np.mean(list(self.baseline_error.values())))


def score_ratings_against_truth(campaign_id: str, path: Path, spec: RatingSpec) -> RatingTruth:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    errors: dict[str, list[float]] = {a.name: [] for a in spec.aspects}
    covered: list[bool] = []
    truth_of: dict[str, dict[str, float]] = {}
    for row in rows:
        truth_of[row["response_id"]] = {}
        for a in spec.aspects:
            truth = true_score(row["prompt"], row["response"], rated(a))
            truth_of[row["response_id"]][a.name] = truth
            errors[a.name].append(abs(row[a.name] - truth))
            covered.append(abs(row[a.name] - truth) <= 2 * row["uncertainty"][a.name] + 1e-9)
    baseline = fit_ratings(ratings_frame(campaign_id, trusted=False), spec, "mean")
    base_err: dict[str, list[float]] = {a.name: [] for a in spec.aspects}
    for i, rid in enumerate(baseline.responses):
        if rid not in truth_of:
            continue
        for j, name in enumerate(baseline.aspects):
            base_err[name].append(abs(float(baseline.scores[i, j]) - truth_of[rid][name]))
    return RatingTruth(
        responses=len(rows),
        error={k: float(np.mean(v)) for k, v in errors.items() if v},
        baseline_error={k: float(np.mean(v)) for k, v in base_err.items() if v},
        covered=float(np.mean(covered)) if covered else 0.0,
    )


@dataclass(frozen=True)
class SimulatedRatings:
    """Ratings of a simulated crowd without a marketplace or database: `rows` as the
    aggregation reads them (golden items carry their known scores), the hidden truth per
    real response and aspect, and each worker's archetype."""

    rows: list[RatingRow]
    truth: dict[str, dict[str, float]]
    archetype: dict[str, str]


def simulate_ratings(
    config: CrowdConfig,
    seed: int,
    prompts_per_topic: int,
    overlap: int,
    spec: RatingSpec,
    golden: int = 0,
    topics: Sequence[str] | None = None,
) -> SimulatedRatings:
    """Every answer of the demo's six models per prompt rated on `spec.aspects` by
    `overlap` workers of a simulated crowd (the simulator's own answer model and worker
    order), with `golden` golden ratings mixed in."""
    crowd = Crowd(config, seed)
    aspects = tuple(rated(a) for a in spec.aspects)
    candidates = generate_candidates(
        list(topics or CATALOG), seed, models=RANKING_MODELS, prompts_per_topic=prompts_per_topic
    )
    golden_rows = generate_golden_ratings(topics, seed, golden, spec.aspects) if golden else []
    tasks: list[tuple[str, str, str, str, dict[str, int] | None]] = [
        (c["response_id"], c["prompt_id"], c["prompt"], c["response"], None) for c in candidates
    ] + [(g["id"], g["id"], g["prompt"], g["response"], g["scores"]) for g in golden_rows]
    rows: list[RatingRow] = []
    truth: dict[str, dict[str, float]] = {}
    for rid, pid, prompt, response, known in tasks:
        task = RateTask(
            instruction=spec.instruction, prompt=prompt, response=response, aspects=aspects
        )
        if known is None:
            truth[rid] = {a.name: true_score(prompt, response, a) for a in aspects}
        order = crowd.permutation(rid)
        for _ in range(overlap):
            worker = crowd.by_id[next(order)]
            _, answer = crowd.work(worker, rid, task, None)
            rows.append(RatingRow(rid, pid, rid, dict(answer["scores"]), worker.id, known))
    return SimulatedRatings(
        rows=rows,
        truth=truth,
        archetype={w.id: w.archetype for w in crowd.by_id.values()},
    )
