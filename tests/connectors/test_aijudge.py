"""The AI judge connector against the fake OpenAI API (tests/contract/harness_aijudge.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.connectors.aijudge.credentials import (
    ENV_KEY,
    ENV_MODEL,
    ENV_TIMEOUT,
    ENV_URL,
    OPENAI_URL,
    AIJudgeCredentials,
)
from crowdloop.connectors.aijudge.options import AIJudgeOptions
from crowdloop.connectors.errors import AuthError, InvalidRequest
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    CompareTask,
    Money,
    PreferenceAnswer,
    Quarantined,
    Stage,
    Submission,
    TaskItem,
)
from tests.contract.harness_aijudge import API_KEY, BASE, MODEL, FakeOpenAI, completion, judge_batch

SHORT = "1. Nile"
LONG = "1. Nile\n2. Amazon\n3. Yangtze"


def make(fake: FakeOpenAI, store: Path | None, **options: object) -> AIJudgeConnector:
    credentials = AIJudgeCredentials(base_url=BASE, model=MODEL, api_key=SecretStr(API_KEY))
    client = credentials.get_client(
        retry=RetryPolicy(attempts=2), transport=fake.transport(), sleep=lambda _: None
    )
    opts = AIJudgeOptions.model_validate({"store": store, "max_concurrent": 1, **options})
    return AIJudgeConnector(client, credentials.model, opts)


def items(n: int, left: str = SHORT, right: str = LONG) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"c:pair-{i}.0",
            group=f"pair-{i}",
            payload=CompareTask(
                instruction="Which answer is better?",
                prompt=f"Top rivers, take {i}",
                left=left,
                right=right,
            ),
            overlap=3,
        )
        for i in range(n)
    ]


def run(connector: AIJudgeConnector, tasks: list[TaskItem]) -> tuple[BatchRef, list[object]]:
    return judge_batch(connector, tasks, Stage.COMPARE)


def test_asks_both_orders_with_a_strict_schema_and_maps_back_to_left_right(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite", temperature=0.2) as connector:
        _, got = run(connector, items(1))
    assert fake.completions == 2
    first, second = fake.requests
    assert first["model"] == MODEL and first["temperature"] == 0.2
    fmt = first["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["rationale", "winner", "confidence"]
    user = next(m["content"] for m in first["messages"] if m["role"] == "user")
    swapped = next(m["content"] for m in second["messages"] if m["role"] == "user")
    assert user.index(SHORT + "\n[The End of Assistant A") < user.index(LONG)
    assert swapped.index(LONG + "\n[The End of Assistant A") < swapped.index(
        "[The Start of Assistant B"
    )
    (submission,) = got
    assert isinstance(submission, Submission)
    # The fake prefers the longer answer: B as first shown, A once swapped; both mean right.
    assert submission.answer == PreferenceAnswer(
        choice="right", confidence=0.9, position_consistent=True
    )
    assert submission.worker_id == f"ai:{MODEL}"


def test_an_answer_that_flips_with_the_order_is_marked_inconsistent(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    say_a = json.dumps({"rationale": "first", "winner": "A", "confidence": 0.8})
    fake.scripted = [completion(say_a), completion(say_a.replace("0.8", "0.7"))]
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (submission,) = run(connector, items(1))
    assert isinstance(submission, Submission)
    assert submission.answer.choice == "left"  # the first order's verdict
    assert submission.answer.position_consistent is False
    assert submission.answer.confidence == 0.7  # the lower of the two


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (completion(None, refusal="I'm very sorry, but I can't assist with that."), "refused"),
        (completion('{"', finish="length", completion_tokens=1), "cut off"),
        (completion('{"winner": "left"}'), "not the verdict schema"),
        (completion("Assistant B is better."), "not the verdict schema"),
    ],
)
def test_unreadable_answers_are_quarantined_with_reason_and_raw_text(
    tmp_path: Path, reply: dict[str, object], reason: str
) -> None:
    fake = FakeOpenAI()
    fake.scripted = [reply]
    with make(fake, tmp_path / "s.sqlite") as connector:
        _, (got,) = run(connector, items(1))
    assert isinstance(got, Quarantined)
    assert reason in got.reason
    message = reply["choices"][0]["message"]  # type: ignore[index]
    assert (message["content"] or message["refusal"]) in json.loads(got.raw)


def test_cost_comes_from_token_usage_and_prices(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.scripted = [
        completion(
            json.dumps({"rationale": "r", "winner": "B", "confidence": 0.9}),
            prompt_tokens=1000,
            completion_tokens=100,
        ),
        completion(
            json.dumps({"rationale": "r", "winner": "A", "confidence": 0.9}),
            prompt_tokens=2000,
            completion_tokens=300,
        ),
    ]
    prices = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01"}
    with make(fake, tmp_path / "s.sqlite", **prices) as connector:
        batch, _ = run(connector, items(1))
        spent = connector.spend(batch)
    # 3,000 input tokens at 0.0025 / 1k + 400 output tokens at 0.01 / 1k
    assert spent == Money(amount=Decimal("0.0115"), currency="USD")


def test_a_rerun_reads_recorded_answers_and_never_pays_twice(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    store = tmp_path / "s.sqlite"
    with make(fake, store) as connector:
        batch, first = run(connector, items(5))
    paid = fake.completions
    assert paid == 10
    with make(fake, store) as again:  # another process, same ledger
        batch_again, second = run(again, items(5))
        assert again.get_status(batch_again).complete
    assert batch_again == batch
    assert fake.completions == paid, "a rerun asked the model again"
    assert [s.external_id for s in second] == [s.external_id for s in first]  # type: ignore[attr-defined]


def test_the_ledger_in_crowdloops_database_is_shared_by_every_worker(db_url: str) -> None:
    """The default ledger lives in crowdloop's database: a worker on another machine (here
    another connector on the same URL) reads what one already paid for, on both backends,
    and crowdloop's schema check ignores the ledger's tables."""
    from sqlalchemy import inspect

    from crowdloop.db import get_engine
    from crowdloop.migrations import schema_diff

    fake = FakeOpenAI()
    tasks = items(7)
    with make(fake, None, max_concurrent=4) as one:
        batch, first = run(one, tasks)
    assert fake.completions == 14 and len(first) == 7
    with make(fake, None, page_limit=2) as other:
        again, second = run(other, tasks)
        assert other.get_status(again).complete
    assert again == batch and fake.completions == 14, "another worker asked the model again"
    # Paged two at a time by cursor, every answer comes back once, in the order recorded.
    assert sorted(s.external_id for s in second) == sorted(s.external_id for s in first)  # type: ignore[attr-defined]
    engine = get_engine(db_url)
    assert {"aijudge_batch", "aijudge_task", "aijudge_answer"} <= set(
        inspect(engine).get_table_names()
    )
    with engine.connect() as conn:
        assert schema_diff(conn) == []


def test_without_swap_one_completion_per_task_and_no_consistency(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite", position_swap=False) as connector:
        _, got = run(connector, items(3))
    assert fake.completions == 3
    assert all(isinstance(s, Submission) and s.answer.position_consistent is None for s in got)


def test_a_paused_batch_asks_nothing_until_resumed(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite") as connector:
        spec = BatchSpec(
            name="ai",
            stage=Stage.COMPARE,
            instruction="i",
            reward=Money(amount=Decimal(0)),
            campaign_id="c",
        )
        batch = connector.create_batch(spec, idempotency_key="c:ai")
        connector.add_items(batch, items(2), idempotency_key="c:i")
        connector.start(batch)
        connector.pause(batch)
        assert [
            s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions
        ] == []
        assert fake.completions == 0
        connector.resume(batch)
        assert (
            len([s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions])
            == 2
        )


def test_a_wrong_model_fails_at_batch_creation_naming_the_connector(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with make(fake, tmp_path / "s.sqlite", model="gpt-nonexistent") as connector:
        report = connector.check()
        assert not report.ok and "does not exist" in report.failed[0].detail
    fake.api_key = "sk-other"
    with (
        make(fake, tmp_path / "s.sqlite") as connector,
        pytest.raises(AuthError, match=r"\[aijudge\]"),
    ):
        connector.create_batch(
            BatchSpec(
                name="ai",
                stage=Stage.COMPARE,
                instruction="i",
                reward=Money(amount=Decimal(0)),
                campaign_id="c",
            ),
            idempotency_key="c:x",
        )


def test_credentials_from_the_environment_with_and_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in (ENV_URL, ENV_KEY, ENV_MODEL, ENV_TIMEOUT):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match=rf"^aijudge credentials: .*{ENV_MODEL} not set"):
        AIJudgeCredentials.from_env()
    monkeypatch.setenv(ENV_MODEL, "llama3.1")
    monkeypatch.setenv(ENV_KEY, "")  # a local Ollama: no key, no Authorization header
    local = AIJudgeCredentials.from_env()
    assert (local.base_url, local.model, local.timeout_s) == (OPENAI_URL, "llama3.1", 120.0)
    assert local.auth_headers() == {}
    monkeypatch.setenv(ENV_URL, "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv(ENV_KEY, API_KEY)
    monkeypatch.setenv(ENV_TIMEOUT, "300")
    keyed = AIJudgeCredentials.from_env()
    client = keyed.get_client()
    assert client.seam.base_url == "http://127.0.0.1:11434/v1"
    assert client.seam.auth_headers == {"Authorization": f"Bearer {API_KEY}"}
    assert client.seam.timeout_s == 300.0
    client.close()


def test_the_quote_bounds_every_byte_the_model_reads_and_every_answer_at_max_tokens(
    tmp_path: Path,
) -> None:
    # Priced 1 per 1k input tokens and nothing for output: the worst case x 1000 is the
    # bound on prompt tokens, which must cover every byte of every message actually sent
    # (a token of a byte-level vocabulary is at least one byte; non-ASCII text is several
    # bytes a character) and the schema.
    tasks = items(3, left="Köln liegt am Rhein", right="東京は日本の首都です")
    fake = FakeOpenAI()
    priced_in = {"price_per_1k_input": "1", "max_tokens": 64}
    quote = AIJudgeConnector.quote(priced_in, tasks)
    with make(fake, tmp_path / "s.sqlite", **priced_in) as connector:
        run(connector, tasks)
    read = sum(
        sum(len(str(m["content"]).encode()) for m in r["messages"])
        + len(json.dumps(r["response_format"]["json_schema"]["schema"]).encode())
        for r in fake.requests
    )
    assert fake.completions == 6
    assert quote.worst.currency == "USD" and quote.worst.amount * 1000 >= read
    # Expected: about a token per four bytes, so well under the worst case.
    assert 0 < quote.expected.amount < quote.worst.amount / 3
    # Output at max_tokens per order asked; without the swap, half as many orders.
    out = {"price_per_1k_output": "1", "max_tokens": 64}
    assert AIJudgeConnector.quote(out, tasks).worst.amount * 1000 == 3 * 2 * 64
    no_swap = {**out, "position_swap": False}
    assert AIJudgeConnector.quote(no_swap, tasks).worst.amount * 1000 == 3 * 64
    # Expected answers are 200 tokens, or max_tokens when that is less.
    assert AIJudgeConnector.quote(no_swap, tasks).expected.amount * 1000 == 3 * 64
    long = {**out, "max_tokens": 1000}
    assert AIJudgeConnector.quote(long, tasks).expected.amount * 1000 == 3 * 2 * 200


def test_the_quote_refuses_an_unbounded_answer_only_when_output_is_priced() -> None:
    with pytest.raises(InvalidRequest, match=r"aijudge.*max_tokens is not set"):
        AIJudgeConnector.quote({"price_per_1k_output": "0.01"}, items(1))
    free_output = AIJudgeConnector.quote({"price_per_1k_input": "0.01"}, items(1))
    assert free_output.worst.amount > 0  # bounded anyway
