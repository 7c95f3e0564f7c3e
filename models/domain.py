"""Marketplace-neutral domain models: what flows send to and receive from any connector.

Connectors map their vendor's wire format to these types and back; nothing outside a
connector folder ever sees vendor JSON.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OptIn(Frozen):
    """A payload whose opt-in fields (`OPT_IN`) are left out of its serialized form while
    they hold their defaults: a plain task is stored and sent byte for byte as before they
    existed, so existing campaigns, their hashes and every vendor mapping are unchanged."""

    OPT_IN: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unused_opt_ins(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            fields = type(self).model_fields
            for name in self.OPT_IN:
                if getattr(self, name) == fields[name].default:
                    data.pop(name, None)
        return data


class Money(Frozen):
    amount: Decimal = Field(ge=0)
    currency: str = Field(default="USD", min_length=3, max_length=3)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __mul__(self, n: int) -> Money:
        return Money(amount=self.amount * n, currency=self.currency)

    def __str__(self) -> str:
        return f"{self.amount:.2f} {self.currency}"


class FeeModel(Frozen):
    """What a platform charges on top of the rewards it pays workers.

    `rate` is a share of every reward paid (0.2 = 20% on top). A connector declares its
    platform's published fee as `Connector.fee`, with the vendor page that documents it in
    `source`; a connector that cannot price its fee declares None, and the estimate says so.
    """

    rate: Decimal = Field(ge=0)
    source: str = ""

    def on(self, reward: Decimal) -> Decimal:
        return reward * self.rate


class CostQuote(Frozen):
    """What tasks cost on a platform that bills by the request rather than by a reward (a
    model judge billing tokens): `worst` bounds it (a budget reserves it before the call),
    `expected` is a typical figure (the estimate's), `basis` says what each assumes."""

    expected: Money
    worst: Money
    basis: str = ""


class Stage(StrEnum):
    """A campaign stage; each runs as its own marketplace batch (pool, study, project)."""

    PROMPTS = "prompts"
    RESPONSES = "responses"
    VERIFY = "verify"
    COMPARE = "compare"
    # Golden comparisons a worker must pass before production comparisons are offered to
    # them; to a marketplace the exam batch is a compare batch (BatchSpec.stage COMPARE).
    EXAM = "exam"
    # k-wise rankings of 3-9 responses to one prompt (crowdloop/stages/ranking.py).
    RANK = "rank"
    # Multi-aspect Likert ratings of one response (crowdloop/stages/rating.py).
    RATE = "rate"


# --- what a worker is asked to do -------------------------------------------------------


class WritePromptTask(Frozen):
    kind: Literal["write_prompt"] = "write_prompt"
    instruction: str
    topic: str


class WriteResponseTask(Frozen):
    kind: Literal["write_response"] = "write_response"
    instruction: str
    prompt: str


class VerifyTask(OptIn):
    """Judge another worker's text: is it an acceptable prompt / response?"""

    kind: Literal["verify"] = "verify"
    instruction: str
    target: Literal["prompt", "response"]
    prompt: str
    text: str
    OPT_IN: ClassVar[tuple[str, ...]] = ("rationale",)

    # Offer an optional free-text rationale beside the verdict (Capability.RATIONALE).
    rationale: bool = False
    # What the text was written for: the topic of a prompt, or of the prompt a response
    # answers (with `prompt`), so a verifier can reject a text written for something else.
    topic: str = ""
    # What the writer was asked to do (the writing task's instruction).
    writing_instruction: str = ""


class CompareTask(OptIn):
    OPT_IN: ClassVar[tuple[str, ...]] = ("scale", "unsure", "rationale")

    kind: Literal["compare"] = "compare"
    instruction: str
    prompt: str
    left: str
    right: str
    # Graded preference (Capability.GRADED_PAIRWISE): how much better the chosen side is,
    # on these levels, weakest first (an answer's `level` is a 1-based index into them);
    # with `unsure`, "tie" is offered as "unsure". Empty: plain A / B / tie.
    scale: tuple[str, ...] = ()
    unsure: bool = True
    # Offer an optional free-text rationale beside the choice (Capability.RATIONALE).
    rationale: bool = False


class RankTask(Frozen):
    """Order 3-9 responses to one prompt, best first (ties only where `ties` allows)."""

    kind: Literal["rank"] = "rank"
    instruction: str
    prompt: str
    responses: tuple[str, ...] = Field(min_length=3, max_length=9)
    ties: bool = False


class RatedAspect(Frozen):
    """One aspect of a rating task: an integer score from `low` to `high` (labels, when
    given, name each point from `low` up)."""

    name: str = Field(min_length=1, max_length=40)
    description: str = ""
    low: int
    high: int
    labels: tuple[str, ...] = ()


class RateTask(OptIn):
    """Score one response to a prompt on each of several aspects (Likert scales)."""

    OPT_IN: ClassVar[tuple[str, ...]] = ("rationale",)

    kind: Literal["rate"] = "rate"
    instruction: str
    prompt: str
    response: str
    aspects: tuple[RatedAspect, ...] = Field(min_length=1, max_length=12)
    # Offer an optional free-text rationale beside the scores (Capability.RATIONALE).
    rationale: bool = False


TaskPayload = Annotated[
    WritePromptTask | WriteResponseTask | VerifyTask | CompareTask | RankTask | RateTask,
    Field(discriminator="kind"),
]


# --- what comes back --------------------------------------------------------------------


class TextAnswer(Frozen):
    kind: Literal["text"] = "text"
    text: str = Field(min_length=1, max_length=20_000)


class VerdictAnswer(OptIn):
    OPT_IN: ClassVar[tuple[str, ...]] = ("rationale",)

    kind: Literal["verdict"] = "verdict"
    verdict: Literal["accept", "reject"]
    # Why, in the worker's words, when the task offered it (kept with the raw answer).
    rationale: str | None = Field(default=None, max_length=5_000)


class PreferenceAnswer(OptIn):
    OPT_IN: ClassVar[tuple[str, ...]] = ("level", "rationale")

    kind: Literal["preference"] = "preference"
    choice: Literal["left", "right", "tie"]
    # From a model judge (connectors/aijudge): its stated probability of being right, and
    # whether it gave the same verdict with the answers shown the other way round (None:
    # asked in one order only). Human marketplaces leave both None.
    confidence: float | None = Field(default=None, ge=0, le=1)
    position_consistent: bool | None = None
    # On a graded task: how much better the chosen side is, a 1-based index into the task's
    # scale (weakest first); None on a plain task and with "tie" (unsure).
    level: int | None = Field(default=None, ge=1, le=9)
    rationale: str | None = Field(default=None, max_length=5_000)

    @model_validator(mode="after")
    def _level_has_side(self) -> PreferenceAnswer:
        if self.level is not None and self.choice == "tie":
            raise ValueError("a level goes with a side (left or right), not with tie")
        return self


class RankingAnswer(OptIn):
    """A worker's ranking: `ranks[i]` is the place of the i-th response as shown (1 best);
    tied responses share a place. Whether it fits its task (one place per response, ties
    only where allowed) is checked against the task when it is stored
    (crowdloop.stages.ranking.ranking_problem)."""

    OPT_IN: ClassVar[tuple[str, ...]] = ("confidence", "order_agreement")

    kind: Literal["ranking"] = "ranking"
    ranks: tuple[int, ...] = Field(min_length=3, max_length=9)
    # From a model judge (connectors/aijudge): its stated confidence, and Kendall's tau-b
    # between its rankings with the responses shown in order and reversed (1: the same
    # ranking both ways; None: asked in one order only). Human marketplaces leave both None.
    confidence: float | None = Field(default=None, ge=0, le=1)
    order_agreement: float | None = Field(default=None, ge=-1, le=1)

    @field_validator("ranks")
    @classmethod
    def _places(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(r < 1 or r > len(v) for r in v):
            raise ValueError(f"every place must be between 1 and {len(v)}")
        return v


class RatingAnswer(OptIn):
    """A worker's scores, one integer per aspect by name. Whether they fit the task (every
    aspect scored, each on its scale, no other) is checked against the task when stored
    (crowdloop.stages.rating.rating_problem)."""

    OPT_IN: ClassVar[tuple[str, ...]] = ("rationale", "confidence", "order_difference")

    kind: Literal["rating"] = "rating"
    scores: dict[str, int] = Field(min_length=1, max_length=12)
    rationale: str | None = Field(default=None, max_length=5_000)
    # From a model judge (connectors/aijudge): its stated confidence, and the largest
    # difference, in scale points over the aspects, between its scores with the aspects
    # listed in order and reversed (0: the same scores both ways; None: asked once). Human
    # marketplaces leave both None.
    confidence: float | None = Field(default=None, ge=0, le=1)
    order_difference: int | None = Field(default=None, ge=0)


Answer = Annotated[
    TextAnswer | VerdictAnswer | PreferenceAnswer | RankingAnswer | RatingAnswer,
    Field(discriminator="kind"),
]

ANSWER_KIND_FOR_TASK: dict[str, str] = {
    "write_prompt": "text",
    "write_response": "text",
    "verify": "verdict",
    "compare": "preference",
    "rank": "ranking",
    "rate": "rating",
}


# --- connector contract payloads ---------------------------------------------------------


class Capability(StrEnum):
    PAIRWISE = "pairwise"  # comparison tasks with A / B / tie
    FREE_TEXT = "free_text"  # writing tasks
    BLOCK_WORKER = "block_worker"
    REVIEW = "review"  # accept / reject submissions
    EXCLUDE_WORKERS = "exclude_workers"  # keep named workers (an author) off a task
    IDEMPOTENT_CREATE = "idempotent_create"  # the platform itself dedupes creates by key
    SPEND_REPORT = "spend_report"  # the platform reports money spent
    SANDBOX = "sandbox"
    # Named qualifications: grant one to a worker, offer a batch only to its holders.
    QUALIFY_WORKERS = "qualify_workers"
    # Pause a batch (no new work handed out; work in hand may still be submitted) and
    # resume it later. Without it a paused campaign only stops publishing on our side.
    PAUSE = "pause"
    # k-wise ranking tasks (RankTask answered with a RankingAnswer).
    RANKING = "ranking"
    # ... where the worker may give two responses the same place (RankTask.ties).
    RANKING_TIES = "ranking_ties"
    # Comparison tasks that also ask how much better (CompareTask.scale, answer level).
    GRADED_PAIRWISE = "graded_pairwise"
    # An optional free-text rationale beside a verdict or choice (task `rationale`).
    RATIONALE = "rationale"
    # Multi-aspect Likert ratings of one response (RateTask answered with a RatingAnswer).
    RATING = "rating"


class BatchSpec(Frozen):
    """A marketplace container for tasks of one stage (Toloka pool, Prolific study, ...)."""

    name: str
    stage: Stage
    instruction: str
    reward: Money
    campaign_id: str
    # Offer the batch only to workers holding this qualification (see
    # `Connector.grant_qualification`); None: every worker the platform sends.
    required_qualification: str | None = None


class BatchRef(Frozen):
    connector: str
    external_id: str


class TaskItem(Frozen):
    """One task to publish. `key` is our stable idempotency key for this task."""

    key: str
    group: str  # our item id: a worker answers a group at most once
    payload: TaskPayload
    overlap: int = Field(ge=1, le=100)
    exclude_workers: tuple[str, ...] = ()


class AddItemsResult(Frozen):
    external_ids: dict[str, str]  # our task key -> marketplace task id


class BatchState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class BatchStatus(Frozen):
    state: BatchState
    tasks: int
    assignments_total: int
    assignments_submitted: int

    @property
    def complete(self) -> bool:
        return self.assignments_submitted >= self.assignments_total


class Submission(Frozen):
    external_id: str
    task_key: str
    worker_id: str
    answer: Answer
    submitted_at: datetime


class Quarantined(Frozen):
    """A submission that could not be read; kept with its reason and raw text, never dropped."""

    external_id: str
    task_key: str | None
    worker_id: str | None
    reason: str
    raw: str


class SubmissionPage(Frozen):
    submissions: tuple[Submission, ...]
    quarantined: tuple[Quarantined, ...] = ()
    cursor: str | None  # resume point after this page (None: nothing read yet)
    has_more: bool


class ReviewDecision(Frozen):
    submission_id: str
    accept: bool
    comment: str = ""


class BlockScope(StrEnum):
    BATCH = "batch"
    CAMPAIGN = "campaign"
    ACCOUNT = "account"
