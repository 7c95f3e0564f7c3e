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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlmodel import col, select

from crowdloop.db import session_scope
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


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    h = hashlib.sha256()
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
            fh.write(line)
            h.update(line.encode("utf-8"))
            n += 1
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
    once verified again and accepted. Unset arguments come from the campaign file
    (`demonstrations.export`)."""
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
        if blocked_authors == "reverify" and any(
            (p.id if part == "prompt" else r.id) not in again for part in blocked
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


def preference_rows(campaign_id: str, min_confidence: float) -> list[dict[str, Any]]:
    """Decided pairs as TRL reward-model rows. On a graded campaign `margin` is the
    aggregated level's margin (TRL's RewardTrainer subtracts a `margin` column from the
    reward difference in its loss, huggingface/trl#719) and `level` names that level."""
    graded = graded_spec(campaign_id)
    with session_scope() as s:
        outcomes = s.exec(
            select(PairOutcome, Item)
            .join(Item, col(Item.id) == col(PairOutcome.item_id))
            .where(PairOutcome.campaign_id == campaign_id, PairOutcome.winner != "tie")
            .order_by(col(PairOutcome.item_id))
        ).all()
        needed = {i.left_id for _, i in outcomes} | {i.right_id for _, i in outcomes}
        responses = {
            r.id: r for r in s.exec(select(Response).where(col(Response.id).in_(needed))).all()
        }
        prompts = {
            p.id: p for p in s.exec(select(Prompt).where(Prompt.campaign_id == campaign_id)).all()
        }
    out = []
    for o, item in outcomes:
        if o.confidence < min_confidence:
            continue
        left, right = responses[item.left_id or ""], responses[item.right_id or ""]
        chosen, rejected = (left, right) if o.winner == "left" else (right, left)
        out.append(
            {
                "prompt": prompts[o.prompt_id].text,
                "chosen": chosen.text,
                "rejected": rejected.text,
                "margin": round(o.margin, 6),
                **({"level": graded.labels[o.level - 1] if o.level else None} if graded else {}),
                "confidence": round(o.confidence, 6),
                "votes": {
                    # weighted by attentiveness under the worker-aware aggregation
                    "chosen": round(_votes(o, o.winner), 6),
                    "rejected": round(_votes(o, _other(o.winner)), 6),
                    "tie": round(o.n_tie, 6),
                },
                "chosen_model": chosen.model,
                "rejected_model": rejected.model,
                "prompt_id": o.prompt_id,
                "pair_id": o.item_id,
                "campaign": campaign_id,
            }
        )
    return out


def _other(side: str) -> str:
    return "right" if side == "left" else "left"


def _votes(o: PairOutcome, side: str) -> float:
    return o.n_left if side == "left" else o.n_right


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
