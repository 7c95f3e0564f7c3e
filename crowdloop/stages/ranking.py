"""k-wise ranking tasks end to end: plan, check, grade, aggregate, export.

A ranking item (kind `rank`, stage `rank`) shows 3-9 responses to one prompt; its
`RankingSet` row keeps the response ids in the order shown (and, for a golden set, the
known places), so the task payload carries only texts. A worker's answer is stored raw on
the judgment (`label` "ranking", `text` the JSON list of places), and everything below
derives from it: golden grading by agreement with the known order, and aggregation by
Plackett-Luce, Bradley-Terry over the implied pairs, or mean rank
(crowdloop.aggregation.rankings). The round loop, the push ledger, sync, settling,
worker checks and review are the ones every stage uses.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from crowdloop.aggregation.rankings import Method, PairWeight, ranking_scores, worker_weights
from crowdloop.db import insert_ignore, session_scope
from crowdloop.ids import seeded_rng, stable_id
from crowdloop.models.domain import RankTask, Stage
from crowdloop.models.ranking_spec import MAX_K, MIN_K, GoldenRankingRow, RankingSpec
from crowdloop.models.spec import (
    CampaignSpec,
    CandidateRow,
    SpecError,
    load_jsonl,
    load_jsonl_lines,
)
from crowdloop.models.tables import (
    CandidateScore,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    Prompt,
    RankingSet,
    Response,
)
from crowdloop.stages.counts import golden_item_ids
from crowdloop.stages.export import _record, write_jsonl_atomic
from crowdloop.stages.plan import (
    _item_row,
    _prompt_key,
    _response_key,
    golden_count,
    index_candidates,
    insert_candidates,
)

KIND = "rank"
LABEL = "ranking"  # Judgment.label of a ranking answer; the places are in Judgment.text


# --- inputs and plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class RankingInputs:
    prompt_text: dict[str, str]
    by_prompt: dict[str, list[CandidateRow]]
    golden: list[GoldenRankingRow]


def ranking_inputs(spec: RankingSpec) -> RankingInputs:
    """Read and check the ranking section's input files (nothing is written): every prompt
    needs at least 3 candidates, and at most 9 when `k` is null (one set of all of them)."""
    numbered = load_jsonl_lines(spec.candidates_file, CandidateRow)
    by_prompt, prompt_text = index_candidates(numbered, spec.candidates_file)
    first_line: dict[str, int] = {}
    for lineno, row in numbered:
        first_line.setdefault(row.prompt_id, lineno)
    for pid, rows in by_prompt.items():
        too_many = spec.k is None and len(rows) > MAX_K
        if len(rows) < MIN_K or too_many:
            need = (
                f"at most {MAX_K} (or set ranking.k to rank them in sets)"
                if too_many
                else f"at least {MIN_K}"
            )
            raise SpecError(
                f"{spec.candidates_file}:{first_line[pid]}: field 'prompt_id': prompt "
                f"{pid!r} has {len(rows)} candidate(s); a ranking needs {need}"
            )
    golden = load_jsonl(spec.golden_file, GoldenRankingRow) if spec.golden_file else []
    return RankingInputs(prompt_text=prompt_text, by_prompt=dict(by_prompt), golden=golden)


def ranking_sets(
    ids: Sequence[str], k: int | None, per_candidate: int, seed: str
) -> list[list[str]]:
    """The sets of `k` responses to rank among one prompt's candidates.

    All of them when they fit in one set. Otherwise a chain around a shuffled cycle (each
    set starts at the last response of the one before), which keeps the prompt's sets
    connected, then random sets until each candidate sits in about `per_candidate` sets.
    """
    ids = sorted(ids)
    size = len(ids) if k is None else k
    if len(ids) <= size:
        return [ids]
    rng = random.Random(seed)
    order = ids[:]
    rng.shuffle(order)
    n = len(order)
    chain = math.ceil(n / (size - 1))
    sets = [[order[(j * (size - 1) + i) % n] for i in range(size)] for j in range(chain)]
    for _ in range(chain, max(chain, math.ceil(n * per_candidate / size))):
        sets.append(rng.sample(order, size))
    return sets


def _shown(item_id: str, seed: int, entries: list[Any]) -> list[Any]:
    """The order a set is shown in: a fixed shuffle per item (position bias averages out)."""
    out = list(entries)
    seeded_rng(seed, "rank-order", item_id).shuffle(out)
    return out


def _rank_task(spec: CampaignSpec, prompt: str, responses: list[str]) -> RankTask:
    ranking = spec.ranking
    assert ranking is not None
    return RankTask(
        instruction=ranking.instruction,
        prompt=prompt,
        responses=tuple(responses),
        ties=ranking.ties,
    )


def _rank_item(
    spec: CampaignSpec, item_id: str, prompt: str, responses: list[str], **row: Any
) -> dict[str, Any]:
    """The item row of one ranking set, real or golden (`row`: its other columns)."""
    ranking = spec.ranking
    assert ranking is not None
    payload = _rank_task(spec, prompt, responses)
    return _item_row(
        item_id, spec.name, Stage.RANK, payload.model_dump(), overlap=ranking.overlap, **row
    )


def prompt_sets(spec: CampaignSpec, prompt_id: str, ids: Sequence[str]) -> list[list[str]]:
    """The ranking sets of one prompt's candidates, as the campaign plans them."""
    ranking = spec.ranking
    assert ranking is not None
    return ranking_sets(
        ids, ranking.k, ranking.sets_per_candidate, f"{spec.name}/{ranking.seed}/{prompt_id}"
    )


