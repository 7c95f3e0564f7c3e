"""AI-first routing of comparisons, ranking sets and rating items: a model judge first,
humans for what it cannot decide.

Each round, before the human push, `route_pending` sends every production comparison (or,
in a ranking campaign, every production ranking set; in a rating campaign, every production
rating item) that no one has seen yet to the campaign's AI judge (`routing.ai`, a connector
declaring PAIRWISE, RANKING or RATING, such as aijudge) in one batch, reads its answers and
decides per pair (per set and per rating item alike):

- the judge's answer could not be read -> humans ("unreadable");
- its two position-swapped answers disagree -> humans ("swap_disagrees"), when
  `human_on_swap_disagreement` (a judge asked in one order only has nothing to compare);
  a ranking set: its rankings of the set shown in order and reversed agree less than
  `min_order_agreement` (Kendall's tau-b) -> humans ("order_disagrees"); a rating item:
  its scores with the aspects listed in order and reversed differ by more than
  `max_score_difference` points on some aspect -> humans ("order_disagrees");
- its confidence is under `confidence_threshold` -> humans ("low_confidence");
- otherwise, drawn for audit with probability `audit_rate` (a seeded draw per pair, the
  same on every rerun) -> humans too ("audit"), the judge's verdict kept beside theirs;
- otherwise the judge's verdict is the pair's judgment (route "ai"): stored as a
  Judgment of the worker `ai:<model>` and the item is collected, never published to humans.

Pairs routed to humans stay pending and the ordinary push publishes them. Golden and exam
pairs never go to the judge. State lives in crowdloop's database: an `AIRoute` row per pair
(written as `asked` before the judge is asked, so a rerun finds what was sent) and the
campaign's `AIJudgeBatch` with the cursor of the answers read; the judge's own ledger
answers each task once, so a rerun never pays twice. One call of `route_pending` is one
Prefect task per round (flows/stages.py), whatever the number of pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from crowdloop.aggregation.rankings import kendall_tau
from crowdloop.connectors.base import Connector
from crowdloop.connectors.registry import build_connector
from crowdloop.db import insert_ignore, session_scope
from crowdloop.ids import digest, seeded_rng
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    Capability,
    CompareTask,
    Money,
    PreferenceAnswer,
    RankingAnswer,
    RankTask,
    RateTask,
    RatingAnswer,
    Stage,
    Submission,
    SubmissionPage,
    TaskItem,
)
from crowdloop.models.spec import CampaignSpec, GradedSpec, RoutingSpec
from crowdloop.models.tables import (
    AIJudgeBatch,
    AIRoute,
    AIRouteState,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    utcnow,
)
from crowdloop.stages import budget
from crowdloop.stages.budget import BudgetPause
from crowdloop.stages.items import move_items
from crowdloop.stages.plan import golden_count, load_spec
from crowdloop.stages.sync import judgment_row

logger = logging.getLogger(__name__)

TASK_SUFFIX = ":ai"
# Pairs asked of the judge between two checks of the campaign's status (`between`): a
# minute or two of a hosted model at a few requests at a time.
SLICE = 100


@dataclass(frozen=True)
class Routed:
    """What a campaign routes: its production items' stage and kind, their payload type,
    and what the judge must be able to answer."""

    stage: Stage
    kind: str
    payload: type[CompareTask] | type[RankTask] | type[RateTask]
    capabilities: tuple[Capability, ...]
    instruction: str
    currency: str
    # The campaign's share of golden items among what humans are shown (see
    # `retire_surplus_golden`).
    golden_share: float


def routed(spec: CampaignSpec) -> Routed | None:
    """The campaign's routed work (None: nothing AI-first routing carries)."""
    if spec.preferences is not None:
        prefs = spec.preferences
        # A graded campaign needs a judge that answers levels: its verdicts go into the
        # data as a worker's do (Judgment.level), and a level-less side would read as unsure.
        graded = (Capability.GRADED_PAIRWISE,) if prefs.graded else ()
        return Routed(
            Stage.COMPARE,
            "compare",
            CompareTask,
            (Capability.PAIRWISE, *graded),
            prefs.instruction,
            prefs.reward.currency,
            prefs.golden_share,
        )
    if spec.ranking is not None:
        ranking = spec.ranking
        caps = (Capability.RANKING,) + ((Capability.RANKING_TIES,) if ranking.ties else ())
        return Routed(
            Stage.RANK,
            "rank",
            RankTask,
            caps,
            ranking.instruction,
            ranking.reward.currency,
            ranking.golden_share,
        )
    if spec.rating is not None:
        rating = spec.rating
        return Routed(
            Stage.RATE,
            "rate",
            RateTask,
            (Capability.RATING,),
            rating.instruction,
            rating.reward.currency,
            rating.golden_share,
        )
    return None


