"""Multi-aspect ratings end to end: plan, check, grade, aggregate, export, report.

A rating item (kind `rate`, stage `rate`) shows one response to a prompt and asks for a
Likert score on each of the campaign's aspects; its `RatingItem` row keeps the response
id (and, for a golden item, the known scores), so the task payload carries only texts. A
worker's answer is stored raw on the judgment (`label` "rating", `text` the JSON object of
scores, `rationale` beside it), and everything below derives from it: golden grading by
distance, aggregation per aspect with each worker's bias and scale use corrected
(crowdloop.aggregation.ratings), and a streamed reward-regression export. The round loop,
the push ledger, sync, settling, worker checks and review are the ones every stage uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from crowdloop.aggregation.ratings import RatingFit, Scale, Vote, mean_of_votes, worker_linear
from crowdloop.db import insert_ignore, session_scope
from crowdloop.ids import stable_id
from crowdloop.models.domain import RatedAspect, RateTask, Stage
from crowdloop.models.rating_spec import GoldenRatingRow, RatingSpec
from crowdloop.models.spec import CampaignSpec, CandidateRow, SpecError, load_jsonl_lines
from crowdloop.models.tables import (
    AspectScore,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    Prompt,
    RatingItem,
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

KIND = "rate"
LABEL = "rating"  # Judgment.label of a rating answer; the scores are in Judgment.text
EXPORT_CHUNK = 5_000  # aspect scores per fetch when streaming the export


# --- inputs and plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class RatingInputs:
    prompt_text: dict[str, str]
    candidates: list[CandidateRow]
    golden: list[GoldenRatingRow]


def score_issue(
    aspects: Sequence[RatedAspect], scores: Mapping[str, int]
) -> tuple[str, str] | None:
    """The aspect and the reason a set of scores does not fit the aspects (None: it fits):
    every aspect scored once, each within its scale, and nothing else."""
    names = [a.name for a in aspects]
    for name in scores:
        if name not in names:
            return name, f"{name!r} is not an aspect of the task (it has {', '.join(names)})"
    for a in aspects:
        if a.name not in scores:
            return a.name, f"aspect {a.name!r} has no score"
        if not a.low <= scores[a.name] <= a.high:
            return (
                a.name,
                f"aspect {a.name!r}: {scores[a.name]} is not on its scale {a.low}-{a.high}",
            )
    return None


def _rated_aspects(spec: RatingSpec) -> tuple[RatedAspect, ...]:
    return tuple(
        RatedAspect(name=a.name, description=a.description, low=a.low, high=a.high, labels=a.labels)
        for a in spec.aspects
    )


def rating_inputs(spec: RatingSpec) -> RatingInputs:
    """Read and check the rating section's input files (nothing is written): candidates as
    for preferences, and golden rows whose scores fit the aspects."""
    numbered = load_jsonl_lines(spec.candidates_file, CandidateRow)
    _, prompt_text = index_candidates(numbered, spec.candidates_file)
    golden: list[GoldenRatingRow] = []
    if spec.golden_file is not None:
        aspects = _rated_aspects(spec)
        for lineno, row in load_jsonl_lines(spec.golden_file, GoldenRatingRow):
            issue = score_issue(aspects, row.scores)
            if issue:
                field, problem = issue
                raise SpecError(f"{spec.golden_file}:{lineno}: field 'scores.{field}': {problem}")
            golden.append(row)
    return RatingInputs(
        prompt_text=prompt_text, candidates=[row for _, row in numbered], golden=golden
    )


def count_items(spec: CampaignSpec) -> tuple[int, int]:
    """(real, golden) rating items the campaign's inputs plan (for the cost estimate)."""
    rating = spec.rating
    assert rating is not None
    inputs = rating_inputs(rating)
    real = len(inputs.candidates)
    return real, golden_count(real, rating.golden_share) if inputs.golden else 0


