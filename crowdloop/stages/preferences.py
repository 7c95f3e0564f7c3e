"""Aggregate comparisons: Bradley-Terry scores per prompt and a verdict per pair.

Raw judgments stay untouched; this stage rewrites only its own outputs
(CandidateScore, PairOutcome), so it can be rerun with another policy at any time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals
from scipy.special import ndtr
from sqlalchemy import ColumnElement, Select, delete, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import col

from crowdloop.aggregation.bradley_terry import bradley_terry, connected_components
from crowdloop.aggregation.pair_value import (
    AnswerModel,
    answer_information,
    difference_sd,
    one_answer_value,
)
from crowdloop.aggregation.pairs import vote_counts
from crowdloop.aggregation.worker_aware import WorkerAwareBT
from crowdloop.allocator import release_free_memory
from crowdloop.codes import coded, coded_together, encode
from crowdloop.db import driver_rows, insert_ignore, session_scope
from crowdloop.models.spec import DynamicOverlapSpec
from crowdloop.models.tables import (
    CandidateScore,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    PairOutcome,
)
from crowdloop.stages.counts import answer_counts
from crowdloop.stages.items import ask_again

logger = logging.getLogger(__name__)

OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}
# Column of each label in the per-pair counts (`_label_counts`).
OUTCOME_INDEX = {"left": 0, "right": 1, "tie": 2}
# A pair whose P(left better) is this close to 1/2 is called a tie.
TIE_BAND = 0.05
# Dynamic overlap stops on a pair this many trusted answers call equal, ties being at least
# this share of its votes (`settled_pairs`).
TIE_SETTLED_ANSWERS = 2
TIE_SETTLED_SHARE = 2 / 3
# ... or this many trusted answers that all pick the same side.
UNANIMOUS_ANSWERS = 3
# ... or (`dynamic_overlap.settle_hard`) this many trusted answers, all from workers the
# crowd assessment has cleared, on both sides: a pair hard for careful workers.
HARD_SETTLED_ANSWERS = 3


@dataclass
class PreferenceAggregate:
    pairs: int
    prompts: int
    judgments: int
    disconnected_prompts: list[str]


# Rows per fetch when reading judgments into a frame.
FRAME_CHUNK = 20_000


def _judgments_query(campaign_id: str, *extra: Any) -> Select[Any]:
    """The trusted comparison judgments on real pairs as (pair, prompt, left, right, worker,
    label, *extra) rows, the query both frame readers run."""
    return (
        sa_select(
            col(Item.id),
            col(Item.subject_id),
            col(Item.left_id),
            col(Item.right_id),
            col(Judgment.worker_id),
            col(Judgment.label),
            *extra,
        )
        .join(Judgment, col(Judgment.item_id) == col(Item.id))
        .where(*_trusted_comparisons(campaign_id))
        # A fixed order: the fits see the same rows in the same order on every rerun, so
        # the same data gives the same floats, whatever order it arrived in.
        .order_by(col(Item.id), col(Judgment.external_id))
    )


def judgments_frame(campaign_id: str) -> pd.DataFrame:
    """Trusted comparison judgments on real (non-golden) pairs, in response-id orientation."""
    columns = ["pair", "prompt", "left", "right", "worker", "label", "level"]
    # A partition at a time: the driver never holds every row object at once.
    query = _judgments_query(campaign_id, col(Judgment.level))
    with session_scope() as s:
        result = s.execute(query.execution_options(yield_per=FRAME_CHUNK))
        parts = [_columns_frame(p, columns) for p in result.partitions()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# The columns of `coded_judgments`, each a categorical.
CODED_COLUMNS = ["pair", "prompt", "left", "right", "worker", "label"]


def coded_judgments(campaign_id: str) -> pd.DataFrame:
    """`judgments_frame`'s rows in its order without ``level``, every column a categorical
    whose categories are its values sorted (``left`` and ``right`` share theirs, the
    responses), so it groups, sorts and factorises like the string frame.

    For readers that only group and count (the final report): at 10^6 judgments the
    string frame held ~127 MiB of Arrow strings (864k rows x 5 id columns) and its read
    peaked at ~2.5 times that; here a row is six int32 codes and each id is held once.
    """
    books: dict[str, dict[str, int]] = {
        k: {} for k in ("pair", "prompt", "side", "worker", "label")
    }
    parts: dict[str, list[np.ndarray]] = {k: [] for k in CODED_COLUMNS}
    with session_scope() as s:
        # The driver's tuples a chunk at a time (SQLite), not the ORM's rows: their
        # building was ~40% of this read's CPU (text columns only, nothing to process).
        for part in driver_rows(s, _judgments_query(campaign_id)):
            pair, prompt, left, right, worker, label = row_columns(part, 6)
            parts["pair"].append(encode(pair, books["pair"]))
            parts["prompt"].append(encode(prompt, books["prompt"]))
            parts["left"].append(encode(left, books["side"]))
            parts["right"].append(encode(right, books["side"]))
            parts["worker"].append(encode(worker, books["worker"]))
            parts["label"].append(encode(label, books["label"]))
    columns = {
        name: np.concatenate(chunks) if chunks else np.empty(0, np.int32)
        for name, chunks in parts.items()
    }
    del parts
    sides = coded_together([columns.pop("left"), columns.pop("right")], books["side"])
    frame = {name: coded(codes, books[name]) for name, codes in columns.items()}
    frame["left"], frame["right"] = sides
    return pd.DataFrame({name: frame[name] for name in CODED_COLUMNS})


def _trusted_comparisons(campaign_id: str) -> list[ColumnElement[bool]]:
    """The rows `judgments_frame` reads: trusted judgments on collected real pairs."""
    return [
        col(Item.campaign_id) == campaign_id,
        col(Item.kind) == "compare",
        col(Item.is_golden).is_(False),
        col(Item.state).in_([ItemState.COLLECTED, ItemState.DONE]),
        col(Judgment.status) == JudgmentStatus.VALID,
        col(Judgment.excluded).is_(False),
    ]


def evidence_frame(campaign_id: str) -> pd.DataFrame:
    """What a pair's verdict is fitted from, as codes (`coded_judgments`): the trusted
    judgments and, in an AI-first campaign, the judge's verdicts on the pairs it sent back
    for low confidence, as one more worker's votes (`routing.sent_back_votes`; collected
    pairs only, like the judgments).

    Codes, not strings: at 10^6 judgments the string frame (~127 MiB of Arrow strings) was
    alive through the whole fit and the verdicts, and the aggregation rose +453 MiB above
    the RSS before it (docs/at-scale.md, mem11g)."""
    from crowdloop.stages.routing import sent_back_votes

    frame = coded_judgments(campaign_id)
    votes = sent_back_votes(campaign_id) if not frame.empty else {}
    if not votes:
        return frame
    meta = frame.drop_duplicates("pair")[["pair", "prompt", "left", "right"]]
    meta = meta[meta["pair"].isin(list(votes))].astype(object)
    extra = meta.assign(
        worker=[votes[p][0] for p in meta["pair"]],
        label=[votes[p][1] for p in meta["pair"]],
    )
    # The judge's worker and the pairs' rows join the books: coded again as a whole.
    return as_coded(pd.concat([frame.astype(object), extra[frame.columns]], ignore_index=True))


def as_coded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its `CODED_COLUMNS` as `coded_judgments` makes them: categoricals
    whose categories are the values sorted, ``left`` and ``right`` sharing theirs. A frame
    that is already so (`coded_judgments`') is returned as it is; a string frame
    (`judgments_frame`'s, the tests') is coded here, so the fits below read codes only."""
    names = [c for c in CODED_COLUMNS if c in frame.columns]
    if _is_coded(frame):
        return frame
    out = frame.copy()
    for name in names:
        if name not in ("left", "right"):
            out[name] = _sorted_categorical(np.asarray(frame[name], dtype=object))
    if "left" in frame.columns:
        left = np.asarray(frame["left"], dtype=object)
        right = np.asarray(frame["right"], dtype=object)
        sides = _sorted_categorical(np.concatenate([left, right])).categories
        out["left"] = pd.Categorical(left, categories=sides)
        out["right"] = pd.Categorical(right, categories=sides)
    return out