def count_sets(spec: CampaignSpec) -> tuple[int, int]:
    """(real, golden) ranking sets the campaign's inputs plan (for the cost estimate)."""
    ranking = spec.ranking
    assert ranking is not None
    inputs = ranking_inputs(ranking)
    real = sum(
        len(prompt_sets(spec, pid, [r.response_id for r in rows]))
        for pid, rows in inputs.by_prompt.items()
    )
    return real, golden_count(real, ranking.golden_share) if inputs.golden else 0


def _real_sets(
    spec: CampaignSpec, inputs: RankingInputs
) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """(item id, prompt id, response ids as shown, their texts) of every real set."""
    for pid, rows in sorted(inputs.by_prompt.items()):
        text = {r.response_id: r.response for r in rows}
        for j, members in enumerate(prompt_sets(spec, pid, list(text))):
            item_id = stable_id("rk", spec.name, pid, j)
            shown = _shown(item_id, spec.seed, members)
            yield item_id, pid, shown, [text[r] for r in shown]


def real_set_tasks(spec: CampaignSpec) -> list[RankTask]:
    """The payloads of the real ranking sets registration plans (what an AI judge of an
    AI-first ranking campaign would be asked; the estimate prices them)."""
    assert spec.ranking is not None
    inputs = ranking_inputs(spec.ranking)
    return [
        _rank_task(spec, inputs.prompt_text[pid], texts)
        for _, pid, _, texts in _real_sets(spec, inputs)
    ]


def plan_rankings(session: Session, spec: CampaignSpec, inputs: RankingInputs) -> None:
    """The campaign's ranking items and their sets, golden sets mixed in at `golden_share`."""
    ranking = spec.ranking
    assert ranking is not None
    insert_candidates(
        session,
        spec.name,
        inputs.prompt_text,
        [row for rows in inputs.by_prompt.values() for row in rows],
    )
    items: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    for item_id, pid, shown, texts in _real_sets(spec, inputs):
        items.append(
            _rank_item(
                spec,
                item_id,
                inputs.prompt_text[pid],
                texts,
                subject_id=_prompt_key(spec.name, pid),
            )
        )
        sets.append(
            {
                "item_id": item_id,
                "campaign_id": spec.name,
                "prompt_id": _prompt_key(spec.name, pid),
                "shown": [_response_key(spec.name, r) for r in shown],
                "golden_ranks": None,
            }
        )
    real = len(items)
    for n in range(golden_count(real, ranking.golden_share) if inputs.golden else 0):
        g = inputs.golden[n % len(inputs.golden)]
        item_id = stable_id("gr", spec.name, g.id, n)
        order = _shown(item_id, spec.seed, list(range(len(g.responses))))
        items.append(
            _rank_item(
                spec,
                item_id,
                g.prompt,
                [g.responses[i] for i in order],
                subject_id=g.id,
                golden_answer=LABEL,  # the known places are in the set's golden_ranks
                group=f"golden-{g.id}",
            )
        )
        sets.append(
            {
                "item_id": item_id,
                "campaign_id": spec.name,
                "prompt_id": g.id,
                "shown": [f"{g.id}#{i}" for i in order],
                "golden_ranks": [g.ranks[i] for i in order],
            }
        )
    insert_ignore(session, Item, items, ["id"])
    session.flush()
    insert_ignore(session, RankingSet, sets, ["item_id"])