@dataclass
class RouteResult:
    asked: int = 0  # pairs sent to the judge this call
    decided: dict[str, int] = field(default_factory=dict)  # route -> pairs decided this call
    golden_retired: int = 0  # unpublished golden items no longer needed (this call)


def build_ai_connector(spec: CampaignSpec) -> Connector:
    assert spec.routing is not None
    ai = spec.routing.ai
    return build_connector(ai.name, ai.options, ai.credentials_block)


def route_pending(
    campaign_id: str,
    connector: Connector | None = None,
    *,
    between: Callable[[], object] | None = None,
) -> RouteResult | None:
    """Send unseen production comparisons to the AI judge and route them (module doc).

    None for a campaign without `routing`. `connector` is the AI judge (built from the
    spec's `routing.ai` when not given). The judge is asked `SLICE` pairs at a time and
    `between` is called before each slice: the round loop passes its guard, so a pause,
    a cancel or a lost lease stops the asking (and the spending) within one slice."""
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    if spec.routing is None or routed(spec) is None:
        return None
    if connector is None:
        with build_ai_connector(spec) as built:
            return _route(campaign_id, spec, spec.routing, built, between)
    return _route(campaign_id, spec, spec.routing, connector, between)


def _route(
    campaign_id: str,
    spec: CampaignSpec,
    routing: RoutingSpec,
    connector: Connector,
    between: Callable[[], object] | None,
) -> RouteResult:
    work = routed(spec)
    assert work is not None
    for capability in work.capabilities:
        connector.require(capability)
    result = RouteResult()
    fresh = _unseen(campaign_id, work)
    if not fresh and not _undecided(campaign_id):
        # A run that stopped between the routing and the retiring retires here.
        result.golden_retired = retire_surplus_golden(campaign_id, work)
        return result
    if fresh:
        # Nothing is created before a launch approval the estimate needs.
        budget.launch_gate(campaign_id)
    batch = _ensure_batch(campaign_id, work, connector)
    connector.start(batch)
    _read(campaign_id, spec, routing, connector, batch, result)  # what a crashed run asked
    pause = None
    for start in range(0, len(fresh), SLICE):
        if between is not None:
            between()
        asked, pause = _ask(campaign_id, spec, work, connector, batch, fresh[start : start + SLICE])
        result.asked += asked
        _read(campaign_id, spec, routing, connector, batch, result)
        if pause is not None:
            break
    # A pair the judge never answered (its batch closed under us) must not wait forever.
    left = _undecided(campaign_id)
    if left:
        logger.warning("%s: %d pair(s) got no AI answer; sent to humans", campaign_id, len(left))
        _set_routes(campaign_id, {i: (AIRouteState.HUMAN, "no_answer") for i in left})
        result.decided["human"] = result.decided.get("human", 0) + len(left)
    _record_spend(campaign_id, connector, batch)
    if pause is not None:
        # The pairs that did not fit stay unseen; after approval the next round asks them.
        budget.record_pause(pause)
        raise pause
    # Every pair is routed now (none unseen, none waiting for an answer): only now is the
    # human share of the work known.
    result.golden_retired = retire_surplus_golden(campaign_id, work)
    return result


def retire_surplus_golden(campaign_id: str, work: Routed) -> int:
    """Retire the unpublished golden items beyond `golden_share` of the human work.

    Planning mixes golden items in at `golden_share` of every real item, before the judge
    decides any. Golden items measure workers, and the share is what each worker sees of
    them; the items the judge decided are never shown to a worker, so golden items kept in
    proportion to them are paid for (at the campaign's full overlap) and measure nothing
    more per worker. At threshold 0.8 on the simulator they were a quarter of the human
    judgments bought instead of the all-human run's seventh (README, *Measured: AI-first
    against all-human*). So once every item is routed, golden items are kept for
    `golden_count(items humans see, golden_share)`, published ones first, and the rest,
    never published, are moved to `exhausted` (not needed). Returns how many were retired.
    """
    if _unseen(campaign_id, work) or _undecided(campaign_id):
        return 0
    with session_scope() as s:
        kind = [
            Item.campaign_id == campaign_id,
            Item.stage == work.stage.value,
            Item.kind == work.kind,
        ]
        real = s.exec(select(func.count()).where(*kind, col(Item.is_golden).is_(False))).one()
        decided = s.exec(
            select(func.count()).where(
                AIRoute.campaign_id == campaign_id, AIRoute.route == AIRouteState.AI
            )
        ).one()
        golden = s.exec(
            select(Item.id, Item.pushes, Item.state)
            .where(*kind, col(Item.is_golden).is_(True))
            .order_by(col(Item.id))
        ).all()
        live = [(i, pushes, state) for i, pushes, state in golden if state != ItemState.EXHAUSTED]
        keep = golden_count(int(real) - int(decided), work.golden_share)
        spare = [i for i, pushes, state in live if pushes == 0 and state == ItemState.PENDING]
        surplus = len(live) - keep
        if surplus <= 0 or not spare:
            return 0
        # The last ones in id order (ids are hashes: an arbitrary, stable choice).
        retire = spare[len(spare) - min(surplus, len(spare)) :]
        return move_items(
            s,
            retire,
            ItemState.EXHAUSTED,
            from_=ItemState.PENDING,
            where=[col(Item.pushes) == 0],
            strict=False,
        )


