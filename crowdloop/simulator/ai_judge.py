"""A simulated AI judge: the hidden truth seen through a model's accuracy, position bias and
an informative but imperfect confidence, answered in OpenAI's chat-completions shape.

The model of one judgment (pair P shown as A then B; every draw is
`seeded_rng(seed, purpose, ...)`, so the same pair in the same order gets the same answer):

1. Truth: the better of A and B by `response_quality` (the simulator's hidden quality), or
   tie when equal — the same truth the simulated crowd answers against.
2. Understanding (per pair, the same in both orders): with probability `accuracy` the
   judge gets the pair right (the better side, or "tie" for an equal pair). Otherwise it
   is wrong in a fixed way for that pair: it prefers the worse side, or for an equal pair
   one of the two sides, or (with probability `wrong_tie`) calls a clear pair a tie. A
   model's mistakes are systematic, so asking again in the other order repeats them.
3. Position bias (per order): with probability `position_bias` the judge answers "A", the
   first answer shown, whatever it understood. Asked in both orders, such an answer
   usually disagrees with the other order's.
4. Confidence (per order): sigmoid(s) with s ~ Normal(`confidence_right`, `confidence_sd`)
   when the answer given is right and Normal(`confidence_wrong`, `confidence_sd`) when it is
   wrong (a position-biased answer included). With the defaults a right answer's median
   confidence is 0.88 and a wrong one's 0.62, and the two overlap: informative, imperfect.

Rankings (a K-answer ranking prompt, schema "ranking" or "ranking_with_ties"):

1. Per pair of the answers shown, the judge's opinion of the pair on content is step 2
   above (the same seeded draw, so a pair judged inside a ranking is judged as it would
   be alone, and wrong the same way in both orders and in every set).
2. Its ranking orders the answers by the pairs they win (a tie half; Copeland), equal
   wins broken by a seeded draw per answer text, so its pairwise content accuracy is
   about `accuracy` (a little above: an intransitive mistake is outvoted). With ties
   allowed, answers with equal wins that it judged equal share a place.
3. Position bias (per order): with probability `position_bias` it puts the answer shown
   first at the top, whatever it understood. Asked in the reverse order too, that moves a
   different answer up, so the two orders' rankings disagree.
4. Confidence (per order): sigmoid(s), s ~ Normal(m, `confidence_sd`) with m going from
   `confidence_wrong` to `confidence_right` with the share of truly ordered pairs its
   ranking orders right (m = wrong + (right - wrong) * max(0, tau), tau = 2c - 1 for that
   share c): a perfect ranking is as confident as a right pair verdict.

Ratings (a rating prompt, schema "rating"; the aspects and their scales read from the
schema, the prompt and the answer from the message):

1. Truth: each aspect's hidden score (`simulator.rating.true_score`), the one the
   simulated crowd rates against.
2. Understanding (per response, the same in every ask): with probability `accuracy` the
   judge understood the response and errs per aspect by a systematic N(0, `rating_noise`);
   otherwise by N(0, `rating_noise_confused`). Plus its leniency `rating_bias` on every
   aspect.
3. Per ask (keyed by the order the aspects are listed in): N(0, `rating_order_noise`)
   more per aspect, then rounded onto the scale. Asked with the aspects reversed, the
   scores differ by that noise only, so the two asks agree on a confused response as well
   as on an understood one: the confidence, not the asks' difference, tells them apart.
4. Confidence (per ask): sigmoid(s), s ~ Normal(m, `confidence_sd`), m going from
   `confidence_right` at no error to `confidence_wrong` at a mean absolute error of one
   point or more over the aspects (m = right - (right - wrong) * min(1, error)).

Graded comparisons (schema "graded_pairwise_verdict"; the levels read from its enum):

1. The side (and confidence) is the pairwise judgment above, unchanged.
2. Level (per order): the level the true gap is worth (`simulator.graded.level_of`, the
   one the simulated crowd answers against), at least the weakest; with probability
   1 - `level_accuracy` one level off (up or down, a seeded draw; inward at the scale's
   ends). A tie is "unsure"; on a scale without unsure it is the first answer shown at
   the weakest level (position bias, when the judge cannot tell).

So `accuracy` is the judge's accuracy on content; with position bias b and one order
asked, its answers are right with probability about (1 - b) * accuracy + b * P(truth = A).

The OpenAI side: `completion_body` answers a POST /v1/chat/completions body that
connectors/aijudge sent, in the shape of OpenAI's ChatCompletion (sources named in
connectors/aijudge/models.py: openai-python's `types/chat/chat_completion.py` and the live
structured-output snapshots in `tests/lib/chat/test_completions.py`): content is the JSON
of the verdict schema, refusal null, finish_reason "stop", and usage counts about one
token per four characters (an approximation of a tokenizer, for cost accounting only).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from crowdloop.aggregation.rankings import concordance
from crowdloop.connectors.aijudge.prompt import (
    UNSURE,
    labels,
    parse_answers,
    parse_pair,
    parse_rating,
)
from crowdloop.ids import seeded_rng
from crowdloop.models.domain import RatedAspect
from crowdloop.simulator.config import AIJudgeConfig
from crowdloop.simulator.graded import level_of
from crowdloop.simulator.rating import true_score
from crowdloop.simulator.world import response_quality

CREATED = 1_727_346_143  # fixed: the fake never reads the clock (a snapshot's `created`)


@dataclass(frozen=True)
class Judgment:
    winner: str  # A | B | tie
    confidence: float
    right: bool
    truth: str


def _truth(prompt: str, a: str, b: str) -> str:
    qa, qb = response_quality(prompt, a), response_quality(prompt, b)
    if qa == qb:
        return "tie"
    return "A" if qa > qb else "B"


def _understood(config: AIJudgeConfig, seed: int, prompt: str, a: str, b: str) -> str:
    """The judge's opinion of the pair on content (A, B or tie), position aside."""
    truth = _truth(prompt, a, b)
    # Per-pair draws are keyed by the texts in a fixed order, so both orders share them.
    first, second = sorted((a, b))
    pair = seeded_rng(seed, "ai-understands", prompt, first, second)
    understands = pair.random() < config.accuracy
    if understands:
        understood_text = {"A": a, "B": b}.get(truth)  # None: a tie
    elif truth == "tie":
        understood_text = pair.choice((first, second))
    elif pair.random() < config.wrong_tie:
        understood_text = None
    else:
        understood_text = b if truth == "A" else a  # the worse side
    return "tie" if understood_text is None else "A" if understood_text == a else "B"


