"""The "top-5 lists" demo domain: prompts ask for a top-5 list of a topic, answers are lists.

The catalog doubles as the hidden truth: the simulator's workers answer from the oracle
functions here (`prompt_ok`, `response_quality`), and the demo's generators build model
candidates and golden control items from the same catalog, so every answer a simulated
worker gives can be scored against a known ground truth.

Everything random takes an explicit `random.Random` or seed; nothing uses the global RNG.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG: dict[str, list[str]] = {
    "fruits": [
        "apple", "banana", "cherry", "mango", "orange", "pear", "pineapple", "grape",
        "strawberry", "kiwi", "peach", "plum", "watermelon", "apricot",
    ],
    "vegetables": [
        "carrot", "broccoli", "spinach", "potato", "onion", "cabbage", "cucumber",
        "lettuce", "cauliflower", "zucchini", "eggplant", "celery", "radish",
    ],
    "programming languages": [
        "python", "java", "c", "c++", "rust", "go", "javascript", "typescript", "ruby",
        "haskell", "kotlin", "swift", "scala", "julia",
    ],
    "european capitals": [
        "paris", "berlin", "madrid", "rome", "vienna", "lisbon", "prague", "warsaw",
        "amsterdam", "brussels", "dublin", "athens", "stockholm", "oslo", "helsinki",
    ],
    "dog breeds": [
        "labrador retriever", "german shepherd", "golden retriever", "beagle", "poodle",
        "bulldog", "dachshund", "boxer", "rottweiler", "husky", "chihuahua", "corgi",
    ],
    "musical instruments": [
        "piano", "violin", "guitar", "drums", "flute", "cello", "trumpet", "saxophone",
        "clarinet", "harp", "oboe", "trombone",
    ],
    "board games": [
        "chess", "go", "monopoly", "scrabble", "catan", "risk", "backgammon", "checkers",
        "carcassonne", "ticket to ride", "pandemic", "cluedo",
    ],
    "sports": [
        "football", "basketball", "tennis", "cricket", "baseball", "golf", "rugby",
        "volleyball", "hockey", "swimming", "cycling", "boxing",
    ],
    "chemical elements": [
        "hydrogen", "helium", "carbon", "nitrogen", "oxygen", "iron", "gold", "silver",
        "copper", "sodium", "neon", "calcium", "uranium",
    ],
    "asian countries": [
        "japan", "china", "india", "korea", "vietnam", "thailand", "indonesia",
        "malaysia", "nepal", "mongolia", "pakistan", "philippines",
    ],
    "mammals": [
        "elephant", "whale", "dolphin", "lion", "tiger", "bear", "wolf", "horse",
        "giraffe", "bat", "kangaroo", "otter",
    ],
    "rivers": [
        "nile", "amazon", "danube", "mississippi", "yangtze", "rhine", "thames", "ganges",
        "volga", "mekong", "congo", "seine",
    ],
}  # fmt: skip

_PROMPT_TEMPLATES: tuple[str, ...] = (
    "List the top 5 {topic}.",
    "What are five good examples of {topic}? Give a top-5 list.",
    "Give me your top 5 {topic}, as a numbered list.",
    "Name 5 well-known {topic}, one per line, numbered.",
)

# Words a careless worker strings together; none of them is a catalog item or topic.
_JUNK_WORDS: tuple[str, ...] = (
    "lorem", "ipsum", "asdf", "qwerty", "blah", "thing", "stuff", "whatever", "hmm",
    "random", "words", "test", "ok", "sure", "maybe", "nothing", "foo", "bar",
)  # fmt: skip

_VAGUE_PROMPTS: tuple[str, ...] = (
    "Tell me something.",
    "hello?",
    "List some things.",
    "what is the best",
    "Write anything you like.",
)

_NUMBERED_LINE = re.compile(r"^\s*(\d{1,2})\s*[.)]\s*(.+?)\s*$")
_ITEM_TO_TOPICS: dict[str, frozenset[str]] = {}
for _topic, _items in CATALOG.items():
    for _item in _items:
        _ITEM_TO_TOPICS[_item] = _ITEM_TO_TOPICS.get(_item, frozenset()) | {_topic}
# Per topic: items that look like list entries but belong to other topics only.
_WRONG_ITEMS: dict[str, list[str]] = {
    topic: sorted(item for item, topics in _ITEM_TO_TOPICS.items() if topic not in topics)
    for topic in CATALOG
}
# Longest topic first so a topic that contains another's name would still win.
_TOPIC_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (topic, re.compile(rf"\b{re.escape(topic)}\b"))
    for topic in sorted(CATALOG, key=len, reverse=True)
)
_ASKS_FOR_FIVE = re.compile(r"\b(5|five)\b")


def stable_id(prefix: str, *parts: object) -> str:
    """A short id that depends only on its parts (never on Python's salted hash)."""
    digest = hashlib.blake2b("|".join(map(str, (prefix, *parts))).encode(), digest_size=5)
    return f"{prefix}-{digest.hexdigest()}"


def seeded_rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


# --- rendering -----------------------------------------------------------------------------


def make_prompt(topic: str, variant: int) -> str:
    if topic not in CATALOG:
        raise KeyError(f"unknown topic {topic!r}; known: {', '.join(sorted(CATALOG))}")
    return _PROMPT_TEMPLATES[variant % len(_PROMPT_TEMPLATES)].format(topic=topic)


def render_list(items: Iterable[str]) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))