def _read(
    campaign_id: str,
    spec: CampaignSpec,
    routing: RoutingSpec,
    connector: Connector,
    batch: BatchRef,
    result: RouteResult,
) -> None:
    """Have the judge answer what is pending, then decide each answered pair's route."""
    with session_scope() as s:
        cursor = s.get(AIJudgeBatch, campaign_id).cursor  # type: ignore[union-attr]
    spend_recorded = False
    for page in connector.iter_submissions(batch, cursor=cursor):
        if not spend_recorded:
            # The judge answered (and billed) what was pending when the first page came;
            # its spend counts before the pairs' reservations are released below.
            _record_spend(campaign_id, connector, batch)
            spend_recorded = True
        for route, n in _decide_page(campaign_id, spec, routing, connector.name, page).items():
            result.decided[route] = result.decided.get(route, 0) + n


def _unseen(campaign_id: str, work: Routed) -> list[Item]:
    """Production comparisons (ranking sets) no one was asked about yet (no route, never
    published)."""
    with session_scope() as s:
        routed = select(AIRoute.item_id).where(AIRoute.campaign_id == campaign_id)
        return list(
            s.exec(
                select(Item)
                .where(
                    Item.campaign_id == campaign_id,
                    Item.stage == work.stage.value,
                    Item.kind == work.kind,
                    col(Item.is_golden).is_(False),
                    Item.state == ItemState.PENDING,
                    Item.pushes == 0,
                    col(Item.id).not_in(routed),
                )
                .order_by(col(Item.id))
            ).all()
        )


def _routed(campaign_id: str, route: AIRouteState) -> list[str]:
    with session_scope() as s:
        return list(
            s.exec(
                select(AIRoute.item_id).where(
                    AIRoute.campaign_id == campaign_id, AIRoute.route == route
                )
            ).all()
        )


def _undecided(campaign_id: str) -> list[str]:
    return _routed(campaign_id, AIRouteState.ASKED)


def _ensure_batch(campaign_id: str, work: Routed, connector: Connector) -> BatchRef:
    key = f"{campaign_id}:ai-judge"
    with session_scope() as s:
        row = s.get(AIJudgeBatch, campaign_id)
        if row is not None:
            return BatchRef(connector=row.connector, external_id=row.external_id)
    # Create-once by key: a crash after this call and before the row finds it again.
    ref = connector.find_batch(key) or connector.create_batch(
        BatchSpec(
            name=f"{campaign_id} AI judge",
            stage=work.stage,
            instruction=work.instruction,
            reward=Money(amount=Decimal(0), currency=work.currency),
            campaign_id=campaign_id,
        ),
        idempotency_key=key,
    )
    with session_scope() as s:
        insert_ignore(
            s,
            AIJudgeBatch,
            [
                {
                    "campaign_id": campaign_id,
                    "connector": connector.name,
                    "idempotency_key": key,
                    "external_id": ref.external_id,
                    "cursor": None,
                    "spend": None,
                    "currency": None,
                }
            ],
            ["campaign_id"],
        )
    return ref


