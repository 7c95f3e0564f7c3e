"""Spend bookkeeping and the campaign report the ops team reads (CLI, artifact, file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, func
from sqlmodel import Session, col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.tables import (
    Batch,
    Campaign,
    ExamResult,
    ExportRecord,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    SpendRecord,
    TriggerRecord,
    WorkerRecord,
    WorkerStatus,
    utcnow,
)
from crowdloop.stages import budget, quality_report
from crowdloop.stages.demonstrations import writing_summary
from crowdloop.stages.exam import exam_summary
from crowdloop.stages.graded import graded_lines, graded_summary
from crowdloop.stages.plan import load_spec, stored_spec
from crowdloop.stages.ranking import ranking_summary
from crowdloop.stages.rating import rating_markdown, rating_summary
from crowdloop.stages.terms import stage_reward
from crowdloop.text import md_escape


def record_spend(campaign_id: str, connector: Connector) -> Decimal:
    """Spend per batch: the marketplace's own figure where it reports one, else our estimate.

    Settles the campaign's spend reservations first and keeps the marketplace's report
    beside our accounting (stages/budget.py), so differences show in the report.
    """
    budget.refresh_spend(campaign_id, connector, full=True)
    total = Decimal(0)
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        batches = list(s.exec(select(Batch).where(Batch.campaign_id == campaign_id)).all())
        for batch in batches:
            if batch.external_id is None or batch.id is None:
                continue
            from crowdloop.models.domain import BatchRef

            reported = connector.spend(
                BatchRef(connector=batch.connector, external_id=batch.external_id)
            )
            if reported is not None:
                amount, currency, source = reported.amount, reported.currency, "reported"
            else:
                reward = stage_reward(spec, Stage(batch.stage))
                paid = s.exec(
                    select(func.count())
                    .select_from(Judgment)
                    .join(Item, col(Item.id) == col(Judgment.item_id))
                    .where(
                        Judgment.campaign_id == campaign_id,
                        Item.stage == batch.stage,
                        col(Judgment.review).is_distinct_from("rejected"),
                    )
                ).one()
                amount, currency, source = reward.amount * paid, reward.currency, "estimated"
            rec = s.get(SpendRecord, batch.id) or SpendRecord(
                batch_id=batch.id,
                campaign_id=campaign_id,
                amount="0",
                currency=currency,
                source=source,
            )
            rec.amount, rec.currency, rec.source, rec.updated_at = (
                str(amount),
                currency,
                source,
                utcnow(),
            )
            s.add(rec)
            total += Decimal(amount)
    return total


def campaign_report(campaign_id: str) -> dict[str, Any]:
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise LookupError(f"no campaign named {campaign_id!r}")
        items = s.exec(
            select(Item.stage, Item.state, Item.is_golden, func.count())
            .where(Item.campaign_id == campaign_id)
            .group_by(col(Item.stage), col(Item.state), col(Item.is_golden))
        ).all()
        by_stage: dict[str, dict[str, int]] = {}
        for stage, state, golden, n in items:
            entry = by_stage.setdefault(stage, {})
            name = ItemState(state).value
            key = f"golden_{name}" if golden else name
            entry[key] = entry.get(key, 0) + int(n)
        # The judgments counted in one pass, with no grouping: three queries (a GROUP BY
        # status and excluded, the rationales, the quarantine reasons) read every judgment
        # row of the campaign three times (1.36 s of SQLite's CPU at 10^6 judgments, this
        # one 0.45 s); the reasons are read only when something was quarantined.
        quarantined = col(Judgment.status) == JudgmentStatus.QUARANTINED
        n_judgments, n_quarantined, n_excluded, rationales = s.exec(
            select(
                func.count(),
                func.sum(case((quarantined, 1), else_=0)),
                func.sum(case((and_(~quarantined, col(Judgment.excluded).is_(True)), 1), else_=0)),
                func.count(col(Judgment.rationale)),
            ).where(Judgment.campaign_id == campaign_id)
        ).one()
        counts = {
            "valid": int(n_judgments) - int(n_quarantined or 0) - int(n_excluded or 0),
            "quarantined": int(n_quarantined or 0),
            "excluded": int(n_excluded or 0),
        }
        quarantine = (
            s.exec(
                select(Judgment.reason, func.count())
                .where(Judgment.campaign_id == campaign_id, quarantined)
                .group_by(col(Judgment.reason))
            ).all()
            if counts["quarantined"]
            else []
        )
        workers, exams = _workers_and_exams(s, campaign_id)
        spend = list(
            s.exec(select(SpendRecord).where(SpendRecord.campaign_id == campaign_id)).all()
        )
        exports = list(
            s.exec(
                select(ExportRecord)
                .where(ExportRecord.campaign_id == campaign_id)
                .order_by(col(ExportRecord.id))
            ).all()
        )
        trig = list(
            s.exec(select(TriggerRecord).where(TriggerRecord.campaign_id == campaign_id)).all()
        )
        exam_on = stored_spec(campaign).quality.exam is not None
        prefs = stored_spec(campaign).preferences
        writing = writing_summary(s, campaign_id)
        rankings = ranking_summary(s, campaign_id)
        ratings = rating_summary(s, campaign_id)
    latest_exports: dict[str, ExportRecord] = {e.kind: e for e in exports}
    status_counts: dict[str, int] = {}
    for w in workers:
        status_counts[w.status.value] = status_counts.get(w.status.value, 0) + 1
    total = sum((Decimal(r.amount) for r in spend), Decimal(0))
    currency = spend[0].currency if spend else "USD"
    money = budget_section(campaign_id, total if spend else None)
    return {
        "campaign": campaign_id,
        "status": campaign.status.value,
        "items": by_stage,
        "judgments": counts,
        "rationales": int(rationales),
        "quarantine_reasons": {str(r): int(n) for r, n in quarantine},
        "workers": status_counts,
        "exam": exam_summary(campaign_id) if exam_on else None,
        "graded": graded_summary(campaign_id, prefs.graded) if prefs and prefs.graded else None,
        "writing": writing,
        "ranking": rankings,
        "rating": ratings,
        "blocked_workers": [
            {
                "worker": w.worker_id,
                "status": w.status.value,
                "golden": f"{w.golden_correct}/{w.golden_total}",
                "texts_accepted": f"{w.written_accepted}/{w.written_total}",
                "accuracy": round(w.accuracy, 3),
                "reason": w.block_reason,
            }
            for w in workers
            if w.status in (WorkerStatus.BLOCKED, WorkerStatus.EXCLUDED)
        ],
        "worker_table": _worker_rows(workers, exams),
        "cost": {
            "total": f"{total:.2f}",
            "currency": currency,
            "sources": sorted({r.source for r in spend}),
        },
        "budget": money,
        "exports": {
            k: {"path": e.path, "rows": e.rows, "sha256": e.sha256}
            for k, e in latest_exports.items()
        },
        "retraining": [
            {
                "key": t.key,
                "pairs": t.pairs_total,
                "state": t.state,
                "target": t.target,
                "result": t.result,
            }
            for t in trig
        ],
    }


def _worker_rows(workers: list[WorkerRecord], exams: dict[str, ExamResult]) -> list[dict[str, Any]]:
    return [
        {
            "worker": w.worker_id,
            "status": w.status.value,
            "golden_correct": w.golden_correct,
            "golden_total": w.golden_total,
            "texts_accepted": w.written_accepted,
            "texts_judged": w.written_total,
            "accuracy": round(w.accuracy, 3),
            "p_below": round(w.p_below, 3),
            "judgments": w.judgments,
            "exam": _exam_cell(exams.get(w.worker_id)),
        }
        for w in workers
    ]


def _workers_and_exams(
    s: Session, campaign_id: str
) -> tuple[list[WorkerRecord], dict[str, ExamResult]]:
    workers = list(
        s.exec(
            select(WorkerRecord)
            .where(WorkerRecord.campaign_id == campaign_id)
            .order_by(col(WorkerRecord.accuracy))
        ).all()
    )
    exams = {
        r.worker_id: r
        for r in s.exec(select(ExamResult).where(ExamResult.campaign_id == campaign_id))
    }
    return workers, exams


def worker_table(campaign_id: str) -> list[dict[str, Any]]:
    """The worker quality table alone (the live progress view publishes it every round)."""
    with session_scope() as s:
        workers, exams = _workers_and_exams(s, campaign_id)
    return _worker_rows(workers, exams)


def budget_section(campaign_id: str, recorded: Decimal | None) -> dict[str, Any]:
    """Spend against the cap, and the estimate beside the actual cost.

    The actual cost is the recorded spend once the campaign recorded it, else our
    accounting of the work paid so far.
    """
    status = budget.budget_status(campaign_id)
    out: dict[str, Any] = {**status.to_json(), "summary": status.summary()}
    expected, worst = status.expected, status.worst_case
    if expected is None or worst is None:
        try:
            est = budget.estimate_for_campaign(campaign_id)
            expected, worst = est.expected, est.worst
        except (LookupError, ValueError, OSError):
            expected = worst = None
    actual = recorded if recorded is not None else status.paid
    out["estimate"] = {
        "expected": None if expected is None else f"{expected:.2f}",
        "worst_case": None if worst is None else f"{worst:.2f}",
        "actual": f"{actual:.2f}",
        "actual_final": recorded is not None,
        "actual_vs_expected": (
            round(float((actual - expected) / expected), 4) if expected else None
        ),
    }
    return out


def _exam_cell(result: ExamResult | None) -> str:
    """A worker's exam for the worker table: e.g. "11/12 passed", or "" if not taken."""
    return f"{result.correct}/{result.answered} {result.status.value}" if result else ""


