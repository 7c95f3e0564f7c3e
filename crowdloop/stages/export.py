"""Write datasets that training code reads directly.

- SFT: `{"prompt", "completion", ...provenance}` per accepted crowd demonstration, with
  the verdicts' confidence and the authors' standing at export (trusted, probation,
  warned, blocked, excluded); `demonstrations.export` sets the confidence threshold and
  what happens to texts of authors blocked later.
- Preferences (TRL reward/DPO trainers): `{"prompt", "chosen", "rejected", "margin",
  "confidence", ...provenance}` per decided pair.
Rows are sorted by id and files written atomically, so the same data gives the same bytes.
Worker ids are not exported: provenance names the campaign, items and vote counts only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from crowdloop.db import driver_rows, session_scope
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    Campaign,
    ExportRecord,
    Item,
    ItemState,
    PairOutcome,
    Prompt,
    Response,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.stages.graded import graded_spec

# One encoder for every line: `json.dumps` with arguments builds a new one per call. The
# same text (`json.dumps(row, ensure_ascii=False, sort_keys=True)`).
_LINE = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
# Lines written (and hashed) at once.
_LINES_PER_WRITE = 1_000


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    h = hashlib.sha256()
    n = 0
    lines: list[str] = []

    def write() -> None:
        text = "".join(lines)
        fh.write(text)
        h.update(text.encode("utf-8"))
        lines.clear()

    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            lines.append(_LINE.encode(row) + "\n")
            n += 1
            if len(lines) == _LINES_PER_WRITE:
                write()
        write()
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return n, h.hexdigest()


def _record(campaign_id: str, kind: str, path: Path, rows: int, sha: str) -> None:
    with session_scope() as s:
        last = s.exec(
            select(ExportRecord)
            .where(ExportRecord.campaign_id == campaign_id, ExportRecord.kind == kind)
            .order_by(col(ExportRecord.id).desc())
        ).first()
        if last is None or last.sha256 != sha or last.path != str(path):
            s.add(
                ExportRecord(
                    campaign_id=campaign_id, kind=kind, path=str(path), rows=rows, sha256=sha
                )
            )


def sft_rows(
    campaign_id: str,
    min_confidence: float | None = None,
    blocked_authors: str | None = None,
) -> list[dict[str, Any]]:
    """Accepted crowd demonstrations whose prompt and response verdicts are at least
    `min_confidence` sure, each with its verdict confidences and its authors' standing
    now. Texts by authors since blocked are kept, dropped, or (reverify) exported only
    once verified again and accepted, unless accepted at `verify_target_confidence`.
    Unset arguments come from the campaign file (`demonstrations.export`)."""
    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        try:
            spec = CampaignSpec.model_validate(campaign.spec) if campaign else None
        except ValidationError:  # a bare campaign row (tests, imports): no export settings
            spec = None
        settings = spec.demonstrations.export if spec and spec.demonstrations else None
        if min_confidence is None:
            min_confidence = settings.min_confidence if settings else 0.0
        if blocked_authors is None:
            blocked_authors = settings.blocked_authors if settings else "keep"
        sure = spec.demonstrations.verify_target_confidence if spec and spec.demonstrations else 1.0
        rows = s.exec(
            select(Response, Prompt)
            .join(Prompt, col(Prompt.id) == col(Response.prompt_id))
            .where(
                Response.campaign_id == campaign_id,
                Response.source == "crowd",
                Response.verdict == "accept",
                Prompt.verdict == "accept",
            )
            .order_by(col(Response.id))
        ).all()
        standing = {
            r.worker_id: r.status.value
            for r in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == campaign_id))
        }
        again = {
            i.subject_id
            for i in s.exec(
                select(Item).where(
                    Item.campaign_id == campaign_id,
                    Item.kind == "verify",
                    col(Item.attempt) > 0,
                    Item.state == ItemState.DONE,
                )
            )
        }
    untrusted = {WorkerStatus.BLOCKED.value, WorkerStatus.EXCLUDED.value}
    out = []
    for r, p in rows:
        # A prompt from the campaign's input files was not verified: it is as given.
        p_conf = (p.confidence or 0.0) if p.source == "crowd" else 1.0
        if min(r.confidence or 0.0, p_conf) < min_confidence:
            continue
        authors = {"prompt": p.author, "response": r.author}
        blocked = {part for part, who in authors.items() if who and standing.get(who) in untrusted}
        if blocked and blocked_authors == "drop":
            continue
        # A text accepted at the campaign's target confidence is not verified again
        # (stages/demonstrations.py, _reverify_blocked): its verdict stands.
        confidence = {"prompt": p_conf, "response": r.confidence or 0.0}
        if blocked_authors == "reverify" and any(
            (p.id if part == "prompt" else r.id) not in again and confidence[part] < sure
            for part in blocked
        ):
            continue  # not verified again yet
        out.append(
            {
                "prompt": p.text,
                "completion": r.text,
                "prompt_id": p.id,
                "response_id": r.id,
                "prompt_source": p.source,
                "verification_confidence": round(r.confidence or 0.0, 4),
                "prompt_confidence": round(p_conf, 4),
                # The authors' standing when this file was written (ids are not exported).
                "prompt_author_standing": standing.get(p.author or "", "unknown"),
                "response_author_standing": standing.get(r.author or "", "unknown"),
                "verified_again": sorted(
                    part
                    for part in ("prompt", "response")
                    if (p.id if part == "prompt" else r.id) in again
                ),
                "campaign": campaign_id,
            }
        )
    return out


def export_sft(
    campaign_id: str,
    path: Path,
    min_confidence: float | None = None,
    blocked_authors: str | None = None,
) -> tuple[int, Path]:
    n, sha = write_jsonl_atomic(path, sft_rows(campaign_id, min_confidence, blocked_authors))
    _record(campaign_id, "sft", path, n, sha)
    return n, path


def preference_rows(campaign_id: str, min_confidence: float) -> Iterator[dict[str, Any]]:
    """The decided pairs at least `min_confidence` sure, as export rows, ordered by pair id.

    Streamed: one query with the texts joined in, read a partition at a time (a
    server-side cursor on PostgreSQL), so the export holds one partition of rows, not the
    campaign's outcomes, items and responses as ORM objects at once. On a graded campaign
    `margin` is the aggregated level's margin (TRL's RewardTrainer subtracts a `margin`
    column from the reward difference in its loss, huggingface/trl#719) and `level` names
    that level.
    """
    graded = graded_spec(campaign_id)
    left, right = aliased(Response), aliased(Response)
    query = (
        sa_select(
            col(PairOutcome.item_id),
            col(PairOutcome.prompt_id),
            col(PairOutcome.winner),
            col(PairOutcome.n_left),
            col(PairOutcome.n_right),
            col(PairOutcome.n_tie),
            col(PairOutcome.confidence),
            col(PairOutcome.margin),
            col(PairOutcome.level),
            col(Prompt.text),
            col(left.text),
            col(left.model),
            col(right.text),
            col(right.model),
        )
        .join(Item, col(Item.id) == col(PairOutcome.item_id))
        .join(Prompt, col(Prompt.id) == col(PairOutcome.prompt_id))
        .join(left, col(left.id) == col(Item.left_id))
        .join(right, col(right.id) == col(Item.right_id))
        .where(
            col(PairOutcome.campaign_id) == campaign_id,
            col(PairOutcome.winner) != "tie",
            col(PairOutcome.confidence) >= min_confidence,
        )
        .order_by(col(PairOutcome.item_id))
    )
    with session_scope() as s:
        # The driver's tuples (SQLite), not the ORM's rows: text and numbers, nothing to
        # process, and the rows' building was ~a third of the export's CPU at 10^6.
        for row in chain.from_iterable(driver_rows(s, query)):
            pair, prompt_id, winner, n_left, n_right, n_tie, confidence, margin, level = row[:9]
            prompt, left_text, left_model, right_text, right_model = row[9:]
            chosen, rejected = (
                ((left_text, left_model), (right_text, right_model))
                if winner == "left"
                else ((right_text, right_model), (left_text, left_model))
            )
            votes = {"left": n_left, "right": n_right}
            yield {
                "prompt": prompt,
                "chosen": chosen[0],
                "rejected": rejected[0],
                "margin": round(margin, 6),
                **({"level": graded.labels[level - 1] if level else None} if graded else {}),
                "confidence": round(confidence, 6),
                "votes": {
                    # weighted by attentiveness under the worker-aware aggregation
                    "chosen": round(votes[winner], 6),
                    "rejected": round(votes[_other(winner)], 6),
                    "tie": round(n_tie, 6),
                },
                "chosen_model": chosen[1],
                "rejected_model": rejected[1],
                "prompt_id": prompt_id,
                "pair_id": pair,
                "campaign": campaign_id,
            }


def _other(side: str) -> str:
    return "right" if side == "left" else "left"


def export_preferences(campaign_id: str, path: Path, min_confidence: float) -> tuple[int, Path]:
    n, sha = write_jsonl_atomic(path, preference_rows(campaign_id, min_confidence))
    _record(campaign_id, "preferences", path, n, sha)
    return n, path


def exported_pairs(campaign_id: str) -> int:
    with session_scope() as s:
        last = s.exec(
            select(ExportRecord)
            .where(ExportRecord.campaign_id == campaign_id, ExportRecord.kind == "preferences")
            .order_by(col(ExportRecord.id).desc())
        ).first()
    return last.rows if last else 0