def _sorted_categorical(values: np.ndarray) -> pd.Categorical:
    """A categorical of ``values`` (an object array of ids), its categories the distinct
    values sorted, as Python strings (as `codes.coded` makes them)."""
    return pd.Categorical(
        values, categories=pd.Index(pd.unique(values), dtype=object).sort_values()
    )


def _is_coded(frame: pd.DataFrame) -> bool:
    names = [c for c in CODED_COLUMNS if c in frame.columns]
    if not all(isinstance(frame[c].dtype, pd.CategoricalDtype) for c in names):
        return False
    if "left" in frame.columns:
        return bool(frame["left"].cat.categories.equals(frame["right"].cat.categories))
    return True


def _codes(frame: pd.DataFrame, name: str) -> np.ndarray:
    """The codes of a coded column (-1: missing)."""
    return np.asarray(frame[name].cat.codes.to_numpy())


def _names(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A coded column's categories as Python strings, in code order."""
    return np.asarray(frame[name].cat.categories, dtype=object)


def unanswered_pairs(campaign_id: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Collected real pairs a block left with no trusted answer (every answer they had is
    excluded), absent from `frame`: pair, prompt, left, right.

    They still have a verdict: the model's scores of their two responses, fitted on the
    prompt's other pairs that compare either of them. Dynamic overlap asks about them
    again only when that verdict is under its target (`extend_uncertain`). Only pairs
    with an excluded answer: a pair an AI judge decided has no human answers either, but
    it has the judge's verdict.
    """
    columns = ["pair", "prompt", "left", "right"]
    lost = _with_excluded_answer(campaign_id)
    with session_scope() as s:
        rows = s.execute(
            sa_select(col(Item.id), col(Item.subject_id), col(Item.left_id), col(Item.right_id))
            .where(
                col(Item.campaign_id) == campaign_id,
                col(Item.kind) == "compare",
                col(Item.is_golden).is_(False),
                col(Item.state).in_([ItemState.COLLECTED, ItemState.DONE]),
                col(Item.id).in_(lost),
            )
            .order_by(col(Item.id))
        ).all()
    answered = set(frame["pair"]) if not frame.empty else set()
    rows = [r for r in rows if r[0] not in answered]
    if not rows:
        return pd.DataFrame(columns=columns)
    return _columns_frame(rows, columns)


def _with_excluded_answer(campaign_id: str) -> Select[Any]:
    """The campaign's items with an answer a block excluded (a query)."""
    return (
        sa_select(col(Judgment.item_id))
        .where(col(Judgment.campaign_id) == campaign_id, col(Judgment.excluded).is_(True))
        .distinct()
    )


def _excluded_pairs(campaign_id: str) -> set[str]:
    """Items of the campaign with an answer a block excluded."""
    with session_scope() as s:
        return set(s.execute(_with_excluded_answer(campaign_id)).scalars())


def _columns_frame(rows: Sequence[Sequence[object]], columns: list[str]) -> pd.DataFrame:
    """A frame built column by column from row tuples: the same frame as
    `DataFrame.from_records`, which took ~twice the CPU on SQLAlchemy rows (1.56 s against
    0.87 s for the whole read of 86,400 judgments)."""
    return pd.DataFrame(dict(zip(columns, row_columns(rows, len(columns)), strict=True)))


def row_columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Row tuples as one list per column (each row at least ``width`` long).

    Not ``zip(*rows)``: that takes every row as an argument and was ~9 times slower on
    10,000-row chunks (0.10 s against 0.011 s for the 86,400 judgments of a 10^5
    campaign, six columns)."""
    return [list(map(itemgetter(i), rows)) for i in range(width)]


def settled_pairs(
    verdicts: pd.DataFrame, frame: pd.DataFrame, cleared: set[str] | None = None
) -> pd.Series:
    """Pairs whose own trusted answers already say all that more answers would: the crowd
    calls them equal (at least `TIE_SETTLED_ANSWERS` answers, "tie" at least
    `TIE_SETTLED_SHARE` of their attentiveness-weighted votes), or at least
    `UNANIMOUS_ANSWERS` answers all pick the same side; with ``cleared`` (workers the crowd
    assessment has cleared; None or empty: nobody), also a pair hard for careful workers:
    at least `HARD_SETTLED_ANSWERS` answers, every one from a cleared worker, on both
    sides.

    Why the hard pairs (`dynamic_overlap.settle_hard`): careful workers who disagree on a
    pair say it is near 50/50 for everyone, and one more answer from the same crowd moves
    its verdict's chance of being right little. On the bench's hard crowds (main, seeds
    0-2) 34-71 pairs a run ended with four answers (3-6% of plain overlap 3's cost), and a
    majority of the four beat a majority of the first three by 1.2 pairs a run on average;
    where a split may come from a careless worker not yet judged (the large crowd: nobody
    gives enough answers to be judged), by 3.5-8 (docs/quality-bench.md, cost10f).

    Why: a verdict's confidence is max(P(left better), 1 - P(left better)), which stays
    near 1/2 on an equal pair however many workers say so, so dynamic overlap bought every
    equal pair up to `max_overlap` (on the bench's typical crowd 57 of its 69 equal pairs
    had 4 or more answers, about 15% of plain overlap 3's cost) for no verdict that more
    answers would change. A careful worker rarely says "tie" on a pair with a better side
    (a few percent of their answers), so two ties of two answers are an equal pair; a tie
    clicker's ties are weighted down by the worker-aware model, and once they are blocked
    their answers are excluded and the pair is judged again without them. Three answers
    on one side whose pooled verdict is still unsure (the prompt's other pairs pull the
    other way) are mostly a hard pair: refitted offline on the bench's typical, spammy and
    hard crowds, the fourth answer those pairs got turned 2 of 50 verdicts right.
    """
    counts = _label_counts(verdicts, frame)
    answers = counts.sum(axis=1)
    sided = counts[:, :2].max(axis=1)
    equal = _called_equal(verdicts, answers)
    unanimous = (answers >= UNANIMOUS_ANSWERS) & (sided == answers)
    settled = equal | unanimous
    if cleared:
        workers = set(_names(as_coded(frame), "worker")) if len(frame) else set()
        doubted = _pairs_answered_by(frame, workers - cleared)
        hard = (
            (answers >= HARD_SETTLED_ANSWERS)
            & (counts[:, 0] >= 1)
            & (counts[:, 1] >= 1)
            & ~verdicts["pair"].isin(doubted).to_numpy()
        )
        settled = settled | hard
    return settled


def _called_equal(verdicts: pd.DataFrame, answers: np.ndarray) -> pd.Series:
    """Pairs the crowd calls equal: at least `TIE_SETTLED_ANSWERS` trusted answers
    (``answers``), "tie" at least `TIE_SETTLED_SHARE` of their weighted votes."""
    votes = verdicts["n_left"] + verdicts["n_right"] + verdicts["n_tie"]
    return (
        (answers >= TIE_SETTLED_ANSWERS)
        & (verdicts["n_tie"] >= TIE_SETTLED_SHARE * votes)
        & (votes > 0)
    )


def _label_counts(verdicts: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``verdicts``: how many of ``frame``'s answers on its pair say left, right
    and tie (int64, one column each; zeros for a pair with none), counted on codes."""
    frame = as_coded(frame)
    pair = _codes(frame, "pair").astype(np.int64)
    side = np.array([OUTCOME_INDEX.get(str(v), 3) for v in _names(frame, "label")] + [3])
    label = side[_codes(frame, "label")]
    n_pairs = len(frame["pair"].cat.categories)
    counts = np.bincount(pair * 4 + label, minlength=4 * n_pairs).reshape(n_pairs, 4)[:, :3]
    at = pd.Index(_names(frame, "pair")).get_indexer(np.asarray(verdicts["pair"], dtype=object))
    return np.where((at >= 0)[:, None], counts[at], 0)


def unsure_pairs(
    verdicts: pd.DataFrame,
    frame: pd.DataFrame,
    dynamic: DynamicOverlapSpec,
    unjudged: set[str] | None = None,
    rebought: set[str] | None = None,
    cleared: set[str] | None = None,
) -> pd.Series:
    """Which verdicts (rows of `score_pairs`' verdicts) dynamic overlap asks again about:
    confidence under `target_confidence`, or under `single_answer_confidence` on a pair
    with a single trusted answer in `frame`; with `min_answer_value`, a pair with two or
    more trusted answers by the value of one more answer instead (`answer_values`; the
    verdicts need its `answer_value` column); with `settle_pairs`, not a pair its trusted
    answers settle (`settled_pairs`; with `settle_hard`, ``cleared`` names the workers the
    crowd assessment has cleared, None: nobody). With `single_answer_by_reliability`, the
    one-answer target is scaled by the crowd's reliability (`_reliability`). With
    `answer_value_pairs` "cleared", the value rule stops only pairs none of whose answers
    in `frame` came from the ``unjudged`` workers (None: nobody is); the others keep the
    confidence target. With "rebought", only the ``rebought`` pairs (those with an
    excluded answer).

    Why the value on two or more answers: on logged bench campaigns, the confidence target
    bought third and fourth answers on pairs whose answers and the prompt's other pairs had
    already decided the verdict; the extensions valued under 0.004 turned 2 verdicts right
    in 333, the others 209 in 758 (docs/quality-bench.md, "The value of one more answer (cost10d)").

    Why the stricter target on one answer: the model's confidence in such a verdict is
    mostly the prompt's other pairs and one worker's estimated attentiveness. On the
    end-to-end dynamic-overlap test's campaigns (typical crowd, seeds 8-10, settled pairs
    on) one-answer verdicts at confidence 0.8-0.9 were wrong 7 times in 86 (a noisy
    worker's one answer 4 in 11), two-answer ones 2 in 61, three-answer ones 0 in 25: the
    confidence of one answer is not the confidence of three.
    """
    answers = pd.Series(_answer_counts(verdicts, frame), index=verdicts.index)
    under = verdicts["confidence"] < dynamic.target_confidence
    if dynamic.min_answer_value is not None:
        # Two or more answers: the value of one more (`answer_values`), not the confidence.
        several = answers >= 2
        if dynamic.answer_value_pairs == "cleared" and unjudged:
            # The next answer on a pair an unjudged worker answered is evidence about them
            # too (their grade is agreement with the verdicts of the pairs they answered).
            several &= ~verdicts["pair"].isin(_pairs_answered_by(frame, unjudged)).to_numpy()
        if dynamic.answer_value_pairs == "rebought":
            several &= verdicts["pair"].isin(list(rebought or ())).to_numpy()
        under = (under & ~several) | (
            several & (verdicts["answer_value"] >= dynamic.min_answer_value)
        )
    if dynamic.single_answer_confidence is not None:
        single = dynamic.single_answer_confidence
        if dynamic.single_answer_by_reliability:
            single = 1.0 - (1.0 - single) / _reliability(verdicts, answers.to_numpy()) ** 2
        under |= (answers == 1) & (verdicts["confidence"] < single)
    if dynamic.settle_pairs:
        under &= ~settled_pairs(verdicts, frame, cleared if dynamic.settle_hard else None)
    if dynamic.resolve_ties:
        # A verdict in the tie band on a pair the crowd does not call equal: undecided.
        tie = (verdicts["winner"] == "tie").to_numpy() & (answers.to_numpy() >= 1)
        under |= tie & ~_called_equal(verdicts, answers.to_numpy()).to_numpy()
    return under


def _reliability(verdicts: pd.DataFrame, answers: np.ndarray) -> float:
    """The crowd's mean attentiveness over its trusted answers: the verdicts' weighted votes
    (`score_pairs`: each answer weighted by its worker's attentiveness under the
    worker-aware model, 1 under plain Bradley-Terry) per answer; 1 with no answer."""
    total = float(answers.sum())
    if total <= 0:
        return 1.0
    votes = float((verdicts["n_left"] + verdicts["n_right"] + verdicts["n_tie"]).sum())
    return min(max(votes / total, 1e-3), 1.0)


def _pairs_answered_by(frame: pd.DataFrame, workers: set[str]) -> np.ndarray:
    """The pairs (names) with an answer in ``frame`` from one of ``workers``."""
    frame = as_coded(frame)
    mine = np.flatnonzero(pd.Index(_names(frame, "worker")).isin(list(workers)))
    hit = np.isin(_codes(frame, "worker"), mine)
    return np.asarray(_names(frame, "pair")[np.unique(_codes(frame, "pair")[hit])])


def _unjudged_workers(campaign_id: str) -> set[str]:
    """Workers the campaign's crowd assessment has not cleared: posterior of careless
    answering at least `quality_check.CLEARED_BLIND` (blocked ones included; their answers
    are not in the trusted frame anyway). The assessment is the quality check's own, cached
    for the same evidence (`assess_campaign_crowd`), so a round pays for it once."""
    from crowdloop.stages import quality_check
    from crowdloop.stages.plan import load_spec

    with session_scope() as s:
        return quality_check.campaign_unjudged(s, campaign_id, load_spec(s, campaign_id).quality)


def _cleared_workers(campaign_id: str) -> set[str]:
    """Workers the campaign's crowd assessment has cleared: posterior of careless answering
    under `quality_check.CLEARED_BLIND` (the round's own assessment, cached for the same
    evidence by `assess_campaign_crowd`); nobody without an assessment."""
    from crowdloop.stages import quality_check
    from crowdloop.stages.plan import load_spec

    with session_scope() as s:
        crowd = quality_check.campaign_crowd(s, campaign_id, load_spec(s, campaign_id).quality)
    return quality_check.cleared_workers(crowd)


def within_allowance(
    verdicts: pd.DataFrame,
    frame: pd.DataFrame,
    dynamic: DynamicOverlapSpec,
    asked: pd.Series,
    bought: tuple[int, int],
    cleared: set[str] | None = None,
    rebought: set[str] | None = None,
) -> pd.Series:
    """The rules' asks (``asked``, `unsure_pairs`) within the allowance of answers on real
    pairs, `dynamic_overlap.fill_extra` and `cap_extra` (answers per real pair beyond
    `min_overlap`).

    ``bought``: (real pairs, answers bought on them: paid, excluded ones included, plus
    those still owed; `_answers_bought`). With `cap_extra`, the asks are cut to the room
    under ``min_overlap + cap_extra`` a pair, the highest `answer_value` first; a pair
    with an excluded answer (``rebought``: the re-asks that replace a blocked worker's
    answers) or none trusted in ``frame`` is never cut (it uses the room first). With
    `fill_extra`, when the rules ask nothing, the room under ``min_overlap + fill_extra``
    a pair goes to the pairs with one or more trusted answers, under `max_overlap`, not
    settled (`settled_pairs`, ``cleared`` as there) and worth something (`answer_value` >
    0), highest value first.

    Why: the rules stop each pair on its own evidence, whatever the campaign has spent. On
    a reliable crowd they stopped at ~63% of plain overlap 3's cost with a few one-answer
    verdicts wrong; the allowance spends what is left where the next answer is expected
    to raise P(verdict right) the most (the knowledge gradient, `pair_value`).
    """
    pairs, spent = bought
    answers = _answer_counts(verdicts, frame)
    value = verdicts["answer_value"].to_numpy(dtype=float)
    # Only what extend_uncertain can buy: a pair at max_overlap trusted answers is not
    # asked again (nor does it keep the allowance from being spent elsewhere).
    out = asked & (answers < dynamic.max_overlap)

    def room_under(extra: float) -> int:
        """Answers still to buy before real pairs average ``min_overlap + extra``."""
        return int(np.floor((dynamic.min_overlap + extra) * pairs)) - spent

    if dynamic.cap_extra is not None:
        room = max(room_under(dynamic.cap_extra), 0)
        # Re-asks after a block are not cut: they are what blocking buys (measured with
        # them cut, the spammy crowd blocked 35 of 47 bad workers against 40 and lost
        # 2.1 points; docs/quality-bench.md, cost13).
        kept = (answers == 0) | verdicts["pair"].isin(list(rebought or ())).to_numpy()
        rows = np.flatnonzero(out.to_numpy() & ~kept)
        room -= int((out.to_numpy() & kept).sum())
        if rows.size > max(room, 0):
            # By value (stable: ties keep the verdicts' order).
            cut = rows[np.argsort(-value[rows], kind="stable")[max(room, 0) :]]
            out.iloc[cut] = False
    if dynamic.fill_extra is not None and not out.any():
        room = room_under(dynamic.fill_extra)
        if dynamic.cap_extra is not None:
            room = min(room, room_under(dynamic.cap_extra))
        if room > 0:
            open_ = (answers >= 1) & (answers < dynamic.max_overlap) & (value > 0)
            if dynamic.settle_pairs:
                settled = settled_pairs(verdicts, frame, cleared if dynamic.settle_hard else None)
                open_ &= ~settled.to_numpy()
            rows = np.flatnonzero(open_)
            keep = rows[np.argsort(-value[rows], kind="stable")[:room]]
            out.iloc[keep] = True
    return out


def _answers_bought(campaign_id: str) -> tuple[int, int]:
    """The campaign's real comparison pairs, and the answers bought on them: paid (not
    rejected in review; excluded ones included) plus those still owed on pairs pending or
    out (their overlap less their trusted answers)."""
    with session_scope() as s:
        real = s.execute(
            sa_select(col(Item.id), col(Item.state), col(Item.overlap)).where(
                col(Item.campaign_id) == campaign_id,
                col(Item.kind) == "compare",
                col(Item.is_golden).is_(False),
            )
        ).all()
        paid = s.execute(
            sa_select(func.count())
            .select_from(Judgment)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                col(Item.campaign_id) == campaign_id,
                col(Item.kind) == "compare",
                col(Item.is_golden).is_(False),
                or_(col(Judgment.review).is_(None), col(Judgment.review) != "rejected"),
            )
        ).scalar_one()
        trusted = answer_counts(s, campaign_id, trusted_only=True)
    owed = sum(
        max(overlap - trusted.get(item, 0), 0)
        for item, state, overlap in real
        if state in (ItemState.PENDING, ItemState.PUSHED)
    )
    return len(real), int(paid) + owed


def _answer_counts(verdicts: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """Per row of ``verdicts``: how many of ``frame``'s answers are on its pair."""
    frame = as_coded(frame)
    per_pair = np.bincount(
        _codes(frame, "pair").astype(np.int64), minlength=len(frame["pair"].cat.categories)
    )
    at = pd.Index(_names(frame, "pair")).get_indexer(np.asarray(verdicts["pair"], dtype=object))
    return np.where(at >= 0, per_pair[at], 0)


def extend_uncertain(campaign_id: str, dynamic: DynamicOverlapSpec, method: str) -> int:
    """Dynamic overlap: ask once more about every collected pair whose verdict is unsure.

    Pairs start at `min_overlap`; a pair whose confidence is under `target_confidence`
    gets one more judgment per round, up to `max_overlap` (with `min_answer_value`, a pair
    with two or more trusted answers while one more is worth that much; with
    `settle_pairs`, not a pair its answers settle, with `settle_hard` one the cleared
    workers split on; a pair with one trusted answer under `single_answer_confidence`:
    `unsure_pairs`). A pair a block left with no
    trusted answer is judged on its pooled verdict (`unanswered_pairs`) and asked
    `min_overlap` times again only if that is unsure. Returns pairs extended.
    """
    frame = evidence_frame(campaign_id)
    unanswered = unanswered_pairs(campaign_id, frame)
    if frame.empty:
        # Nothing to fit: a pair a block emptied has no verdict at all.
        unsure = unanswered["pair"].tolist()
    else:
        allowance = dynamic.fill_extra is not None or dynamic.cap_extra is not None
        _, verdicts, _ = score_pairs(
            frame, method, unanswered, values=dynamic.min_answer_value is not None or allowance
        )
        unjudged = (
            _unjudged_workers(campaign_id)
            if dynamic.min_answer_value is not None and dynamic.answer_value_pairs == "cleared"
            else None
        )
        rebought = (
            _excluded_pairs(campaign_id)
            if dynamic.min_answer_value is not None and dynamic.answer_value_pairs == "rebought"
            else None
        )
        cleared = (
            _cleared_workers(campaign_id) if dynamic.settle_pairs and dynamic.settle_hard else None
        )
        asked = unsure_pairs(verdicts, frame, dynamic, unjudged, rebought, cleared)
        if allowance:
            asked = within_allowance(
                verdicts,
                frame,
                dynamic,
                asked,
                _answers_bought(campaign_id),
                cleared,
                _excluded_pairs(campaign_id) if dynamic.cap_extra is not None else None,
            )
        unsure = verdicts.loc[asked, "pair"].tolist()
    if not unsure:
        return 0
    # A pair the AI judge decided stays decided (AI-first routing buys no humans for it).
    from crowdloop.stages.routing import ai_routed_items

    decided = ai_routed_items(campaign_id)
    unsure = [p for p in unsure if p not in decided]
    with session_scope() as s:
        # One more *trusted* answer per unsure pair: its overlap becomes its trusted answers
        # plus one. overlap + 1 (before) also bought again every answer a blocked worker
        # left on the pair, which put crowd-wide blocking at 96-100% of the baseline's
        # cost on the spammy crowd (docs/quality-bench.md). Only collected pairs under the cap: the
        # others are still out, or have max_overlap trusted answers. A pair a block left
        # with no trusted answer is one of them (its verdict pooled from the prompt's other
        # pairs), asked min_overlap times like a new pair, and only if that verdict is
        # unsure.
        trusted = answer_counts(s, campaign_id, trusted_only=True)
        by_overlap: dict[int, list[str]] = {}
        for pair in unsure:
            have = trusted.get(pair, 0)
            if have < dynamic.max_overlap:
                by_overlap.setdefault(max(have + 1, dynamic.min_overlap), []).append(pair)
        return ask_again(s, by_overlap)


def _bt_scores(frame: pd.DataFrame) -> tuple[dict[str, float], list[str]]:
    """Bradley-Terry scores of every response; also the prompts whose graph splits.

    Prompts share no responses and the prior anchors each response on its own, so one fit
    over the campaign equals the per-prompt fits side by side (up to a constant shift,
    which cancels in every within-prompt margin) and costs one solve instead of thousands.
    """
    items, left, right = _response_codes(frame)
    outcome = _label_values(frame, OUTCOME)
    fit = bradley_terry(left, right, outcome, len(items))
    disconnected = _disconnected_prompts(frame, len(items), left, right)
    return dict(zip(map(str, items), map(float, fit.scores), strict=True)), disconnected


def _label_values(frame: pd.DataFrame, values: dict[str, float]) -> np.ndarray:
    """``values`` of each judgment's label (NaN for another label), looked up per category."""
    per_label = np.array([values.get(str(v), np.nan) for v in _names(frame, "label")] + [np.nan])
    return per_label[_codes(frame, "label")]


def _response_codes(frame: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """The responses compared (in order of first appearance as left, then right) and each
    judgment's left and right codes among them (``frame`` coded, `as_coded`)."""
    left, right = _codes(frame, "left"), _codes(frame, "right")
    first = pd.unique(np.concatenate([left, right]))
    among = np.full(len(frame["left"].cat.categories), -1, dtype=np.intp)
    among[first] = np.arange(len(first))
    return pd.Index(_names(frame, "left")[first], dtype=object), among[left], among[right]


def _disconnected_prompts(
    frame: pd.DataFrame, n_items: int, left: np.ndarray, right: np.ndarray
) -> list[str]:
    """Prompts whose comparison graph has more than one connected group, sorted.

    Scores of disjoint groups within one prompt are not comparable; the prior keeps them
    finite and pairs are only exported within a compared pair, so we report and go on.
    Counted on integer codes: a (prompt, component) key per judgment.
    """
    component = connected_components(n_items, left, right)[left]
    prompt = _codes(frame, "prompt").astype(np.int64)
    n_prompts = len(frame["prompt"].cat.categories)
    groups = np.unique(prompt * (int(component.max()) + 1) + component)
    per_prompt = np.bincount(groups // (int(component.max()) + 1), minlength=n_prompts)
    return sorted(str(p) for p in _names(frame, "prompt")[per_prompt > 1])


def _worker_aware(frame: pd.DataFrame) -> tuple[dict[str, float], WorkerAwareBT]:
    """One worker-aware fit over the campaign: worker parameters are shared by all prompts,
    item scores stay per response. Returns scores and the fitted model, whose ids are the
    frame's codes (workers: ``worker`` codes; items: the shared ``left``/``right`` codes).

    Fitted on the codes, not the strings: the model numbers items and workers in order of
    first appearance either way, so the floats are the same."""
    fit_on = pd.DataFrame(
        {
            "worker": _codes(frame, "worker"),
            "left": _codes(frame, "left"),
            "right": _codes(frame, "right"),
            "label": frame["label"],
        },
        copy=False,  # the frame's own codes, not a copy of each alive through the fit
    )
    model = WorkerAwareBT().fit(fit_on)
    del fit_on
    sides = _names(frame, "left")
    scores = {str(sides[k]): float(v) for k, v in model.scores_.items()}
    return scores, model


def _per_worker(frame: pd.DataFrame, values: pd.Series) -> np.ndarray:
    """Each judgment's worker's value in ``values`` (a worker-aware model's attribute,
    indexed by worker code: `_worker_aware`)."""
    per_code = values.reindex(range(len(frame["worker"].cat.categories))).to_numpy(float)
    return np.append(per_code, np.nan)[_codes(frame, "worker")]


def _label_codes(label: pd.Series) -> np.ndarray:
    """A coded label column as 0 left, 1 right, 2 tie (`vote_counts`' codes)."""
    sides = ("left", "right", "tie")
    names = [str(c) for c in label.cat.categories]
    codes = np.asarray(label.cat.codes.to_numpy())
    if (codes < 0).any() or not set(names) <= set(sides):
        bad = sorted(set(names) - set(sides)) + (["<missing>"] if (codes < 0).any() else [])
        raise ValueError(f"label must be one of left/right/tie, got {bad}")
    return np.array([sides.index(n) for n in names], dtype=np.int8)[codes]


def _score_of(column: pd.Series, scores: dict[str, float]) -> np.ndarray:
    """Each row's response score (0.0, the prior's mean, for a response not scored)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = np.asarray(column.cat.categories, dtype=object)
        per_name = np.fromiter((scores.get(str(n), 0.0) for n in names), float, len(names))
        return np.append(per_name, 0.0)[column.cat.codes.to_numpy()]
    return column.map(scores).fillna(0.0).to_numpy(dtype=float)


def score_pairs(
    frame: pd.DataFrame,
    method: str,
    unanswered: pd.DataFrame | None = None,
    values: bool = False,
) -> tuple[dict[str, float], pd.DataFrame, list[str]]:
    """Response scores, one verdict per pair, and the prompts whose comparison graph splits.

    A pair's verdict comes from the fitted scores, not from its own votes alone: the model
    pools every comparison of the prompt (a > b and b > c say something about a vs c), so
    it is right more often than the pair's vote count, most of all at low overlap.
    P(left better) = sigmoid(score_left - score_right) (the Bradley-Terry win probability
    given no tie); within `TIE_BAND` of 1/2 the verdict is a tie. The vote counts are kept
    beside it for provenance. `worker_aware` scores discount inattentive workers and
    position bias; votes are then weighted by each worker's attentiveness.

    `unanswered` pairs (`unanswered_pairs`: no trusted answer left) get a verdict from the
    scores alone, with no votes; a response no answer touches scores 0, the prior's mean.

    With `values`, also each pair's `p_right` (the Laplace posterior's P(the verdict's
    side is the better one)) and `answer_value` (the expected gain in it from one more
    answer): `answer_values`.

    ``frame``: `evidence_frame`'s codes, or a string frame (coded here, `as_coded`). The
    verdicts' ``pair``, ``prompt``, ``left`` and ``right`` are categoricals (their values
    the same strings).
    """
    frame = as_coded(frame)
    model: WorkerAwareBT | None = None
    if method == "worker_aware":
        # No plain Bradley-Terry fit here: its scores were only used for the prompts whose
        # graph splits, which the connected components alone say.
        items, left, right = _response_codes(frame)
        disconnected = _disconnected_prompts(frame, len(items), left, right)
        del items, left, right
        scores, model = _worker_aware(frame)
    else:
        scores, disconnected = _bt_scores(frame)
    # The votes per pair code (sorted as the pair ids are), made after the fit, from the
    # codes: no frame of string labels (pivoting one was the stage's peak at 10^6).
    pair = _codes(frame, "pair")
    label = _label_codes(frame["label"])
    weight = None if model is None else _per_worker(frame, model.attentiveness_)
    known = pair >= 0  # a judgment without a pair id belongs to no pair
    if not known.all():
        pair, label = pair[known], label[known]
        weight = None if weight is None else weight[known]
    tally = vote_counts(pair, label, len(frame["pair"].cat.categories), weight)
    del label, weight, known
    present = np.flatnonzero(np.bincount(pair, minlength=len(tally)) > 0)
    del pair
    counts = pd.DataFrame(
        {
            "pair": pd.Categorical.from_codes(present, dtype=frame["pair"].dtype),
            **{f"n_{side}": tally[present, i] for i, side in enumerate(("left", "right", "tie"))},
        }
    )
    del tally
    meta = frame.drop_duplicates("pair")[["pair", "prompt", "left", "right"]]
    out = meta.merge(counts, on="pair", validate="one_to_one")
    del meta, counts
    if unanswered is not None and not unanswered.empty:
        none = unanswered[["pair", "prompt", "left", "right"]]
        joined = {
            name: union_categoricals(
                [out[name].array, _sorted_categorical(np.asarray(none[name], dtype=object))],
                sort_categories=True,
            )
            for name in ("pair", "prompt", "left", "right")
        }
        out = pd.DataFrame(
            {
                **joined,
                **{
                    n: np.concatenate([out[n].to_numpy(float), np.zeros(len(none))])
                    for n in ("n_left", "n_right", "n_tie")
                },
            }
        )
    delta = _score_of(out["left"], scores) - _score_of(out["right"], scores)
    p_left = 1.0 / (1.0 + np.exp(-delta))
    out["p_left_better"] = p_left
    out["confidence"] = np.maximum(p_left, 1.0 - p_left)
    out["winner"] = np.where(
        p_left >= 0.5 + TIE_BAND, "left", np.where(p_left <= 0.5 - TIE_BAND, "right", "tie")
    )
    out["margin"] = np.where(out["winner"] == "tie", 0.0, np.round(np.abs(delta), 6))
    if values:
        out["p_right"], out["answer_value"] = answer_values(frame, out, delta, scores, model)
    return scores, out.sort_values("pair", ignore_index=True), disconnected


# The prior of the scores in the value of one more answer (`answer_values`): a score
# difference is a priori N(0, VALUE_PRIOR_SD^2), each score N(0, VALUE_PRIOR_SD^2 / 2).
VALUE_PRIOR_SD = 2.0


def answer_values(
    frame: pd.DataFrame,
    pairs: pd.DataFrame,
    delta: np.ndarray,
    scores: dict[str, float],
    model: WorkerAwareBT | None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `pairs` (score difference `delta`, left minus right): P(its verdict's
    side is the better one) under a Laplace posterior of the scores, and the expected gain
    in it from one more answer by a worker of the crowd's mean attentiveness
    (`crowdloop.aggregation.pair_value`). `model`: the worker-aware fit (attentiveness,
    position bias, ties, random answers); None for plain Bradley-Terry (every worker
    attentive, no position bias, ties at the answers' share)."""
    frame = as_coded(frame)
    items, left, right = _response_codes(frame)
    fitted = np.array([scores.get(str(i), 0.0) for i in items], dtype=float)
    if model is not None:
        attentive = _per_worker(frame, model.attentiveness_)
        bias = _per_worker(frame, model.position_bias_)
        answer = AnswerModel(
            tie=model.tie_, random_answer=tuple(model.random_answer_.to_numpy(dtype=float))
        )
    else:
        attentive = np.ones(len(frame))
        bias = np.zeros(len(frame))
        share = float((_label_values(frame, {"tie": 1.0}) == 1.0).mean())
        answer = AnswerModel(tie=2.0 * max(share, 0.01) / (1.0 - min(share, 0.99)))
    information = answer_information(fitted[left] - fitted[right] + bias, attentive, answer)
    prompt = _codes(frame, "prompt")
    prompt_of = pd.Series(np.concatenate([prompt, prompt]), index=np.concatenate([left, right]))
    group = pd.factorize(prompt_of.groupby(level=0).first().reindex(range(len(items))))[0]
    score_l2 = 2.0 / VALUE_PRIOR_SD**2
    sd = difference_sd(
        left,
        right,
        information,
        group,
        len(items),
        items.get_indexer(np.asarray(pairs["left"], dtype=object)),
        items.get_indexer(np.asarray(pairs["right"], dtype=object)),
        score_l2,
    )
    typical = float(np.mean(attentive)) if len(attentive) else 1.0
    next_info = answer_information(
        np.asarray(delta, dtype=float), np.full(len(delta), typical), answer
    )
    p_right = ndtr(np.abs(delta) / sd)
    return p_right, one_answer_value(np.asarray(delta, dtype=float), sd, next_info)


def aggregate_preferences(campaign_id: str, method: str = "bradley_terry") -> PreferenceAggregate:
    """Scores per response and a verdict per pair from the trusted judgments (and the AI
    judge's votes on pairs it sent back, `evidence_frame`), rewritten."""
    # Here, not at the top: graded imports this module, routing the connectors.
    from crowdloop.stages.graded import apply_graded, graded_spec, graded_verdicts
    from crowdloop.stages.routing import AIVerdicts, ai_verdicts, apply_ai_verdicts

    release_free_memory()  # what the quality round left free, before the judgments' frame
    frame = evidence_frame(campaign_id)
    judgments = len(frame)
    prompts = frame["prompt"].nunique() if not frame.empty else 0
    scores: dict[str, float] = {}
    verdicts = pd.DataFrame(columns=["pair", "prompt", "left", "right"])
    disconnected: list[str] = []
    graded_by_pair: pd.DataFrame | None = None
    decided: AIVerdicts | None = None
    if not frame.empty:
        scores, verdicts, disconnected = score_pairs(
            frame, method, unanswered_pairs(campaign_id, frame)
        )
        # AI-first routing: a pair the judge decided keeps the judge's verdict.
        decided = ai_verdicts(campaign_id)
    # Nothing below needs the judgments: their frame goes before the output rows are made.
    del frame
    release_free_memory()
    # Graded campaigns: winner, level and margin from the ordinal model, which reads the
    # answers' levels (`judgments_frame`; a graded campaign has no sent-back votes).
    graded = graded_spec(campaign_id) if judgments else None
    if graded is not None:
        graded_by_pair = graded_verdicts(judgments_frame(campaign_id), graded).set_index("pair")
    with session_scope() as s:
        s.execute(delete(CandidateScore).where(col(CandidateScore.campaign_id) == campaign_id))
        s.execute(delete(PairOutcome).where(col(PairOutcome.campaign_id) == campaign_id))
        # The rows as dicts a chunk at a time: at 10^6 judgments every outcome row (288k)
        # and score row (192k) as a dict at once held ~200 MB of small objects.
        for rows in _score_rows(campaign_id, scores, verdicts, method):
            insert_ignore(s, CandidateScore, rows, ["campaign_id", "response_id"])
        pairs = 0
        for rows in _outcome_rows(campaign_id, verdicts):
            if graded_by_pair is not None:
                apply_graded(graded_by_pair, rows)
            if decided is not None:
                apply_ai_verdicts(decided, rows)
            insert_ignore(s, PairOutcome, rows, ["item_id"])
            pairs += len(rows)
    if disconnected:
        logger.warning(
            "%s: %d prompt(s) have a disconnected comparison graph; their scores are only "
            "comparable within each connected group",
            campaign_id,
            len(disconnected),
        )
    return PreferenceAggregate(
        pairs=pairs,
        prompts=prompts,
        judgments=judgments,
        disconnected_prompts=disconnected,
    )


# Output rows built and inserted per chunk (a multiple of `insert_ignore`'s statement sizes
# for these tables' 5 and 10 columns).
ROW_CHUNK = 12_000


def _score_rows(
    campaign_id: str, scores: dict[str, float], verdicts: pd.DataFrame, method: str
) -> Iterator[list[dict[str, object]]]:
    """CandidateScore rows by response id, ``ROW_CHUNK`` at a time. Every scored response is
    a side of some pair, so the pairs name each one's prompt."""
    prompt_of = {
        str(rid): str(pid)
        for side in ("left", "right")
        for rid, pid in zip(verdicts[side], verdicts["prompt"], strict=True)
    }
    ordered = sorted(scores.items())
    for at in range(0, len(ordered), ROW_CHUNK):
        yield [
            {
                "campaign_id": campaign_id,
                "response_id": rid,
                "prompt_id": prompt_of[rid],
                "score": score,
                "method": method,
            }
            for rid, score in ordered[at : at + ROW_CHUNK]
        ]


def _outcome_rows(campaign_id: str, verdicts: pd.DataFrame) -> Iterator[list[dict[str, object]]]:
    """PairOutcome rows of `score_pairs`' verdicts, ``ROW_CHUNK`` at a time."""
    # Python values a column at a time (`tolist`: the same strings and floats as str()
    # and float() of each cell), not a named tuple and ten conversions per row.
    texts = ("pair", "prompt", "winner")
    numbers = ("n_left", "n_right", "n_tie", "p_left_better", "confidence", "margin")
    for at in range(0, len(verdicts), ROW_CHUNK):
        chunk = verdicts.iloc[at : at + ROW_CHUNK]
        columns = [[str(v) for v in chunk[name].tolist()] for name in texts] + [
            chunk[name].to_numpy(dtype=float).tolist() for name in numbers
        ]
        yield [
            {
                "item_id": pair,
                "campaign_id": campaign_id,
                "prompt_id": prompt,
                "winner": winner,
                "n_left": left,
                "n_right": right,
                "n_tie": tie,
                "p_left_better": p_left,
                "confidence": sure,
                "margin": margin,
            }
            for pair, prompt, winner, left, right, tie, p_left, sure, margin in zip(
                *columns, strict=True
            )
        ]