def report_markdown(report: dict[str, Any]) -> str:
    money = report.get("budget") or {}
    cost = (
        f"**Cost:** {report['cost']['total']} {report['cost']['currency']} "
        f"({', '.join(report['cost']['sources'])})"
        if report["cost"]["sources"]
        else f"**Cost:** {money.get('paid') or '0.00'} {money.get('currency', 'USD')} so far "
        "(our accounting of the work paid; the marketplace's figure is recorded at the end)"
    )
    lines = [
        f"# Campaign {md_escape(report['campaign'])} — {report['status']}",
        "",
        cost,
        "",
        *_budget_lines(money),
        "| judgments | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["judgments"].items()],
        "",
        "| stage | items by state |",
        "|---|---|",
        *[
            f"| {stage} | {', '.join(f'{k}: {v}' for k, v in sorted(states.items()))} |"
            for stage, states in sorted(report["items"].items())
        ],
        "",
        f"**Workers:** {', '.join(f'{k}: {v}' for k, v in sorted(report['workers'].items()))}",
    ]
    exam = report.get("exam")
    if exam:
        lines += [
            "",
            f"**Exam:** {exam['takers']} took it, {exam['passed']} passed "
            f"({exam['granted']} qualified), {exam['failed']} failed, "
            f"{exam['pending']} unfinished",
        ]
    writing = report.get("writing")
    if writing:
        tries = ", ".join(f"{n}: {c}" for n, c in writing["attempts_per_slot"].items())
        checked = ", ".join(f"{k}: {v}" for k, v in sorted(writing["rejected_by_checks"].items()))
        lines += [
            "",
            f"**Writing:** {writing['accepted']} of {writing['slots']} slots accepted; "
            f"slots by attempts ({tries}); rejected by the text checks ({checked or 'none'}); "
            f"{writing['verified_again']} texts verified again",
        ]
    rankings = report.get("ranking")
    if rankings:
        agreement = rankings["agreement_with_consensus"]
        lines += [
            "",
            f"**Rankings:** {rankings['sets_collected']} of {rankings['sets']} sets collected, "
            f"{rankings['rankings']} rankings ({rankings['excluded']} excluded, "
            f"{rankings['quarantined']} quarantined); golden rankings passed "
            f"{rankings['golden_passed']} of {rankings['golden_graded']}; trusted rankings "
            "agree with the aggregated order on "
            + (f"{agreement:.0%} of their pairs" if agreement is not None else "no pairs yet"),
        ]
    if report.get("rating"):
        lines += rating_markdown(report["rating"], md_escape)
    if report.get("rationales"):
        lines += [
            "",
            f"**Rationales:** {report['rationales']} judgments came with one (kept "
            "beside the raw answer, `judgment.rationale`)",
        ]
    lines += graded_lines(report.get("graded"))
    if report["blocked_workers"]:
        lines += [
            "",
            "| untrusted worker | status | golden | texts accepted | evidence |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {md_escape(w['worker'])} | {w['status']} | {w['golden']} "
            f"| {w['texts_accepted']} | {md_escape(w['reason'] or '')} |"
            for w in report["blocked_workers"]
        ]
    if report["quarantine_reasons"]:
        lines += ["", "| quarantined because | count |", "|---|---|"]
        lines += [f"| {md_escape(r)} | {n} |" for r, n in report["quarantine_reasons"].items()]
    if report["exports"]:
        lines += ["", "| dataset | rows | path |", "|---|---|---|"]
        lines += [
            f"| {k} | {e['rows']} | {md_escape(e['path'])} |" for k, e in report["exports"].items()
        ]
    for t in report["retraining"]:
        lines += [
            "",
            f"Retraining {md_escape(t['key'])} on {t['pairs']} pairs: {t['state']}"
            + _retrain_result(t["result"]),
        ]
    return "\n".join(lines)