def real_rate_tasks(spec: CampaignSpec) -> list[RateTask]:
    """The campaign's real rating tasks, as its registration plans them (what AI-first
    routing would ask the judge about, for the estimate)."""
    rating = spec.rating
    assert rating is not None
    inputs = rating_inputs(rating)
    return [
        RateTask(
            instruction=rating.instruction,
            prompt=inputs.prompt_text[row.prompt_id],
            response=row.response,
            aspects=_rated_aspects(rating),
            rationale=rating.rationale,
        )
        for row in sorted(inputs.candidates, key=lambda r: (r.prompt_id, r.response_id))
    ]


def _rate_item(
    spec: CampaignSpec, item_id: str, prompt: str, response: str, **row: Any
) -> dict[str, Any]:
    """The item row of one rating task, real or golden (`row`: its other columns)."""
    rating = spec.rating
    assert rating is not None
    payload = RateTask(
        instruction=rating.instruction,
        prompt=prompt,
        response=response,
        aspects=_rated_aspects(rating),
        rationale=rating.rationale,
    )
    return _item_row(
        item_id, spec.name, Stage.RATE, payload.model_dump(), overlap=rating.overlap, **row
    )


def plan_ratings(session: Session, spec: CampaignSpec, inputs: RatingInputs) -> None:
    """One rating item per candidate response, golden items mixed in at `golden_share`."""
    rating = spec.rating
    assert rating is not None
    insert_candidates(session, spec.name, inputs.prompt_text, inputs.candidates)
    items: list[dict[str, Any]] = []
    rated: list[dict[str, Any]] = []
    for row in sorted(inputs.candidates, key=lambda r: (r.prompt_id, r.response_id)):
        item_id = stable_id("rt", spec.name, row.response_id)
        items.append(
            _rate_item(
                spec,
                item_id,
                inputs.prompt_text[row.prompt_id],
                row.response,
                subject_id=_response_key(spec.name, row.response_id),
            )
        )
        rated.append(
            {
                "item_id": item_id,
                "campaign_id": spec.name,
                "prompt_id": _prompt_key(spec.name, row.prompt_id),
                "response_id": _response_key(spec.name, row.response_id),
                "golden_scores": None,
                "golden_tolerance": None,
            }
        )
    real = len(items)
    for n in range(golden_count(real, rating.golden_share) if inputs.golden else 0):
        g = inputs.golden[n % len(inputs.golden)]
        item_id = stable_id("gt", spec.name, g.id, n)
        items.append(
            _rate_item(
                spec,
                item_id,
                g.prompt,
                g.response,
                subject_id=g.id,
                golden_answer=LABEL,  # the known scores are in the item's RatingItem row
                group=f"golden-{g.id}",
            )
        )
        rated.append(
            {
                "item_id": item_id,
                "campaign_id": spec.name,
                "prompt_id": g.id,
                "response_id": g.id,
                "golden_scores": dict(g.scores),
                "golden_tolerance": (
                    g.tolerance if g.tolerance is not None else rating.golden_tolerance
                ),
            }
        )
    insert_ignore(session, Item, items, ["id"])
    session.flush()
    insert_ignore(session, RatingItem, rated, ["item_id"])


# --- answers ----------------------------------------------------------------------------


def rating_problem(payload: Mapping[str, Any], scores: Mapping[str, int]) -> str | None:
    """Why a rating answer does not fit the task it answers (None: it fits)."""
    aspects = [RatedAspect.model_validate(a) for a in payload.get("aspects", ())]
    issue = score_issue(aspects, scores)
    return issue[1] if issue else None


def scores_of(text: str | None) -> dict[str, int]:
    """The scores stored on a rating judgment (its `text`)."""
    return {str(k): int(v) for k, v in json.loads(text or "{}").items()}


def golden_passes(
    scores: Mapping[str, int], known: Mapping[str, int], tolerance: float
) -> tuple[int, int]:
    """(passed, graded) aspects of one golden rating: an aspect passes when the worker's
    score is within `tolerance` points of the known one."""
    passed = sum(
        int(name in scores and abs(scores[name] - value) <= tolerance)
        for name, value in known.items()
    )
    return passed, len(known)


