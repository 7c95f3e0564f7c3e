"""Graded preferences in a campaign: verdicts with a level, golden levels, the report section.

A graded campaign (`preferences.graded`) stores each answer's side in `Judgment.label` (as
every comparison does, so golden checks, the crowd assessment and dynamic overlap work
unchanged) and its level in `Judgment.level`. Aggregation fits
`crowdloop.aggregation.graded.OrdinalPreferenceModel` over the campaign and overrides each
pair's winner, level and margin (the level's margin from the campaign file); the counts of
votes stay as the side aggregation left them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import col, select

from crowdloop.aggregation.graded import GradedScale, OrdinalPreferenceModel
from crowdloop.db import session_scope
from crowdloop.models.spec import GradedSpec
from crowdloop.models.tables import Campaign, Item, Judgment, JudgmentStatus, PairOutcome
from crowdloop.stages.preferences import TIE_BAND, judgments_frame

# A golden answer passes on level when it is this many steps from the golden level or fewer.
LEVEL_TOLERANCE = 1


def graded_spec(campaign_id: str) -> GradedSpec | None:
    """The campaign's graded scale; None for a plain campaign (or a bare campaign row)."""
    from crowdloop.stages.plan import stored_spec

    with session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            return None
        try:
            spec = stored_spec(campaign)
        except (ValidationError, ValueError):  # a bare row (tests, imports): not graded
            return None
    return spec.preferences.graded if spec.preferences else None


def scale_of(graded: GradedSpec) -> GradedScale:
    return GradedScale(levels=len(graded.levels), unsure=graded.unsure)


def fit_graded(frame: pd.DataFrame, graded: GradedSpec) -> OrdinalPreferenceModel:
    """The ordinal model over a campaign's judgments (`preferences.judgments_frame`)."""
    return OrdinalPreferenceModel(scale_of(graded)).fit(frame)


def graded_verdicts(frame: pd.DataFrame, graded: GradedSpec) -> pd.DataFrame:
    """Per pair: ``pair, winner, level, margin, p_left_better, confidence``.

    The winner is the side of the latent difference (a tie within `TIE_BAND`, as in the
    plain pipeline), the level the typical careful worker's median answer, at least the weakest
    (see the model); the margin is the level's `margin` from the campaign file (0 on a
    tie); P(left better) is sigmoid(delta).
    """
    model = fit_graded(frame, graded)
    pairs = frame.drop_duplicates("pair")[["pair", "left", "right"]]
    out = model.verdicts(pairs, tie_band=TIE_BAND)
    margins = np.array([0.0, *(lv.margin for lv in graded.levels)])
    p_left = 1.0 / (1.0 + np.exp(-out["delta"].to_numpy()))
    return pd.DataFrame(
        {
            "pair": out["pair"].to_numpy(),
            "winner": out["side"].to_numpy(),
            "level": out["level"].to_numpy(),
            "margin": margins[out["level"].to_numpy()],
            "p_left_better": p_left,
            "confidence": np.maximum(p_left, 1.0 - p_left),
        }
    )


def apply_graded(verdicts: pd.DataFrame, rows: list[dict[str, object]]) -> None:
    """Replace the side verdicts of `rows` (PairOutcome rows) with the graded ones
    (``verdicts``: `graded_verdicts` indexed by pair)."""
    for row in rows:
        pair = str(row["item_id"])
        if pair not in verdicts.index:
            continue
        v = verdicts.loc[pair]
        level = int(v["level"])
        row.update(
            winner=str(v["winner"]),
            level=level or None,
            margin=round(float(v["margin"]), 6),
            p_left_better=float(v["p_left_better"]),
            confidence=float(v["confidence"]),
        )


def level_passes(answer_level: object, golden_level: object) -> bool:
    """A graded golden answer on the right side passes within one step of the golden level
    (no golden level: the side alone decides)."""
    if golden_level is None or pd.isna(golden_level):
        return True
    if answer_level is None or pd.isna(answer_level):
        return False
    return abs(int(answer_level) - int(golden_level)) <= LEVEL_TOLERANCE  # type: ignore[call-overload]