# --- answers ----------------------------------------------------------------------------


def ranking_problem(payload: Mapping[str, Any], ranks: Sequence[int]) -> str | None:
    """Why a ranking answer does not fit its task (None: it fits): one place per response
    shown, and no shared place unless the task allows ties."""
    shown = len(payload.get("responses", ()))
    if len(ranks) != shown:
        return f"a ranking of {shown} responses got {len(ranks)} places"
    if not payload.get("ties", False) and len(set(ranks)) != len(ranks):
        return "the ranking has tied places but the task does not allow ties"
    return None


def places_of(text: str | None) -> list[int]:
    """The places stored on a ranking judgment (its `text`)."""
    return [int(p) for p in json.loads(text or "[]")]


def golden_tally(s: Session, campaign_id: str) -> dict[str, tuple[int, int]]:
    """worker -> (passed, graded) on golden ranking sets: a ranking passes when it orders
    at least `ranking.golden_min_agreement` of the pairs the known order orders strictly
    the same way. Quarantined answers are not held against the worker."""
    from crowdloop.aggregation.rankings import concordance

    rows = s.exec(
        select(Judgment.worker_id, Judgment.text, RankingSet.golden_ranks)
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .join(RankingSet, col(RankingSet.item_id) == col(Item.id))
        .where(
            Judgment.campaign_id == campaign_id,
            col(Judgment.item_id).in_(golden_item_ids(campaign_id, KIND)),
            Judgment.status == JudgmentStatus.VALID,
            col(Item.is_golden).is_(True),
            Item.kind == KIND,
        )
    ).all()
    if not rows:
        return {}
    from crowdloop.stages.plan import load_spec

    spec = load_spec(s, campaign_id).ranking
    assert spec is not None, "golden ranking sets in a campaign without a ranking section"
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for worker, text, known in rows:
        if worker is None or known is None:
            continue
        tally[worker][0] += int(concordance(places_of(text), known) >= spec.golden_min_agreement)
        tally[worker][1] += 1
    return {w: (c, n) for w, (c, n) in tally.items()}


@dataclass(frozen=True)
class RankingRow:
    item: str
    prompt: str
    shown: list[str]
    places: list[int]
    worker: str


def rankings_frame(campaign_id: str) -> list[RankingRow]:
    """Trusted rankings of real (non-golden) sets, in a fixed order (same data, same fit)."""
    with session_scope() as s:
        rows = s.execute(
            sa_select(
                col(Item.id),
                col(RankingSet.prompt_id),
                col(RankingSet.shown),
                col(Judgment.text),
                col(Judgment.worker_id),
            )
            .join(RankingSet, col(RankingSet.item_id) == col(Item.id))
            .join(Judgment, col(Judgment.item_id) == col(Item.id))
            .where(
                col(Item.campaign_id) == campaign_id,
                col(Item.kind) == KIND,
                col(Item.is_golden).is_(False),
                col(Item.state).in_([ItemState.COLLECTED, ItemState.DONE]),
                col(Judgment.status) == JudgmentStatus.VALID,
                col(Judgment.excluded).is_(False),
            )
            .order_by(col(Item.id), col(Judgment.external_id))
        ).all()
    return [
        RankingRow(str(i), str(p), list(shown), places_of(text), str(w))
        for i, p, shown, text, w in rows
    ]


# --- aggregation ------------------------------------------------------------------------


@dataclass(frozen=True)
class RankingAggregate:
    prompts: int
    responses: int
    rankings: int
    method: str


