"""The AI judge on multi-aspect rating tasks, against the fake OpenAI API
(tests/contract/harness_aijudge.py: OpenAI's ChatCompletion shapes, sources named there)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.connectors.aijudge.kinds import combined_scores
from crowdloop.connectors.errors import InvalidRequest
from crowdloop.models.domain import (
    BatchRef,
    Capability,
    Money,
    Quarantined,
    RatedAspect,
    RateTask,
    RatingAnswer,
    Stage,
    Submission,
    TaskItem,
)
from tests.connectors.test_aijudge_ranking import make, users
from tests.contract.harness_aijudge import FakeOpenAI, completion, judge_batch

ASPECTS = (
    RatedAspect(name="helpfulness", low=0, high=4, description="Overall helpfulness."),
    RatedAspect(
        name="verbosity", low=1, high=5, labels=("terse", "short", "fine", "long", "rambling")
    ),
)
RESPONSE = "1. Nile\n2. Amazon"  # two lines: the fake scores each aspect low + 2


def items(n: int) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"c:ra-{i}:ai",
            group=f"ra-{i}",
            payload=RateTask(
                instruction="Rate the list of rivers.",
                prompt=f"Top rivers, take {i}",
                response=RESPONSE,
                aspects=ASPECTS,
            ),
            overlap=1,
        )
        for i in range(n)
    ]


def run(connector: AIJudgeConnector, tasks: list[TaskItem]) -> tuple[BatchRef, list[object]]:
    return judge_batch(connector, tasks, Stage.RATE)


def rating(scores: object, confidence: object = 0.8) -> str:
    return json.dumps({"rationale": "r", "scores": scores, "confidence": confidence})


def test_the_judge_declares_ratings() -> None:
    assert Capability.RATING in AIJudgeConnector.capabilities


def test_asks_with_the_aspects_in_order_and_reversed_under_a_strict_integer_schema(
    tmp_path: Path,
) -> None:
    fake = FakeOpenAI()
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, got = run(connector, items(1))
    assert fake.completions == 2
    first, second = fake.requests
    fmt = first["response_format"]["json_schema"]
    assert fmt["name"] == "rating" and fmt["strict"] is True
    schema = fmt["schema"]
    assert schema["required"] == ["rationale", "scores", "confidence"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["confidence"]["type"] == ["number", "null"]
    scores = schema["properties"]["scores"]
    assert scores["required"] == ["helpfulness", "verbosity"]
    assert scores["additionalProperties"] is False
    assert scores["properties"]["helpfulness"] == {
        "type": "integer",
        "enum": [0, 1, 2, 3, 4],
        "description": "Overall helpfulness.",
    }
    assert scores["properties"]["verbosity"]["enum"] == [1, 2, 3, 4, 5]
    reversed_scores = second["response_format"]["json_schema"]["schema"]["properties"]["scores"]
    assert reversed_scores["required"] == ["verbosity", "helpfulness"]
    assert "Rate the AI assistant's answer" in first["messages"][0]["content"]
    assert "Rate the list of rivers." in first["messages"][0]["content"]
    shown, reversed_ = users(fake)
    assert f"[The Start of Assistant's Answer]\n{RESPONSE}\n[The End" in shown
    help_line = "- helpfulness (integer from 0 to 4): Overall helpfulness."
    verb_line = (
        "- verbosity (integer from 1 to 5) [1 = terse, 2 = short, 3 = fine, 4 = long, 5 = rambling]"
    )
    assert shown.endswith(f"[Aspects]\n{help_line}\n{verb_line}")
    assert reversed_.endswith(f"[Aspects]\n{verb_line}\n{help_line}")
    (submission,) = got
    assert isinstance(submission, Submission)
    assert submission.answer == RatingAnswer(
        scores={"helpfulness": 2, "verbosity": 3}, confidence=0.9, order_difference=0
    )
    assert submission.worker_id.startswith("ai:")


def test_two_orders_that_differ_meet_halfway_and_say_by_how_much(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.scripted = [
        completion(rating({"helpfulness": 1, "verbosity": 5}, 0.9)),
        completion(rating({"verbosity": 2, "helpfulness": 2}, 0.5)),
    ]
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, (got,) = run(connector, items(1))
    assert isinstance(got, Submission) and isinstance(got.answer, RatingAnswer)
    # 1 and 2: 1.5, the half toward the first order; 5 and 2: 3.5 -> 4.
    assert got.answer.scores == {"helpfulness": 1, "verbosity": 4}
    assert got.answer.order_difference == 3
    assert got.answer.confidence == pytest.approx(0.7)


def test_combined_scores_are_the_mean_with_halves_toward_the_first_order() -> None:
    assert combined_scores({"a": 2, "b": 3, "c": 0}, {"a": 2, "b": 2, "c": 3}) == {
        "a": 2,
        "b": 3,
        "c": 1,
    }


def test_a_confidence_left_null_is_no_confidence(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.scripted = [
        completion(rating({"helpfulness": 3, "verbosity": 3}, None)),
        completion(rating({"helpfulness": 3, "verbosity": 3}, 0.9)),
    ]
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, (got,) = run(connector, items(1))
    assert isinstance(got, Submission) and isinstance(got.answer, RatingAnswer)
    assert got.answer.confidence is None and got.answer.order_difference == 0


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (rating({"helpfulness": 3}), "no score for verbosity"),
        (rating({"helpfulness": 3, "verbosity": 3, "tone": 2}), "unknown aspect tone"),
        (
            rating({"helpfulness": 7, "verbosity": 3}),
            "score 7 of helpfulness is not on its scale 0-4",
        ),
        (
            rating({"helpfulness": 3, "verbosity": 0}),
            "score 0 of verbosity is not on its scale 1-5",
        ),
        (rating({"helpfulness": "3", "verbosity": 3}), "not the rating schema"),
        (rating({"helpfulness": 2.5, "verbosity": 3}), "not the rating schema"),
        (rating({"helpfulness": 3, "verbosity": 3}, 1.5), "not the rating schema"),
        ("helpfulness: 3, verbosity: 3", "not the rating schema"),
    ],
)
def test_a_rating_that_is_not_one_score_per_aspect_on_its_scale_is_quarantined(
    tmp_path: Path, content: str, why: str
) -> None:
    fake = FakeOpenAI()
    fake.scripted = [completion(content)]  # the first order garbled; the reverse answers well
    prices = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01"}
    connector, _ = make(fake, tmp_path / "s.sqlite", **prices)
    with connector:
        batch, (got,) = run(connector, items(1))
        spent = connector.spend(batch)
    assert isinstance(got, Quarantined)
    assert why in got.reason and got.reason.startswith("aijudge: ")
    assert json.loads(got.raw)[0] == content  # the model's text is kept with the reason
    assert fake.completions == 2  # both orders were asked (and billed)
    assert spent.amount > 0


def test_a_rating_cut_off_by_the_token_cap_is_quarantined(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    cut = '{"rationale":"r","scores":{"helpfulness":3,'
    fake.scripted = [completion(cut, finish="length")]
    connector, _ = make(fake, tmp_path / "s.sqlite", position_swap=False)
    with connector:
        _, (got,) = run(connector, items(1))
    assert isinstance(got, Quarantined) and "cut off by the token cap" in got.reason
    assert fake.completions == 1


def test_cost_from_usage_and_a_quote_that_bounds_it(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.scripted = [
        completion(
            rating({"helpfulness": 3, "verbosity": 2}), prompt_tokens=500, completion_tokens=30
        ),
        completion(
            rating({"verbosity": 2, "helpfulness": 3}), prompt_tokens=500, completion_tokens=30
        ),
    ]
    options = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01", "max_tokens": 300}
    tasks = items(1)
    connector, _ = make(fake, tmp_path / "s.sqlite", **options)
    with connector:
        batch, (got,) = run(connector, tasks)
        spent = connector.spend(batch)
    # 1,000 input tokens at 0.0025 / 1k + 60 output tokens at 0.01 / 1k
    assert spent == Money(amount=Decimal("0.0031"), currency="USD")
    assert isinstance(got, Submission)
    quote = AIJudgeConnector.quote(options, tasks)
    # Every byte the model read: the messages and the schema of each order asked.
    read = sum(
        sum(len(m["content"].encode()) for m in r["messages"])
        + len(json.dumps(r["response_format"]["json_schema"]["schema"]).encode())
        for r in fake.requests
    )
    assert quote.worst.amount >= spent.amount
    assert quote.worst.amount * 1000 == pytest.approx(
        Decimal("0.0025") * (read + 2 * 32) + Decimal("0.01") * 2 * 300
    )
    one_order = AIJudgeConnector.quote({**options, "position_swap": False}, tasks)
    assert one_order.worst.amount < quote.worst.amount
    with pytest.raises(InvalidRequest, match="max_tokens is not set"):
        AIJudgeConnector.quote({"price_per_1k_output": "0.01"}, tasks)


def test_a_rerun_reads_the_ledger_and_pays_nothing_again(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    store = tmp_path / "s.sqlite"
    connector, _ = make(fake, store)
    with connector:
        _, first = run(connector, items(2))
    again, _ = make(fake, store)
    with again:
        _, second = run(again, items(2))
    assert fake.completions == 4
    assert [s.answer for s in first if isinstance(s, Submission)] == [
        s.answer for s in second if isinstance(s, Submission)
    ]
