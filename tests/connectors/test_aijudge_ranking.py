"""The AI judge on k-wise ranking tasks, against the fake OpenAI API
(tests/contract/harness_aijudge.py: OpenAI's ChatCompletion shapes, sources named there)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.connectors.aijudge.credentials import AIJudgeCredentials
from crowdloop.connectors.aijudge.kinds import combined_places
from crowdloop.connectors.aijudge.options import AIJudgeOptions
from crowdloop.connectors.errors import InvalidRequest
from crowdloop.models.domain import (
    BatchRef,
    Capability,
    Money,
    Quarantined,
    RankingAnswer,
    RankTask,
    Stage,
    Submission,
    TaskItem,
)
from tests.contract.harness_aijudge import API_KEY, BASE, MODEL, FakeOpenAI, completion, judge_batch

# Shown in this order; by length (the fake's judge) the best is the third, then the first.
RESPONSES = ("1. Nile\n2. Amazon", "1. Nile", "1. Nile\n2. Amazon\n3. Yangtze", "Nile?")


class RateLimitedFirst(httpx.BaseTransport):
    """The first `n` chat-completions requests get OpenAI's 429 with a Retry-After."""

    def __init__(self, inner: httpx.BaseTransport, n: int) -> None:
        self.inner, self.left, self.seen = inner, n, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions") and self.left:
            self.left -= 1
            self.seen += 1
            return httpx.Response(
                429,
                headers={"retry-after": "2"},
                json={"error": {"message": "Rate limit reached", "type": "requests"}},
            )
        return self.inner.handle_request(request)


def make(
    fake: FakeOpenAI, store: Path, transport: httpx.BaseTransport | None = None, **options: object
) -> tuple[AIJudgeConnector, list[float]]:
    credentials = AIJudgeCredentials(base_url=BASE, model=MODEL, api_key=SecretStr(API_KEY))
    sleeps: list[float] = []
    client = credentials.get_client(
        retry=RetryPolicy(attempts=3),
        transport=transport or fake.transport(),
        sleep=sleeps.append,
    )
    opts = AIJudgeOptions.model_validate({"store": store, "max_concurrent": 1, **options})
    return AIJudgeConnector(client, credentials.model, opts), sleeps


def sets(n: int, *, ties: bool = False, responses: tuple[str, ...] = RESPONSES) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"c:rk-{i}:ai",
            group=f"rk-{i}",
            payload=RankTask(
                instruction="Rank the lists of rivers.",
                prompt=f"Top rivers, take {i}",
                responses=responses,
                ties=ties,
            ),
            overlap=1,
        )
        for i in range(n)
    ]


def run(connector: AIJudgeConnector, tasks: list[TaskItem]) -> tuple[BatchRef, list[object]]:
    return judge_batch(connector, tasks, Stage.RANK)


def users(fake: FakeOpenAI) -> list[str]:
    return [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in fake.requests]


def test_the_judge_declares_rankings_with_ties() -> None:
    assert {Capability.RANKING, Capability.RANKING_TIES, Capability.PAIRWISE} <= (
        AIJudgeConnector.capabilities
    )