def judge(config: AIJudgeConfig, seed: int, prompt: str, a: str, b: str) -> Judgment:
    truth = _truth(prompt, a, b)
    winner = _understood(config, seed, prompt, a, b)
    order = seeded_rng(seed, "ai-order", prompt, a, b)
    if order.random() < config.position_bias:
        winner = "A"
    right = winner == truth
    mean = config.confidence_right if right else config.confidence_wrong
    s = order.gauss(mean, config.confidence_sd)
    confidence = round(1.0 / (1.0 + math.exp(-s)), 3)
    return Judgment(winner=winner, confidence=confidence, right=right, truth=truth)


@dataclass(frozen=True)
class Ranking:
    places: list[int]  # of the answers as shown, 1 best
    confidence: float


def judge_ranking(
    config: AIJudgeConfig, seed: int, prompt: str, texts: list[str], ties: bool
) -> Ranking:
    k = len(texts)
    wins = [0.0] * k
    opinion: dict[tuple[int, int], str] = {}
    for i in range(k):
        for j in range(i + 1, k):
            said = _understood(config, seed, prompt, texts[i], texts[j])
            opinion[(i, j)] = opinion[(j, i)] = said
            if said == "tie":
                wins[i] += 0.5
                wins[j] += 0.5
            else:
                wins[i if said == "A" else j] += 1
    draw = [seeded_rng(seed, "ai-rank-tiebreak", prompt, t).random() for t in texts]
    order = sorted(range(k), key=lambda i: (-wins[i], draw[i]))
    shown_order = seeded_rng(seed, "ai-rank-order", prompt, *texts)
    if shown_order.random() < config.position_bias:
        order = [0] + [i for i in order if i != 0]
    places = [0] * k
    for position, i in enumerate(order):
        prev = order[position - 1] if position else None
        same = ties and prev is not None and wins[prev] == wins[i] and opinion[(prev, i)] == "tie"
        places[i] = places[prev] if same and prev is not None else position + 1
    # As places (lower is better); qualities are fifths (valid items of five), so exact.
    truth = [-round(response_quality(prompt, t) * 5) for t in texts]
    try:
        tau = 2 * concordance(places, truth) - 1
    except ValueError:  # every answer is as good as the others: nothing to get wrong
        tau = 1.0
    mean = config.confidence_wrong + (config.confidence_right - config.confidence_wrong) * max(
        0.0, tau
    )
    s = shown_order.gauss(mean, config.confidence_sd)
    return Ranking(places=places, confidence=round(1.0 / (1.0 + math.exp(-s)), 3))