def _ask(
    campaign_id: str,
    spec: CampaignSpec,
    work: Routed,
    connector: Connector,
    batch: BatchRef,
    items: list[Item],
) -> tuple[int, BudgetPause | None]:
    """Ask the judge about these pairs, a call's worth at a time; returns how many were
    asked and, if the campaign's budget stopped the asking, the pause to raise.

    Each pair's route is recorded as asked before the call, so a rerun sees it and does
    not route it twice. In a budgeted campaign it carries the pair's worst-case cost
    (`Connector.quote`), written in the transaction that checked it fits under what is
    approved (`budget.fit`, the push's check): the pairs that do not fit are not asked.
    """
    tasks = [
        TaskItem(
            key=f"{it.id}{TASK_SUFFIX}",
            group=it.id,
            payload=work.payload.model_validate(it.payload),
            overlap=1,
        )
        for it in items
    ]
    asked = 0
    step = connector.max_items_per_call
    for start in range(0, len(tasks), step):
        chunk = tasks[start : start + step]
        costs = _worst_costs(campaign_id, spec, connector, chunk)
        with session_scope() as s:
            taken, pause = (
                budget.fit(s, campaign_id, [c or Decimal(0) for c in costs], "ai-judge")
                if spec.budget is not None
                else (len(chunk), None)
            )
            chunk = chunk[:taken]
            insert_ignore(
                s,
                AIRoute,
                [
                    {
                        "item_id": task.group,
                        "campaign_id": campaign_id,
                        "route": AIRouteState.ASKED,
                        "reason": None,
                        "choice": None,
                        "confidence": None,
                        "position_consistent": None,
                        "submission_id": None,
                        "decided_at": None,
                        "reserved": None if cost is None else str(cost),
                    }
                    for task, cost in zip(chunk, costs, strict=False)
                ],
                ["item_id"],
            )
        if chunk:
            key = f"{campaign_id}:ai-judge:{digest(*(t.key for t in chunk))}"
            connector.add_items(batch, chunk, idempotency_key=key)
            asked += len(chunk)
        if pause is not None:
            return asked, pause
    return asked, None


def _worst_costs(
    campaign_id: str, spec: CampaignSpec, connector: Connector, tasks: list[TaskItem]
) -> list[Decimal | None]:
    """Each task's worst-case cost on the judge, for a budgeted campaign (None: no budget,
    or a judge priced by reward, which is 0 here)."""
    if spec.budget is None:
        return [None] * len(tasks)
    assert spec.routing is not None
    costs: list[Decimal | None] = []
    for task in tasks:
        quote = connector.quote(spec.routing.ai.options, [task])
        if quote is not None and quote.worst.currency != spec.budget.cap.currency:
            raise ValueError(
                f"{campaign_id}: the AI judge bills in {quote.worst.currency} and the budget "
                f"is in {spec.budget.cap.currency}; set the judge's currency option to the "
                "budget's"
            )
        costs.append(None if quote is None else quote.worst.amount)
    return costs


def audited(seed: int, item_id: str, rate: float) -> bool:
    """The seeded audit draw of one pair (the same on every rerun)."""
    return rate > 0 and seeded_rng(seed, "ai-audit", item_id).random() < rate


def decide(
    answer: PreferenceAnswer | RankingAnswer | RatingAnswer | None,
    routing: RoutingSpec,
    seed: int,
    item_id: str,
) -> tuple[AIRouteState, str | None]:
    """Where one pair (ranking set) goes, given the judge's answer (None: unreadable)."""
    if answer is None:
        return AIRouteState.HUMAN, "unreadable"
    if isinstance(answer, RankingAnswer):
        agreement = answer.order_agreement
        if agreement is not None and agreement < routing.min_order_agreement:
            return AIRouteState.HUMAN, "order_disagrees"
    elif isinstance(answer, RatingAnswer):
        difference = answer.order_difference
        if difference is not None and difference > routing.max_score_difference:
            return AIRouteState.HUMAN, "order_disagrees"
    elif routing.human_on_swap_disagreement and answer.position_consistent is False:
        return AIRouteState.HUMAN, "swap_disagrees"
    if answer.confidence is None or answer.confidence < routing.confidence_threshold:
        return AIRouteState.HUMAN, "low_confidence"
    if audited(seed, item_id, routing.audit_rate):
        return AIRouteState.AUDIT, "audit"
    return AIRouteState.AI, None


def _item_of(task_key: str | None) -> str | None:
    if task_key and task_key.endswith(TASK_SUFFIX):
        return task_key[: -len(TASK_SUFFIX)]
    return None


