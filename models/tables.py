"""Campaign state in our own database (SQLite by default, PostgreSQL to scale out).

Prefect's run history is for the ops team; the source of truth for a campaign — what was
pushed, what came back, who was blocked, what was exported — lives here, so a flow can be
retried or rerun from scratch and pick up exactly where the data says it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CampaignStatus(StrEnum):
    """What an operator sees and acts on; the legal moves live in stages/lifecycle.py."""

    AWAITING_APPROVAL = "awaiting_approval"  # nothing more is published until approved
    RUNNING = "running"
    PAUSED = "paused"  # batches paused on the marketplace, nothing published
    CANCELLED = "cancelled"  # batches stopped; a rerun restarts it
    FAILED = "failed"  # the driving run failed or crashed; a rerun continues
    COMPLETE = "complete"  # batches closed, datasets exported


class ItemState(StrEnum):
    """Life of one unit of crowd work (a writing task, a verification, a comparison)."""

    PENDING = "pending"  # needs (more) answers; the push stage will publish tasks
    PUSHED = "pushed"  # tasks are on the marketplace, answers outstanding
    COLLECTED = "collected"  # enough trusted answers are in
    DONE = "done"  # its outcome has been used (verdict applied, text stored)
    EXHAUSTED = "exhausted"  # gave up: re-queue rounds or attempts ran out


# Enforced where every item-state write goes: crowdloop.stages.items.move_items.
ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    # PENDING -> COLLECTED: a comparison an AI judge decided, never published (stages/routing.py).
    ItemState.PENDING: frozenset({ItemState.PUSHED, ItemState.EXHAUSTED, ItemState.COLLECTED}),
    ItemState.PUSHED: frozenset({ItemState.COLLECTED, ItemState.PENDING, ItemState.EXHAUSTED}),
    ItemState.COLLECTED: frozenset({ItemState.DONE, ItemState.PENDING}),
    ItemState.DONE: frozenset(),
    ItemState.EXHAUSTED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


class Campaign(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=80)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    spec_hash: str = Field(max_length=64)
    connector: str = Field(max_length=64)
    status: CampaignStatus = CampaignStatus.RUNNING
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # The shape `spec` is stored in (crowdloop.models.stored_spec reads older ones); rows
    # stored before versions were recorded are 1. Last, where migration 0002 adds it.
    spec_version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class CampaignEvent(SQLModel, table=True):
    """The campaign's lifecycle log: every status change, who made it and why."""

    __table_args__ = (Index("ix_campaignevent_campaign", "campaign_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id")
    old_status: str | None = Field(default=None, max_length=32)
    new_status: str = Field(max_length=32)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    actor: str = Field(max_length=200)  # "flow-run <id>", "cli <user>@<host>", ...
    flow_run_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class CampaignLease(SQLModel, table=True):
    """One driver per campaign: held by a run, renewed by its heartbeat, taken over only
    once it has expired (the holder died without releasing it)."""

    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    holder: str = Field(max_length=200)  # host:pid:nonce
    description: str = Field(default="", max_length=300)  # what to tell a second driver
    flow_run_id: str | None = Field(default=None, max_length=64)
    acquired_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)


