"""What a campaign will cost, before anything is created: the expected and the worst case.

Pure: it reads the campaign spec and its input files, never the database, a connector or
Prefect, so `crowdloop estimate` runs anywhere and the flows can publish the same figures
as an artifact before the first push.

Per stage, the work the spec can create, priced at the stage's reward:

- comparisons: real pairs (as the pairing design makes them) x overlap. With dynamic
  overlap the worst case is `max_overlap`; the expected overlap is `min_overlap` plus
  q + q^2 + ... (one term per extension round, up to max), q = `assume.extend_rate`, the
  share of still-unsure pairs asked again each round;
- golden pairs at `golden_share`, at the fixed `overlap`; with dynamic overlap, each
  extension round also asks one more answer on golden pairs at `golden_share` of the pairs
  it extends (so known answers keep reaching workers after the first round);
- the exam: exam items x takers (the worst case every seat, the expected case
  `assume.exam_takers`);
- demonstrations: prompt and response writing, each text verified by
  `verification_overlap` workers, golden verifications at their share, and rewriting of
  rejected texts up to `max_attempts` (expected: geometric in `assume.text_accept_rate`);
- re-asks: the worst case asks every assignment again in each of `max_requeue_rounds`
  re-queue rounds; the expected case adds `assume.rework_share`;
- the platform's fee on all of it, where the connector declares it (`Connector.fee`) or
  the campaign states it (`budget.fee_rate`); otherwise the estimate says it is not priced.

The worst case bounds what the spec lets the campaign create (dynamic overlap extending a
pair after its re-queue rounds ran out is the one path it does not cover); the hard cap
(stages/budget.py) is what guarantees spending, whatever the estimate said.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from crowdloop.connectors.errors import ConnectorError
from crowdloop.models.domain import CompareTask, CostQuote, FeeModel, RankTask, RateTask, TaskItem
from crowdloop.models.spec import (
    BudgetAssumptions,
    CampaignSpec,
    GoldenPairRow,
    SpecError,
    iter_jsonl,
)
from crowdloop.stages.plan import golden_count, real_pairs, scan_candidates

CENT = Decimal("0.01")


@dataclass(frozen=True)
class WorkCounts:
    """The work a campaign's inputs define before any worker answered."""

    real_pairs: int = 0
    golden_pairs: int = 0
    exam_items: int = 0
    writing_slots: int = 0  # topics x prompts_per_topic
    golden_verifications: bool = False  # golden verification items are mixed in
    ranking_sets: int = 0  # k-wise ranking tasks (stages/ranking.py)
    golden_ranking_sets: int = 0
    rating_items: int = 0  # multi-aspect rating tasks (stages/rating.py)
    golden_rating_items: int = 0


@dataclass(frozen=True)
class EstimateLine:
    stage: str
    what: str
    items: float  # expected
    items_max: int
    overlap: float  # expected assignments per item
    overlap_max: int
    reward: Decimal  # per assignment
    expected: Decimal  # rewards, fee excluded
    worst: Decimal
    note: str = ""