def _decide_page(
    campaign_id: str,
    spec: CampaignSpec,
    routing: RoutingSpec,
    connector_name: str,
    page: SubmissionPage,
) -> dict[str, int]:
    answers: dict[
        str, tuple[Submission | None, PreferenceAnswer | RankingAnswer | RatingAnswer | None]
    ] = {}
    for submission in page.submissions:
        item_id = _item_of(submission.task_key)
        if item_id is not None and isinstance(
            submission.answer, PreferenceAnswer | RankingAnswer | RatingAnswer
        ):
            answers[item_id] = (submission, submission.answer)
    for q in page.quarantined:
        item_id = _item_of(q.task_key)
        if item_id is not None:
            answers[item_id] = (None, None)
    counts: dict[str, int] = {}
    with session_scope() as s:
        waiting = set(
            s.exec(
                select(AIRoute.item_id).where(
                    col(AIRoute.item_id).in_(list(answers)), AIRoute.route == AIRouteState.ASKED
                )
            ).all()
        )
        judgments: list[dict[str, Any]] = []
        collected: list[str] = []
        for item_id in sorted(waiting):  # a page read twice decides nothing twice
            sub, answer = answers[item_id]
            if (
                isinstance(answer, RankingAnswer)
                and spec.ranking is not None
                and not spec.ranking.ties
                and len(set(answer.ranks)) < len(answer.ranks)
            ):
                # Checked as sync checks a worker's ranking: a judge that ties where the
                # campaign allows none is unreadable, its set goes to humans, not into data.
                answer = None
            route, reason = decide(answer, routing, spec.seed, item_id)
            counts[route.value] = counts.get(route.value, 0) + 1
            ranked = answer if isinstance(answer, RankingAnswer) else None
            paired = answer if isinstance(answer, PreferenceAnswer) else None
            rated = answer if isinstance(answer, RatingAnswer) else None
            s.execute(
                update(AIRoute)
                .where(col(AIRoute.item_id) == item_id)
                .values(
                    route=route,
                    reason=reason,
                    choice=(
                        paired.choice
                        if paired
                        else "ranking"
                        if ranked
                        else "rating"
                        if rated
                        else None
                    ),
                    confidence=answer.confidence if answer else None,
                    position_consistent=paired.position_consistent if paired else None,
                    places=list(ranked.ranks) if ranked else None,
                    order_agreement=ranked.order_agreement if ranked else None,
                    scores=dict(rated.scores) if rated else None,
                    submission_id=sub.external_id if sub else None,
                    decided_at=utcnow(),
                )
            )
            if route is AIRouteState.AI and sub is not None and answer is not None:
                judgments.append(judgment_row(campaign_id, connector_name, sub, item_id))
                collected.append(item_id)
        insert_ignore(s, Judgment, judgments, ["connector", "external_id"])
        kept = set(collected)
        to_humans = [i for i in sorted(waiting) if i not in kept]
        if routing.human_min_overlap is not None and to_humans:
            # Items are written through move_items only; here they stay pending.
            move_items(
                s,
                to_humans,
                ItemState.PENDING,
                from_=ItemState.PENDING,
                values={"overlap": routing.human_min_overlap},
                where=[col(Item.overlap) < routing.human_min_overlap],
                strict=False,
            )
        # Decided by the judge: collected without ever being published.
        move_items(s, collected, ItemState.COLLECTED, from_=ItemState.PENDING, strict=False)
        # The cursor moves in the transaction of what it read.
        s.execute(
            update(AIJudgeBatch)
            .where(col(AIJudgeBatch.campaign_id) == campaign_id)
            .values(cursor=page.cursor)
        )
    return counts


def _set_routes(campaign_id: str, routes: dict[str, tuple[AIRouteState, str]]) -> None:
    with session_scope() as s:
        for item_id, (route, reason) in routes.items():
            s.execute(
                update(AIRoute)
                .where(col(AIRoute.item_id) == item_id, col(AIRoute.route) == AIRouteState.ASKED)
                .values(route=route, reason=reason, decided_at=utcnow())
            )


def _record_spend(campaign_id: str, connector: Connector, batch: BatchRef) -> None:
    if Capability.SPEND_REPORT not in connector.capabilities:
        return
    spent = connector.spend(batch)
    if spent is None:
        return
    with session_scope() as s:
        s.execute(
            update(AIJudgeBatch)
            .where(col(AIJudgeBatch.campaign_id) == campaign_id)
            .values(spend=str(spent.amount), currency=spent.currency)
        )


def ai_routed_items(campaign_id: str) -> set[str]:
    """Pairs the judge decided (dynamic overlap leaves them alone)."""
    return set(_routed(campaign_id, AIRouteState.AI))


# The worker id under which the judge's verdicts on pairs it sent back count as evidence
# (`sent_back_votes`): its own worker in the fit, apart from its decided pairs' worker.
SENT_BACK_WORKER = ":sent-back"