def _retrain_result(result: Any) -> str:
    """The retraining target's result as a sentence, not a Python dict."""
    if not result:
        return ""
    if not isinstance(result, dict):
        return f" ({md_escape(result)})"
    parts = []
    if result.get("round") is not None:
        parts.append(f"round {result['round']}")
    if result.get("train_pairs") is not None:
        parts.append(f"trained on {result['train_pairs']} pairs")
    if result.get("heldout_accuracy") is not None:
        parts.append(
            f"held-out pairwise accuracy {result['heldout_accuracy']:.3f} on "
            f"{result.get('heldout_pairs', '?')} pairs"
        )
    if result.get("train_accuracy") is not None:
        parts.append(f"training accuracy {result['train_accuracy']:.3f}")
    shown = {"campaign", "round", "heldout_accuracy", "heldout_pairs", "train_pairs"}
    shown.add("train_accuracy")
    parts += [f"{md_escape(k)}: {md_escape(v)}" for k, v in result.items() if k not in shown]
    return " — " + "; ".join(parts)


def _budget_lines(money: dict[str, Any]) -> list[str]:
    if not money:
        return []
    cur = money["currency"]
    lines = [f"**Budget:** {money['summary']}", ""]
    est = money.get("estimate") or {}
    if est.get("expected") is not None:
        off = est["actual_vs_expected"]
        lines += [
            f"**Estimate vs actual:** expected {est['expected']} {cur}, worst case "
            f"{est['worst_case']} {cur}; actual {est['actual']} {cur}"
            + (f" ({off:+.1%} vs expected)" if off is not None else "")
            + ("" if est["actual_final"] else " so far"),
            "",
        ]
    if money.get("differences"):
        lines += [
            "| stage | marketplace reports | our accounting | difference |",
            "|---|---|---|---|",
            *[
                f"| {d['stage']} | {d['reported']} | {d['accounted']} | {d['difference']} |"
                for d in money["differences"]
            ],
            "",
        ]
    return lines