@dataclass(frozen=True)
class Estimate:
    campaign: str
    connector: str
    currency: str
    lines: list[EstimateLine]
    rewards_expected: Decimal
    rewards_worst: Decimal
    fee_rate: Decimal | None  # None: the fee is not priced
    fee_source: str
    fee_expected: Decimal
    fee_worst: Decimal
    assumptions: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # An AI-first campaign's judge asked about every real pair (its tokens; no platform fee).
    ai: CostQuote | None = None

    @property
    def ai_expected(self) -> Decimal:
        return self.ai.expected.amount if self.ai else Decimal(0)

    @property
    def ai_worst(self) -> Decimal:
        return self.ai.worst.amount if self.ai else Decimal(0)

    @property
    def expected(self) -> Decimal:
        return self.rewards_expected + self.fee_expected + self.ai_expected

    @property
    def worst(self) -> Decimal:
        return self.rewards_worst + self.fee_worst + self.ai_worst

    @property
    def fee_priced(self) -> bool:
        return self.fee_rate is not None

    def to_json(self) -> dict[str, Any]:
        def money(d: Decimal) -> str:
            return str(d.quantize(CENT))

        return {
            "campaign": self.campaign,
            "connector": self.connector,
            "currency": self.currency,
            "expected": money(self.expected),
            "worst_case": money(self.worst),
            "rewards": {
                "expected": money(self.rewards_expected),
                "worst_case": money(self.rewards_worst),
            },
            "platform_fee": {
                "priced": self.fee_priced,
                "rate": str(self.fee_rate) if self.fee_rate is not None else None,
                "source": self.fee_source,
                "expected": money(self.fee_expected),
                "worst_case": money(self.fee_worst),
            },
            "lines": [
                {
                    **asdict(line),
                    "items": round(line.items, 2),
                    "overlap": round(line.overlap, 3),
                    "reward": str(line.reward),
                    "expected": money(line.expected),
                    "worst": money(line.worst),
                }
                for line in self.lines
            ],
            "ai_judge": None
            if self.ai is None
            else {
                "expected": money(self.ai_expected),
                "worst_case": money(self.ai_worst),
                "basis": self.ai.basis,
            },
            "assumptions": self.assumptions,
            "notes": self.notes,
        }

    def markdown(self) -> str:
        cur = md_escape(self.currency)
        fee = (
            f"{self.fee_rate:%} of rewards ({md_escape(self.fee_source)})"
            if self.fee_rate is not None
            else "**not priced**: the connector cannot price its platform's fee and the "
            "campaign sets no `budget.fee_rate`; the figures below are rewards only"
        )
        lines = [
            # The name is validated ([A-Za-z0-9_.-]): safe in a code span, where escapes
            # would show.
            f"# Cost estimate: `{self.campaign}` on {md_escape(self.connector)}",
            "",
            f"**Expected:** {self.expected:.2f} {cur}  ",
            f"**Worst case:** {self.worst:.2f} {cur}  ",
            f"**Platform fee:** {fee}",
            "",
            "| stage | work | items (expected / max) | overlap (expected / max) | reward "
            "| expected | worst case |",
            "|---|---|---|---|---|---|---|",
        ]
        for ln in self.lines:
            lines.append(
                f"| {md_escape(ln.stage)} | {md_escape(ln.what)} | {ln.items:.1f} / {ln.items_max} "
                f"| {ln.overlap:.2f} / {ln.overlap_max} | {ln.reward} | {ln.expected:.2f} "
                f"| {ln.worst:.2f} |"
            )
        lines.append(
            f"| | platform fee | | | | {self.fee_expected:.2f} | {self.fee_worst:.2f} |"
            if self.fee_rate is not None
            else "| | platform fee | | | | not priced | not priced |"
        )
        if self.ai is not None:
            lines.append(
                f"| compare | AI judge, every real pair ({md_escape(self.ai.basis)}) | | | "
                f"| {self.ai_expected:.2f} | {self.ai_worst:.2f} |"
            )
        lines.append(f"| | **total** | | | | **{self.expected:.2f}** | **{self.worst:.2f}** |")
        lines += ["", "Expected-case assumptions (the worst case assumes none of them):", ""]
        lines += [f"- {md_escape(k)}: {md_escape(str(v))}" for k, v in self.assumptions.items()]
        if self.notes:
            lines += ["", *[f"- {md_escape(n)}" for n in self.notes]]
        return "\n".join(lines)


def md_escape(text: str) -> str:
    """Text from inputs, safe inside Markdown (tables included) and HTML."""
    out = html.escape(text, quote=False)
    for ch in "\\`*_[]|#":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


# --- counting the work ----------------------------------------------------------------------


def count_work(spec: CampaignSpec) -> WorkCounts:
    """The campaign's work from its input files, planned as registration plans it."""
    real = golden = exam_items = slots = 0
    golden_verify = False
    prefs = spec.preferences
    if prefs is not None:
        real = sum(1 for _ in _real_pairs(spec))
        if prefs.golden_file is not None:
            rows_g = sum(1 for _ in iter_jsonl(prefs.golden_file, GoldenPairRow))
            exam = spec.quality.exam
            left = rows_g - (exam.items if exam else 0)
            golden = golden_count(real, prefs.golden_share) if left > 0 else 0
        if spec.quality.exam is not None:
            exam_items = spec.quality.exam.items
    demo = spec.demonstrations
    if demo is not None:
        slots = len(demo.topics) * demo.prompts_per_topic
        golden_verify = demo.golden_file is not None and demo.golden_share > 0
    sets = golden_sets = 0
    if spec.ranking is not None:
        from crowdloop.stages.ranking import count_sets

        sets, golden_sets = count_sets(spec)
    rated = golden_rated = 0
    if spec.rating is not None:
        from crowdloop.stages.rating import count_items

        rated, golden_rated = count_items(spec)
    return WorkCounts(
        real, golden, exam_items, slots, golden_verify, sets, golden_sets, rated, golden_rated
    )