def sent_back_votes(campaign_id: str) -> dict[str, tuple[str, str]]:
    """The judge's verdicts on the pairs it sent to humans for low confidence, as votes:
    pair -> (worker, label). Empty unless `routing.sent_back_vote` on a plain (not graded)
    comparison campaign.

    Without them the humans start from nothing: a pair with one human vote that the judge
    agrees with is extended like a lone vote. Here the judge's verdict joins the pair's
    evidence as one worker's vote, under a worker id of its own, so the worker-aware fit
    weighs it by the reliability it shows against the humans on exactly these pairs (not
    by its decided pairs', where it is the only voice; under the threshold it is a weak
    voter: 0.42-0.56 of its three-way verdicts right on the simulator at 0.75-0.8);
    dynamic overlap stops earlier where the humans agree with it. Pairs whose two orders
    disagree are left out (their verdict is mostly position), and so are audited pairs
    (the audit compares the judge with the humans' own verdict).
    """
    with session_scope() as s:
        batch = s.get(AIJudgeBatch, campaign_id)
        if batch is None:
            return {}
        spec = load_spec(s, campaign_id)
        routing = spec.routing
        prefs = spec.preferences
        if routing is None or not routing.sent_back_vote or prefs is None or prefs.graded:
            return {}
        rows = s.exec(
            select(AIRoute.item_id, AIRoute.choice).where(
                AIRoute.campaign_id == campaign_id,
                AIRoute.route == AIRouteState.HUMAN,
                AIRoute.reason == "low_confidence",
                col(AIRoute.choice).in_(("left", "right", "tie")),
                col(AIRoute.position_consistent).is_not(False),
            )
        ).all()
        worker = f"{batch.connector}{SENT_BACK_WORKER}"
    return {str(item): (worker, str(choice)) for item, choice in rows}


@dataclass(frozen=True)
class AIVerdicts:
    """What the judge decided, read once per aggregation (`ai_verdicts`) and applied to
    the outcome rows a chunk at a time (`apply_ai_verdicts`)."""

    choices: dict[str, str | None]  # pair -> the judge's choice, every pair it decided
    levels: dict[str, int]  # graded campaigns: pair -> the judge's level, where it gave one
    graded: GradedSpec | None = None


def ai_verdicts(campaign_id: str) -> AIVerdicts:
    """The judge's verdicts on the pairs it decided (its levels too in a graded campaign)."""
    from crowdloop.stages.graded import graded_spec

    graded = graded_spec(campaign_id)
    with session_scope() as s:
        decided: dict[str, str | None] = dict(
            s.exec(
                select(AIRoute.item_id, AIRoute.choice).where(
                    AIRoute.campaign_id == campaign_id, AIRoute.route == AIRouteState.AI
                )
            ).all()
        )
        batch = s.get(AIJudgeBatch, campaign_id)
        levels: dict[str, int] = {}
        if graded is not None and batch is not None and decided:
            levels = {
                str(item): level
                for item, level in s.exec(
                    select(Judgment.item_id, Judgment.level).where(
                        Judgment.campaign_id == campaign_id,
                        Judgment.connector == batch.connector,
                        col(Judgment.item_id).in_(list(decided)),
                        col(Judgment.level).is_not(None),
                    )
                ).all()
                if level is not None
            }
    return AIVerdicts(choices=decided, levels=levels, graded=graded)


def apply_ai_verdicts(decided: AIVerdicts, outcome_rows: list[dict[str, object]]) -> int:
    """Give each pair the judge decided (`ai_verdicts`) its verdict, in place; returns
    pairs changed.

    Its judgment is also in the Bradley-Terry fit (it informs the prompt's other pairs),
    but a single vote can be outweighed there by the pooled scores; the routing decided
    the pair, so its verdict stands. Where it overturns the fit, the margin is 0: the
    scores give no size for a preference they do not show. In a graded campaign the
    judge's level stands too, with that level's margin from the campaign file: in the
    ordinal fit the judge's decided pairs are seen by no one else, so its scale use is
    poorly identified and the typical worker's median mapped its levels onto others (exact
    level 0.42 against the judge's own 0.76 on the pairs it decided; README, *AI-first
    graded comparisons*).
    """
    graded = decided.graded
    changed = 0
    for row in outcome_rows:
        item = str(row["item_id"])
        choice = decided.choices.get(item)
        if choice is None:
            continue
        level = decided.levels.get(item)
        if graded is not None and choice == "tie":
            # The judge's confident "unsure": no level, as for a worker.
            verdict: dict[str, object] = {"winner": choice, "level": None, "margin": 0.0}
        elif graded is not None and level:
            verdict = {"winner": choice, "level": level, "margin": graded.levels[level - 1].margin}
        elif row["winner"] != choice:
            verdict = {"winner": choice, "margin": 0.0}
        else:
            continue
        if any(row.get(k) != v for k, v in verdict.items()):
            row.update(verdict)
            changed += 1
    return changed


