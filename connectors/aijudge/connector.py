"""An AI judge as a marketplace: comparison, k-wise ranking and multi-aspect rating tasks
answered by an OpenAI-compatible model.

Endpoints, auth and retries: see client.py (GET /models/{model}, POST /chat/completions,
bearer key, retried on 408/429/5xx through the shared HTTP seam, Retry-After honoured).

How the marketplace contract maps onto a chat-completions API, which keeps nothing:
- `create_batch` checks that the model is served (GET /models/{model}) and records the
  batch under its key in the answer ledger (store.py); `add_items` records the tasks under
  their keys. Both are create-once: a replayed key returns what exists.
- The model answers a task when its submissions are read (`iter_submissions`) while the
  batch is open: every task without an answer is asked (`max_concurrent` requests at a
  time), and each answer is written to the ledger as it arrives. A task is asked once, so
  a rerun, a retried flow or another process reads the answer instead of paying twice;
  only an answer generated and lost before it was written (a crash in between, or a 5xx
  after the generation that the seam retries) is paid again. A draft, paused or stopped
  batch asks nothing.
- A task is answered once whatever its overlap: the same model at the same settings is
  one judge, not several.
- What is asked and read per task kind is in kinds.py (one class per kind: pairs,
  rankings, ratings). With `position_swap`, each task is asked twice, the second time
  with the answers in reverse order (a pair: swapped). A pair's verdicts are mapped back to the
  task's left/right; the submission carries the first order's choice, the mean of the two
  confidences when the orders agree (the lower one when they do not) and whether the two
  orders agreed (`PreferenceAnswer.position_consistent`). A graded pair (a task with a
  `scale`) also carries a level: the weaker of two agreeing orders' levels; orders that
  disagree on the side give "unsure" where the scale offers it (kinds.combined_grade).
  A ranking's two orders are
  mapped back to the task's positions; the submission carries their Borda combination,
  the mean confidence and Kendall's tau-b between them (`RankingAnswer.order_agreement`).
  A rating is asked a second time with its aspects listed in reverse order; the
  submission carries each aspect's mean score (a half toward the first ask), the mean
  confidence and the largest per-aspect difference (`RatingAnswer.order_difference`).
  An answer that cannot be read (not the schema's JSON, a ranking that is not an order of
  the answers shown, a graded level off the scale or against its side, a rating without
  exactly one on-scale integer per aspect, cut off by
  the token cap, or a refusal) quarantines the task's submission with the reason and the
  raw text.
- Cost: each completion's usage.prompt_tokens and usage.completion_tokens times the
  per-1k prices in the options; `spend` reports the batch's sum (SPEND_REPORT).
- Workers: one, `ai:<model>`. Review, blocking and qualifications do not apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, ClassVar, Self

from pydantic import BaseModel

from crowdloop.connectors._http import client_options
from crowdloop.connectors.aijudge.client import AIJudgeClient
from crowdloop.connectors.aijudge.kinds import KINDS, Ask, JudgeKind, Unreadable
from crowdloop.connectors.aijudge.models import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    JsonSchemaFormat,
    ResponseFormat,
)
from crowdloop.connectors.aijudge.options import CONNECTOR_NAME, AIJudgeOptions
from crowdloop.connectors.aijudge.store import AnswerStore, StoredAnswer, StoredBatch, StoredTask
from crowdloop.connectors.answers import quarantined
from crowdloop.connectors.base import CheckItem, CheckReport, Connector, probe
from crowdloop.connectors.errors import InvalidRequest, NotFound
from crowdloop.ids import digest
from crowdloop.models.domain import (
    AddItemsResult,
    BatchRef,
    BatchSpec,
    BatchState,
    BatchStatus,
    Capability,
    CostQuote,
    Money,
    Quarantined,
    Submission,
    SubmissionPage,
    TaskItem,
)

logger = logging.getLogger(__name__)

# Special tokens a chat template adds around the messages (role markers, separators), a
# generous bound over what OpenAI documents (3 per message + 3 per reply) and Llama 3's.
_TEMPLATE_TOKENS = 32


# Expected-case sizes (the estimate's, never the budget's): OpenAI's rule of thumb of about
# four characters of English a token, and a short rationale with its verdict.
_CHARS_PER_TOKEN = 4
_ANSWER_TOKENS = 200
_STAGES = frozenset(stage for kind in KINDS.values() for stage in kind.stages)


def _kind_of(connector: str, item: TaskItem) -> JudgeKind[Any, Any]:
    kind = KINDS.get(item.payload.kind)
    if kind is None:
        raise InvalidRequest(
            connector,
            f"task {item.key}: the AI judge answers {' and '.join(sorted(KINDS))} tasks, "
            f"not {item.payload.kind}",
        )
    return kind


class AIJudgeConnector(Connector):
    name: ClassVar[str] = CONNECTOR_NAME
    options_model: ClassVar[type[BaseModel] | None] = AIJudgeOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.IDEMPOTENT_CREATE,
            Capability.SPEND_REPORT,
            Capability.PAUSE,
        }
    ).union(*(kind.capabilities for kind in KINDS.values()))
    max_items_per_call: ClassVar[int] = 1000

    def __init__(self, client: AIJudgeClient, model: str, options: AIJudgeOptions) -> None:
        self.client = client
        self.model = options.model or model
        self.options = options
        self.store = AnswerStore(options.store)
        self.worker_id = f"ai:{self.model}"

    @classmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        # Imported here: the credentials base imports Prefect (see connectors/credentials.py).
        from crowdloop.connectors.aijudge.credentials import AIJudgeCredentials
        from crowdloop.connectors.credentials import resolve_credentials

        opts = AIJudgeOptions.model_validate(dict(options))
        credentials = resolve_credentials(AIJudgeCredentials, credentials_block)
        client = credentials.get_client(**client_options(opts.model_dump()))
        return cls(client, credentials.model, opts)

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def check(self) -> CheckReport:
        def served() -> str:
            found = self.client.get_model(self.model)
            owner = f" (owned by {found.owned_by})" if found.owned_by else ""
            return f"model {found.id!r} is served{owner}; the key was accepted"

        return CheckReport(
            self.name,
            (
                probe("credentials and model", served),
                CheckItem(
                    "balance",
                    None,
                    "chat-completions APIs expose no balance; spend is counted from token usage",
                ),
            ),
        )

    # --- creates (keyed) -------------------------------------------------------------------

    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef:
        if spec.stage.value not in _STAGES:
            raise InvalidRequest(
                self.name,
                f"the AI judge answers {', '.join(sorted(_STAGES))} batches, not {spec.stage}",
            )
        existing = self.store.batch_by_key(idempotency_key)
        if existing is not None:
            return self.batch_ref(existing.id)
        self.client.get_model(self.model)  # a wrong model or key fails here, not mid-run
        batch, _ = self.store.add_batch(
            StoredBatch(
                id=f"aij-{digest(idempotency_key)}",
                key=idempotency_key,
                campaign_id=spec.campaign_id,
                name=spec.name,
                state="draft",
            )
        )
        return self.batch_ref(batch.id)

    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        found = self.store.batch_by_key(idempotency_key)
        return self.batch_ref(found.id) if found else None

    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        stored = self._batch(batch)
        if stored.state == "stopped":
            raise InvalidRequest(self.name, f"batch {stored.id} is stopped")
        tasks = []
        for item in items:  # validate all before recording any: a refused call adds nothing
            _kind_of(self.name, item)
            tasks.append(
                StoredTask(
                    id=f"aij-t-{digest(stored.id + '|' + item.key)}",
                    batch_id=stored.id,
                    key=item.key,
                    group=item.group,
                    payload=item.payload.model_dump(mode="json"),
                )
            )
        return self.added(items, self.store.add_tasks(tasks))

    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        return self.store.find_tasks(self._batch(batch).id, list(task_keys))

    # --- batch control ---------------------------------------------------------------------

    def start(self, batch: BatchRef) -> None:
        stored = self._batch(batch)
        if stored.state == "draft":
            self.store.set_state(stored.id, "open")

    def stop(self, batch: BatchRef, *, reason: str) -> None:
        self.store.set_state(self._batch(batch).id, "stopped")

    def pause(self, batch: BatchRef) -> None:
        stored = self._batch(batch)
        if stored.state in ("draft", "open"):
            self.store.set_state(stored.id, "paused")

    def resume(self, batch: BatchRef) -> None:
        stored = self._batch(batch)
        if stored.state == "paused":
            self.store.set_state(stored.id, "open")

    def get_status(self, batch: BatchRef) -> BatchStatus:
        stored = self._batch(batch)
        _, tasks, answers = self.store.counts(stored.id)
        return BatchStatus(
            state=BatchState.OPEN if stored.state == "open" else BatchState.CLOSED,
            tasks=tasks,
            assignments_total=tasks,
            assignments_submitted=answers,
        )

    # --- results ---------------------------------------------------------------------------

    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        """Answer what is unanswered (open batches only), then page the answers after
        `cursor` (the number of the last answer read)."""
        stored = self._batch(batch)
        if stored.state == "open":
            self._answer_pending(stored.id)
        after = int(cursor) if cursor else 0
        while True:
            chunk = self.store.answers_after(stored.id, after, self.options.page_limit)
            if not chunk:
                yield SubmissionPage(submissions=(), cursor=cursor, has_more=False)
                return
            after = chunk[-1].seq
            more = self.store.has_more(stored.id, after)
            yield SubmissionPage(
                submissions=tuple(self._submission(a) for a in chunk if a.choice is not None),
                quarantined=tuple(self._quarantined(a) for a in chunk if a.choice is None),
                cursor=str(after),
                has_more=more,
            )
            if not more:
                return

    def spend(self, batch: BatchRef) -> Money:
        total, currency = self.store.cost(self._batch(batch).id)
        return Money(amount=total, currency=currency or self.options.currency)

    @classmethod
    def quote(cls, options: Mapping[str, Any], items: Sequence[TaskItem]) -> CostQuote:
        """Per order asked: at most one prompt token per byte of what the model reads (the
        messages and the schema, which servers put in the prompt; a byte-level BPE token
        covers at least one byte) plus the chat template's special tokens, and an answer
        at `max_tokens`; expected, a token per `_CHARS_PER_TOKEN` bytes and an answer of
        `_ANSWER_TOKENS` (at most `max_tokens`)."""
        opts = AIJudgeOptions.model_validate(dict(options))
        if opts.max_tokens is None and opts.price_per_1k_output > 0:
            raise InvalidRequest(
                cls.name,
                "max_tokens is not set, so an answer's cost has no bound: set the AI "
                "judge's max_tokens option (routing.ai.options) in a campaign with a budget",
            )
        read = orders = 0
        for item in items:
            for ask in _kind_of(cls.name, item).asks(item.payload, opts.position_swap):
                read += ask.size()
                orders += 1
        answer_max = opts.max_tokens or 0
        answer_typical = min(_ANSWER_TOKENS, opts.max_tokens or _ANSWER_TOKENS)
        template = orders * _TEMPLATE_TOKENS

        def price(tokens_in: int, tokens_out: int) -> Money:
            amount = (
                Decimal(tokens_in) * opts.price_per_1k_input
                + Decimal(tokens_out) * opts.price_per_1k_output
            ) / 1000
            return Money(amount=amount, currency=opts.currency)

        return CostQuote(
            expected=price(-(-read // _CHARS_PER_TOKEN) + template, orders * answer_typical),
            worst=price(read + template, orders * answer_max),
            basis=(
                f"{orders} request(s); worst: a prompt token per byte, answers at max_tokens "
                f"({opts.max_tokens}); expected: {_CHARS_PER_TOKEN} bytes a token, answers of "
                f"{answer_typical} tokens"
            ),
        )

    # --- asking the model --------------------------------------------------------------------

    def _answer_pending(self, batch_id: str) -> None:
        pending = self.store.unanswered(batch_id)
        if not pending:
            return
        if self.options.max_concurrent == 1 or len(pending) == 1:
            for task in pending:
                self.store.record(task, self._judge(task))
            return
        with ThreadPoolExecutor(max_workers=self.options.max_concurrent) as pool:
            # Each answer is recorded as soon as it is in: a failure later loses nothing paid.
            futures = [pool.submit(self._judge_and_record, task) for task in pending]
            for future in futures:
                future.result()  # re-raise the first failure (auth, exhausted retries)

    def _judge_and_record(self, task: StoredTask) -> None:
        self.store.record(task, self._judge(task))

    def _judge(self, task: StoredTask) -> dict[str, Any]:
        kind = KINDS[str(task.payload.get("kind"))]
        payload = kind.payload(task.payload)
        readings: list[Any] = []
        raws: list[str] = []
        prompt_tokens = completion_tokens = 0
        cost = Decimal(0)
        reason: str | None = None
        for ask in kind.asks(payload, self.options.position_swap):
            completion = self.client.chat(self._request(ask))
            if completion.usage is not None:
                prompt_tokens += completion.usage.prompt_tokens
                completion_tokens += completion.usage.completion_tokens
                cost += self._cost(completion)
            try:
                raw = self._content(completion)
                readings.append(ask.read(raw))
            except Unreadable as bad:
                raws.append(bad.raw)
                reason = reason or bad.reason
                continue
            raws.append(raw)
        out: dict[str, Any] = {
            "worker": self.worker_id,
            "raw": json.dumps(raws),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost": cost,
            "currency": self.options.currency,
        }
        if reason is not None:
            return {**out, "reason": f"aijudge: {reason}"}
        return {**out, **kind.combine(payload, readings)}

    def _request(self, ask: Ask[Any]) -> ChatCompletionRequest:
        return ChatCompletionRequest(
            model=self.model,
            messages=[
                ChatMessage(role="system", content=ask.system),
                ChatMessage(role="user", content=ask.user),
            ],
            temperature=self.options.temperature,
            max_tokens=self.options.max_tokens,
            response_format=ResponseFormat(
                json_schema=JsonSchemaFormat(name=ask.schema_name, schema_=ask.schema)
            ),
        )

    def _cost(self, completion: ChatCompletion) -> Decimal:
        usage = completion.usage
        assert usage is not None
        return (
            Decimal(usage.prompt_tokens) * self.options.price_per_1k_input
            + Decimal(usage.completion_tokens) * self.options.price_per_1k_output
        ) / 1000

    @staticmethod
    def _content(completion: ChatCompletion) -> str:
        """The answer's text, if the model gave one in full (the kind reads it)."""
        message = completion.choices[0].message
        finish = completion.choices[0].finish_reason
        if message.refusal:
            raise Unreadable("the model refused", message.refusal)
        raw = message.content or ""
        if finish == "length":
            raise Unreadable("the answer was cut off by the token cap", raw)
        return raw

    # --- mapping ---------------------------------------------------------------------------

    def _submission(self, a: StoredAnswer) -> Submission:
        kind = KINDS[a.task_kind]
        return Submission(
            external_id=f"{a.task_id}:a",
            task_key=a.task_key,
            worker_id=a.worker,
            answer=kind.answer(a),
            submitted_at=a.answered_at,
        )

    @staticmethod
    def _quarantined(a: StoredAnswer) -> Quarantined:
        # `raw` is the JSON list of the model's texts, one per order asked.
        return quarantined(
            f"{a.task_id}:a",
            a.reason or "aijudge: unreadable answer",
            json.loads(a.raw),
            task_key=a.task_key,
            worker_id=a.worker,
        )

    def _batch(self, batch: BatchRef) -> StoredBatch:
        stored = self.store.batch(batch.external_id)
        if stored is None:
            raise NotFound(self.name, f"batch {batch.external_id} is not in {self.store.where}")
        return stored