def graded_summary(campaign_id: str, graded: GradedSpec) -> dict[str, object]:
    """The report's graded section: answers and aggregated pairs per level, each worker's
    fitted scale use, golden answers graded on side and level."""
    labels = {0: graded.unsure_label, **{i + 1: lv.label for i, lv in enumerate(graded.levels)}}
    with session_scope() as s:
        answered = s.exec(
            select(Judgment.level, func.count())
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                Judgment.campaign_id == campaign_id,
                Judgment.status == JudgmentStatus.VALID,
                Item.kind == "compare",
                col(Item.is_golden).is_(False),
            )
            .group_by(col(Judgment.level))
        ).all()
        aggregated = s.exec(
            select(PairOutcome.level, func.count())
            .where(PairOutcome.campaign_id == campaign_id)
            .group_by(col(PairOutcome.level))
        ).all()
        golden = s.exec(
            select(Judgment.label, Judgment.level, Item.golden_answer, Item.golden_level)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            # Exam items are golden pairs too (is_golden); both grade workers.
            .where(
                Judgment.campaign_id == campaign_id,
                Judgment.status == JudgmentStatus.VALID,
                col(Item.golden_level).is_not(None),
            )
        ).all()
    side_ok = [label == answer for label, _, answer, _ in golden]
    level_ok = [
        ok and level_passes(level, want)
        for ok, (_, level, _, want) in zip(side_ok, golden, strict=True)
    ]
    frame = judgments_frame(campaign_id)
    workers: list[dict[str, object]] = []
    if not frame.empty:
        fitted = fit_graded(frame, graded).workers_
        workers = [
            {
                "worker": str(w),
                "answers": int(r.answers),
                "discrimination": round(float(r.discrimination), 3),
                "scale": round(float(r.scale), 3),
                "bias": round(float(r.bias), 3),
            }
            for w, r in fitted.sort_index().iterrows()
        ]
    return {
        "answers_by_level": {labels[int(lv or 0)]: int(n) for lv, n in sorted(answered, key=_lv)},
        "pairs_by_level": {labels[int(lv or 0)]: int(n) for lv, n in sorted(aggregated, key=_lv)},
        "golden_answers": len(golden),
        "golden_side_correct": sum(side_ok),
        "golden_level_within_one": sum(level_ok),
        "workers": workers,
    }


def _lv(row: tuple[object, ...]) -> int:
    return int(row[0] or 0)  # type: ignore[call-overload]


def graded_lines(section: dict[str, object] | None) -> list[str]:
    """The graded section of the markdown report."""
    if not section:
        return []
    from crowdloop.text import md_escape

    answers: dict[str, int] = section["answers_by_level"]  # type: ignore[assignment]
    pairs: dict[str, int] = section["pairs_by_level"]  # type: ignore[assignment]
    workers: list[dict[str, object]] = section["workers"]  # type: ignore[assignment]
    lines = [
        "",
        "**Graded preferences:** "
        f"golden answers {section['golden_side_correct']}/{section['golden_answers']} on the "
        f"right side, {section['golden_level_within_one']}/{section['golden_answers']} also "
        "within one level",
        "",
        "| level | answers | aggregated pairs |",
        "|---|---|---|",
        *[
            f"| {md_escape(label)} | {answers.get(label, 0)} | {pairs.get(label, 0)} |"
            for label in dict.fromkeys([*answers, *pairs])
        ],
    ]
    if workers:
        lines += [
            "",
            "| worker | answers | discrimination | scale use | position bias |",
            "|---|---|---|---|---|",
            *[
                f"| {md_escape(str(w['worker']))} | {w['answers']} | {w['discrimination']} "
                f"| {w['scale']} | {w['bias']} |"
                for w in workers
            ],
            "",
            "(discrimination about 1: answers follow the content, about 0: they do not; "
            "scale use under 1: strong levels for small differences)",
        ]
    return lines
