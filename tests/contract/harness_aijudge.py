"""The AI judge under the contract suite: a fake OpenAI chat-completions API on a respx router.

The fake answers the two endpoints the connector calls, in the shapes of OpenAI's API as
openai/openai-python records them:
- GET /v1/models/{model}: `src/openai/types/model.py` (id, object "model", created,
  owned_by); an unknown model is a 404.
- POST /v1/chat/completions: `src/openai/types/chat/chat_completion.py` and the live
  structured-output snapshots of `tests/lib/chat/test_completions.py`
  (test_parse_pydantic_model: content is the schema's JSON as text, "refusal": null,
  "logprobs": null, finish_reason "stop", usage {prompt_tokens, completion_tokens,
  total_tokens, completion_tokens_details {reasoning_tokens}}, system_fingerprint;
  test_parse_pydantic_model_refusal: content null and the refusal text;
  test_parse_max_tokens_reached: the JSON cut short with finish_reason "length").
- Bearer auth. The error body of a refused key is not taken from a source (the connector
  reads only the status code), so it is kept minimal.

Its judge is deterministic and content-based: the longer answer wins (ties when equal),
with confidence 0.9, so a position swap agrees. Asked for a ranking (the response_format's
schema named "ranking" or "ranking_with_ties", as the connector sends it), it orders the
answers by length, longest first (equal lengths share a group with ties allowed), in the
same ChatCompletion shape: only `message.content` differs, the schema's JSON as text.
Asked for a rating (schema "rating"), it scores every aspect its schema lists, in the
schema's order, as the lowest point plus the answer's number of lines (capped at the top),
with confidence 0.9.
Asked for a graded verdict (schema "graded_pairwise_verdict"), the longer answer wins as
above and its level is the scale's label (read from the schema's `level` enum, weakest
first) at the difference in lines less one, capped at the strongest; equal lengths are a
tie with "unsure" where the schema offers it (else A at the weakest level); same shape.
Tests can queue raw replies in `FakeOpenAI.scripted` (a refusal, a cut-off answer,
garbage) and count completions.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import httpx
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.connectors.aijudge.credentials import AIJudgeCredentials
from crowdloop.connectors.aijudge.options import AIJudgeOptions
from crowdloop.connectors.aijudge.prompt import labels, parse_answers, parse_pair, parse_rating
from crowdloop.connectors.aijudge.store import AnswerStore
from crowdloop.connectors.base import Connector
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, BatchSpec, BatchState, Money, Stage, TaskItem

HOST = "https://api.openai.com"
BASE = f"{HOST}/v1"
MODEL = "gpt-4o-2024-08-06"
API_KEY = "sk-test-5c1f0e9d2b7a4c8e9f3a6b1d0c2e4f7a"
CREATED = 1727346143  # the snapshot's `created`: the fake never reads the clock

Handler = Callable[..., httpx.Response]


def _error(status: int, message: str, kind: str = "invalid_request_error") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": kind}})


def completion(
    content: str | None,
    *,
    refusal: str | None = None,
    finish: str = "stop",
    prompt_tokens: int = 79,
    completion_tokens: int = 14,
    n: int = 1,
) -> dict[str, Any]:
    """A ChatCompletion as test_parse_pydantic_model's snapshot has it."""
    return {
        "id": f"chatcmpl-fake{n:06d}",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_5050236cbd",
    }