# --- what the report shows ------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingSummary:
    asked: int
    by_route: dict[str, int]
    by_reason: dict[str, int]
    audited: int
    audit_agree: int  # pairs: the judge's verdict equals the humans' aggregated verdict;
    # ranking sets: the judge's ranking orders every pair as the humans' consensus does
    audit_decisive: int  # audited pairs where neither said tie (0 for ranking sets)
    audit_decisive_agree: int
    human_judgments: int  # valid human judgments on production comparisons (bought)
    ai_spend: Money | None
    unit: str = "pairs"  # what was routed: pairs, or ranking sets
    # Ranking sets: mean Kendall's tau-b between the judge's ranking of an audited set and
    # the humans' consensus of it (their mean places); None for pairs or before any audit.
    audit_tau: float | None = None
    # Rating items: per aspect, the mean absolute difference (scale points) between the
    # judge's score of an audited item and the humans' consensus of it (empty for others).
    audit_aspects: dict[str, float] = field(default_factory=dict)
    # Golden items retired unpublished: planned for items the judge then decided
    # (`retire_surplus_golden`; the report's item counts show them as golden_exhausted).
    golden_retired: int = 0


def _human_consensus(s: Any, campaign_id: str, items: list[str], ai: str) -> dict[str, list[float]]:
    """Per ranking set, the mean place of each shown response over the humans' trusted
    rankings of it (the judge's own, never on an audited set, left out anyway)."""
    from crowdloop.stages.ranking import places_of

    rows = s.exec(
        select(Judgment.item_id, Judgment.text).where(
            Judgment.campaign_id == campaign_id,
            col(Judgment.item_id).in_(items),
            Judgment.status == JudgmentStatus.VALID,
            col(Judgment.excluded).is_(False),
            Judgment.connector != ai,
        )
    ).all()
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for item_id, text in rows:
        places = places_of(text)
        total = sums.setdefault(str(item_id), [0.0] * len(places))
        if len(total) != len(places):
            continue
        sums[str(item_id)] = [a + b for a, b in zip(total, places, strict=True)]
        counts[str(item_id)] = counts.get(str(item_id), 0) + 1
    return {i: [v / counts[i] for v in total] for i, total in sums.items() if counts.get(i)}


def _human_scores(s: Any, campaign_id: str, items: list[str]) -> dict[str, dict[str, float]]:
    """Per rating item, the humans' consensus score of each aspect (AspectScore, written
    by the last aggregation; the judge has no judgment on an audited item)."""
    from crowdloop.models.tables import AspectScore, RatingItem

    rows = s.exec(
        select(RatingItem.item_id, AspectScore.aspect, AspectScore.score)
        .join(AspectScore, col(AspectScore.response_id) == col(RatingItem.response_id))
        .where(
            AspectScore.campaign_id == campaign_id,
            col(RatingItem.item_id).in_(items),
        )
    ).all()
    out: dict[str, dict[str, float]] = {}
    for item_id, aspect, score in rows:
        out.setdefault(str(item_id), {})[str(aspect)] = float(score)
    return out


