"""What the judge is asked: a system instruction and one user message per pair and order.

The layout follows MT-Bench's pairwise judge prompt (Zheng et al., 2023, "Judging
LLM-as-a-Judge"): the question, then each answer between start/end markers, and a
verdict of A, B or tie. The verdict itself comes back as structured output (models.py).
`parse_pair` reads the three texts back out of a rendered message; the simulated judge
(crowdloop/simulator/ai_judge.py) uses it to know what it was shown.
"""

from __future__ import annotations

import re

SYSTEM = (
    "You are an impartial judge. Compare the two AI assistants' answers to the user's "
    "question below. Judge relevance, correctness, completeness and clarity; do not let "
    "the order in which the answers are shown, their length or the assistants' names "
    "influence you. {instruction}\n"
    "Reply with your rationale, the winner (A, B, or tie when neither is better) and your "
    "confidence, the probability that your verdict is the right one."
)

_TEMPLATE = (
    "[Question]\n{prompt}\n\n"
    "[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]"
)

_PARSE = re.compile(
    r"\A\[Question\]\n(?P<prompt>.*)\n\n"
    r"\[The Start of Assistant A's Answer\]\n(?P<a>.*)\n\[The End of Assistant A's Answer\]\n\n"
    r"\[The Start of Assistant B's Answer\]\n(?P<b>.*)\n\[The End of Assistant B's Answer\]\Z",
    re.DOTALL,
)


def system_message(instruction: str) -> str:
    return SYSTEM.format(instruction=instruction.strip())


def render_pair(prompt: str, a: str, b: str) -> str:
    return _TEMPLATE.format(prompt=prompt, a=a, b=b)


def parse_pair(message: str) -> tuple[str, str, str] | None:
    """(prompt, answer A, answer B) of a message `render_pair` wrote; None otherwise."""
    match = _PARSE.match(message)
    if match is None:
        return None
    return match["prompt"], match["a"], match["b"]