def _real_pairs(spec: CampaignSpec) -> Iterator[tuple[str, str, str, CompareTask]]:
    assert spec.preferences is not None
    return real_pairs(spec, scan_candidates(spec.preferences.candidates_file))


def quote_ai_judge(
    spec: CampaignSpec, pairs: Iterable[CompareTask | RankTask | RateTask]
) -> CostQuote | str | None:
    """What the AI judge of an AI-first campaign costs if it is asked about every one of
    these pairs or ranking sets (its connector's `quote`: nothing is built or called). None without
    routing or for a judge that does not bill by the request; a string says why the judge
    cannot be priced (no bound on its answers)."""
    if spec.routing is None:
        return None
    from crowdloop.connectors.registry import get_connector_class

    tasks = [
        TaskItem(key=str(n), group=str(n), payload=payload, overlap=1)
        for n, payload in enumerate(pairs)
    ]
    judge = spec.routing.ai
    try:
        return get_connector_class(judge.name).quote(judge.options, tasks) if tasks else None
    except ConnectorError as unbounded:
        return f"the AI judge is not in these figures: {unbounded}"


# --- pricing it -------------------------------------------------------------------------------


def _d(x: float) -> Decimal:
    return Decimal(str(round(x, 6)))


def _line(
    stage: str,
    what: str,
    items: float,
    items_max: int,
    overlap: float,
    overlap_max: int,
    reward: Decimal,
    note: str = "",
) -> EstimateLine:
    return EstimateLine(
        stage=stage,
        what=what,
        items=items,
        items_max=items_max,
        overlap=overlap,
        overlap_max=overlap_max,
        reward=reward,
        expected=_d(items * overlap) * reward,
        worst=Decimal(items_max * overlap_max) * reward,
        note=note,
    )


def expected_overlap(min_overlap: int, max_overlap: int, extend_rate: float) -> float:
    """min + q + q^2 + ... + q^(max-min): each round asks again q of the still-unsure pairs."""
    return min_overlap + sum(extend_rate**k for k in range(1, max_overlap - min_overlap + 1))


def _reasks(stage: str, lines: list[EstimateLine], rounds: int, share: float) -> EstimateLine:
    expected = sum((ln.expected for ln in lines), Decimal(0)) * _d(share)
    worst = sum((ln.worst for ln in lines), Decimal(0)) * rounds
    return EstimateLine(
        stage=stage,
        what=f"re-asks (up to {rounds} re-queue round(s))",
        items=0.0,
        items_max=0,
        overlap=share,
        overlap_max=rounds,
        reward=Decimal(0),
        expected=expected,
        worst=worst,
        note="expected: rework_share of the work above; worst: all of it, every round",
    )