def parse_list(text: str) -> list[str]:
    """The items of the numbered lines ("1. x" or "1) x"), in order; other lines are ignored."""
    items: list[str] = []
    for line in text.splitlines():
        match = _NUMBERED_LINE.match(line)
        if match:
            items.append(match.group(2))
    return items


# --- oracle --------------------------------------------------------------------------------


# The oracle functions are pure and see the same few texts over and over (one response
# appears in many comparisons), so they are memoised.
@lru_cache(maxsize=65_536)
def prompt_topic(text: str) -> str | None:
    lowered = text.lower()
    for topic, pattern in _TOPIC_PATTERNS:
        if pattern.search(lowered):
            return topic
    return None


def prompt_ok(text: str) -> bool:
    """A usable prompt names a catalog topic and asks for five of them."""
    return bool(_ASKS_FOR_FIVE.search(text.lower())) and prompt_topic(text) is not None


@lru_cache(maxsize=65_536)
def response_quality(prompt: str, text: str) -> float:
    """Distinct valid items of the prompt's topic among the first five numbered lines, / 5."""
    topic = prompt_topic(prompt)
    if topic is None:
        return 0.0
    valid = set(CATALOG[topic])
    seen = {item.strip().lower() for item in parse_list(text)[:5]}
    return len(seen & valid) / 5


# --- text writers used by simulated workers ------------------------------------------------


def _junk_text(rng: random.Random) -> str:
    return " ".join(rng.choice(_JUNK_WORDS) for _ in range(rng.randint(3, 8)))


# What a careful writer adds to a request: two people rarely write the very same prompt.
_PROMPT_CONTEXTS: tuple[str, ...] = (
    "", " I am preparing a quiz night.", " It is for my daughter's school project.",
    " Keep each entry short.", " I want to learn something new this week.",
    " Please add nothing but the list.", " Pick the ones most people know.",
    " This is for a trivia card game.", " I need it for a presentation.",
    " Skip the obvious explanations.", " Assume I know very little about them.",
    " We are settling an argument at dinner.",
)  # fmt: skip


def write_prompt(topic: str, rng: random.Random, good: bool) -> str:
    if good:
        base = make_prompt(topic, rng.randrange(len(_PROMPT_TEMPLATES)))
        return base + rng.choice(_PROMPT_CONTEXTS)
    if rng.random() < 0.5:
        return _junk_text(rng)
    return rng.choice(_VAGUE_PROMPTS)


def other_topic(topic: str | None, rng: random.Random) -> str:
    """A catalog topic other than `topic` (what an off-topic writer writes about)."""
    return rng.choice([t for t in CATALOG if t != topic])


def write_lazy(kind: str, rng: random.Random) -> str:
    """The least a lazy writer gets away with: a vague line, or a list of two."""
    if kind == "prompt":
        return rng.choice(_VAGUE_PROMPTS)
    return render_list(rng.sample(CATALOG[rng.choice(list(CATALOG))], 2))


def cosmetic_copy(text: str, rng: random.Random) -> str:
    """A copy made to look new: lines reordered and renumbered, case or punctuation changed."""
    items = parse_list(text)
    if len(items) >= 2:
        rng.shuffle(items)
        return render_list(item.title() if rng.random() < 0.5 else item for item in items)
    edit = rng.randrange(3)
    if edit == 0:
        return text.upper()
    if edit == 1:
        return text.rstrip(".?!") + "!"
    return "  " + text.replace(" ", "  ") + "  "


def _wrong_items(topic: str, rng: random.Random, k: int) -> list[str]:
    return rng.sample(_WRONG_ITEMS[topic], k)


def write_response(prompt: str, rng: random.Random, good: bool) -> str:
    topic = prompt_topic(prompt)
    if good:
        if topic is None:
            return "The prompt does not say what the list should be about."
        n_valid = 5 if rng.random() < 0.7 else 4
        items = rng.sample(CATALOG[topic], n_valid) + _wrong_items(topic, rng, 5 - n_valid)
        rng.shuffle(items)
        return render_list(items)
    if topic is None or rng.random() < 0.5:
        return _junk_text(rng)
    # A lazy two-line list: at most 2 valid items, quality <= 0.4.
    return render_list(rng.sample(CATALOG[topic], 2))


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
    items = rng.sample(CATALOG[topic], n_valid) + _wrong_items(topic, rng, 5 - n_valid)
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
            prompt = make_prompt(topic, prompt_rng.randrange(len(_PROMPT_TEMPLATES)))
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
        return _junk_text(rng)
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
        prompt = make_prompt(topic, rng.randrange(len(_PROMPT_TEMPLATES)))
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
        prompt = make_prompt(topic, rng.randrange(len(_PROMPT_TEMPLATES)))
        elsewhere = other_topic(topic, rng)
        if target == "prompt":
            if off:
                text = make_prompt(elsewhere, rng.randrange(len(_PROMPT_TEMPLATES)))
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