def write_report(campaign_id: str) -> tuple[dict[str, Any], str]:
    """Build the campaign report (with the quality report when the campaign collects
    preferences) and write it beside the datasets as Markdown and JSON.

    Returns (data, markdown): the flow publishes the same content as Prefect artifacts.
    """
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
    data = campaign_report(campaign_id)
    md = report_markdown(data)
    if spec.preferences is not None:
        data["quality"] = quality_report.quality_report(campaign_id)
        md += "\n\n" + quality_report.quality_markdown(data["quality"])
    if spec.routing is not None:
        from dataclasses import asdict

        from crowdloop.stages.routing import routing_summary, summary_lines

        summary = routing_summary(campaign_id)
        if summary is not None:
            data["routing"] = asdict(summary)
            md += "\n\n" + "\n".join(summary_lines(summary))
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{campaign_id}-report.md").write_text(md + "\n", encoding="utf-8")
    # Streamed to the file: `json.dumps` with an indent joins a list of every token it
    # made (millions of small strings for a 10^6-judgment campaign's rankings): measured
    # at 10^5 judgments, a 3.8 MiB text raised the peak by 23 MiB, `json.dump` to the
    # file by nothing. Same bytes.
    with report_json_path(out, campaign_id).open("w", encoding="utf-8") as f:
        f.writelines(indented_json(data))
        f.write("\n")
    return data, md


