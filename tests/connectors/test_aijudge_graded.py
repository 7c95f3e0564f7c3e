"""The AI judge on graded comparisons (CompareTask.scale), against the fake OpenAI API
(tests/contract/harness_aijudge.py): what is sent, how a level is read and checked, and how
the two position-swapped asks combine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.connectors.aijudge.kinds import KINDS, combined_grade
from crowdloop.models.domain import (
    Capability,
    CompareTask,
    PreferenceAnswer,
    Quarantined,
    Submission,
    TaskItem,
)
from tests.connectors.test_aijudge import LONG, SHORT, items, make, run
from tests.contract.harness_aijudge import FakeOpenAI, completion

SCALE = ("slightly better", "better", "much better")
# The request an ungraded pair sent before graded comparisons existed: recorded from main at
# 4a6ded7 (items(1) of test_aijudge.py, the first order), so a plain pair's bytes are pinned.
PLAIN_REQUEST = Path(__file__).parents[1] / "fixtures" / "aijudge_pairwise_request.json"


def graded(n: int, *, unsure: bool = True, left: str = SHORT, right: str = LONG) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"c:graded-{i}.0",
            group=f"graded-{i}",
            payload=CompareTask(
                instruction="Which answer is better, and by how much?",
                prompt=f"Top rivers, take {i}",
                left=left,
                right=right,
                scale=SCALE,
                unsure=unsure,
            ),
            overlap=3,
        )
        for i in range(n)
    ]


def said(winner: str, level: str, confidence: float = 0.8) -> dict[str, object]:
    return completion(
        json.dumps({"rationale": "r", "winner": winner, "level": level, "confidence": confidence})
    )


def test_the_judge_declares_graded_comparisons() -> None:
    assert Capability.GRADED_PAIRWISE in AIJudgeConnector.capabilities
    assert Capability.GRADED_PAIRWISE in KINDS["compare"].capabilities


def test_a_graded_pair_shows_the_scale_and_asks_for_a_level_enum_in_both_orders(
    tmp_path: Path,
) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (submission,) = run(connector, graded(1))
    assert fake.completions == 2
    first, second = fake.requests
    for body in (first, second):
        system = next(m["content"] for m in body["messages"] if m["role"] == "system")
        assert '"slightly better"; "better"; "much better"' in system
        assert 'tie with the level "unsure"' in system
        fmt = body["response_format"]["json_schema"]
        assert fmt["name"] == "graded_pairwise_verdict" and fmt["strict"] is True
        schema = fmt["schema"]
        assert schema["required"] == ["rationale", "winner", "level", "confidence"]
        assert schema["additionalProperties"] is False
        assert schema["properties"]["level"]["enum"] == [*SCALE, "unsure"]
        assert schema["properties"]["winner"]["enum"] == ["A", "B", "tie"]
    swapped = next(m["content"] for m in second["messages"] if m["role"] == "user")
    assert swapped.index(LONG + "\n[The End of Assistant A") < swapped.index(
        "[The Start of Assistant B's Answer]\n" + SHORT
    )
    assert isinstance(submission, Submission)
    # The fake: the longer answer (right) wins, two lines longer -> level 2 in both orders.
    assert submission.answer == PreferenceAnswer(
        choice="right", confidence=0.9, position_consistent=True, level=2
    )


def test_a_scale_without_unsure_offers_no_tie(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite", position_swap=False) as connector:
        run(connector, graded(1, unsure=False))
    (body,) = fake.requests
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["level"]["enum"] == list(SCALE)
    assert schema["properties"]["winner"]["enum"] == ["A", "B"]
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    assert "There is no tie" in system


def test_an_ungraded_pair_is_asked_byte_for_byte_as_before(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite") as connector:
        run(connector, items(1))
    recorded = json.loads(PLAIN_REQUEST.read_text())
    assert json.dumps(fake.requests[0], sort_keys=True) == json.dumps(recorded, sort_keys=True)


def test_agreeing_orders_keep_the_weaker_level(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    # Shown as is, A (left) is "much better"; swapped, B (left again) is only "better".
    fake.scripted = [said("A", "much better", 0.9), said("B", "better", 0.7)]
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (submission,) = run(connector, graded(1))
    assert isinstance(submission, Submission)
    answer = submission.answer
    assert isinstance(answer, PreferenceAnswer)
    assert (answer.choice, answer.level, answer.position_consistent) == ("left", 2, True)
    assert answer.confidence == pytest.approx(0.8)  # the mean of the two orders'


@pytest.mark.parametrize(
    ("unsure", "expected"),
    [(True, ("tie", None)), (False, ("left", 1))],
)
def test_orders_that_disagree_on_the_side_give_unsure_or_the_weakest_level(
    tmp_path: Path, unsure: bool, expected: tuple[str, int | None]
) -> None:
    fake = FakeOpenAI()
    # "A" both times: left as shown, right once swapped: the position decided, not content.
    fake.scripted = [said("A", "much better", 0.9), said("A", "better", 0.6)]
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (submission,) = run(connector, graded(1, unsure=unsure))
    assert isinstance(submission, Submission)
    answer = submission.answer
    assert isinstance(answer, PreferenceAnswer)
    assert (answer.choice, answer.level) == expected
    assert answer.position_consistent is False and answer.confidence == 0.6


def test_a_side_against_unsure_is_unsure_and_both_unsure_is_a_consistent_tie() -> None:
    assert combined_grade(("left", 0.9, 3), ("tie", 0.8, None), unsure=True) == ("tie", None)
    assert combined_grade(("tie", 0.9, None), ("tie", 0.8, None), unsure=True) == ("tie", None)
    assert combined_grade(("right", 0.9, 1), ("right", 0.8, 3), unsure=True) == ("right", 1)


@pytest.mark.parametrize(
    ("reply", "unsure", "reason"),
    [
        (said("A", "extremely better"), True, "the level 'extremely better' of winner A"),
        (said("A", "unsure"), True, "is not on the scale"),
        (said("tie", "better"), True, "goes with a tie"),
        (said("tie", "unsure"), False, "a tie on a scale without unsure"),
        (
            completion(json.dumps({"rationale": "r", "winner": "A", "confidence": 0.8})),
            True,
            "not the graded verdict schema",
        ),
        (
            completion(
                json.dumps({"rationale": "r", "winner": "A", "level": 2, "confidence": 0.8})
            ),
            True,
            "not the graded verdict schema",
        ),
    ],
)
def test_a_garbled_level_is_quarantined_with_the_reason_and_raw_text(
    tmp_path: Path, reply: dict[str, object], unsure: bool, reason: str
) -> None:
    fake = FakeOpenAI()
    fake.scripted = [reply]
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (got,) = run(connector, graded(1, unsure=unsure))
    assert isinstance(got, Quarantined)
    assert reason in got.reason
    content = reply["choices"][0]["message"]["content"]  # type: ignore[index]
    assert content in json.loads(got.raw)


def test_the_quote_covers_the_graded_schema_and_instruction(tmp_path: Path) -> None:
    tasks = graded(3, left="Köln liegt am Rhein", right="東京は日本の首都です")
    priced_in = {"price_per_1k_input": "1", "max_tokens": 64}
    quote = AIJudgeConnector.quote(priced_in, tasks)
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite", **priced_in) as connector:
        run(connector, tasks)
    read = sum(
        sum(len(str(m["content"]).encode()) for m in r["messages"])
        + len(json.dumps(r["response_format"]["json_schema"]["schema"]).encode())
        for r in fake.requests
    )
    assert fake.completions == 6
    assert quote.worst.amount * 1000 >= read
    # The scale's levels and the level property cost more than a plain pair's request.
    plain = items(3, left="Köln liegt am Rhein", right="東京は日本の首都です")
    assert quote.worst.amount > AIJudgeConnector.quote(priced_in, plain).worst.amount
