"""Write datasets that training code reads directly.

- SFT: `{"prompt", "completion", ...provenance}` per accepted crowd demonstration.
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

from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.models.tables import ExportRecord, Item, PairOutcome, Prompt, Response


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


def sft_rows(campaign_id: str) -> list[dict[str, Any]]:
    with session_scope() as s:
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
    return [
        {
            "prompt": p.text,
            "completion": r.text,
            "prompt_id": p.id,
            "response_id": r.id,
            "prompt_source": p.source,
            "verification_confidence": round(r.confidence or 0.0, 4),
            "campaign": campaign_id,
        }
        for r, p in rows
    ]


def export_sft(campaign_id: str, path: Path) -> tuple[int, Path]:
    n, sha = write_jsonl_atomic(path, sft_rows(campaign_id))
    _record(campaign_id, "sft", path, n, sha)
    return n, path


def preference_rows(campaign_id: str, min_confidence: float) -> list[dict[str, Any]]:
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