def golden_tally(s: Session, campaign_id: str) -> dict[str, tuple[int, int]]:
    """worker -> (passed, graded) golden answers on golden rating items, one per aspect
    (models/rating_spec.py, `golden_tolerance`). Quarantined answers are not held against
    the worker."""
    rows = s.exec(
        select(
            Judgment.worker_id,
            Judgment.text,
            RatingItem.golden_scores,
            RatingItem.golden_tolerance,
        )
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .join(RatingItem, col(RatingItem.item_id) == col(Item.id))
        .where(
            Judgment.campaign_id == campaign_id,
            col(Judgment.item_id).in_(golden_item_ids(campaign_id, KIND)),
            Judgment.status == JudgmentStatus.VALID,
            col(Item.is_golden).is_(True),
            Item.kind == KIND,
        )
    ).all()
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for worker, text, known, tolerance in rows:
        if worker is None or not known:
            continue
        passed, graded = golden_passes(
            scores_of(text), known, tolerance if tolerance is not None else 1.0
        )
        tally[worker][0] += passed
        tally[worker][1] += graded
    return {w: (c, n) for w, (c, n) in tally.items()}


@dataclass(frozen=True)
class RatingRow:
    item: str
    prompt: str
    response: str
    scores: dict[str, int]
    worker: str
    golden: dict[str, int] | None  # known scores of a golden item


def ratings_frame(campaign_id: str, *, trusted: bool = True) -> list[RatingRow]:
    """Ratings of collected real items and of golden items, in a fixed order (same data,
    same fit); `trusted`: leave out the answers of excluded (blocked) workers."""
    query = (
        sa_select(
            col(Item.id),
            col(RatingItem.prompt_id),
            col(RatingItem.response_id),
            col(Judgment.text),
            col(Judgment.worker_id),
            col(RatingItem.golden_scores),
        )
        .join(RatingItem, col(RatingItem.item_id) == col(Item.id))
        .join(Judgment, col(Judgment.item_id) == col(Item.id))
        .where(
            col(Item.campaign_id) == campaign_id,
            col(Item.kind) == KIND,
            col(Judgment.status) == JudgmentStatus.VALID,
            (col(Item.is_golden).is_(True))
            | col(Item.state).in_([ItemState.COLLECTED, ItemState.DONE]),
        )
        .order_by(col(Item.id), col(Judgment.external_id))
    )
    if trusted:
        query = query.where(col(Judgment.excluded).is_(False))
    with session_scope() as s:
        rows = s.execute(query).all()
    return [
        RatingRow(str(i), str(p), str(r), scores_of(text), str(w), golden)
        for i, p, r, text, w, golden in rows
    ]


# --- aggregation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A fit over a campaign's ratings, with the indexes to read it."""

    responses: list[str]  # real responses, in cell order (cell = response * aspects + j)
    prompt_of: dict[str, str]
    workers: list[str]
    aspects: list[str]
    scores: np.ndarray  # (responses, aspects)
    sd: np.ndarray
    votes: np.ndarray  # (responses,)
    mean: np.ndarray  # (responses, aspects): the mean of the votes
    fit: RatingFit | None  # None for the mean method