def fit_scores(
    rows: Sequence[RankingRow],
    method: Method,
    how: PairWeight = "choices",
    weigh_workers: bool = False,
) -> dict[str, float]:
    """Response id -> score (higher is better) from the rankings, by `method`, each
    ranking weighted by its worker's learned reliability when `weigh_workers` (not for
    mean rank, the naive baseline). One fit over the campaign: prompts share no
    responses, and each method's prior (or mean) anchors every response on its own, so
    this equals the per-prompt fits side by side (worker weights are campaign-wide)."""
    ids = sorted({r for row in rows for r in row.shown})
    code = {r: i for i, r in enumerate(ids)}
    coded = [([code[r] for r in row.shown], row.places) for row in rows]
    weights = (
        worker_weights(coded, [row.worker for row in rows], len(ids), method, how)
        if weigh_workers and method != "mean_rank"
        else None
    )
    scores = ranking_scores(coded, len(ids), method, how, weights)
    return {r: float(scores[code[r]]) for r in ids}


def aggregate_rankings(campaign_id: str, spec: RankingSpec) -> RankingAggregate:
    """Score every ranked response (CandidateScore, rewritten): rerunnable at any time."""
    rows = rankings_frame(campaign_id)
    scores = (
        fit_scores(rows, spec.aggregation, spec.pair_weight, spec.weigh_workers) if rows else {}
    )
    prompt_of = {r: row.prompt for row in rows for r in row.shown}
    with session_scope() as s:
        s.execute(delete(CandidateScore).where(col(CandidateScore.campaign_id) == campaign_id))
        insert_ignore(
            s,
            CandidateScore,
            [
                {
                    "campaign_id": campaign_id,
                    "response_id": rid,
                    "prompt_id": prompt_of[rid],
                    "score": score,
                    "method": spec.aggregation,
                }
                for rid, score in sorted(scores.items())
            ],
            ["campaign_id", "response_id"],
        )
    return RankingAggregate(
        prompts=len({row.prompt for row in rows}),
        responses=len(scores),
        rankings=len(rows),
        method=spec.aggregation,
    )


# --- export -----------------------------------------------------------------------------


def _pair_votes(rows: Sequence[RankingRow]) -> dict[tuple[str, str], list[int]]:
    """(a, b) -> [rankings placing a above b, below, tied], for every pair shown together."""
    votes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        for i, a in enumerate(row.shown):
            for j, b in enumerate(row.shown):
                if i == j:
                    continue
                slot = (
                    0
                    if row.places[i] < row.places[j]
                    else 1
                    if row.places[i] > row.places[j]
                    else 2
                )
                votes[(a, b)][slot] += 1
    return votes


def _scored(campaign_id: str) -> tuple[dict[str, list[tuple[str, float]]], str]:
    """Per prompt, its responses best first with their scores; and the method."""
    with session_scope() as s:
        scored = s.exec(
            select(CandidateScore).where(CandidateScore.campaign_id == campaign_id)
        ).all()
    per_prompt: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for c in scored:
        per_prompt[c.prompt_id].append((c.response_id, c.score))
    for entries in per_prompt.values():
        entries.sort(key=lambda e: (-e[1], e[0]))
    return per_prompt, scored[0].method if scored else ""


def _texts(campaign_id: str) -> tuple[dict[str, Prompt], dict[str, Response]]:
    with session_scope() as s:
        prompts = {p.id: p for p in s.exec(select(Prompt).where(Prompt.campaign_id == campaign_id))}
        responses = {
            r.id: r for r in s.exec(select(Response).where(Response.campaign_id == campaign_id))
        }
    return prompts, responses


def ranking_rows(campaign_id: str) -> list[dict[str, Any]]:
    """One row per prompt: its responses in the aggregated order (best first) and scores."""
    per_prompt, method = _scored(campaign_id)
    prompts, responses = _texts(campaign_id)
    counts: dict[str, int] = defaultdict(int)
    for row in rankings_frame(campaign_id):
        counts[row.prompt] += 1
    return [
        {
            "prompt": prompts[pid].text,
            "responses": [responses[r].text for r, _ in entries],
            "response_ids": [r for r, _ in entries],
            "models": [responses[r].model for r, _ in entries],
            "scores": [round(score, 6) for _, score in entries],
            "rankings": counts[pid],
            "method": method,
            "prompt_id": pid,
            "campaign": campaign_id,
        }
        for pid, entries in sorted(per_prompt.items())
    ]