def report_json_path(output_dir: Path, campaign_id: str) -> Path:
    """Where `write_report` writes the campaign's report as JSON."""
    return output_dir / f"{campaign_id}-report.json"


# The quality report's sections with a row per prompt: in the report file, not in what
# the flow returns (`run_summary`).
PER_PROMPT_SECTIONS = ("rankings", "prompts")


def run_summary(campaign_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The report as a flow run returns it: all of it but the quality report's per-prompt
    sections (`PER_PROMPT_SECTIONS`), which ``quality.per_prompt_in`` names the report
    file for.

    Why: Prefect keeps a task's return value and the flow's in memory and walks the
    flow's when it returns; at 10^6 judgments those sections are ~26 of the report's 40 MB
    of JSON (48k prompts), and returning them raised the flow's peak by ~120 MiB over the
    bare loop's (docs/at-scale.md, mem14)."""
    quality = data.get("quality")
    if not isinstance(quality, dict) or not any(k in quality for k in PER_PROMPT_SECTIONS):
        return data
    with session_scope() as s:
        out = Path(load_spec(s, campaign_id).output_dir)
    slim = {k: v for k, v in quality.items() if k not in PER_PROMPT_SECTIONS}
    slim["per_prompt_in"] = str(report_json_path(out, campaign_id))
    return {**data, "quality": slim}


# The indent of `indented_json`, one level.
_INDENT = "  "
# `indented_json`'s C encoders, one per depth: their item separator is a newline and the
# depth's indent, so a flat container comes out as the indented encoder lays it out.
_FLAT: dict[int, json.JSONEncoder] = {}


def indented_json(value: Any, depth: int = 1) -> Iterator[str]:
    """The text of ``json.dump(value, f, indent=2, sort_keys=True, default=str)``, in pieces.

    Python's json module encodes with an indent in Python, token by token (its C encoder
    has no indent before Python 3.13): ~1.8 s of CPU for a 10^6-judgment report, most of
    it the rankings' rows. Here every container whose values are all scalars (a ranking
    row, a worker row) is encoded in one call to the C encoder, whose item separator
    carries the newline and indent; only the containers around them are walked in
    Python. ``depth``: the indent level of ``value``'s items."""
    flat = _FLAT.get(depth)
    if flat is None:
        flat = _FLAT[depth] = json.JSONEncoder(
            sort_keys=True, default=str, separators=(",\n" + _INDENT * depth, ": ")
        )
    if not isinstance(value, (dict, list, tuple)):
        yield flat.encode(value)
        return
    if not value:
        yield "{}" if isinstance(value, dict) else "[]"
        return
    items = value.values() if isinstance(value, dict) else value
    opening, closing = "\n" + _INDENT * depth, "\n" + _INDENT * (depth - 1)
    if not any(isinstance(v, (dict, list, tuple)) for v in items):
        text = flat.encode(value)
        yield text[0] + opening + text[1:-1] + closing + text[-1]
        return
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        # Keys the encoder converts (numbers, None, booleans): left to the json module.
        yield json.dumps(value, indent=2, sort_keys=True, default=str).replace("\n", closing)
        return
    separator = "," + opening
    if isinstance(value, dict):
        yield "{" + opening
        for at, (key, item) in enumerate(sorted(value.items())):
            yield (separator if at else "") + flat.encode(key) + ": "
            yield from indented_json(item, depth + 1)
        yield closing + "}"
    else:
        yield "[" + opening
        for at, item in enumerate(value):
            if at:
                yield separator
            yield from indented_json(item, depth + 1)
        yield closing + "]"
