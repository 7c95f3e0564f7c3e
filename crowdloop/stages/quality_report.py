"""The quality report: is the data any good, who was careless, what did a label cost.

Agreement (Krippendorff's alpha), worker skill distribution, position bias, cost per
accepted label and each prompt's ranking with 95% intervals, computed from the
stored judgments, so it can be rebuilt at any time.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlmodel import col, select

from crowdloop.aggregation.bootstrap import bootstrap_scores, position_bias_report
from crowdloop.allocator import release_free_memory
from crowdloop.db import session_scope
from crowdloop.models.tables import (
    UNTRUSTED,
    ExportRecord,
    Prompt,
    Response,
    SpendRecord,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.stages.exam import exam_report
from crowdloop.stages.plan import load_spec
from crowdloop.stages.preferences import coded_judgments
from crowdloop.stages.quality_check import (
    assess_campaign_crowd,
    blind_evidence,
    crowd_policy_from,
)
from crowdloop.text import md_escape

logger = logging.getLogger(__name__)

SKILL_BINS = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
BIAS_P = 0.01  # a worker whose left/right split is this unlikely under no bias is flagged


def _agreement(frame: pd.DataFrame) -> float | None:
    """Krippendorff's alpha (nominal) over the trusted comparison labels.

    Computed from per-pair label counts (the coincidence matrix's diagonal and margins), a
    groupby over the long frame. evalica.alpha gives the same value (tests cross-check) but
    needs a worker x pair matrix, whose pivot took 14 s at 120k judgments.
    """
    if frame.empty or frame["worker"].nunique() < 2:
        return None
    # One value per coder and unit; the three columns read, not a copy of the whole frame.
    first = frame[["worker", "pair", "label"]].drop_duplicates(["worker", "pair"])
    counts = first.groupby(["pair", "label"]).size().unstack(fill_value=0)
    per_unit = counts.sum(axis=1)
    pairable = per_unit >= 2  # a unit with one value carries no agreement information
    counts, per_unit = counts[pairable], per_unit[pairable]
    if counts.empty:
        return None
    values = counts.to_numpy(dtype=float)
    per_label = values.sum(axis=0)
    n = float(per_label.sum())
    agreeing = float((values * (values - 1.0) / (per_unit.to_numpy()[:, None] - 1.0)).sum())
    expected = (n * n - float((per_label**2).sum())) / (n * (n - 1.0))
    if expected <= 0:
        logger.info("agreement not computed: every judgment has the same label")
        return None
    observed = (n - agreeing) / n
    return 1.0 - observed / expected


# How the report's intervals are computed. Laplace (sandwich covariance per prompt, no
# refits): on simulated campaigns (bench/bench_intervals.py) its 95% intervals covered the
# truth 95.2% of the time against 89-90% for the bootstrap, at 1/25 of the bootstrap's CPU.
INTERVAL_METHOD: Literal["bootstrap", "laplace"] = "laplace"
INTERVAL_LABEL = {"laplace": "normal-approximation", "bootstrap": "bootstrap"}


def _ranked_scores(
    frame: pd.DataFrame, n_boot: int, method: Literal["bootstrap", "laplace"]
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every response's score and interval (`bootstrap_scores`), and each response's
    prompt."""
    columns = frame[["worker", "left", "right", "label"]]
    try:
        scores = bootstrap_scores(columns, n_boot=n_boot, method=method)
    except ValueError as error:  # laplace on a dense graph too large for its matrix
        logger.info("intervals by bootstrap: %s", error)
        scores = bootstrap_scores(columns, n_boot=n_boot, method="bootstrap")
    del columns
    prompt_of = dict(
        zip(
            pd.concat([frame["left"], frame["right"]]),
            pd.concat([frame["prompt"], frame["prompt"]]),
            strict=True,
        )
    )
    return scores, prompt_of


def _rankings(
    scores: pd.DataFrame, prompt_of: dict[str, str], models: dict[str, str | None]
) -> dict[str, list[dict[str, Any]]]:
    """Each prompt's responses, strongest first, with score, interval and model."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in scores.itertuples(index=False):
        response = str(row.item)
        out.setdefault(str(prompt_of[row.item]), []).append(
            {
                "response": response,
                "score": round(float(row.score), 4),
                "low": round(float(row.low), 4),
                "high": round(float(row.high), 4),
                "model": models.get(response),
            }
        )
    for ranking in out.values():
        ranking.sort(key=lambda r: -r["score"])
    return out


def distrust_report(campaign_id: str) -> dict[str, Any]:
    """Workers the engine distrusts and golden items it retired, with the evidence.

    Workers: every untrusted or warned worker (with the reason stored when they were
    blocked) and every worker whose comparisons the crowd-wide assessment reads as
    content-blind at the warning level. Golden items: each one the honest-looking crowd
    split on, with its answer split.
    """
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        crowd, audit = assess_campaign_crowd(s, campaign_id, crowd_policy_from(spec.quality))
        records = {
            r.worker_id: r
            for r in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == campaign_id))
        }
    by_worker = crowd.set_index("worker") if len(crowd) else None
    workers = []
    names = {w for w, r in records.items() if r.status in (*UNTRUSTED, WorkerStatus.WARNED)}
    if by_worker is not None:
        names |= set(
            by_worker.index[by_worker["p_blind"] >= spec.quality.warn_confidence].astype(str)
        )
    for worker in sorted(names):
        rec = records.get(worker)
        row = by_worker.loc[worker] if by_worker is not None and worker in by_worker.index else None
        workers.append(
            {
                "worker": worker,
                "status": str(rec.status) if rec else None,
                "reason": rec.block_reason if rec else None,
                "golden": f"{rec.golden_correct}/{rec.golden_total}" if rec else None,
                "p_blind": None if row is None else round(float(row["p_blind"]), 3),
                "evidence": None if row is None else blind_evidence(row),
            }
        )
    retired = audit[audit["retired"].astype(bool)] if len(audit) else audit
    return {
        "workers": workers,
        "prior_blind": None if by_worker is None else round(float(crowd["prior_blind"].iloc[0]), 3),
        "golden_items": len(audit),
        "retired_golden": [
            {
                "item": str(r.item),
                "golden": str(r.golden),
                "answers": int(r.answers),
                "agree": int(r.agree),
                "split": str(r.split),
                "p_below": round(float(r.p_below), 3),
            }
            for r in retired.itertuples(index=False)
        ],
    }


def quality_report(
    campaign_id: str,
    *,
    n_boot: int = 100,
    interval: Literal["bootstrap", "laplace"] = INTERVAL_METHOD,
) -> dict[str, Any]:
    """The report's numbers; ``interval`` picks how the rankings' 95% intervals are
    computed (``n_boot`` replicates for ``"bootstrap"``)."""
    # The judgments as codes (`coded_judgments`), and everything that needs them computed
    # before anything else is read: the frame goes before the rankings' rows are made.
    frame = coded_judgments(campaign_id)
    bias: dict[str, Any] = {"overall": None, "flagged": []}
    scores: pd.DataFrame | None = None
    prompt_of: dict[str, str] = {}
    if not frame.empty:
        report = position_bias_report(frame[["worker", "label"]])
        overall = report[report["worker"] == "overall"].iloc[0]
        bias["overall"] = {
            "share_left": round(float(overall["share_left"]), 3),
            "share_right": round(float(overall["share_right"]), 3),
            "share_tie": round(float(overall["share_tie"]), 3),
            "p_value": float(overall["p_value"]),
        }
        flagged = report[(report["worker"] != "overall") & (report["p_value"] < BIAS_P)]
        bias["flagged"] = [
            {
                "worker": str(r.worker),
                "n": int(r.n),
                "share_left": round(float(r.share_left), 3),
                "p_value": float(r.p_value),
            }
            for r in flagged.itertuples(index=False)
        ]
        del report, overall, flagged
        scores, prompt_of = _ranked_scores(frame, n_boot, interval)
    agreement, trusted = _agreement(frame), len(frame)
    # The judgments' frame goes before the rankings' rows are made and before the
    # distrust section, which may read and assess every comparison answer again (when
    # the last round's assessment is not reusable).
    del frame
    release_free_memory()
    with session_scope() as s:
        accuracy = [
            w.accuracy
            for w in s.exec(
                select(WorkerRecord).where(
                    WorkerRecord.campaign_id == campaign_id, col(WorkerRecord.golden_total) > 0
                )
            )
        ]
        spend = sum(
            (
                Decimal(r.amount)
                for r in s.exec(select(SpendRecord).where(SpendRecord.campaign_id == campaign_id))
            ),
            Decimal(0),
        )
        latest: dict[str, int] = {}
        for e in s.exec(
            select(ExportRecord)
            .where(ExportRecord.campaign_id == campaign_id)
            .order_by(col(ExportRecord.id))
        ):
            latest[e.kind] = e.rows
        # One string per model name, not one per response row read (192k at 10^6
        # judgments), as every ranking row keeps its response's model.
        names: dict[str, str] = {}
        models = {
            rid: None if model is None else names.setdefault(model, model)
            for rid, model in s.exec(
                select(Response.id, Response.model).where(Response.campaign_id == campaign_id)
            )
        }
        prompts = dict(
            s.exec(select(Prompt.id, Prompt.text).where(Prompt.campaign_id == campaign_id)).all()
        )
    labels = sum(latest.values())
    counts, _ = np.histogram(np.asarray(accuracy, dtype=float), bins=SKILL_BINS)
    skill = {
        f"{lo:.1f}-{min(hi, 1.0):.1f}": int(n)
        for lo, hi, n in zip(SKILL_BINS[:-1], SKILL_BINS[1:], counts, strict=True)
    }
    rankings = _rankings(scores, prompt_of, models) if scores is not None else {}
    del scores, prompt_of, models
    return {
        "agreement_alpha": agreement,
        "trusted_comparisons": trusted,
        "worker_golden_accuracy": skill,
        "position_bias": bias,
        "cost_per_accepted_label": f"{spend / labels:.4f}" if labels else None,
        "accepted_labels": labels,
        "rankings": rankings,
        "interval": interval,
        "prompts": {p: prompts.get(p, "") for p in rankings},
        "exam": exam_report(campaign_id),
        "distrust": distrust_report(campaign_id),
    }


def quality_markdown(q: dict[str, Any], *, max_prompts: int = 10) -> str:
    alpha = q["agreement_alpha"]
    lines = [
        "## Quality",
        "",
        f"**Agreement** (Krippendorff's alpha, trusted comparisons): "
        f"{'n/a' if alpha is None else f'{alpha:.3f}'}",
        f"**Cost per accepted label:** {q['cost_per_accepted_label'] or 'n/a'} "
        f"({q['accepted_labels']} labels exported)",
        "",
        "| golden accuracy (posterior) | workers |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in q["worker_golden_accuracy"].items()],
    ]
    exam = q.get("exam")
    if exam:
        lines += [
            "",
            f"**Exam** ({exam['items']} golden pairs, qualification "
            f"{md_escape(exam['qualification'])}): "
            f"{exam['takers']} took it, {exam['passed']} passed ({exam['granted']} qualified "
            f"on the marketplace), {exam['failed']} failed, {exam['pending']} unfinished.",
        ]
        failed = [w for w in exam["workers"] if w["result"] == "failed"]
        if failed:
            lines += ["", "| failed the exam | exam | golden (all) | status |", "|---|---|---|---|"]
            lines += [
                f"| {md_escape(w['worker'])} | {w['exam']} | {w['golden'] or '-'} "
                f"| {w['status'] or '-'} |"
                for w in failed
            ]
    distrust = q.get("distrust")
    if distrust and distrust["workers"]:
        lines += [
            "",
            f"**Distrusted workers** (crowd's learned share of content-blind workers: "
            f"{distrust['prior_blind']}):",
            "",
            "| worker | status | golden | P(content-blind) | evidence |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {md_escape(w['worker'])} | {w['status'] or '-'} | {w['golden'] or '-'} "
            f"| {w['p_blind'] if w['p_blind'] is not None else '-'} "
            f"| {md_escape(w['reason'] or w['evidence'] or '-')} |"
            for w in distrust["workers"]
        ]
    if distrust and distrust["retired_golden"]:
        lines += [
            "",
            f"**Retired golden items** ({len(distrust['retired_golden'])} of "
            f"{distrust['golden_items']}: honest-looking workers split on them, so they no "
            "longer count against anyone):",
            "",
            "| golden item | answer | honest-looking answers (left/right/tie) | agree |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {md_escape(g['item'])} | {g['golden']} | {g['split']} "
            f"| {g['agree']}/{g['answers']} |"
            for g in distrust["retired_golden"]
        ]
    bias = q["position_bias"]
    if bias["overall"]:
        o = bias["overall"]
        lines += [
            "",
            f"**Position bias, all trusted answers:** left {o['share_left']}, right "
            f"{o['share_right']}, tie {o['share_tie']} (p = {o['p_value']:.3g})",
        ]
    if bias["flagged"]:
        lines += ["", "| position-biased worker | answers | share left | p |", "|---|---|---|---|"]
        lines += [
            f"| {md_escape(b['worker'])} | {b['n']} | {b['share_left']} | {b['p_value']:.2g} |"
            for b in bias["flagged"]
        ]
    for prompt, ranking in list(q["rankings"].items())[:max_prompts]:
        text = " ".join(q["prompts"].get(prompt, "").split())
        text = text if len(text) <= 70 else text[:67] + "..."
        lines += [
            "",
            f"Bradley-Terry ranking for “{md_escape(text)}” ({md_escape(prompt)}, 95% "
            f"{INTERVAL_LABEL[q.get('interval', 'bootstrap')]} interval):",
            "",
        ]
        lines += [
            f"{n}\\. {md_escape(r['model'] or r['response'])}: {r['score']} "
            f"\\[{r['low']}, {r['high']}\\]"
            for n, r in enumerate(ranking, start=1)
        ]
    if len(q["rankings"]) > max_prompts:
        lines += ["", f"… {len(q['rankings']) - max_prompts} more prompts in the JSON report."]
    return "\n".join(lines)
