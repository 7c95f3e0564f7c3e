"""How simulated workers answer graded comparisons, and the hidden truth they answer to.

The truth of a graded pair is the world's quality gap (`world.response_quality`, a share
of valid list items, so gaps come in steps of `LEVEL_STEP`): the better side, and the level
`round(gap / LEVEL_STEP)` capped at the scale's strongest (0: equal, "unsure").

A careful worker perceives the signed gap with normal noise, times a personal scale factor
(their scale use: some inflate every difference, some shrink it), and answers the side of
that perception and the level it rounds to; a perception under half a step is "unsure"
when the scale offers it. Spammers answer uniformly at random over every option; the other
content-blind archetypes keep their habit (always unsure, always left, one shared answer
per colluding group) with a random level; a left-biased worker says left at its rate, at
the level it perceives.
"""

from __future__ import annotations

import random
from typing import Any

from crowdloop.ids import seeded_rng
from crowdloop.models.domain import CompareTask
from crowdloop.simulator.world import response_quality

# The world's quality comes in fifths (valid items of five): one level per fifth.
LEVEL_STEP = 0.2


def signed_gap(payload: CompareTask) -> float:
    """Quality of the left response minus the right's (the hidden truth)."""
    return response_quality(payload.prompt, payload.left) - response_quality(
        payload.prompt, payload.right
    )


def level_of(gap: float, levels: int) -> int:
    """The level (0: no difference) a gap of this size is worth on a scale of `levels`."""
    return min(levels, round(abs(gap) / LEVEL_STEP))


def true_grade(payload: CompareTask) -> tuple[str, int]:
    """The hidden side (left / right / tie) and level of a graded pair."""
    gap = signed_gap(payload)
    level = level_of(gap, len(payload.scale))
    if level == 0:
        return "tie", 0
    return ("left" if gap > 0 else "right"), level


def scale_factor(seed: int, worker_id: str, spread: float) -> float:
    """A worker's personal scale use, the same for every task they answer."""
    return float(2.718281828459045 ** seeded_rng(seed, "scale-use", worker_id).gauss(0, spread))


def _random_option(rng: random.Random, payload: CompareTask) -> dict[str, Any]:
    options: list[dict[str, Any]] = [
        {"choice": side, "level": lv}
        for side in ("left", "right")
        for lv in range(1, len(payload.scale) + 1)
    ]
    if payload.unsure:
        options.append({"choice": "tie"})
    return rng.choice(options)


def perceived(
    rng: random.Random, payload: CompareTask, noise: float, factor: float
) -> dict[str, Any]:
    """A careful answer: the side and level of the gap as this worker perceives it."""
    z = factor * (signed_gap(payload) + rng.gauss(0.0, noise))
    level = level_of(z, len(payload.scale))
    if level == 0:
        if payload.unsure:
            return {"choice": "tie"}
        level = 1
    side = "left" if z > 0 or (z == 0 and rng.random() < 0.5) else "right"
    return {"choice": side, "level": level}


def graded_answer(
    archetype: str,
    rng: random.Random,
    payload: CompareTask,
    *,
    noise: float,
    factor: float,
    left_bias_rate: float,
    shared: random.Random,
) -> dict[str, Any]:
    """One worker's answer to a graded comparison (`shared`: the colluders' common draw)."""
    levels = len(payload.scale)
    if archetype in ("spammer", "volume_spammer"):
        return _random_option(rng, payload)
    if archetype == "always_tie":
        return {"choice": "tie"} if payload.unsure else _random_option(rng, payload)
    if archetype == "same_side":
        return {"choice": "left", "level": rng.randint(1, levels)}
    if archetype == "colluder":
        return {"choice": shared.choice(("left", "right")), "level": shared.randint(1, levels)}
    answer = perceived(rng, payload, noise, factor)
    if archetype == "left_bias" and rng.random() < left_bias_rate:
        return {"choice": "left", "level": answer.get("level", 1)}
    return answer
