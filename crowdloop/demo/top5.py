"""The "top-5 lists" demo: model candidates and golden control items for a campaign.

The catalog, the oracle and the workers' writers are the simulator's task world
(`crowdloop.simulator.world`); the generators here build the demo's inputs from the same
catalog, so every answer a simulated worker gives can be scored against a known truth.

Everything random takes an explicit `random.Random` or seed; nothing uses the global RNG.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crowdloop.ids import seeded_rng
from crowdloop.simulator.world import (
    CATALOG,
    PROMPT_TEMPLATES,
    junk_text,
    make_prompt,
    other_topic,
    render_list,
    write_prompt,
    wrong_items,
)


def stable_id(prefix: str, *parts: object) -> str:
    """A short id that depends only on its parts (never on Python's salted hash)."""
    digest = hashlib.blake2b("|".join(map(str, (prefix, *parts))).encode(), digest_size=5)
    return f"{prefix}-{digest.hexdigest()}"


# --- generators for the demo ---------------------------------------------------------------

# Probability of each item slot being a valid catalog item, per model.
MODELS: dict[str, float] = {
    "model-strong": 0.97,
    "model-good": 0.85,
    "model-mediocre": 0.6,
    "model-weak": 0.3,
}


def _topics_or_all(topics: Sequence[str] | None) -> list[str]:
    chosen = list(topics) if topics else list(CATALOG)
    unknown = [t for t in chosen if t not in CATALOG]
    if unknown:
        raise KeyError(f"unknown topics {unknown}; known: {', '.join(sorted(CATALOG))}")
    return chosen


def model_response(topic: str, skill: float, rng: random.Random) -> str:
    n_valid = sum(rng.random() < skill for _ in range(5))
    items = rng.sample(CATALOG[topic], n_valid) + wrong_items(topic, rng, 5 - n_valid)
    rng.shuffle(items)
    return render_list(items)


def generate_candidates(
    topics: Sequence[str] | None,
    seed: int,
    models: Mapping[str, float] | None = None,
    prompts_per_topic: int = 1,
) -> list[dict[str, Any]]:
    """One prompt per topic (or `prompts_per_topic`), and one response per model to each.

    `models` maps a model name to the chance each of its five list items is valid.
    """
    models = dict(models) if models else dict(MODELS)
    rows: list[dict[str, Any]] = []
    for topic in _topics_or_all(topics):
        for index in range(prompts_per_topic):
            prompt_rng = seeded_rng(seed, "candidate-prompt", topic, index)
            prompt = make_prompt(topic, prompt_rng.randrange(len(PROMPT_TEMPLATES)))
            prompt_id = stable_id("p", seed, topic, index)
            for model, skill in models.items():
                rng = seeded_rng(seed, "candidate-response", topic, index, model)
                rows.append(
                    {
                        "prompt_id": prompt_id,
                        "prompt": prompt,
                        "response_id": stable_id("r", seed, topic, index, model),
                        "response": model_response(topic, skill, rng),
                        "model": model,
                    }
                )
    return rows


def _broken_response(topic: str, rng: random.Random) -> str:
    """An answer no attentive reader could prefer or accept (quality <= 0.2)."""
    kind = rng.randrange(3)
    if kind == 0:
        return junk_text(rng)
    if kind == 1:
        return "I don't know."
    return render_list([rng.choice(CATALOG[topic])])


def generate_golden_pairs(topics: Sequence[str] | None, seed: int, n: int) -> list[dict[str, Any]]:
    """Clear-cut control pairs: a perfect list against a broken answer, side randomised."""
    chosen = _topics_or_all(topics)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = seeded_rng(seed, "golden-pair", i)
        topic = chosen[i % len(chosen)]
        prompt = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
        perfect = render_list(rng.sample(CATALOG[topic], 5))
        broken = _broken_response(topic, rng)
        answer = "left" if rng.random() < 0.5 else "right"
        left, right = (perfect, broken) if answer == "left" else (broken, perfect)
        rows.append(
            {
                "id": stable_id("gp", seed, i),
                "prompt": prompt,
                "left": left,
                "right": right,
                "answer": answer,
                "reason": f"the {answer} answer lists five valid {topic}; the other does not",
            }
        )
    return rows


def generate_golden_verifications(
    topics: Sequence[str] | None, seed: int, n: int
) -> list[dict[str, Any]]:
    """Clear-cut verify items; targets and verdicts cycle so both verdicts appear for n >= 2.

    Each names the topic its text was written for; every third of the cycle is off-topic
    (a good prompt or list about another topic), which only a verifier who reads the topic
    rejects.
    """
    chosen = _topics_or_all(topics)
    cycle = (
        ("prompt", "accept", False),
        ("response", "reject", False),
        ("response", "accept", False),
        ("prompt", "reject", False),
        ("prompt", "reject", True),
        ("response", "reject", True),
    )
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rng = seeded_rng(seed, "golden-verify", i)
        topic = chosen[i % len(chosen)]
        target, verdict, off = cycle[i % len(cycle)]
        prompt = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
        elsewhere = other_topic(topic, rng)
        if target == "prompt":
            if off:
                text = make_prompt(elsewhere, rng.randrange(len(PROMPT_TEMPLATES)))
                reason = f"asks for {elsewhere}, not {topic}"
            elif verdict == "accept":
                text, reason = prompt, f"asks for a top-5 list of {topic}"
            else:
                text = write_prompt(topic, rng, good=False)
                reason = "does not ask for a top-5 list of any topic"
            prompt = text
        elif off:
            text = render_list(rng.sample(CATALOG[elsewhere], 5))
            reason = f"five {elsewhere}, asked for {topic}"
        elif verdict == "accept":
            text = render_list(rng.sample(CATALOG[topic], 5))
            reason = f"five valid {topic}"
        else:
            text = _broken_response(topic, rng)
            reason = f"not a list of five valid {topic}"
        rows.append(
            {
                "id": stable_id("gv", seed, i),
                "target": target,
                "prompt": prompt,
                "text": text,
                "topic": topic,
                "verdict": verdict,
                "reason": reason,
            }
        )
    return rows


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return path
