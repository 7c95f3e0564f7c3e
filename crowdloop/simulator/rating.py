"""How simulated workers answer multi-aspect rating tasks, and the hidden truth they
answer to.

The truth of an aspect is a continuous score on its scale: partly the world's quality of
the response (`world.response_quality`, a share of valid list items; a list with more
valid items is more helpful, more correct...) and partly the response's own draw for that
aspect (what the quality does not capture: how complex or verbose it reads), mixed by
`QUALITY_WEIGHT`. It depends on the texts and the aspect only, never on a seed, so a test
computes it from an exported row.

A careful worker perceives each aspect's truth with normal noise, then applies their
personal bias (a shift: a lenient rater scores everything higher, each aspect a little
differently) and scale use (a stretch about the scale's middle: some keep to the middle,
some use the ends), and rounds to the nearest point on the scale. Content-blind archetypes
answer without looking: spammers uniformly at random, always-tie workers the middle of
every scale, same-side workers the top, colluders one shared random draw per task. A
sleeper turns spammer after a while (crowd.Crowd.work).
"""

from __future__ import annotations

import math
import random
from typing import Any

from crowdloop.ids import seeded_rng
from crowdloop.models.domain import RatedAspect, RateTask
from crowdloop.simulator.world import response_quality

# Share of an aspect's truth that is the response's quality (the rest is its own draw).
QUALITY_WEIGHT = 0.6


def true_score(prompt: str, response: str, aspect: RatedAspect) -> float:
    """The hidden score of a response on one aspect (continuous, within the scale)."""
    own = seeded_rng("aspect-truth", prompt, response, aspect.name).random()
    share = QUALITY_WEIGHT * response_quality(prompt, response) + (1 - QUALITY_WEIGHT) * own
    return aspect.low + (aspect.high - aspect.low) * share


def true_scores(payload: RateTask) -> dict[str, float]:
    return {a.name: true_score(payload.prompt, payload.response, a) for a in payload.aspects}


def worker_style(
    seed: int, worker_id: str, aspect: str, bias_spread: float, scale_spread: float
) -> tuple[float, float]:
    """A worker's bias on one aspect and their scale use, the same on every task."""
    common = seeded_rng(seed, "rating-bias", worker_id)
    own = seeded_rng(seed, "rating-bias", worker_id, aspect)
    bias = common.gauss(0.0, bias_spread) + own.gauss(0.0, bias_spread / 2)
    scale = math.exp(seeded_rng(seed, "rating-scale", worker_id).gauss(0.0, scale_spread))
    return bias, scale


def _on_scale(value: float, aspect: RatedAspect) -> int:
    return int(min(aspect.high, max(aspect.low, round(value))))


def rating_answer(
    archetype: str,
    rng: random.Random,
    payload: RateTask,
    *,
    noise: float,
    style: dict[str, tuple[float, float]],
    shared: random.Random,
) -> dict[str, Any]:
    """One worker's scores (`style`: their (bias, scale use) per aspect; `shared`: the
    colluders' common draw)."""
    scores: dict[str, int] = {}
    for a in payload.aspects:
        if archetype in ("spammer", "volume_spammer"):
            scores[a.name] = rng.randint(a.low, a.high)
        elif archetype == "always_tie":
            scores[a.name] = _on_scale((a.low + a.high) / 2, a)
        elif archetype == "same_side":
            scores[a.name] = a.high
        elif archetype == "colluder":
            scores[a.name] = shared.randint(a.low, a.high)
        else:
            bias, scale = style[a.name]
            center = (a.low + a.high) / 2
            perceived = true_score(payload.prompt, payload.response, a) + rng.gauss(0.0, noise)
            scores[a.name] = _on_scale(center + bias + scale * (perceived - center), a)
    return {"scores": scores}
