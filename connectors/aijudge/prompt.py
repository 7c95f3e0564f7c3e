"""What the judge is asked: a system instruction and one user message per task and order.

The layout follows MT-Bench's pairwise judge prompt (Zheng et al., 2023, "Judging
LLM-as-a-Judge"): the question, then each answer between start/end markers, and a
verdict of A, B or tie. A ranking shows K answers the same way, lettered A, B, C, ...
(RankGPT-style listwise ranking, Sun et al., 2023), and asks for their letters best
first. A rating shows one answer the same way (unlettered) and then the aspects to score,
each with its scale and what its points mean (HelpSteer's attributes by default), in the
order given: a second ask lists them reversed. The answer itself comes back as structured
output (models.py). `parse_answers`
reads the texts back out of a rendered message; the simulated judge
(crowdloop/simulator/ai_judge.py) uses it to know what it was shown.
"""

from __future__ import annotations

import re
import string

# The level of a graded verdict whose winner is "tie": the schema (models.py) offers it and
# the simulated judge answers it, so it lives here, beside the prompt both read.
UNSURE = "unsure"

SYSTEM = (
    "You are an impartial judge. Compare the two AI assistants' answers to the user's "
    "question below. Judge relevance, correctness, completeness and clarity; do not let "
    "the order in which the answers are shown, their length or the assistants' names "
    "influence you. {instruction}\n"
    "Reply with your rationale, the winner (A, B, or tie when neither is better) and your "
    "confidence, the probability that your verdict is the right one."
)

# A graded comparison (CompareTask.scale) adds how much better, on the task's levels, the
# way a human worker is asked (Llama 2's scale by default); an ungraded pair is unchanged.
GRADED = (
    "\nAlso say how much better the winner is, on this scale (weakest first): {levels}.{unsure}"
)
GRADED_UNSURE = (
    ' When neither answer is better, or you cannot tell, answer tie with the level "unsure".'
)

RANKING_SYSTEM = (
    "You are an impartial judge. Rank the {k} AI assistants' answers to the user's "
    "question below from best to worst. Judge relevance, correctness, completeness and "
    "clarity; do not let the order in which the answers are shown, their length or the "
    "assistants' names influence you. {instruction}\n"
    "Reply with your rationale, the ranking ({how}) and your confidence, the probability "
    "that you ordered a pair of answers the right way."
)
_HOW = "every answer's letter exactly once, best first"
_HOW_TIES = (
    "groups of letters, best group first; answers of equal quality share a group, and "
    "every answer's letter appears exactly once"
)

RATING_SYSTEM = (
    "You are an impartial judge. Rate the AI assistant's answer to the user's question "
    "below on each aspect listed after it, on that aspect's integer scale. Judge the answer "
    "itself; do not let its length or the order in which the aspects are listed influence "
    "you. {instruction}\n"
    "Reply with your rationale, a score for every aspect and your confidence, the "
    "probability that each of your scores is within one point of an expert's (null if you "
    "cannot tell)."
)

_ONE_ANSWER = "[The Start of Assistant's Answer]\n{text}\n[The End of Assistant's Answer]"
_PARSE_RATING = re.compile(
    r"\A\[Question\]\n(?P<prompt>.*?)\n\n\[The Start of Assistant's Answer\]\n"
    r"(?P<response>.*)\n\[The End of Assistant's Answer\]\n\n\[Aspects\]\n",
    re.DOTALL,
)

_ANSWER = (
    "[The Start of Assistant {label}'s Answer]\n{text}\n[The End of Assistant {label}'s Answer]"
)

_PARSE_QUESTION = re.compile(
    r"\A\[Question\]\n(?P<prompt>.*?)\n\n(?=\[The Start of Assistant A)", re.DOTALL
)


def labels(k: int) -> list[str]:
    """The letters K answers are shown under: A, B, C, ..."""
    return list(string.ascii_uppercase[:k])


def system_message(instruction: str) -> str:
    return SYSTEM.format(instruction=instruction.strip())


def graded_system_message(instruction: str, levels: tuple[str, ...], unsure: bool) -> str:
    """The pairwise instruction plus the scale's levels; ties only where `unsure` offers them."""
    shown = "; ".join(f'"{label}"' for label in levels)
    return system_message(instruction) + GRADED.format(
        levels=shown, unsure=GRADED_UNSURE if unsure else " There is no tie: pick A or B."
    )


def ranking_system_message(instruction: str, k: int, ties: bool) -> str:
    how = _HOW_TIES if ties else _HOW
    return RANKING_SYSTEM.format(k=k, instruction=instruction.strip(), how=how)


def rating_system_message(instruction: str) -> str:
    return RATING_SYSTEM.format(instruction=instruction.strip())


def render_rating(prompt: str, response: str, aspects: list[str]) -> str:
    """The question, the answer, then one line per aspect (already described) in the order
    given."""
    shown = "\n".join(f"- {line}" for line in aspects)
    answer = _ONE_ANSWER.format(text=response)
    return f"[Question]\n{prompt}\n\n{answer}\n\n[Aspects]\n{shown}"


def describe_aspect(
    name: str, low: int, high: int, description: str, point_labels: tuple[str, ...]
) -> str:
    """One aspect's line: its name, scale, description and what each point is called."""
    line = f"{name} (integer from {low} to {high})"
    if description.strip():
        line += f": {description.strip()}"
    if point_labels:
        named = ", ".join(f"{low + i} = {label}" for i, label in enumerate(point_labels))
        line += f" [{named}]"
    return line


def parse_rating(message: str) -> tuple[str, str] | None:
    """(prompt, response) of a message `render_rating` wrote; None otherwise."""
    found = _PARSE_RATING.match(message)
    return None if found is None else (found["prompt"], found["response"])


def render_answers(prompt: str, texts: list[str]) -> str:
    """The question, then each answer lettered in the order given."""
    shown = "\n\n".join(
        _ANSWER.format(label=label, text=text)
        for label, text in zip(labels(len(texts)), texts, strict=True)
    )
    return f"[Question]\n{prompt}\n\n{shown}"


def render_pair(prompt: str, a: str, b: str) -> str:
    return render_answers(prompt, [a, b])


def parse_answers(message: str) -> tuple[str, list[str]] | None:
    """(prompt, answers in the order shown) of a message `render_answers` wrote; None
    otherwise."""
    head = _PARSE_QUESTION.match(message)
    if head is None:
        return None
    rest = message[head.end() :]
    texts: list[str] = []
    for label in string.ascii_uppercase:
        start = f"[The Start of Assistant {label}'s Answer]\n"
        end = f"\n[The End of Assistant {label}'s Answer]"
        if not rest.startswith(start):
            break
        stop = rest.find(end, len(start))
        if stop < 0:
            return None
        texts.append(rest[len(start) : stop])
        rest = rest[stop + len(end) :]
        if rest.startswith("\n\n"):
            rest = rest[2:]
        elif rest:
            return None
    if rest or len(texts) < 2:
        return None
    return head["prompt"], texts


def parse_pair(message: str) -> tuple[str, str, str] | None:
    """(prompt, answer A, answer B) of a message `render_pair` wrote; None otherwise."""
    found = parse_answers(message)
    if found is None or len(found[1]) != 2:
        return None
    prompt, (a, b) = found
    return prompt, a, b