class Batch(SQLModel, table=True):
    """One marketplace container (pool / study / project) per campaign stage."""

    __table_args__ = (UniqueConstraint("campaign_id", "stage"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    stage: str = Field(max_length=16)
    connector: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200, unique=True)
    external_id: str | None = Field(default=None, max_length=200)
    started: bool = False
    closed: bool = False
    cursor: str | None = Field(default=None, sa_column=Column(Text))


class BatchControl(SQLModel, table=True):
    """The state the marketplace last confirmed for a batch after a pause, resume or stop
    (stages/lifecycle.py); a batch without a row is as `ensure_batch` left it (open)."""

    batch_id: int = Field(foreign_key="batch.id", primary_key=True)
    state: str = Field(max_length=16)  # open | paused | stopped
    updated_at: datetime = Field(default_factory=utcnow)


class Prompt(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(max_length=16)  # crowd | file
    topic: str | None = None
    author: str | None = Field(default=None, max_length=200)
    origin_item: str | None = Field(default=None, max_length=80)  # the writing item
    verdict: str | None = Field(default=None, max_length=16)  # accept | reject | None (pending)
    confidence: float | None = None
    # Why the text checks rejected it before verification (rule or duplicate); None:
    # it passed them (or was never checked).
    check_failure: str | None = Field(default=None, max_length=300)


class Response(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    prompt_id: str = Field(foreign_key="prompt.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    source: str = Field(max_length=16)  # crowd | model
    model: str | None = Field(default=None, max_length=200)
    author: str | None = Field(default=None, max_length=200)
    origin_item: str | None = Field(default=None, max_length=80)
    verdict: str | None = Field(default=None, max_length=16)
    confidence: float | None = None
    # Why the text checks rejected it before verification (rule or duplicate); None:
    # it passed them (or was never checked).
    check_failure: str | None = Field(default=None, max_length=300)


class Item(SQLModel, table=True):
    """A unit of crowd work. Its id is derived from campaign data, so reruns find it again."""

    __table_args__ = (
        Index("ix_item_campaign_stage_state", "campaign_id", "stage", "state"),
        # The push's and the settle's pages: `state = ? AND id > last ORDER BY id`
        # (`items.id_page`), a walk in id order instead of a sort per page (migration 0013).
        Index("ix_item_campaign_state_id", "campaign_id", "state", "id"),
    )
    id: str = Field(primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id")
    stage: str = Field(max_length=16)
    kind: str = Field(max_length=16)  # write_prompt | write_response | verify | compare
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: ItemState = ItemState.PENDING
    overlap: int = 1
    # what the item is about: a topic, a prompt id, a prompt/response under verification,
    # or the prompt of a comparison
    subject_id: str | None = Field(default=None, max_length=80, index=True)
    left_id: str | None = Field(default=None, max_length=80)  # response shown on the left
    right_id: str | None = Field(default=None, max_length=80)
    attempt: int = 0  # re-collection attempt for writing work
    pushes: int = 0  # how many task sets were published for it (first push + re-queues)
    extensions: int = 0  # overlap raised by dynamic overlap (those pushes are not re-queues)
    is_golden: bool = False
    golden_answer: str | None = Field(default=None, max_length=16)
    # A graded golden pair's level (1-based, weakest first): a worker passes within one step.
    golden_level: int | None = None
    group: str = Field(max_length=80)  # a worker answers one group once (golden row id)
    exclude_worker: str | None = Field(default=None, max_length=200)  # the author
    # More workers kept off the task: writers who already failed this slot, verifiers who
    # already judged a text verified again.
    # (None: nobody more; a row written without the field, e.g. by an older version.)
    exclude_also: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class TaskRecord(SQLModel, table=True):
    """One published task (an item may be published more than once when re-queued)."""

    __table_args__ = (
        # What a page of items has had published (`counts._published`: a batch's records
        # in an item id range, summed): read from this index alone. With (batch_id) only,
        # SQLite walked every record of the batch for each page (migration 0014).
        Index("ix_taskrecord_batch_item", "batch_id", "item_id", "overlap"),
    )

    key: str = Field(primary_key=True, max_length=120)  # item id + push number
    item_id: str = Field(foreign_key="item.id", index=True)
    batch_id: int = Field(foreign_key="batch.id")
    ledger_key: str = Field(max_length=200, index=True)
    overlap: int
    external_id: str | None = Field(default=None, max_length=200)


class LedgerState(StrEnum):
    INTENT = "intent"
    DONE = "done"


class PushLedger(SQLModel, table=True):
    """Intent -> call -> outcome: written before every create call on a marketplace."""

    key: str = Field(primary_key=True, max_length=200)  # the idempotency key sent
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    connector: str = Field(max_length=64)
    action: str = Field(max_length=32)  # create_batch | add_items | block_worker
    state: LedgerState = Field(default=LedgerState.INTENT, index=True)
    target: str | None = Field(default=None, max_length=200)  # batch / worker the call is about
    calls: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class JudgmentStatus(StrEnum):
    VALID = "valid"
    QUARANTINED = "quarantined"


class Judgment(SQLModel, table=True):
    """Every submission we were sent, stored once (a page read twice counts once)."""

    __table_args__ = (
        UniqueConstraint("connector", "external_id"),
        Index("ix_judgment_campaign_item", "campaign_id", "item_id"),
        Index("ix_judgment_campaign_worker", "campaign_id", "worker_id"),
        # The review's keyset walk (`id > last` in id order) within one campaign.
        Index("ix_judgment_campaign_id", "campaign_id", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    connector: str = Field(max_length=64)
    external_id: str = Field(max_length=200)
    campaign_id: str = Field(foreign_key="campaign.id")
    item_id: str | None = Field(default=None, max_length=80)
    task_key: str | None = Field(default=None, max_length=120)
    worker_id: str | None = Field(default=None, max_length=200)
    status: JudgmentStatus = JudgmentStatus.VALID
    label: str | None = Field(default=None, max_length=16)  # left/right/tie, accept/reject
    text: str | None = Field(default=None, sa_column=Column(Text))
    submitted_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)
    reason: str | None = Field(default=None, sa_column=Column(Text))  # why quarantined
    raw: str | None = Field(default=None, sa_column=Column(Text))  # quarantined payload
    excluded: bool = False
    exclusion_reason: str | None = Field(default=None, max_length=300)
    review: str | None = Field(default=None, max_length=16)  # accepted | rejected
    # A graded comparison's level (1-based index into the campaign's scale, weakest first).
    level: int | None = None
    # The worker's optional free-text reason, kept with the raw answer.
    rationale: str | None = Field(default=None, sa_column=Column(Text))


class WorkerStatus(StrEnum):
    PROBATION = "probation"
    TRUSTED = "trusted"
    WARNED = "warned"
    EXCLUDED = "excluded"  # answers excluded, not blocked on the marketplace
    BLOCKED = "blocked"


# Statuses whose answers no longer count (quality checks, verification, export policy).
UNTRUSTED = (WorkerStatus.EXCLUDED, WorkerStatus.BLOCKED)


class WorkerRecord(SQLModel, table=True):
    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    worker_id: str = Field(primary_key=True, max_length=200)
    golden_total: int = 0
    golden_correct: int = 0
    written_total: int = 0  # texts of theirs that verification judged
    written_accepted: int = 0
    accuracy: float = 0.0  # posterior mean under the golden prior
    p_below: float = 0.0  # posterior probability that accuracy < the threshold
    status: WorkerStatus = WorkerStatus.PROBATION
    judgments: int = 0
    blocked_at: datetime | None = None
    # Set once the marketplace confirmed the block; until then every check retries it.
    blocked_on_marketplace: bool = False
    block_reason: str | None = Field(default=None, max_length=300)
    # A worker blocked for turning careless: only their answers given at or after this
    # time (the change point's) are excluded, the careful ones before it are kept. None:
    # every answer of an untrusted worker is excluded.
    excluded_from: datetime | None = None


class ExamStatus(StrEnum):
    PENDING = "pending"  # answers still missing for a decision either way
    PASSED = "passed"
    FAILED = "failed"  # final: a failer is never qualified in this campaign


class ExamResult(SQLModel, table=True):
    """A worker's exam, graded on our side; a pass is granted on the marketplace once.

    `status` passed is committed before the grant call and `granted` after it, so a rerun
    after a crash between the two grants again (idempotent there) and never loses a pass.
    """

    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    worker_id: str = Field(primary_key=True, max_length=200)
    answered: int = 0
    correct: int = 0
    status: ExamStatus = ExamStatus.PENDING
    graded_at: datetime | None = None
    granted: bool = False  # the marketplace confirmed the qualification
    granted_at: datetime | None = None


class CandidateScore(SQLModel, table=True):
    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    response_id: str = Field(primary_key=True, max_length=80)
    prompt_id: str = Field(max_length=80, index=True)
    score: float
    method: str = Field(max_length=32)


class PairOutcome(SQLModel, table=True):
    """Aggregated comparison of one pair, in response-id orientation (a = shown left)."""

    item_id: str = Field(primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    prompt_id: str = Field(max_length=80)
    winner: str = Field(max_length=16)  # left | right | tie, as shown
    n_left: float
    n_right: float
    n_tie: float
    p_left_better: float
    confidence: float
    margin: float  # BT score difference, chosen - rejected (graded: the level's margin)
    level: int | None = None  # graded campaigns: the aggregated level (1-based)


class ExportRecord(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    kind: str = Field(max_length=32)  # sft | preferences | report
    path: str
    rows: int
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class SpendRecord(SQLModel, table=True):
    batch_id: int = Field(foreign_key="batch.id", primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    amount: str  # Decimal as text: exact on SQLite and PostgreSQL alike
    currency: str = Field(max_length=3)
    source: str = Field(max_length=16)  # reported | estimated
    updated_at: datetime = Field(default_factory=utcnow)


class TriggerRecord(SQLModel, table=True):
    """One retraining trigger; its key makes a retried flow trigger once."""

    key: str = Field(primary_key=True, max_length=200)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    pairs_total: int
    new_pairs: int
    target: str = Field(max_length=200)
    state: str = Field(default="intent", max_length=16)  # intent | done
    flow_run_id: str | None = Field(default=None, max_length=64)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class ReservationState(StrEnum):
    RESERVED = "reserved"  # the worst case of a create call, held until its work is settled
    SETTLED = "settled"  # its work is done (or its batch closed): what it cost, the rest released


class SpendReservation(SQLModel, table=True):
    """The worst-case cost of one create call, written in the transaction of its ledger intent.

    While `reserved`, the whole `amount_reserved` counts against the campaign's cap; once
    every assignment it published is answered (or its batch is closed) it is `settled` at
    `amount_actual`, our accounting of the work paid (submissions not rejected x unit cost),
    and the rest is released. Amounts are Decimals as text, exact on both backends.
    """

    key: str = Field(primary_key=True, max_length=200)  # the PushLedger key
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    batch_id: int = Field(foreign_key="batch.id", index=True)
    stage: str = Field(max_length=16)
    assignments: int
    unit_cost: str  # reward x (1 + fee rate) per assignment
    amount_reserved: str
    amount_actual: str | None = None
    currency: str = Field(max_length=3)
    state: ReservationState = Field(default=ReservationState.RESERVED, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    settled_at: datetime | None = None


class CampaignBudget(SQLModel, table=True):
    """A campaign's cap and how far spending is approved; the row pushes lock to check it.

    `approved_to` is the committed spend (settled actuals + open reservations) the campaign
    may reach without asking: 0 until a launch approval when one is needed, then
    `pause_at` x `cap`, then the cap. Changes go through budget.approve / budget.raise_cap,
    each recorded as a BudgetEvent.
    """

    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    cap: str
    currency: str = Field(max_length=3)
    pause_at: float = 1.0
    approved_to: str
    approval_threshold: str | None = None
    fee_rate: str | None = None  # the rate reservations use; None: the fee is not priced
    expected: str  # the estimate when the budget was opened
    worst_case: str
    launch_approval: bool = False  # the worst case was above the approval threshold
    version: int = 0  # bumped by every check: on SQLite the bump takes the write lock
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class BudgetEvent(SQLModel, table=True):
    """The audit trail of a budget: opened, paused, approved, cap raised, reconciled."""

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    kind: str = Field(max_length=16)  # opened | paused | approved | cap_raised | difference
    by: str | None = Field(default=None, max_length=200)
    cap: str
    approved_to: str
    committed: str
    detail: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime = Field(default_factory=utcnow)


class SpendCheck(SQLModel, table=True):
    """Per batch: the marketplace's own spend report beside our accounting of the same work."""

    batch_id: int = Field(foreign_key="batch.id", primary_key=True)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    reported: str
    accounted: str
    currency: str = Field(max_length=3)
    checked_at: datetime = Field(default_factory=utcnow)


class AIRouteState(StrEnum):
    ASKED = "asked"  # sent to the AI judge, no answer read yet
    AI = "ai"  # the judge's verdict stands (a judgment of the item)
    HUMAN = "human"  # humans answer it; the judge's verdict is kept beside
    AUDIT = "audit"  # the judge was sure, humans answer it anyway (agreement measured)


class AIRoute(SQLModel, table=True):
    """AI-first routing of one comparison, ranking set or rating item (stages/routing.py):
    what the judge said and where the item went. Written as `asked` before the judge is
    asked, decided once read."""

    __table_args__ = (Index("ix_airoute_campaign_route", "campaign_id", "route"),)
    item_id: str = Field(foreign_key="item.id", primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id")
    route: AIRouteState = AIRouteState.ASKED
    reason: str | None = Field(default=None, max_length=64)  # why humans got it
    choice: str | None = Field(default=None, max_length=16)  # left | right | tie, as shown
    confidence: float | None = None
    position_consistent: bool | None = None
    submission_id: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = None
    # The most asking the judge about this pair can cost (Connector.max_cost), Decimal as
    # text: it counts against a budgeted campaign's cap while the pair is `asked`.
    reserved: str | None = None
    # A ranking set's: the judge's places for the responses as shown (1 best), and Kendall's
    # tau-b between its rankings with the set shown in order and reversed (None for pairs).
    places: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    order_agreement: float | None = None
    # A rating item's: the judge's scores by aspect name (None for pairs and ranking sets).
    scores: dict[str, int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class AIJudgeBatch(SQLModel, table=True):
    """The campaign's batch on the AI judge and how far its answers were read."""

    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    connector: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=200)
    external_id: str = Field(max_length=200)
    cursor: str | None = Field(default=None, sa_column=Column(Text))
    spend: str | None = None  # Decimal as text, as the judge last reported it
    currency: str | None = Field(default=None, max_length=3)


class RankingSet(SQLModel, table=True):
    """What a ranking item (kind `rank`) shows, in our ids: the response ids in the order
    shown, and for a golden set its known places (crowdloop/stages/ranking.py). The task
    payload carries only the texts, so no id (nor golden-ness) reaches the marketplace."""

    item_id: str = Field(foreign_key="item.id", primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    prompt_id: str = Field(max_length=80)
    shown: list[str] = Field(sa_column=Column(JSON, nullable=False))
    golden_ranks: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class RatingItem(SQLModel, table=True):
    """What a rating item (kind `rate`) shows, in our ids: the response rated, and for a
    golden item its known per-aspect scores and tolerance (crowdloop/stages/rating.py). The
    task payload carries only texts, so no id (nor golden-ness) reaches the marketplace."""

    item_id: str = Field(foreign_key="item.id", primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id", index=True)
    prompt_id: str = Field(max_length=80)
    response_id: str = Field(max_length=80)
    golden_scores: dict[str, int] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    golden_tolerance: float | None = None


class AspectScore(SQLModel, table=True):
    """The aggregated score of one response on one aspect (rewritten by each aggregation):
    the consensus on the aspect's scale, its standard deviation, and the plain mean of the
    votes beside it (the naive baseline, for the report and the bench)."""

    campaign_id: str = Field(foreign_key="campaign.id", primary_key=True)
    response_id: str = Field(primary_key=True, max_length=80)
    aspect: str = Field(primary_key=True, max_length=40)
    prompt_id: str = Field(max_length=80)
    score: float
    sd: float
    votes: int
    mean_of_votes: float
    method: str = Field(max_length=32)


class TextSignature(SQLModel, table=True):
    """An accepted crowd text, as the duplicate check against earlier campaigns needs it
    (crowdloop/stages/signatures.py): written when verification accepts the text, looked
    up per text at check time, so the check never loads every text of the database."""

    __table_args__ = (Index("ix_textsignature_kind_digest", "kind", "digest"),)
    kind: str = Field(primary_key=True, max_length=16)  # prompt | response
    text_id: str = Field(primary_key=True, max_length=80)
    campaign_id: str = Field(foreign_key="campaign.id")
    # A prompt's topic: near copies of prompts are looked for within one topic only.
    scope: str | None = Field(default=None, max_length=200)
    digest: str = Field(max_length=32)  # of the normalised text (textcheck.signature)
    minhash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TextBand(SQLModel, table=True):
    """The LSH band keys of a TextSignature: texts sharing a key are near-copy candidates.
    The primary key (kind, key, text_id) is the lookup index."""

    kind: str = Field(primary_key=True, max_length=16)
    key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    text_id: str = Field(primary_key=True, max_length=80)