def routing_summary(campaign_id: str) -> RoutingSummary | None:
    """Counts, human judgments bought and AI–human agreement on audited pairs (after
    aggregation: the humans' verdict is the pair's PairOutcome) or, in a ranking campaign,
    on audited sets (Kendall's tau-b against the humans' consensus of the set)."""
    from crowdloop.models.tables import PairOutcome

    with session_scope() as s:
        batch = s.get(AIJudgeBatch, campaign_id)
        if batch is None:
            return None
        work = routed(load_spec(s, campaign_id))
        kind = work.kind if work is not None else "compare"
        routes = s.exec(select(AIRoute).where(AIRoute.campaign_id == campaign_id)).all()
        outcomes = dict(
            s.exec(
                select(PairOutcome.item_id, PairOutcome.winner).where(
                    PairOutcome.campaign_id == campaign_id
                )
            ).all()
        )
        humans = s.exec(
            select(Judgment.id)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                Judgment.campaign_id == campaign_id,
                Judgment.status == JudgmentStatus.VALID,
                Judgment.connector != batch.connector,
                Item.kind == kind,
                col(Item.is_golden).is_(False),
            )
        ).all()
        retired = s.exec(
            select(func.count()).where(
                Item.campaign_id == campaign_id,
                Item.kind == kind,
                col(Item.is_golden).is_(True),
                Item.state == ItemState.EXHAUSTED,
                Item.pushes == 0,
            )
        ).one()
        audited_sets = [
            r.item_id for r in routes if r.route == AIRouteState.AUDIT and r.places is not None
        ]
        consensus = (
            _human_consensus(s, campaign_id, audited_sets, batch.connector)
            if kind == "rank"
            else {}
        )
        audited_ratings = [
            r.item_id for r in routes if r.route == AIRouteState.AUDIT and r.scores is not None
        ]
        human_scores = _human_scores(s, campaign_id, audited_ratings) if kind == "rate" else {}
    by_route: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for r in routes:
        route = AIRouteState(r.route)
        by_route[route.value] = by_route.get(route.value, 0) + 1
        if r.reason:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    spend = (
        Money(amount=Decimal(batch.spend), currency=batch.currency or "USD")
        if batch.spend is not None
        else None
    )
    common = {
        "asked": len(routes),
        "by_route": by_route,
        "by_reason": by_reason,
        "human_judgments": len(humans),
        "ai_spend": spend,
        "golden_retired": int(retired),
    }
    if kind == "rate":
        ai_scores = {r.item_id: r.scores or {} for r in routes}
        compared = [i for i in audited_ratings if human_scores.get(i)]
        diffs: dict[str, list[float]] = {}
        for i in compared:
            for aspect, human in human_scores[i].items():
                if aspect in ai_scores[i]:
                    diffs.setdefault(aspect, []).append(abs(ai_scores[i][aspect] - human))
        return RoutingSummary(
            **common,  # type: ignore[arg-type]
            audited=len(compared),
            audit_agree=0,
            audit_decisive=0,
            audit_decisive_agree=0,
            unit="rating items",
            audit_aspects={a: sum(d) / len(d) for a, d in diffs.items()},
        )
    if kind == "rank":
        places = {r.item_id: r.places for r in routes}
        taus = [kendall_tau(places[i] or [], consensus[i]) for i in audited_sets if i in consensus]
        return RoutingSummary(
            **common,  # type: ignore[arg-type]
            audited=len(taus),
            audit_agree=sum(t == 1.0 for t in taus),
            audit_decisive=0,
            audit_decisive_agree=0,
            unit="ranking sets",
            audit_tau=sum(taus) / len(taus) if taus else None,
        )
    audit = [(r.choice, outcomes.get(r.item_id)) for r in routes if r.route == AIRouteState.AUDIT]
    audit = [(a, h) for a, h in audit if a is not None and h is not None]
    decisive = [(a, h) for a, h in audit if "tie" not in (a, h)]
    return RoutingSummary(
        **common,  # type: ignore[arg-type]
        audited=len(audit),
        audit_agree=sum(a == h for a, h in audit),
        audit_decisive=len(decisive),
        audit_decisive_agree=sum(a == h for a, h in decisive),
    )


def summary_lines(summary: RoutingSummary) -> Iterable[str]:
    """Markdown lines for the campaign report."""
    unit = summary.unit
    yield "## AI-first routing"
    yield ""
    routed_ = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_route.items()))
    yield f"- {unit.capitalize()} sent to the AI judge: {summary.asked} ({routed_})."
    if summary.by_reason:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_reason.items()))
        yield f"- Sent to humans because: {reasons}."
    yield f"- Human judgments bought on production {unit}: {summary.human_judgments}."
    if summary.golden_retired:
        yield (
            f"- Golden {unit} retired unpublished (kept at the golden share of what humans "
            f"see): {summary.golden_retired}."
        )
    if summary.ai_spend is not None:
        spent = summary.ai_spend
        yield f"- AI judge cost (token usage x prices): {spent.amount:.4f} {spent.currency}."
    if summary.audited and summary.audit_aspects:
        per = ", ".join(f"{a} {d:.2f}" for a, d in summary.audit_aspects.items())
        overall = sum(summary.audit_aspects.values()) / len(summary.audit_aspects)
        yield (
            f"- AI–human agreement on {summary.audited} audited {unit}: mean absolute "
            f"difference {overall:.2f} scale points (judge's score vs the humans' consensus), "
            f"per aspect: {per}."
        )
    elif summary.audited and summary.audit_tau is not None:
        yield (
            f"- AI–human agreement on {summary.audited} audited {unit}: mean Kendall tau-b "
            f"{summary.audit_tau:.3f} (judge's ranking vs the humans' mean places of the "
            f"set); {summary.audit_agree} ordered exactly as the humans did."
        )
    elif summary.audited:
        share = summary.audit_agree / summary.audited
        line = (
            f"- AI–human agreement on {summary.audited} audited pairs: {share:.3f} "
            "(judge's verdict vs the humans' aggregated verdict, three-way)"
        )
        if summary.audit_decisive:
            d = summary.audit_decisive_agree / summary.audit_decisive
            line += f"; {d:.3f} on the {summary.audit_decisive} where neither said tie"
        yield line + "."
    else:
        yield f"- No audited {unit[:-1]} has a human verdict yet."
    yield ""