def estimate(
    spec: CampaignSpec,
    counts: WorkCounts,
    fee: FeeModel | None,
    *,
    fee_source: str = "",
    ai: CostQuote | str | None = None,
) -> Estimate:
    """Expected and worst-case cost of `spec` given its counted work and platform fee.

    `fee` is the connector's declared fee; the campaign's `budget.fee_rate` overrides it.
    `ai`: the AI judge's quote for every real pair (`quote_ai_judge`), added as it is
    (the human lines already assume every pair goes to humans too: the worst case), or why
    it could not be priced.
    """
    notes: list[str] = []
    if isinstance(ai, str):
        notes.append(ai)
        ai = None
    assume = spec.budget.assume if spec.budget else BudgetAssumptions()
    rounds = spec.quality.max_requeue_rounds
    currencies = {m.currency for _, m in spec.rewards()}
    if spec.budget:
        currencies.add(spec.budget.cap.currency)
    if ai is not None:
        currencies.add(ai.worst.currency)
    if len(currencies) > 1:
        raise SpecError(
            f"{spec.name}: rewards in {', '.join(sorted(currencies))}: an estimate needs "
            "one currency"
        )
    currency = currencies.pop() if currencies else "USD"
    lines: list[EstimateLine] = []

    prefs = spec.preferences
    if prefs is not None:
        reward = prefs.reward.amount
        dyn = prefs.dynamic_overlap
        compare: list[EstimateLine] = []
        if dyn is not None:
            compare.append(
                _line(
                    "compare",
                    f"real pairs, dynamic overlap {dyn.min_overlap}..{dyn.max_overlap}",
                    counts.real_pairs,
                    counts.real_pairs,
                    expected_overlap(dyn.min_overlap, dyn.max_overlap, assume.extend_rate),
                    dyn.max_overlap,
                    reward,
                )
            )
        else:
            compare.append(
                _line(
                    "compare",
                    f"real pairs, overlap {prefs.overlap}",
                    counts.real_pairs,
                    counts.real_pairs,
                    prefs.overlap,
                    prefs.overlap,
                    reward,
                )
            )
        if counts.golden_pairs:
            compare.append(
                _line(
                    "compare",
                    f"golden pairs (share {prefs.golden_share:g})",
                    counts.golden_pairs,
                    counts.golden_pairs,
                    prefs.overlap,
                    prefs.overlap,
                    reward,
                )
            )
        if counts.golden_pairs and dyn is not None:
            extra = expected_overlap(dyn.min_overlap, dyn.max_overlap, assume.extend_rate)
            compare.append(
                _line(
                    "compare",
                    f"golden pairs asked again in extension rounds (share {prefs.golden_share:g})",
                    golden_count(
                        round(counts.real_pairs * (extra - dyn.min_overlap)), prefs.golden_share
                    ),
                    golden_count(
                        counts.real_pairs * (dyn.max_overlap - dyn.min_overlap), prefs.golden_share
                    ),
                    1,
                    1,
                    reward,
                )
            )
        lines += compare
        lines.append(_reasks("compare", compare, rounds, assume.rework_share))
        exam = spec.quality.exam
        if exam is not None:
            takers = min(exam.takers, assume.exam_takers or exam.takers)
            lines.append(
                _line(
                    "exam",
                    f"exam items ({takers} of {exam.takers} seats expected)",
                    counts.exam_items,
                    counts.exam_items,
                    takers,
                    exam.takers,
                    (exam.reward or prefs.reward).amount,
                    note="never re-queued",
                )
            )

    ranking = spec.ranking
    if ranking is not None:
        ranked = [
            _line(
                "rank",
                f"ranking sets, overlap {ranking.overlap}",
                counts.ranking_sets,
                counts.ranking_sets,
                ranking.overlap,
                ranking.overlap,
                ranking.reward.amount,
            )
        ]
        if counts.golden_ranking_sets:
            ranked.append(
                _line(
                    "rank",
                    f"golden ranking sets (share {ranking.golden_share:g})",
                    counts.golden_ranking_sets,
                    counts.golden_ranking_sets,
                    ranking.overlap,
                    ranking.overlap,
                    ranking.reward.amount,
                )
            )
        lines += ranked
        lines.append(_reasks("rank", ranked, rounds, assume.rework_share))

    rating = spec.rating
    if rating is not None:
        rated = [
            _line(
                "rate",
                f"rating tasks ({len(rating.aspects)} aspects), overlap {rating.overlap}",
                counts.rating_items,
                counts.rating_items,
                rating.overlap,
                rating.overlap,
                rating.reward.amount,
            )
        ]
        if counts.golden_rating_items:
            rated.append(
                _line(
                    "rate",
                    f"golden rating tasks (share {rating.golden_share:g})",
                    counts.golden_rating_items,
                    counts.golden_rating_items,
                    rating.overlap,
                    rating.overlap,
                    rating.reward.amount,
                )
            )
        lines += rated
        lines.append(_reasks("rate", rated, rounds, assume.rework_share))

    demo = spec.demonstrations
    if demo is not None:
        slots, attempts, accept = counts.writing_slots, demo.max_attempts, assume.text_accept_rate
        # An unsure verdict goes to two more verifiers, up to max_verification_overlap.
        verify_overlap_max = max(demo.verification_overlap, demo.max_verification_overlap)
        verify_overlap = min(
            demo.verification_overlap + 2 * assume.verify_extend_rate, verify_overlap_max
        )
        tries = sum((1 - accept) ** k for k in range(attempts))  # writes per accepted text
        accepted = 1 - (1 - accept) ** attempts
        prompt_writes = slots * tries
        response_writes = slots * accepted * tries
        real_verify = prompt_writes + response_writes
        writing = [
            _line(
                "prompts",
                f"prompt writing (up to {attempts} attempts)",
                prompt_writes,
                slots * attempts,
                1,
                1,
                demo.reward.amount,
            ),
            _line(
                "responses",
                f"response writing (up to {attempts} attempts)",
                response_writes,
                slots * attempts,
                1,
                1,
                demo.reward.amount,
            ),
            _line(
                "verify",
                "verification of written text",
                real_verify,
                2 * slots * attempts,
                verify_overlap,
                verify_overlap_max,
                demo.verify_reward.amount,
            ),
        ]
        if demo.export.blocked_authors == "reverify":
            # Expected none (blocked writers' texts are mostly rejected already); at worst
            # every text is verified a second time.
            writing.append(
                _line(
                    "verify",
                    "second verification of texts by authors blocked later",
                    0.0,
                    2 * slots * attempts,
                    verify_overlap,
                    verify_overlap_max,
                    demo.verify_reward.amount,
                )
            )
        if counts.golden_verifications:
            writing.append(
                _line(
                    "verify",
                    f"golden verifications (share {demo.golden_share:g})",
                    golden_count(round(real_verify), demo.golden_share),
                    golden_count(2 * slots * attempts, demo.golden_share),
                    demo.verification_overlap,
                    demo.verification_overlap,  # golden items are never extended
                    demo.verify_reward.amount,
                )
            )
        if counts.golden_verifications and demo.golden_per_verifier > 0:
            # At worst every real verification answer is a new verifier's first.
            writing.append(
                _line(
                    "verify",
                    f"golden verifications for verifiers not yet cleared (up to "
                    f"{demo.golden_per_verifier} each)",
                    real_verify * verify_overlap * assume.cleared_golden_rate,
                    2 * slots * attempts * verify_overlap_max * demo.golden_per_verifier,
                    1,
                    1,
                    demo.verify_reward.amount,
                )
            )
        lines += writing
        lines.append(_reasks("demonstrations", writing, rounds, assume.rework_share))

    rewards_expected = sum((ln.expected for ln in lines), Decimal(0))
    rewards_worst = sum((ln.worst for ln in lines), Decimal(0))
    rate: Decimal | None
    if spec.budget is not None and spec.budget.fee_rate is not None:
        rate, fee_source = spec.budget.fee_rate, "budget.fee_rate in the campaign file"
    elif fee is not None:
        rate, fee_source = fee.rate, fee_source or fee.source
    else:
        rate, fee_source = None, ""
        notes.append(
            f"{spec.connector.name} cannot price its platform fee: the figures are rewards "
            "only; state it with budget.fee_rate"
        )
    fee_expected = rewards_expected * rate if rate is not None else Decimal(0)
    fee_worst = rewards_worst * rate if rate is not None else Decimal(0)
    assumptions: dict[str, Any] = {"max_requeue_rounds": rounds, **assume.model_dump()}
    if spec.quality.exam is not None and assume.exam_takers is None:
        notes.append(
            "exam takers are assumed to fill every seat (quality.exam.takers); set "
            "budget.assume.exam_takers to the workers you expect"
        )
    return Estimate(
        campaign=spec.name,
        connector=spec.connector.name,
        currency=currency,
        lines=lines,
        rewards_expected=rewards_expected,
        rewards_worst=rewards_worst,
        fee_rate=rate,
        fee_source=fee_source,
        fee_expected=fee_expected,
        fee_worst=fee_worst,
        assumptions=assumptions,
        notes=notes,
        ai=ai,
    )


def connector_fee(name: str) -> tuple[FeeModel | None, str]:
    """The fee a connector declares (its class attribute: nothing is built or called)."""
    from crowdloop.connectors.registry import get_connector_class

    fee = get_connector_class(name).fee
    return fee, f"{name}: {fee.source}" if fee is not None else ""


def estimate_spec(spec: CampaignSpec) -> Estimate:
    """The estimate of a loaded campaign file: its inputs counted, its connector's fee."""
    fee, source = connector_fee(spec.connector.name)
    ai = quote_ai_judge(spec, routed_tasks(spec)) if spec.routing else None
    return estimate(spec, count_work(spec), fee, fee_source=source, ai=ai)


def routed_tasks(spec: CampaignSpec) -> list[CompareTask | RankTask | RateTask]:
    """What AI-first routing would ask the judge about: every real pair, every real
    ranking set in a ranking campaign, or every real rating item in a rating campaign."""
    if spec.ranking is not None:
        from crowdloop.stages.ranking import real_set_tasks

        return list(real_set_tasks(spec))
    if spec.rating is not None:
        from crowdloop.stages.rating import real_rate_tasks

        return list(real_rate_tasks(spec))
    return [task for *_, task in _real_pairs(spec)]