def fit_ratings(rows: Sequence[RatingRow], spec: RatingSpec, method: str) -> Fitted:
    """Per-aspect consensus of every real response rated in `rows`, by `method`
    (worker_linear: golden items anchor the scale; mean: the plain mean of the votes)."""
    aspects = [a.name for a in spec.aspects]
    scales = [Scale(a.low, a.high) for a in spec.aspects]
    real = sorted({r.response for r in rows if r.golden is None})
    golden_items = sorted({r.item for r in rows if r.golden is not None})
    workers = sorted({r.worker for r in rows})
    n_a = len(aspects)
    cell_of = {key: k for k, key in enumerate([*real, *golden_items])}
    w_of = {w: k for k, w in enumerate(workers)}
    n_cells = len(cell_of) * n_a
    cell_aspect = [c % n_a for c in range(n_cells)]
    votes: list[Vote] = []
    anchors: dict[int, float] = {}
    votes_per: np.ndarray = np.zeros(len(real), dtype=int)
    for r in rows:
        base = cell_of[r.item if r.golden is not None else r.response] * n_a
        if r.golden is None:
            votes_per[base // n_a] += 1
        for j, name in enumerate(aspects):
            if name in r.scores:
                votes.append(Vote(base + j, j, w_of[r.worker], float(r.scores[name])))
            if r.golden is not None and name in r.golden:
                anchors[base + j] = float(r.golden[name])
    mean, se = mean_of_votes(votes, n_cells, cell_aspect, scales)
    fit: RatingFit | None = None
    if method == "worker_linear":
        fit = worker_linear(votes, n_cells, len(workers), cell_aspect, scales, anchors)
        score, sd = fit.score, fit.sd
    else:
        score, sd = mean, se
    n_real = len(real) * n_a
    return Fitted(
        responses=real,
        prompt_of={r.response: r.prompt for r in rows if r.golden is None},
        workers=workers,
        aspects=aspects,
        scores=np.asarray(score[:n_real]).reshape(len(real), n_a),
        sd=np.asarray(sd[:n_real]).reshape(len(real), n_a),
        votes=votes_per,
        mean=np.asarray(mean[:n_real]).reshape(len(real), n_a),
        fit=fit,
    )


@dataclass(frozen=True)
class RatingAggregate:
    responses: int
    ratings: int
    aspects: int
    method: str


def aggregate_ratings(campaign_id: str, spec: RatingSpec) -> RatingAggregate:
    """Score every rated response on every aspect (AspectScore, rewritten): rerunnable."""
    rows = ratings_frame(campaign_id)
    fitted = fit_ratings(rows, spec, spec.aggregation) if rows else None
    with session_scope() as s:
        s.execute(delete(AspectScore).where(col(AspectScore.campaign_id) == campaign_id))
        if fitted is not None:
            insert_ignore(
                s,
                AspectScore,
                [
                    {
                        "campaign_id": campaign_id,
                        "response_id": rid,
                        "aspect": name,
                        "prompt_id": fitted.prompt_of[rid],
                        "score": float(fitted.scores[i, j]),
                        "sd": float(fitted.sd[i, j]),
                        "votes": int(fitted.votes[i]),
                        "mean_of_votes": float(fitted.mean[i, j]),
                        "method": spec.aggregation,
                    }
                    for i, rid in enumerate(fitted.responses)
                    for j, name in enumerate(fitted.aspects)
                ],
                ["campaign_id", "response_id", "aspect"],
            )
    return RatingAggregate(
        responses=len(fitted.responses) if fitted else 0,
        ratings=sum(1 for r in rows if r.golden is None),
        aspects=len(spec.aspects),
        method=spec.aggregation,
    )


# --- export -----------------------------------------------------------------------------


def rating_rows(campaign_id: str, spec: RatingSpec) -> Iterator[dict[str, Any]]:
    """One reward-regression row per rated response, ordered by response id: the prompt,
    the response, each aspect's aggregated score as a column of its own (as HelpSteer's
    rows have), and per aspect its standard deviation (`uncertainty`) and the plain mean
    of the votes. Streamed: one query with the texts joined in, read a partition at a time,
    so the export holds one partition of scores, not the campaign's."""
    order = {a.name: j for j, a in enumerate(spec.aspects)}
    query = (
        sa_select(
            col(AspectScore.response_id),
            col(AspectScore.aspect),
            col(AspectScore.score),
            col(AspectScore.sd),
            col(AspectScore.votes),
            col(AspectScore.mean_of_votes),
            col(AspectScore.method),
            col(AspectScore.prompt_id),
            col(Prompt.text),
            col(Response.text),
            col(Response.model),
        )
        .join(Response, col(Response.id) == col(AspectScore.response_id))
        .join(Prompt, col(Prompt.id) == col(AspectScore.prompt_id))
        .where(col(AspectScore.campaign_id) == campaign_id)
        .order_by(col(AspectScore.response_id), col(AspectScore.aspect))
        .execution_options(yield_per=EXPORT_CHUNK)
    )

    def row(group: list[Any]) -> dict[str, Any]:
        group.sort(key=lambda g: order.get(g[1], len(order)))
        rid, _, _, _, votes, _, method, pid, prompt, response, model = group[0]
        scores = {g[1]: round(g[2], 6) for g in group}
        return {
            "prompt": prompt,
            "response": response,
            **scores,
            "scores": scores,
            "uncertainty": {g[1]: round(g[3], 6) for g in group},
            "mean_of_votes": {g[1]: round(g[5], 6) for g in group},
            "votes": votes,
            "model": model,
            "method": method,
            "prompt_id": pid,
            "response_id": rid,
            "campaign": campaign_id,
        }

    with session_scope() as s:
        group: list[Any] = []
        for found in s.execute(query):
            if group and found[0] != group[0][0]:
                yield row(group)
                group = []
            group.append(tuple(found))
        if group:
            yield row(group)


def export_ratings(campaign_id: str, spec: RatingSpec) -> tuple[int, Path]:
    """Write the reward-regression file (atomically; recorded)."""
    n, sha = write_jsonl_atomic(spec.export.path, rating_rows(campaign_id, spec))
    _record(campaign_id, "ratings", spec.export.path, n, sha)
    return n, spec.export.path


# --- report ---------------------------------------------------------------------------

REPORT_WORKERS = 15  # rows of the worker bias table in the markdown report


def rating_summary(s: Session, campaign_id: str) -> dict[str, Any] | None:
    """The report's figures: items and ratings collected, golden ratings graded, per aspect
    how far trusted votes sit from the consensus, and each worker's fitted bias, scale use
    and reliability. None without rating items."""
    items = s.exec(
        select(Item.is_golden, Item.state).where(Item.campaign_id == campaign_id, Item.kind == KIND)
    ).all()
    if not items:
        return None
    judged = s.exec(
        select(Judgment.status, Judgment.excluded)
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(Judgment.campaign_id == campaign_id, Item.kind == KIND)
    ).all()
    golden = golden_tally(s, campaign_id)
    from crowdloop.stages.plan import load_spec

    spec = load_spec(s, campaign_id).rating
    assert spec is not None, "rating items in a campaign without a rating section"
    rows = ratings_frame(campaign_id)
    aspects: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    fit_votes: list[int] = []
    if rows:
        fitted = fit_ratings(rows, spec, "worker_linear")
        fit_votes = [int(v) for v in fitted.votes]
        index = {rid: i for i, rid in enumerate(fitted.responses)}
        for j, name in enumerate(fitted.aspects):
            pairs = [
                (float(r.scores[name]), float(fitted.scores[index[r.response], j]))
                for r in rows
                if r.golden is None and name in r.scores
            ]
            given = np.array([p[0] for p in pairs])
            consensus = np.array([p[1] for p in pairs])
            corr = (
                float(np.corrcoef(given, consensus)[0, 1])
                if len(pairs) > 2 and given.std() > 0 and consensus.std() > 0
                else None
            )
            aspects.append(
                {
                    "aspect": name,
                    "votes": len(pairs),
                    "mean_abs_deviation": float(np.mean(np.abs(given - consensus)))
                    if pairs
                    else None,
                    "correlation": corr,
                    "consensus_vs_mean": float(
                        np.mean(np.abs(fitted.scores[:, j] - fitted.mean[:, j]))
                    )
                    if len(fitted.responses)
                    else None,
                }
            )
        fit = fitted.fit
        assert fit is not None
        n_a = len(fitted.aspects)
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[r.worker] += 1
        for w, worker in enumerate(fitted.workers):
            bias = fit.bias[w * n_a : (w + 1) * n_a]
            workers.append(
                {
                    "worker": worker,
                    "ratings": counts[worker],
                    "bias": {
                        name: round(float(bias[j]), 3) for j, name in enumerate(fitted.aspects)
                    },
                    "mean_bias": round(float(np.mean(bias)), 3),
                    "scale_use": round(float(fit.scale[w]), 3),
                    "reliability": round(float(fit.reliability[w]), 3),
                }
            )
        workers.sort(key=lambda x: (-x["ratings"], x["worker"]))
    golden_graded = sum(n for _, n in golden.values())
    per_response = fit_votes
    # Measured (bench/bench_rating.py --overlap 1): with one rating per response and no
    # golden item to anchor the scale, a worker's noise and the truths' spread cannot be
    # told apart; the consensus is then no better than the mean and its sd far too small.
    caveat = (
        "one rating per response and no golden rating graded: the consensus is no better "
        "than the mean of votes and its uncertainty is understated; add golden ratings or "
        "raise the overlap"
        if per_response and float(np.median(per_response)) < 2 and golden_graded == 0
        else None
    )
    return {
        "items": sum(1 for g, _ in items if not g),
        "golden_items": sum(1 for g, _ in items if g),
        "items_collected": sum(
            1 for g, st in items if not g and st in (ItemState.COLLECTED, ItemState.DONE)
        ),
        "ratings": sum(1 for st, _ in judged if st == JudgmentStatus.VALID),
        "excluded": sum(1 for st, ex in judged if st == JudgmentStatus.VALID and ex),
        "quarantined": sum(1 for st, _ in judged if st == JudgmentStatus.QUARANTINED),
        "golden_passed": sum(c for c, _ in golden.values()),
        "golden_graded": golden_graded,
        "aspects": aspects,
        "workers": workers,
        "caveat": caveat,
    }


def rating_markdown(summary: Mapping[str, Any], escape: Any) -> list[str]:
    """The report's rating section; `escape` makes a value safe in markdown (worker ids
    and aspect names come from outside)."""

    def num(v: float | None, fmt: str = ".2f") -> str:
        return "—" if v is None else format(v, fmt)

    lines = [
        "",
        f"**Ratings:** {summary['items_collected']} of {summary['items']} responses collected, "
        f"{summary['ratings']} ratings ({summary['excluded']} excluded, "
        f"{summary['quarantined']} quarantined); golden ratings passed "
        f"{summary['golden_passed']} of {summary['golden_graded']}",
    ]
    if summary.get("caveat"):
        lines += ["", f"**Caveat:** {summary['caveat']}"]
    if summary["aspects"]:
        lines += [
            "",
            "| aspect | votes | mean abs. deviation from consensus | correlation with "
            "consensus | consensus vs. mean of votes |",
            "|---|---:|---:|---:|---:|",
        ]
        for a in summary["aspects"]:
            lines.append(
                f"| {escape(a['aspect'])} | {a['votes']} | {num(a['mean_abs_deviation'])} | "
                f"{num(a['correlation'])} | {num(a['consensus_vs_mean'])} |"
            )
    workers = summary["workers"]
    if workers:
        lines += [
            "",
            "Worker bias (scale points, mean over aspects; + lenient, − harsh), scale use "
            "(1: the consensus's spread; below: keeps to the middle) and reliability:",
            "",
            "| worker | ratings | bias | scale use | reliability |",
            "|---|---:|---:|---:|---:|",
        ]
        for w in workers[:REPORT_WORKERS]:
            lines.append(
                f"| {escape(w['worker'])} | {w['ratings']} | {w['mean_bias']:+.2f} | "
                f"{w['scale_use']:.2f} | {w['reliability']:.2f} |"
            )
        if len(workers) > REPORT_WORKERS:
            lines.append(f"… {len(workers) - REPORT_WORKERS} more workers in the JSON report.")
    return lines