def test_asks_in_the_order_shown_and_reversed_with_a_strict_letter_schema(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, got = run(connector, sets(1))
    assert fake.completions == 2
    first = fake.requests[0]
    fmt = first["response_format"]["json_schema"]
    assert fmt["name"] == "ranking" and fmt["strict"] is True
    schema = fmt["schema"]
    assert schema["required"] == ["rationale", "ranking", "confidence"]
    assert schema["properties"]["ranking"]["items"] == {"type": "string", "enum": list("ABCD")}
    assert "Rank the 4 AI assistants' answers" in first["messages"][0]["content"]
    shown, reversed_ = users(fake)
    # Order shown: A is the first response; reversed: A is the last one.
    assert shown.index(RESPONSES[0] + "\n[The End of Assistant A") > 0
    assert reversed_.index(RESPONSES[3] + "\n[The End of Assistant A") > 0
    assert reversed_.index(RESPONSES[0] + "\n[The End of Assistant D") > 0
    (submission,) = got
    assert isinstance(submission, Submission)
    # Longest first, in the task's own positions, both orders agreeing.
    assert submission.answer == RankingAnswer(
        ranks=(2, 3, 1, 4), confidence=0.9, order_agreement=1.0
    )
    assert submission.worker_id == f"ai:{MODEL}"


def test_a_ranking_that_follows_the_positions_disagrees_with_itself(tmp_path: Path) -> None:
    """Both orders answered "as shown": in the task's positions the second is the reverse
    of the first (tau -1); the combination falls back on the first order for equal sums."""
    fake = FakeOpenAI()
    as_shown = {"rationale": "first is best", "ranking": list("ABCD"), "confidence": 0.8}
    fake.scripted = [
        completion(json.dumps(as_shown)),
        completion(json.dumps({**as_shown, "confidence": 0.6})),
    ]
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, (submission,) = run(connector, sets(1))
    assert isinstance(submission, Submission) and isinstance(submission.answer, RankingAnswer)
    assert submission.answer.order_agreement == -1.0
    assert submission.answer.ranks == (1, 2, 3, 4)
    assert submission.answer.confidence == pytest.approx(0.7)


def test_the_two_orders_combine_by_their_places_summed() -> None:
    # One swap between the orders (tau 2/3): the pair swapped is broken by the first order.
    assert combined_places([1, 2, 3, 4], [2, 1, 3, 4], ties=False) == [1, 2, 3, 4]
    assert combined_places([1, 2, 3, 4], [2, 1, 3, 4], ties=True) == [1, 1, 3, 4]
    # A response the first order lifted to the top (the second puts it last) loses the
    # top to the one both orders rank high.
    assert combined_places([1, 2, 3, 4], [4, 1, 2, 3], ties=False) == [2, 1, 3, 4]


@pytest.mark.parametrize(
    ("ranking", "why"),
    [
        (["A", "B", "B", "D"], "not an order of the answers shown"),
        (["A", "B", "C"], "not an order of the answers shown"),
        (["A", "B", "C", "E"], "not an order of the answers shown"),
        ([["A"], ["B", "C"], ["D"]], "must be a flat list of letters"),
        ("A > B > C > D", "not the ranking schema"),
    ],
)
def test_a_ranking_that_is_not_a_permutation_of_the_shown_answers_is_quarantined(
    tmp_path: Path, ranking: object, why: str
) -> None:
    fake = FakeOpenAI()
    bad = json.dumps({"rationale": "r", "ranking": ranking, "confidence": 0.9})
    fake.scripted = [completion(bad)]  # the first order garbled; the reverse answers well
    prices = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01"}
    connector, _ = make(fake, tmp_path / "s.sqlite", **prices)
    with connector:
        batch, (got,) = run(connector, sets(1))
        spent = connector.spend(batch)
    assert isinstance(got, Quarantined)
    assert why in got.reason and got.reason.startswith("aijudge: ")
    assert json.loads(got.raw)[0] == bad  # the model's text is kept with the reason
    assert fake.completions == 2  # both orders were asked (and billed)
    assert spent.amount > 0


def test_ties_where_allowed_come_back_as_shared_places(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    even = ("1. Nile", "2. Nile", "1. Nile\n2. Amazon", "x")  # two of the same length
    connector, _ = make(fake, tmp_path / "s.sqlite")
    with connector:
        _, (got,) = run(connector, sets(1, ties=True, responses=even))
    fmt = fake.requests[0]["response_format"]["json_schema"]
    assert fmt["name"] == "ranking_with_ties"
    assert fmt["schema"]["properties"]["ranking"]["items"]["type"] == "array"
    assert isinstance(got, Submission)
    assert got.answer == RankingAnswer(ranks=(2, 2, 1, 4), confidence=0.9, order_agreement=1.0)


def test_rate_limits_are_waited_out_and_the_answer_is_paid_once(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    limited = RateLimitedFirst(fake.transport(), 2)
    connector, sleeps = make(fake, tmp_path / "s.sqlite", transport=limited)
    with connector:
        _, (got,) = run(connector, sets(1))
    assert isinstance(got, Submission) and isinstance(got.answer, RankingAnswer)
    assert limited.seen == 2 and sleeps == [2.0, 2.0]  # Retry-After honoured
    assert fake.completions == 2  # one completion per order: a 429 generates nothing


def test_cost_from_usage_and_a_quote_that_bounds_it(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    answer = json.dumps({"rationale": "r", "ranking": list("CABD"), "confidence": 0.9})
    fake.scripted = [
        completion(answer, prompt_tokens=700, completion_tokens=40),
        completion(answer.replace("CABD", "C"), prompt_tokens=700, completion_tokens=40),
    ]
    fake.scripted[1]["choices"][0]["message"]["content"] = json.dumps(
        {"rationale": "r", "ranking": list("BDCA"), "confidence": 0.7}
    )
    options = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01", "max_tokens": 300}
    tasks = sets(1)
    connector, _ = make(fake, tmp_path / "s.sqlite", **options)
    with connector:
        batch, (got,) = run(connector, tasks)
        spent = connector.spend(batch)
    # 1,400 input tokens at 0.0025 / 1k + 80 output tokens at 0.01 / 1k
    assert spent == Money(amount=Decimal("0.0043"), currency="USD")
    assert isinstance(got, Submission) and isinstance(got.answer, RankingAnswer)
    # Reversed, BDCA names responses 2, 0, 1, 3 of the task: the same order as CABD.
    assert got.answer.order_agreement == 1.0
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
    with pytest.raises(InvalidRequest, match="max_tokens is not set"):
        AIJudgeConnector.quote({"price_per_1k_output": "0.01"}, tasks)


def test_a_task_kind_the_judge_does_not_answer_is_refused_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    from crowdloop.models.domain import WriteResponseTask

    fake = FakeOpenAI()
    connector, _ = make(fake, tmp_path / "s.sqlite")
    writing = TaskItem(
        key="c:w:ai",
        group="w",
        payload=WriteResponseTask(instruction="Answer", prompt="Top rivers?"),
        overlap=1,
    )
    with connector, pytest.raises(InvalidRequest, match="not write_response"):
        run(connector, [*sets(1), writing])
    assert fake.completions == 0


def test_a_ledger_written_before_rankings_gains_the_column_and_keeps_its_answers(
    tmp_path: Path,
) -> None:
    """A ledger file from before rankings (no `detail` column) still pages its pair answers
    and takes ranking answers once opened."""
    import sqlite3

    from tests.connectors.test_aijudge import items as pairs

    fake = FakeOpenAI()
    store = tmp_path / "s.sqlite"
    connector, _ = make(fake, store)
    with connector:
        run(connector, [])
        batch = connector.find_batch("c:ai")
        assert batch is not None
        connector.add_items(batch, pairs(1), idempotency_key="c:ai:pairs")
        before = [s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions]
    with sqlite3.connect(store) as db:  # the ledger as the previous release left it
        db.execute("ALTER TABLE answer DROP COLUMN detail")
    assert "detail" not in {
        r[1] for r in sqlite3.connect(store).execute("PRAGMA table_info(answer)")
    }
    again, _ = make(fake, store)
    with again:
        again.add_items(batch, sets(1), idempotency_key="c:ai:sets")
        after = [s for p in again.iter_submissions(batch, cursor=None) for s in p.submissions]
    assert after[: len(before)] == before
    assert [type(s.answer) for s in after[len(before) :]] == [RankingAnswer]
