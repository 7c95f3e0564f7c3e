"""The task world the simulated crowd lives in: top-5 lists.

Prompts ask for a top-5 list of a topic; answers are numbered lists. The catalog is the
hidden truth: simulated workers write and judge from the oracle functions here
(`prompt_ok`, `response_quality`) and the writers below, and the demo
(`crowdloop.demo.top5`) builds model candidates and golden items from the same catalog,
so every answer a simulated worker gives can be scored against a known ground truth.

Everything random takes an explicit `random.Random`; nothing uses the global RNG.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from functools import lru_cache

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

PROMPT_TEMPLATES: tuple[str, ...] = (
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


# --- rendering -----------------------------------------------------------------------------


def make_prompt(topic: str, variant: int) -> str:
    if topic not in CATALOG:
        raise KeyError(f"unknown topic {topic!r}; known: {', '.join(sorted(CATALOG))}")
    return PROMPT_TEMPLATES[variant % len(PROMPT_TEMPLATES)].format(topic=topic)


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


def junk_text(rng: random.Random) -> str:
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
        base = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
        return base + rng.choice(_PROMPT_CONTEXTS)
    if rng.random() < 0.5:
        return junk_text(rng)
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


def wrong_items(topic: str, rng: random.Random, k: int) -> list[str]:
    return rng.sample(_WRONG_ITEMS[topic], k)


def write_response(prompt: str, rng: random.Random, good: bool) -> str:
    topic = prompt_topic(prompt)
    if good:
        if topic is None:
            return "The prompt does not say what the list should be about."
        n_valid = 5 if rng.random() < 0.7 else 4
        items = rng.sample(CATALOG[topic], n_valid) + wrong_items(topic, rng, 5 - n_valid)
        rng.shuffle(items)
        return render_list(items)
    if topic is None or rng.random() < 0.5:
        return junk_text(rng)
    # A lazy two-line list: at most 2 valid items, quality <= 0.4.
    return render_list(rng.sample(CATALOG[topic], 2))