def _ranking_content(config: AIJudgeConfig, seed: int, user: str, ties: bool) -> str:
    shown = parse_answers(user)
    if shown is None or not 3 <= len(shown[1]) <= 9:
        raise BadRequest("the user message is not a ranking prompt of 3-9 answers")
    prompt, texts = shown
    ranking = judge_ranking(config, seed, prompt, texts, ties)
    letters = labels(len(texts))
    groups: dict[int, list[str]] = {}
    for letter, place in zip(letters, ranking.places, strict=True):
        groups.setdefault(place, []).append(letter)
    best_first = [groups[p] for p in sorted(groups)]
    return json.dumps(
        {
            "rationale": f"Simulated judge: {best_first[0][0]} reads best.",
            "ranking": best_first if ties else [g[0] for g in best_first],
            "confidence": ranking.confidence,
        },
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Rating:
    scores: dict[str, int]  # in the order the aspects were listed
    confidence: float


def judge_rating(
    config: AIJudgeConfig, seed: int, prompt: str, response: str, aspects: list[RatedAspect]
) -> Rating:
    understood = seeded_rng(seed, "ai-rate-understands", prompt, response).random()
    sd = config.rating_noise if understood < config.accuracy else config.rating_noise_confused
    ask = seeded_rng(seed, "ai-rate-ask", prompt, response, *(a.name for a in aspects))
    scores: dict[str, int] = {}
    errors: list[float] = []
    for a in aspects:
        truth = true_score(prompt, response, a)
        systematic = seeded_rng(seed, "ai-rate-error", prompt, response, a.name).gauss(0.0, sd)
        seen = truth + config.rating_bias + systematic + ask.gauss(0.0, config.rating_order_noise)
        scores[a.name] = int(min(a.high, max(a.low, round(seen))))
        errors.append(abs(scores[a.name] - truth))
    error = sum(errors) / len(errors)
    right, wrong = config.confidence_right, config.confidence_wrong
    s = ask.gauss(right - (right - wrong) * min(1.0, error), config.confidence_sd)
    return Rating(scores=scores, confidence=round(1.0 / (1.0 + math.exp(-s)), 3))


def _rating_content(config: AIJudgeConfig, seed: int, user: str, schema: Any) -> str:
    shown = parse_rating(user)
    try:
        listed = schema["properties"]["scores"]["properties"]
        aspects = [
            RatedAspect(name=name, low=min(p["enum"]), high=max(p["enum"]))
            for name, p in listed.items()
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest("the rating schema lists no aspects with integer scales") from exc
    if shown is None or not aspects:
        raise BadRequest("the user message is not a rating prompt")
    rated = judge_rating(config, seed, shown[0], shown[1], aspects)
    return json.dumps(
        {
            "rationale": "Simulated judge: scored each aspect.",
            "scores": rated.scores,
            "confidence": rated.confidence,
        },
        separators=(",", ":"),
    )


def judge_level(config: AIJudgeConfig, seed: int, prompt: str, a: str, b: str, levels: int) -> int:
    """The level (1-based) the judge gives a side in this order (module doc)."""
    gap = response_quality(prompt, a) - response_quality(prompt, b)
    level = max(1, level_of(gap, levels))
    draw = seeded_rng(seed, "ai-level", prompt, a, b)
    if levels > 1 and draw.random() >= config.level_accuracy:
        step = draw.choice((-1, 1))
        level = level + step if 1 <= level + step <= levels else level - step
    return level


def _graded_content(config: AIJudgeConfig, seed: int, user: str, schema: Any) -> str:
    shown = parse_pair(user)
    try:
        props = schema["properties"]
        unsure = "tie" in props["winner"]["enum"]
        levels = [lv for lv in props["level"]["enum"] if not (unsure and lv == UNSURE)]
    except (KeyError, TypeError) as exc:
        raise BadRequest("the graded schema lists no winner and level enums") from exc
    if shown is None or not levels:
        raise BadRequest("the user message is not a pairwise judging prompt")
    prompt, a, b = shown
    verdict = judge(config, seed, prompt, a, b)
    winner = verdict.winner
    if winner == "tie" and not unsure:
        winner = "A"
    level = (
        UNSURE
        if winner == "tie"
        else levels[judge_level(config, seed, prompt, a, b, len(levels)) - 1]
    )
    return json.dumps(
        {
            "rationale": f"Simulated judge: answer {winner} reads better ({level}).",
            "winner": winner,
            "level": level,
            "confidence": verdict.confidence,
        },
        separators=(",", ":"),
    )


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class BadRequest(ValueError):
    """The request is not one the simulated judge can answer (HTTP 400)."""


def completion_body(
    config: AIJudgeConfig, seed: int, body: dict[str, Any], completion_id: str
) -> dict[str, Any]:
    """The ChatCompletion the simulated judge returns for a chat-completions request body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array")
    user = next(
        (
            m.get("content")
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        None,
    )
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        raise BadRequest("the simulated judge answers structured-output requests only")
    # What to answer is what the schema asks for (its name, as connectors/aijudge sends it).
    schema_name = (fmt.get("json_schema") or {}).get("name")
    if schema_name == "rating" and isinstance(user, str):
        schema = (fmt.get("json_schema") or {}).get("schema")
        content = _rating_content(config, seed, user, schema)
    elif schema_name == "graded_pairwise_verdict" and isinstance(user, str):
        schema = (fmt.get("json_schema") or {}).get("schema")
        content = _graded_content(config, seed, user, schema)
    elif schema_name in ("ranking", "ranking_with_ties") and isinstance(user, str):
        content = _ranking_content(config, seed, user, ties=schema_name == "ranking_with_ties")
    else:
        shown = parse_pair(user) if isinstance(user, str) else None
        if shown is None:
            raise BadRequest("the user message is not a pairwise judging prompt")
        prompt, a, b = shown
        verdict = judge(config, seed, prompt, a, b)
        content = json.dumps(
            {
                "rationale": f"Simulated judge: answer {verdict.winner} reads better.",
                "winner": verdict.winner,
                "confidence": verdict.confidence,
            },
            separators=(",", ":"),
        )
    prompt_tokens = sum(_tokens(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    completion_tokens = _tokens(content)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": str(body.get("model", config.model)),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_simulated",
    }


def model_body(model: str) -> dict[str, Any]:
    """GET /v1/models/{model} (openai-python `types/model.py`: id, created, object, owned_by)."""
    return {"id": model, "object": "model", "created": CREATED, "owned_by": "crowdloop-simulator"}
