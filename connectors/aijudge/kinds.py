"""What the judge does per task kind: the requests a task is asked in, how each answer is
read, how the orders combine, and the answer crowdloop gets back.

One `JudgeKind` per task kind the judge answers (`KINDS`, keyed by the payload's `kind`):
the connector only asks, bills, records and pages; everything kind-specific is here. A new
task kind is one more subclass and one more entry in `KINDS`:
its prompt (prompt.py), its output schema (models.py), its reader, how its orders combine,
the ledger fields it keeps (`combine`'s `detail` is free-form JSON) and its Answer.

Position bias is measured the same way for every kind: each task is asked once in the
order shown and, with `position_swap`, once more in the reverse order (for a pair that is
the swap), and each answer is mapped back to the task's own positions before the two are
compared. A rating shows one answer, so what is reversed there is the list of aspects
(and the order of the schema's score properties, which is the order a model writes them).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from crowdloop.aggregation.rankings import kendall_tau
from crowdloop.connectors.aijudge.models import (
    VERDICT_SCHEMA,
    GradedVerdict,
    RankingVerdict,
    RatingVerdict,
    Verdict,
    graded_verdict_schema,
    ranking_schema,
    rating_schema,
)
from crowdloop.connectors.aijudge.prompt import (
    UNSURE,
    describe_aspect,
    graded_system_message,
    labels,
    ranking_system_message,
    rating_system_message,
    render_answers,
    render_pair,
    render_rating,
    system_message,
)
from crowdloop.connectors.aijudge.store import StoredAnswer
from crowdloop.connectors.answers import first_error
from crowdloop.models.domain import (
    Answer,
    Capability,
    CompareTask,
    PreferenceAnswer,
    RankingAnswer,
    RankTask,
    RateTask,
    RatingAnswer,
)

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


class Unreadable(Exception):
    """An answer that does not fit what was asked (the task's submission is quarantined)."""

    def __init__(self, reason: str, raw: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


@dataclass(frozen=True)
class Ask(Generic[R]):
    """One request: the messages, the output schema, and how to read its answer back in
    the task's own positions (raises Unreadable)."""

    system: str
    user: str
    schema_name: str
    schema: dict[str, Any]
    read: Callable[[str], R]

    def size(self) -> int:
        """Bytes the model reads: the messages and the schema (servers put it in the prompt)."""
        return (
            len(self.system.encode())
            + len(json.dumps(self.schema).encode())
            + len(self.user.encode())
        )


class JudgeKind(ABC, Generic[P, R]):
    task_kind: ClassVar[str]  # the payload's `kind`
    stages: ClassVar[frozenset[str]]  # BatchSpec stages whose batches carry it
    capabilities: ClassVar[frozenset[Capability]]
    payload_type: type[P]

    def payload(self, data: Mapping[str, Any] | BaseModel) -> P:
        if isinstance(data, self.payload_type):
            return data
        return self.payload_type.model_validate(data)

    @abstractmethod
    def asks(self, payload: P, swap: bool) -> list[Ask[R]]:
        """The requests one task is asked in: the order shown, then the reverse with `swap`."""

    @abstractmethod
    def combine(self, payload: P, readings: list[R]) -> dict[str, Any]:
        """The ledger's fields of a readable answer: `choice` (never None: None means
        quarantined), `confidence`, `consistent` and `detail` (JSON, kind-specific)."""

    @abstractmethod
    def answer(self, stored: StoredAnswer) -> Answer:
        """The Answer crowdloop reads, from the ledger's row."""


def _validated(model: type[BaseModel], raw: str, what: str) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise Unreadable(f"not the {what} schema ({first_error(exc)})", raw) from exc


# --- pairwise comparisons -----------------------------------------------------------------

# What the model's A/B mean on the task's left/right in each order.
_AS_SHOWN = {"A": "left", "B": "right", "tie": "tie"}
_SWAPPED = {"A": "right", "B": "left", "tie": "tie"}


# One order's reading of a pair: the side in the task's positions, the confidence, and on a
# graded task the level (1-based, weakest first; None with a tie or on a plain task).
PairReading = tuple[str, float, int | None]


def combined_grade(first: PairReading, second: PairReading, unsure: bool) -> tuple[str, int | None]:
    """One side and level from the two orders' graded readings. Agreeing sides: that side
    at the weaker of the two levels (a judge that needs the better position to call a
    difference strong has not shown it is strong). Both unsure: unsure. Disagreeing sides
    (or a side against unsure): unsure where the scale offers it, since the judge's
    position, not the content, decided; without unsure, the first order's side (the order
    humans see) at the weakest level. Such a pair is inconsistent, so routing sends it to
    humans under the default `human_on_swap_disagreement`."""
    (side, _, level), (other, _, other_level) = first, second
    if side == other:
        if level is None or other_level is None:
            return side, None
        return side, min(level, other_level)
    if unsure:
        return "tie", None
    return side, 1


class PairwiseKind(JudgeKind[CompareTask, PairReading]):
    task_kind = "compare"
    stages = frozenset({"compare", "exam"})
    capabilities = frozenset({Capability.PAIRWISE, Capability.GRADED_PAIRWISE})
    payload_type = CompareTask

    def asks(self, payload: CompareTask, swap: bool) -> list[Ask[PairReading]]:
        orders = [(payload.left, payload.right, _AS_SHOWN)]
        if swap:
            orders.append((payload.right, payload.left, _SWAPPED))
        if payload.scale:
            return self._graded_asks(payload, orders)
        system = system_message(payload.instruction)

        def reader(mapping: dict[str, str]) -> Callable[[str], PairReading]:
            def read(raw: str) -> PairReading:
                verdict = cast(Verdict, _validated(Verdict, raw, "verdict"))
                return mapping[verdict.winner], verdict.confidence, None

            return read

        return [
            Ask(
                system,
                render_pair(payload.prompt, a, b),
                "pairwise_verdict",
                VERDICT_SCHEMA,
                reader(mapping),
            )
            for a, b, mapping in orders
        ]

    def _graded_asks(
        self, payload: CompareTask, orders: list[tuple[str, str, dict[str, str]]]
    ) -> list[Ask[PairReading]]:
        levels = list(payload.scale)
        system = graded_system_message(payload.instruction, payload.scale, payload.unsure)
        schema = graded_verdict_schema(levels, payload.unsure)

        def reader(mapping: dict[str, str]) -> Callable[[str], PairReading]:
            def read(raw: str) -> PairReading:
                verdict = cast(GradedVerdict, _validated(GradedVerdict, raw, "graded verdict"))
                if verdict.winner == "tie":
                    if not payload.unsure:
                        raise Unreadable(
                            "a tie on a scale without unsure (the winner must be A or B)", raw
                        )
                    if verdict.level != UNSURE:
                        raise Unreadable(
                            f'the level {verdict.level!r} goes with a tie (want "{UNSURE}")', raw
                        )
                    return "tie", verdict.confidence, None
                if verdict.level not in levels:
                    raise Unreadable(
                        f"the level {verdict.level!r} of winner {verdict.winner} is not on the "
                        f"scale ({', '.join(levels)})",
                        raw,
                    )
                return mapping[verdict.winner], verdict.confidence, levels.index(verdict.level) + 1

            return read

        return [
            Ask(
                system,
                render_pair(payload.prompt, a, b),
                "graded_pairwise_verdict",
                schema,
                reader(mapping),
            )
            for a, b, mapping in orders
        ]

    def combine(self, payload: CompareTask, readings: list[PairReading]) -> dict[str, Any]:
        choice, confidence, level = readings[0]
        consistent: bool | None = None
        if len(readings) == 2:
            consistent = readings[0][0] == readings[1][0]
            # Agreeing orders: their mean; disagreeing ones: the lower (the pair goes to
            # humans under the default routing anyway).
            other = readings[1][1]
            confidence = (confidence + other) / 2 if consistent else min(confidence, other)
            if payload.scale:
                choice, level = combined_grade(readings[0], readings[1], payload.unsure)
        out: dict[str, Any] = {"choice": choice, "confidence": confidence, "consistent": consistent}
        if payload.scale:
            # A plain pair's ledger row stays as it was (no detail).
            detail: dict[str, Any] = {"level": level}
            if len(readings) == 2:
                detail["orders"] = [[r[0], r[2]] for r in readings]
            out["detail"] = detail
        return out

    def answer(self, stored: StoredAnswer) -> Answer:
        level = (stored.detail or {}).get("level")
        return PreferenceAnswer(
            choice=cast(Any, stored.choice),
            confidence=stored.confidence,
            position_consistent=stored.consistent,
            level=level if stored.choice != "tie" else None,
        )


# --- k-wise rankings ----------------------------------------------------------------------

RANKED = "ranking"  # the ledger's `choice` of a readable ranking (the places are in detail)


def _places(groups: list[list[str]], letters: list[str], raw: str) -> list[int]:
    """Places (1 best, tied letters share the group's place) of the letters as shown; the
    groups must name every letter shown exactly once."""
    named = [letter for group in groups for letter in group]
    if any(not group for group in groups) or sorted(named) != sorted(letters):
        raise Unreadable(
            f"the ranking {json.dumps(groups)} is not an order of the answers shown "
            f"({', '.join(letters)}, each exactly once)",
            raw,
        )
    place_of: dict[str, int] = {}
    for group in groups:
        place = len(place_of) + 1
        place_of.update({letter: place for letter in group})
    return [place_of[letter] for letter in letters]


def combined_places(first: list[int], second: list[int], ties: bool) -> list[int]:
    """One ranking from the two orders': by the sum of each response's places (Borda), so
    a response one order lifted by its position alone meets the other order halfway.
    Without ties, equal sums are broken by the first order (then by position); with ties
    allowed, equal sums share a place."""
    total = [a + b for a, b in zip(first, second, strict=True)]
    order = sorted(range(len(total)), key=lambda i: (total[i], first[i], i))
    places = [0] * len(total)
    for position, i in enumerate(order):
        prev = order[position - 1] if position else None
        same = ties and prev is not None and total[prev] == total[i]
        places[i] = places[prev] if same and prev is not None else position + 1
    return places


class RankingKind(JudgeKind[RankTask, tuple[list[int], float]]):
    task_kind = "rank"
    stages = frozenset({"rank"})
    capabilities = frozenset({Capability.RANKING, Capability.RANKING_TIES})
    payload_type = RankTask

    def asks(self, payload: RankTask, swap: bool) -> list[Ask[tuple[list[int], float]]]:
        k = len(payload.responses)
        letters = labels(k)
        shown = list(range(k))
        orders = [shown, shown[::-1]] if swap else [shown]
        system = ranking_system_message(payload.instruction, k, payload.ties)
        schema = ranking_schema(letters, payload.ties)
        name = "ranking_with_ties" if payload.ties else "ranking"

        def reader(order: list[int]) -> Callable[[str], tuple[list[int], float]]:
            def read(raw: str) -> tuple[list[int], float]:
                verdict = cast(RankingVerdict, _validated(RankingVerdict, raw, "ranking"))
                flat = all(isinstance(x, str) for x in verdict.ranking)
                if flat == payload.ties:
                    want = "groups of letters" if payload.ties else "a flat list of letters"
                    raise Unreadable(f"not the ranking schema (the ranking must be {want})", raw)
                groups = (
                    [[x] for x in cast(list[str], verdict.ranking)]
                    if flat
                    else cast(list[list[str]], verdict.ranking)
                )
                by_display = _places(groups, letters, raw)
                places = [0] * k
                for display, task_position in enumerate(order):
                    places[task_position] = by_display[display]
                return places, verdict.confidence

            return read

        return [
            Ask(
                system,
                render_answers(payload.prompt, [payload.responses[i] for i in order]),
                name,
                schema,
                reader(order),
            )
            for order in orders
        ]

    def combine(self, payload: RankTask, readings: list[tuple[list[int], float]]) -> dict[str, Any]:
        places, confidence = readings[0]
        detail: dict[str, Any] = {"ranks": places, "order_agreement": None}
        if len(readings) == 2:
            other, other_confidence = readings[1]
            detail = {
                "ranks": combined_places(places, other, payload.ties),
                "order_agreement": round(kendall_tau(places, other), 6),
                "orders": [places, other],
            }
            confidence = (confidence + other_confidence) / 2
        return {"choice": RANKED, "confidence": confidence, "consistent": None, "detail": detail}

    def answer(self, stored: StoredAnswer) -> Answer:
        detail = stored.detail or {}
        return RankingAnswer(
            ranks=tuple(detail["ranks"]),
            confidence=stored.confidence,
            order_agreement=detail.get("order_agreement"),
        )


# --- multi-aspect ratings -------------------------------------------------------------------

RATED = "rating"  # the ledger's `choice` of a readable rating (the scores are in detail)


def combined_scores(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    """One score per aspect from the two orders': their mean, a half rounded toward the
    first order's score (an integer scale has no half point; the first order is the one
    shown to humans)."""
    out: dict[str, int] = {}
    for name, a in first.items():
        b = second[name]
        out[name] = a + (b - a) // 2 if b >= a else a - (a - b) // 2
    return out


class RatingKind(JudgeKind[RateTask, tuple[dict[str, int], float | None]]):
    task_kind = "rate"
    stages = frozenset({"rate"})
    capabilities = frozenset({Capability.RATING})
    payload_type = RateTask

    def asks(self, payload: RateTask, swap: bool) -> list[Ask[tuple[dict[str, int], float | None]]]:
        aspects = list(payload.aspects)
        orders = [aspects, aspects[::-1]] if swap else [aspects]
        system = rating_system_message(payload.instruction)
        scales = {a.name: (a.low, a.high) for a in aspects}

        def read(raw: str) -> tuple[dict[str, int], float | None]:
            verdict = cast(RatingVerdict, _validated(RatingVerdict, raw, "rating"))
            missing = [name for name in scales if name not in verdict.scores]
            unknown = sorted(set(verdict.scores) - set(scales))
            if missing or unknown:
                what = f"no score for {', '.join(missing)}" if missing else ""
                if unknown:
                    what += ("; " if what else "") + f"unknown aspect {', '.join(unknown)}"
                raise Unreadable(f"not the rating schema ({what})", raw)
            for name, (low, high) in scales.items():
                score = verdict.scores[name]
                if not low <= score <= high:
                    raise Unreadable(
                        f"the score {score} of {name} is not on its scale {low}-{high}", raw
                    )
            return {name: verdict.scores[name] for name in scales}, verdict.confidence

        return [
            Ask(
                system,
                render_rating(
                    payload.prompt,
                    payload.response,
                    [
                        describe_aspect(a.name, a.low, a.high, a.description, a.labels)
                        for a in order
                    ],
                ),
                "rating",
                rating_schema([(a.name, a.low, a.high, a.description) for a in order]),
                read,
            )
            for order in orders
        ]

    def combine(
        self, payload: RateTask, readings: list[tuple[dict[str, int], float | None]]
    ) -> dict[str, Any]:
        scores, confidence = readings[0]
        detail: dict[str, Any] = {"scores": scores, "order_difference": None}
        if len(readings) == 2:
            other, other_confidence = readings[1]
            detail = {
                "scores": combined_scores(scores, other),
                "order_difference": max(abs(scores[n] - other[n]) for n in scores),
                "orders": [scores, other],
            }
            # A confidence the model did not state in either order is not one.
            confidence = (
                None
                if confidence is None or other_confidence is None
                else (confidence + other_confidence) / 2
            )
        return {"choice": RATED, "confidence": confidence, "consistent": None, "detail": detail}

    def answer(self, stored: StoredAnswer) -> Answer:
        detail = stored.detail or {}
        return RatingAnswer(
            scores=dict(detail["scores"]),
            confidence=stored.confidence,
            order_difference=detail.get("order_difference"),
        )


KINDS: dict[str, JudgeKind[Any, Any]] = {
    kind.task_kind: kind for kind in (PairwiseKind(), RankingKind(), RatingKind())
}