def pair_rows(campaign_id: str, min_confidence: float) -> list[dict[str, Any]]:
    """TRL preference pairs from the aggregated order: every pair of a prompt's responses
    whose P(chosen better) is at least `min_confidence`. Under Plackett-Luce and
    Bradley-Terry that is sigmoid(score difference) (a PL model's P(a ranked above b) in
    a set of two); mean rank has no model, so it is the share of the rankings showing
    both that placed the chosen one higher (ties half), and pairs never shown together
    are not exported."""
    per_prompt, method = _scored(campaign_id)
    prompts, responses = _texts(campaign_id)
    votes = _pair_votes(rankings_frame(campaign_id))
    out = []
    for pid, entries in sorted(per_prompt.items()):
        for i, (a, score_a) in enumerate(entries):
            for b, score_b in entries[i + 1 :]:
                above, below, tied = votes.get((a, b), [0, 0, 0])
                if method == "mean_rank":
                    shown = above + below + tied
                    confidence = (above + tied / 2) / shown if shown else 0.0
                else:
                    confidence = 1.0 / (1.0 + math.exp(-(score_a - score_b)))
                if score_a <= score_b or confidence < min_confidence:
                    continue
                out.append(
                    {
                        "prompt": prompts[pid].text,
                        "chosen": responses[a].text,
                        "rejected": responses[b].text,
                        "margin": round(score_a - score_b, 6),
                        "confidence": round(confidence, 6),
                        "votes": {"chosen": above, "rejected": below, "tie": tied},
                        "chosen_model": responses[a].model,
                        "rejected_model": responses[b].model,
                        "chosen_id": a,
                        "rejected_id": b,
                        "prompt_id": pid,
                        "method": method,
                        "campaign": campaign_id,
                    }
                )
    return out


def export_rankings(campaign_id: str, spec: RankingSpec) -> dict[str, tuple[int, Path]]:
    """Write the TRL pairs file and the rankings file (atomically; recorded)."""
    out: dict[str, tuple[int, Path]] = {}
    for kind, path, rows in (
        ("ranking_pairs", spec.export.pairs_path, pair_rows(campaign_id, spec.min_confidence)),
        ("rankings", spec.export.rankings_path, ranking_rows(campaign_id)),
    ):
        n, sha = write_jsonl_atomic(path, rows)
        _record(campaign_id, kind, path, n, sha)
        out[kind] = (n, path)
    return out


# --- report ---------------------------------------------------------------------------


def ranking_summary(s: Session, campaign_id: str) -> dict[str, Any] | None:
    """The report's figures: sets and rankings collected, golden rankings graded, and how
    far each worker's rankings agree with the aggregated order. None without rankings."""
    from crowdloop.aggregation.rankings import concordance

    sets = s.exec(
        select(Item.is_golden, Item.state).where(Item.campaign_id == campaign_id, Item.kind == KIND)
    ).all()
    if not sets:
        return None
    judged = s.exec(
        select(Judgment.status, Judgment.excluded)
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(Judgment.campaign_id == campaign_id, Item.kind == KIND)
    ).all()
    golden = golden_tally(s, campaign_id)
    scores = dict(
        s.exec(
            select(CandidateScore.response_id, CandidateScore.score).where(
                CandidateScore.campaign_id == campaign_id
            )
        ).all()
    )
    agreements = []
    for row in rankings_frame(campaign_id):
        if all(r in scores for r in row.shown):
            order = np.argsort([-scores[r] for r in row.shown], kind="stable")
            consensus = [0] * len(row.shown)
            for place, i in enumerate(order, start=1):
                consensus[int(i)] = place
            agreements.append(concordance(row.places, consensus))
    return {
        "sets": sum(1 for g, _ in sets if not g),
        "golden_sets": sum(1 for g, _ in sets if g),
        "sets_collected": sum(
            1 for g, st in sets if not g and st in (ItemState.COLLECTED, ItemState.DONE)
        ),
        "rankings": sum(1 for st, _ in judged if st == JudgmentStatus.VALID),
        "excluded": sum(1 for st, ex in judged if st == JudgmentStatus.VALID and ex),
        "quarantined": sum(1 for st, _ in judged if st == JudgmentStatus.QUARANTINED),
        "golden_passed": sum(c for c, _ in golden.values()),
        "golden_graded": sum(n for _, n in golden.values()),
        "agreement_with_consensus": float(np.mean(agreements)) if agreements else None,
    }