class FakeOpenAI:
    def __init__(self, api_key: str = API_KEY, models: tuple[str, ...] = (MODEL,)) -> None:
        self.api_key = api_key
        self.models = set(models)
        self.completions = 0  # completions generated (what would be billed)
        self.requests: list[dict[str, Any]] = []  # chat bodies received, in order
        self.scripted: list[dict[str, Any]] = []  # raw replies served before the judge's
        self.router = respx.Router(base_url=HOST, assert_all_called=False)
        self._route("GET", r"^/v1/models/(?P<model>.+)$", self._model)
        self._route("POST", r"^/v1/chat/completions$", self._chat)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        def guarded(request: httpx.Request, **params: str) -> httpx.Response:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "Incorrect API key provided.")
            return handler(request, **params)

        self.router.route(method=method, path__regex=pattern).mock(side_effect=guarded)

    def _model(self, request: httpx.Request, model: str) -> httpx.Response:
        if model not in self.models:
            return _error(404, f"The model '{model}' does not exist")
        return httpx.Response(
            200, json={"id": model, "object": "model", "created": CREATED, "owned_by": "system"}
        )

    def _chat(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("model") not in self.models:
            return _error(404, f"The model '{body.get('model')}' does not exist")
        fmt = body.get("response_format", {})
        schema = fmt.get("json_schema", {})
        if fmt.get("type") != "json_schema" or not schema.get("name") or "schema" not in schema:
            return _error(400, "response_format must be a json_schema with a name and schema")
        self.requests.append(body)
        self.completions += 1
        if self.scripted:
            return httpx.Response(200, json=self.scripted.pop(0))
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if schema["name"] == "rating":
            return self._rate(user, schema["schema"])
        if schema["name"] == "graded_pairwise_verdict":
            return self._grade(user, schema["schema"])
        if schema["name"] in ("ranking", "ranking_with_ties"):
            return self._rank(user, ties=schema["name"] == "ranking_with_ties")
        shown = parse_pair(user)
        if shown is None:
            return _error(400, "not a pairwise prompt")
        _, a, b = shown
        winner = "tie" if len(a) == len(b) else ("A" if len(a) > len(b) else "B")
        content = json.dumps(
            {
                "rationale": "The longer answer is more complete.",
                "winner": winner,
                "confidence": 0.9,
            },
            separators=(",", ":"),
        )
        return httpx.Response(
            200,
            json=completion(content, prompt_tokens=len(user) // 4 + 60, n=self.completions),
        )

    def _grade(self, user: str, schema: dict[str, Any]) -> httpx.Response:
        shown = parse_pair(user)
        if shown is None:
            return _error(400, "not a pairwise prompt")
        _, a, b = shown
        unsure = "tie" in schema["properties"]["winner"]["enum"]
        levels = [
            x for x in schema["properties"]["level"]["enum"] if not (unsure and x == "unsure")
        ]
        if len(a) == len(b):
            winner, level = ("tie", "unsure") if unsure else ("A", levels[0])
        else:
            lines = abs(len(a.splitlines()) - len(b.splitlines()))
            winner = "A" if len(a) > len(b) else "B"
            level = levels[min(len(levels) - 1, max(0, lines - 1))]
        content = json.dumps(
            {
                "rationale": "The longer answer is more complete.",
                "winner": winner,
                "level": level,
                "confidence": 0.9,
            },
            separators=(",", ":"),
        )
        return httpx.Response(
            200,
            json=completion(content, prompt_tokens=len(user) // 4 + 70, n=self.completions),
        )

    def _rank(self, user: str, *, ties: bool) -> httpx.Response:
        shown = parse_answers(user)
        if shown is None:
            return _error(400, "not a ranking prompt")
        texts = shown[1]
        by_length: dict[int, list[str]] = {}
        for letter, text in zip(labels(len(texts)), texts, strict=True):
            by_length.setdefault(len(text), []).append(letter)
        groups = [by_length[n] for n in sorted(by_length, reverse=True)]
        ranking: list[Any] = groups if ties else [x for g in groups for x in g]
        content = json.dumps(
            {
                "rationale": "Longer answers are more complete.",
                "ranking": ranking,
                "confidence": 0.9,
            },
            separators=(",", ":"),
        )
        return httpx.Response(
            200,
            json=completion(content, prompt_tokens=len(user) // 4 + 80, n=self.completions),
        )

    def _rate(self, user: str, schema: dict[str, Any]) -> httpx.Response:
        shown = parse_rating(user)
        if shown is None:
            return _error(400, "not a rating prompt")
        lines = len(shown[1].splitlines())
        aspects = schema["properties"]["scores"]["properties"]
        scores = {name: min(max(a["enum"]), min(a["enum"]) + lines) for name, a in aspects.items()}
        content = json.dumps(
            {"rationale": "Longer lists cover more.", "scores": scores, "confidence": 0.9},
            separators=(",", ":"),
        )
        return httpx.Response(
            200,
            json=completion(content, prompt_tokens=len(user) // 4 + 90, n=self.completions),
        )


class AIJudgeHarness(Harness):
    name = "aijudge"
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("GET", r"^/v1/models/"),
        # Tasks are recorded in the answer ledger; the model is asked when results are read.
        Op.ADD_ITEMS: Route("POST", r"^/v1/chat/completions$"),
        Op.LIST_SUBMISSIONS: Route("POST", r"^/v1/chat/completions$"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.secret = API_KEY
        self.fake = FakeOpenAI()
        self._dir = tempfile.TemporaryDirectory(prefix="crowdloop-contract-aijudge-")
        self.store = Path(self._dir.name) / "answers.sqlite"

    def connector(self, wrap: Wrap | None = None) -> Connector:
        transport: httpx.BaseTransport = self.fake.transport()
        credentials = AIJudgeCredentials(
            base_url=BASE, model=MODEL, api_key=SecretStr(self.secret or "")
        )
        client = credentials.get_client(
            timeout_s=5.0,
            retry=RetryPolicy(attempts=4),
            transport=wrap(transport) if wrap else transport,
            sleep=self.sleeps.append,
        )
        options = AIJudgeOptions(store=self.store, page_limit=4, max_concurrent=2)
        return AIJudgeConnector(client, credentials.model, options)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        # The judge answers each task once, when results are read from an open batch.
        status = connector.get_status(batch)
        if status.state is BatchState.CLOSED:
            return status.assignments_submitted
        return len(items)

    def created(self) -> tuple[int, int]:
        store = AnswerStore(self.store)
        try:
            batches, tasks, _ = store.counts()
        finally:
            store.close()
        return batches, tasks

    def close(self) -> None:
        self._dir.cleanup()


def make_harness() -> Harness:
    return AIJudgeHarness()


def judge_batch(
    connector: AIJudgeConnector, tasks: list[TaskItem], stage: Stage = Stage.COMPARE
) -> tuple[BatchRef, list[object]]:
    """One batch of `stage` with `tasks`, created, filled and started on the judge, and
    everything it answered read back: submissions and quarantined answers, in page order."""
    spec = BatchSpec(
        name="ai",
        stage=stage,
        instruction=f"{stage.value} (the judge reads each task's own instruction)",
        reward=Money(amount=Decimal(0)),
        campaign_id="c",
    )
    batch = connector.create_batch(spec, idempotency_key="c:ai")
    connector.add_items(batch, tasks, idempotency_key="c:ai:items")
    connector.start(batch)
    out: list[object] = []
    for page in connector.iter_submissions(batch, cursor=None):
        out.extend(page.submissions)
        out.extend(page.quarantined)
    return batch, out


__all__ = [
    "API_KEY",
    "BASE",
    "MODEL",
    "AIJudgeHarness",
    "FakeOpenAI",
    "completion",
    "judge_batch",
    "make_harness",
]
