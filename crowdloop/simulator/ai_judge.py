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

from crowdloop.connectors.aijudge.prompt import parse_pair
from crowdloop.ids import seeded_rng
from crowdloop.simulator.config import AIJudgeConfig
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


def judge(config: AIJudgeConfig, seed: int, prompt: str, a: str, b: str) -> Judgment:
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
    winner = "tie" if understood_text is None else "A" if understood_text == a else "B"
    order = seeded_rng(seed, "ai-order", prompt, a, b)
    if order.random() < config.position_bias:
        winner = "A"
    right = winner == truth
    mean = config.confidence_right if right else config.confidence_wrong
    s = order.gauss(mean, config.confidence_sd)
    confidence = round(1.0 / (1.0 + math.exp(-s)), 3)
    return Judgment(winner=winner, confidence=confidence, right=right, truth=truth)


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
    shown = parse_pair(user) if isinstance(user, str) else None
    if shown is None:
        raise BadRequest("the user message is not a pairwise judging prompt")
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        raise BadRequest("the simulated judge answers structured-output requests only")
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
