"""Golden-set checks: score workers on control tasks, block and exclude the untrusted.

Judgments of a blocked worker stay in the database, marked `excluded` with the reason,
so aggregation can be rerun with another policy and the evidence is never lost.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Executable,
    String,
    bindparam,
    extract,
    func,
    text,
    type_coerce,
    update,
)
from sqlalchemy import cast as sa_cast
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from crowdloop import collector
from crowdloop.allocator import release_free_memory
from crowdloop.codes import coded as _coded
from crowdloop.codes import coded_together as _coded_together
from crowdloop.codes import encode as _encode
from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import ConnectorError
from crowdloop.db import driver_rows, session_scope
from crowdloop.models.domain import BlockScope, Capability, ReviewDecision, Stage
from crowdloop.models.spec import QualitySpec
from crowdloop.models.tables import (
    UNTRUSTED,
    Campaign,
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    Prompt,
    Response,
    WorkerRecord,
    WorkerStatus,
    utcnow,
)
from crowdloop.quality import (
    CrowdPolicy,
    GoldenPolicy,
    WorkerAssessment,
    assess_crowd,
    assess_worker,
)
from crowdloop.stages import demonstrations, ranking, rating
from crowdloop.stages.counts import answer_counts, answer_tallies, golden_item_ids
from crowdloop.stages.graded import level_passes
from crowdloop.stages.items import ask_again, keep_off, lift_golden_keep_off, move_items
from crowdloop.stages.plan import load_spec
from crowdloop.stages.sync import batch_ref

REVIEW_CHUNK = 500  # submissions per review call and per read of unreviewed ones

logger = logging.getLogger(__name__)


@dataclass
class QualityResult:
    workers: int = 0
    newly_blocked: list[str] = field(default_factory=list)
    excluded_judgments: int = 0
    # Collected comparisons an exclusion left short of their overlap, asked again.
    reopened: int = 0
    warnings: list[str] = field(default_factory=list)


def policy_from(spec: QualitySpec) -> GoldenPolicy:
    return GoldenPolicy(
        prior_correct=spec.prior_correct,
        prior_incorrect=spec.prior_incorrect,
        min_golden=spec.min_golden,
        min_accuracy=spec.min_accuracy,
        block_confidence=spec.block_confidence,
        warn_confidence=spec.warn_confidence,
    )


_SEVERITY = {
    WorkerStatus.PROBATION: 0,
    WorkerStatus.TRUSTED: 1,
    WorkerStatus.WARNED: 2,
    WorkerStatus.EXCLUDED: 3,
    WorkerStatus.BLOCKED: 4,
}


def crowd_policy_from(spec: QualitySpec) -> CrowdPolicy:
    if spec.blind_confidence is None:
        return CrowdPolicy()
    return CrowdPolicy(
        blind_confidence=spec.blind_confidence,
        late_confidence=spec.exclude_late_confidence,
        late_block_confidence=spec.block_late_confidence,
        late_block_min_answers=spec.block_late_min_answers,
        late_block_at_boundary=spec.block_late_at_exam,
        golden_blind_confidence=spec.golden_blind_confidence,
        probation_clear=spec.exam_probation,
    )


# Rows per fetch when reading a campaign's comparison evidence.
EVIDENCE_CHUNK = 10_000

EVIDENCE_COLUMNS = ["worker", "item", "left", "right", "label", "golden", "time", "seq"]


def _epoch_us(
    s: Session, column: Any
) -> tuple[ColumnElement[Any], Callable[[Sequence[Any]], np.ndarray]]:
    """A stored UTC time as the evidence reads it, and the conversion of a partition's
    values to microseconds since 1970 (int64): one value a row instead of the `datetime`
    the column type's result processing made of each time column (two a row), which
    pandas then parsed again."""
    if s.get_bind().dialect.name == "sqlite":
        # Stored as text, 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, which numpy parses as such
        # (a value stored without a fraction reads 0 microseconds). It was computed in the
        # query (whole seconds from strftime, the microseconds from the text): the same
        # integers on every answer of the 10^6 bench campaign, ~0.75 s of SQLite's CPU
        # there against numpy's 0.06 s.
        return type_coerce(column, String), _parse_us
    return sa_cast(extract("epoch", column) * 1_000_000, BigInteger), _int64


def _parse_us(values: Sequence[Any]) -> np.ndarray:
    return np.array(values, dtype="datetime64[us]").view(np.int64)


def _int64(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter(values, np.int64, len(values))


@collector.paused()
def comparison_evidence(s: Session, campaign_id: str) -> pd.DataFrame:
    """Every readable comparison answer of the campaign (real, golden and exam pairs,
    excluded ones too), in the frame `crowdloop.quality.assess_crowd` reads."""
    # Two reads, neither holding a Python object per cell for long: the campaign's pairs
    # once (their sides and golden answers, one row a pair, coded), then the answers a
    # partition at a time as (pair, worker, label, time in microseconds, id), coded as they
    # come. Every pair's sides and golden answer are looked up by its code, not fetched
    # per answer, and the times come as integers. Measured at 10^6 judgments: a frame of
    # row tuples was 183 MiB and its build peaked at 689 MiB RSS; codes per column read
    # from the joined rows (ten values and two datetimes a row) still took ~430 MiB.
    # The pairs' and the responses' ids (~340k and ~290k at 10^6 judgments) are kept as
    # Arrow strings and coded by Arrow, not as a Python string each in a dict: those
    # ~630k strings, alive through both reads, were freed with pymalloc's arenas still
    # held by the odd object made meanwhile (45-63 MiB of arenas alive at the assessment's
    # peak at 10^6 in memray's record, with none of their strings). Workers and labels
    # are few: plain books.
    books: dict[str, dict[str, int]] = {k: {} for k in ("worker", "label")}
    pairs = sa_select(
        col(Item.id), col(Item.left_id), col(Item.right_id), col(Item.golden_answer),
        col(Item.is_golden),
    ).where(col(Item.campaign_id) == campaign_id, col(Item.kind) == "compare")  # fmt: skip
    id_parts: dict[str, list[pa.Array]] = {"item": [], "left": [], "right": []}
    golden_parts: list[np.ndarray] = []
    for part in driver_rows(s, pairs):
        pair, left, right, answer, is_golden = zip(*part, strict=True)
        id_parts["item"].append(pa.array(pair, pa.string()))  # codes: reading order
        # A pair without response ids (an imported one) gets one per side, from its own id.
        for side, given in (("left", left), ("right", right)):
            named = [v if v else f"{i}:{side}" for v, i in zip(given, pair, strict=True)]
            id_parts[side].append(pa.array(named, pa.string()))
        golden_parts.append(
            _encode(
                [a if g else None for a, g in zip(answer, is_golden, strict=True)], books["label"]
            )
        )
    if not id_parts["item"]:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    item_names = pa.concat_arrays(id_parts.pop("item"))
    # Both sides in one numbering: the responses' ids, dictionary-encoded together.
    n_pairs = len(item_names)
    side_coded = pc.dictionary_encode(
        pa.chunked_array(id_parts.pop("left") + id_parts.pop("right"), pa.string())
    ).combine_chunks()
    side_names = side_coded.dictionary
    side_codes = side_coded.indices.to_numpy().astype(np.int32, copy=False)
    del side_coded, id_parts
    of_pair = {
        "left": side_codes[:n_pairs],
        "right": side_codes[n_pairs:],
        "golden": np.concatenate(golden_parts),
    }
    del side_codes, golden_parts
    at, to_us = _epoch_us(s, func.coalesce(col(Judgment.submitted_at), col(Judgment.received_at)))
    # Every readable answer of the campaign, not joined to its item: an answer is a
    # comparison's when its item is one of the pairs read above (the campaign's compare
    # items), the others are dropped here. The join looked every answer's item up by its
    # id in the item table: half of the database's work for this read (0.85 -> 0.45 s of
    # CPU at 123k answers, measured in raw SQL).
    # In id order (the frame is sorted by time below, whatever the order read): SQLite
    # then walks the (campaign, id) index and reads the table in its own order; it chose
    # the (campaign, worker) index for `worker_id IS NOT NULL` and read the rows worker by
    # worker, all over the table (0.5-0.8 -> 0.3 s of CPU at 123k answers, raw SQL).
    answers = (
        sa_select(
            col(Judgment.item_id),
            col(Judgment.worker_id),
            col(Judgment.label),
            at,
            col(Judgment.id),
        )
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.status) == JudgmentStatus.VALID,
            col(Judgment.worker_id).is_not(None),
        )
        .order_by(col(Judgment.id))
    )
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("worker", "label", "us", "seq")}
    pair_parts: list[pa.Array] = []
    for part in driver_rows(s, answers):
        pair_ids, workers, labels, times, ids = zip(*part, strict=True)
        pair_parts.append(pa.array(pair_ids, pa.string()))
        parts["worker"].append(_encode(workers, books["worker"]))
        parts["label"].append(_encode(labels, books["label"]))
        parts["us"].append(to_us(times))
        parts["seq"].append(np.fromiter(ids, np.int64, len(part)))
    # Each answer's pair: its place among the pairs read, by one hash set of the pairs'
    # ids (Arrow's, in C; a set built per partition was ~90 ms each at 10^6). -1: not a
    # comparison's (an answer to a ranking, rating or text), dropped here.
    item = pc.index_in(pa.chunked_array(pair_parts, pa.string()), value_set=item_names)
    del pair_parts
    codes = item.fill_null(-1).to_numpy().astype(np.int32, copy=False)
    del item
    compare = codes >= 0
    parts["item"] = [codes]
    if not compare.all():
        parts = {k: [np.concatenate(v)[compare]] for k, v in parts.items()}
    if not sum(len(v) for v in parts["seq"]):
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    del parts
    # Seconds as a float, as pandas computed them from the datetimes (microsecond unit).
    time = arrays.pop("us") / 1e6
    order = np.lexsort((arrays["seq"], time))  # by time, then id (stable sort)
    # Every column in time order at once, each unsorted one dropped as it is sorted, and
    # the frame made from these arrays without a copy: the columns were alive unsorted,
    # sorted and copied into the frame at its construction, the read's peak (~10 floats
    # and ints an answer at once).
    time = time[order]
    seq = arrays.pop("seq")[order]
    item = arrays.pop("item")[order]
    label = arrays.pop("label")[order]
    worker = arrays.pop("worker")[order]
    del arrays, order
    golden = of_pair["golden"][item]
    # The categories of each column: the values present in the answers only, as before.
    present_items = _present(len(item_names), item)
    present_sides = _present(
        len(side_names), of_pair["left"][present_items], of_pair["right"][present_items]
    )
    present_labels = _present(len(books["label"]), label, golden[golden >= 0])
    # The book has the workers of every kind of answer read; the comparisons' only.
    present_workers = _present(len(books["worker"]), worker)
    # The pairs' and responses' ids as Arrow strings, not a Python string each (~630k ids
    # of ~20 characters at 10^6 judgments: ~45 MiB as Python strings by their sizes, alive
    # through the assessment), the two sides' in one Index; workers and labels are few.
    left, right = _coded_together(
        [of_pair["left"][item], of_pair["right"][item]], side_names, present_sides, arrow=True
    )
    columns = {
        "worker": _coded(worker, books["worker"], present_workers),
        "item": _coded(item, item_names, present_items, arrow=True),
        "left": left,
        "right": right,
        "label": _coded(label, books["label"], present_labels),
        "golden": _coded(golden, books["label"], present_labels),
        "time": time,
        "seq": seq,
    }
    del worker, item, label, golden  # their codes live on in the categoricals' own
    return pd.DataFrame(columns, copy=False)


def _present(size: int, *codes: np.ndarray) -> np.ndarray:
    """The distinct values of the ``codes`` arrays (codes in ``[0, size)``), ascending:
    `np.union1d` of them, by a mask of the book's size rather than a sort or hash of every
    answer's code (~0.5 s of CPU a read at 10^6 answers)."""
    seen = np.zeros(size, dtype=bool)
    for c in codes:
        seen[c] = True
    return np.flatnonzero(seen)


def evidence_fingerprint(s: Session, campaign_id: str) -> tuple[int, int, int]:
    """(count, max id, sum of ids) of the campaign's readable judgments with a worker: a
    superset of what `comparison_evidence` reads (every kind; the join to items to keep
    only comparisons took ~0.7 s at 200k answers), so any change to the evidence changes
    it. Ids only grow and judgments are never deleted, so an answer added raises the max
    and one leaving the readable set (quarantined) lowers the count; nor are the columns
    the evidence reads (labels, workers, times; the items' sides) ever edited."""
    # The ids in id order, as the evidence reads its answers: SQLite then walks the
    # (campaign, id) index; for `worker_id IS NOT NULL` it chose the (campaign, worker)
    # one and read the table worker by worker (2.7 -> 0.5-0.7 s of CPU at 1.2M
    # judgments, raw SQL).
    ids = (
        sa_select(col(Judgment.id))
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.status) == JudgmentStatus.VALID,
            col(Judgment.worker_id).is_not(None),
        )
        .order_by(col(Judgment.id))
        .subquery()
    )
    count, top, total = s.execute(
        sa_select(func.count(ids.c.id), func.max(ids.c.id), func.sum(ids.c.id))
    ).one()
    return int(count or 0), int(top or 0), int(total or 0)


# The last crowd assessment per campaign in this process, with the evidence fingerprint and
# policy it was made on. The final report's distrust section re-ran the whole assessment
# after the last quality round had made it on the same answers (~7 s of the report's 7.85 s
# of CPU at 123k judgments); it now reuses it when nothing changed.
_ASSESSED: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[pd.DataFrame, pd.DataFrame]]] = {}


def assess_campaign_crowd(
    s: Session, campaign_id: str, policy: CrowdPolicy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`assess_crowd` over the campaign's comparisons (empty frames when there are none);
    the previous result when the evidence and the policy are the same as then."""
    # The database and the campaign's creation time are part of the key: one process may
    # serve several databases (tests; a worker whose deployments point at different URLs),
    # or one recreated, and the same campaign name with the same judgment ids there is other
    # evidence.
    where = (str(s.get_bind().engine.url), campaign_id)
    created = s.exec(select(Campaign.created_at).where(Campaign.id == campaign_id)).first()
    key = (created, evidence_fingerprint(s, campaign_id), policy)
    cached = _ASSESSED.get(where)
    if cached is not None and cached[0] == key:
        crowd, audit = cached[1]
        return crowd.copy(), audit.copy()
    # The previous round's frames are stale now: not kept alive under this round's peak
    # (the golden audit is ~4.5 MiB at 10^6 judgments).
    _ASSESSED.pop(where, None)
    # Before and after the read: the pages the previous stage and the fetched rows left
    # free are returned, not kept resident under the assessment's own arrays.
    release_free_memory()
    frame = comparison_evidence(s, campaign_id)
    release_free_memory()
    if frame.empty:
        crowd, audit = (
            pd.DataFrame(columns=["worker", "p_blind"]),
            pd.DataFrame(
                columns=["item", "golden", "answers", "agree", "split", "p_below", "retired"]
            ),
        )
    else:
        crowd, audit = assess_crowd(frame, policy)
    del frame
    # The evidence and the assessment's arrays are gone: what they freed is not kept
    # resident through the rest of the round (review, the next stages).
    release_free_memory()
    _ASSESSED[where] = (key, (crowd.copy(), audit.copy()))
    return crowd, audit


def golden_tally(
    s: Session,
    campaign_id: str,
    stage: Stage | None = None,
    retired: set[str] | frozenset[str] = frozenset(),
    since: tuple[str, datetime] | None = None,
) -> dict[str, tuple[int, int]]:
    """worker -> (correct, total) on golden items, of one stage or of every stage.

    A quarantined answer is not held against the worker: it counts as missing; nor is an
    answer on a `retired` (ambiguous) golden item. A graded golden pair is passed on the
    right side within one step of its level (`stages.graded.level_passes`).

    ``since`` (worker, time): that worker's golden comparisons answered at or after the
    time only (submitted, else received: the order the crowd assessment's change point
    and the drift exclusion use); rankings and ratings, which the change point does not
    read, are left out then.
    """
    golden_items = golden_item_ids(campaign_id)
    query = (
        sa_select(
            col(Judgment.worker_id),
            col(Judgment.label),
            col(Item.golden_answer),
            col(Judgment.item_id),
            col(Judgment.level),
            col(Item.golden_level),
        )
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.item_id).in_(golden_items),
            col(Judgment.status) == JudgmentStatus.VALID,
            col(Item.is_golden).is_(True),
            # Rankings are graded by agreement with the known order, ratings by distance,
            # below.
            col(Item.kind).not_in([ranking.KIND, rating.KIND]),
        )
    )
    if stage is not None:
        query = query.where(col(Item.stage) == stage.value)
    if since is not None:
        answered = func.coalesce(col(Judgment.submitted_at), col(Judgment.received_at))
        query = query.where(col(Judgment.worker_id) == since[0], answered >= since[1])
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    # A partition at a time (server-side cursor on PostgreSQL): golden answers are ~15% of
    # the bench campaign's, ~180k rows at 10^6 judgments. The driver's tuples on SQLite
    # (text and integers: nothing to process), `db.driver_rows`.
    with collector.paused():
        for part in driver_rows(s, query):
            for worker, label, answer, item, level, golden_level in part:
                if worker is not None and item not in retired:
                    tally[worker][0] += int(label == answer and level_passes(level, golden_level))
                    tally[worker][1] += 1
    if since is not None:
        return {w: (c, n) for w, (c, n) in tally.items()}
    if stage in (None, Stage.RANK):
        for worker, (passed, graded) in ranking.golden_tally(s, campaign_id).items():
            tally[worker][0] += passed
            tally[worker][1] += graded
    if stage in (None, Stage.RATE):
        for worker, (passed, graded) in rating.golden_tally(s, campaign_id).items():
            tally[worker][0] += passed
            tally[worker][1] += graded
    return {w: (c, n) for w, (c, n) in tally.items()}


def _writing_tally(
    s: Session, campaign_id: str, min_confidence: float = 0.0
) -> dict[str, tuple[int, int]]:
    """author -> (accepted, judged) over the crowd-written prompts and responses.

    Only verdicts the aggregation is at least `min_confidence` sure of count (a text the
    checks rejected counts: that verdict is certain), so a writer is not blocked on
    verdicts that might be wrong.
    """
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for table in (Prompt, Response):
        rows = s.exec(
            select(table.author, table.verdict, table.confidence).where(
                table.campaign_id == campaign_id,
                table.source == "crowd",
                col(table.verdict).in_(["accept", "reject"]),
            )
        ).all()
        for author, verdict, confidence in rows:
            if confidence is not None and confidence < min_confidence:
                continue
            if author is not None:
                tally[author][0] += int(verdict == "accept")
                tally[author][1] += 1
    return {w: (c, n) for w, (c, n) in tally.items()}


# What the crowd's pooled accuracy on golden verifications is worth, in answers, as the
# prior of one verifier's: as much as the pooled confusion matrix in the weighted vote
# (`WeightedVote.prior_strength`), so one verifier is judged against the crowd alike there
# and here. At a pooled accuracy of 0.8 it blocks at 0 of 4, 1 of 5 or 6 right; an honest
# verifier (0.93) is then blocked in about 1 of 5,000 runs of up to six golden answers
# (1 in 180 with the campaign's Beta(2, 1)), a random one in about 1 of 5 (2 of 3).
POOLED_GOLDEN_STRENGTH = 8.0


def pooled_golden_policy(policy: GoldenPolicy, tallies: Iterable[tuple[int, int]]) -> GoldenPolicy:
    """`policy` with its Beta prior centred on the crowd's pooled accuracy on these golden
    answers (itself drawn towards the campaign prior's mean), worth
    `POOLED_GOLDEN_STRENGTH` answers."""
    pairs = list(tallies)
    correct = sum(c for c, _ in pairs)
    total = sum(n for _, n in pairs)
    a, b = policy.prior_correct, policy.prior_incorrect
    mean = (correct + a) / (total + a + b)
    return replace(
        policy,
        prior_correct=POOLED_GOLDEN_STRENGTH * mean,
        prior_incorrect=POOLED_GOLDEN_STRENGTH * (1.0 - mean),
    )


def blind_evidence(row: pd.Series) -> str:
    """One line of evidence for a worker the crowd-wide assessment distrusts."""
    drift = row.get("drift_since")
    since = (
        f"since {datetime.fromtimestamp(float(drift), UTC).isoformat(timespec='seconds')}; "
        if drift is not None and not pd.isna(drift)
        else ""
    )
    return (
        f"answers do not follow the content: P = {float(row['p_blind']):.2f} ({since}"
        f"{int(row['answers'])} answers: {int(row['n_left'])} left, {int(row['n_right'])} "
        f"right, {int(row['n_tie'])} tie; golden {int(row['golden_correct'])}/"
        f"{int(row['golden_total'])}; sided with the others' verdict "
        f"{float(row['agreement']):.0%} on {int(row['agreement_n'])} pairs)"
    )


def drift_start(s: Session, row: pd.Series, column: str = "drift_seq") -> datetime | None:
    """When a worker the crowd assessment blocks turned careless: the time of the first
    answer of the change point it found (None: blind from the start, or no change point;
    every answer is then excluded). The same time the evidence ordered the answers by
    (submitted, else received), read back from the judgment rather than from the float.
    ``column``: ``late_seq`` for the late change point whose answers are excluded alone."""
    seq = row.get(column)
    if seq is None or pd.isna(seq):
        return None
    judgment = s.get(Judgment, int(seq))
    if judgment is None:
        return None
    return judgment.submitted_at or judgment.received_at


def golden_since(
    s: Session,
    campaign_id: str,
    worker: str,
    row: pd.Series,
    retired: set[str],
    policy: GoldenPolicy,
) -> tuple[datetime, WorkerAssessment] | None:
    """The golden rule on a worker's golden comparisons from their change point on: (the
    change point's time, the assessment); None without a credible change point.

    Credible is the crowd assessment's own criterion, the one the drift exclusion acts on
    (`assess_crowd`'s ``drift_seq``): the most probable change point, the posterior says
    the worker turned rather than was blind from the start, and the answers before it are
    careful by ``CrowdPolicy.drift_careful_start`` (log Bayes factor 3). Why: a sleeper's
    careful exam answers outweigh the careless ones after it in the whole record (15 of 21
    right: P(below 0.7) = 0.42, where the 3 of 9 after the change point give 0.93). The
    caller's veto (posterior under the crowd's base rate) applies to this verdict too:
    honest workers have change points of their own, on any run of hard pairs.
    """
    start = drift_start(s, row)
    if start is None:
        return None
    correct, total = golden_tally(s, campaign_id, retired=retired, since=(worker, start)).get(
        worker, (0, 0)
    )
    return start, assess_worker(correct, total, policy)


def check_workers(campaign_id: str, connector: Connector) -> QualityResult:
    """Re-assess every worker on all evidence so far; act on the untrusted per `on_fail`.

    Evidence is the worker's golden answers and, for writers, the verification verdicts
    on their texts (the verification stage feeds the writer's record), each assessed with
    the same Beta-prior policy; and every comparison they gave, read by
    `crowdloop.quality.assess_crowd` (content-blind answering, drift, golden items the
    honest-looking crowd splits on, which are then left out of the golden tally). The
    most severe outcome stands.
    """
    result = QualityResult()
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        policy = policy_from(spec.quality)
        fail_status = {
            "block": WorkerStatus.BLOCKED,
            "exclude": WorkerStatus.EXCLUDED,
            "warn": WorkerStatus.WARNED,
        }[spec.quality.on_fail]
        crowd_policy = crowd_policy_from(spec.quality)
        crowd, audit = assess_campaign_crowd(s, campaign_id, crowd_policy)
        retired = set(audit.loc[audit["retired"].astype(bool), "item"]) if len(audit) else set()
        blind = crowd.set_index("worker") if len(crowd) else None
        golden = golden_tally(s, campaign_id, retired=retired)
        # Verifiers whose verdicts do not follow the text, writers who keep failing the
        # text checks (stages/demonstrations.py).
        verifiers = demonstrations.verifier_assessment(s, spec)
        on_demonstrations = demonstrations.untrusted_on_demonstrations(s, spec, verifiers)
        # Golden verification answers are read by that assessment too, at their known
        # verdict among the worker's other answers; what it clears is not convicted on
        # them alone (below).
        verify_golden = (
            golden_tally(s, campaign_id, Stage.VERIFY, retired) if verifiers is not None else {}
        )
        pooled = pooled_golden_policy(policy, verify_golden.values())
        writing = _writing_tally(
            s,
            campaign_id,
            spec.demonstrations.trusted_confidence if spec.demonstrations else 0.0,
        )
        counts = dict(
            s.exec(
                select(Judgment.worker_id, func.count())
                .where(Judgment.campaign_id == campaign_id)
                .group_by(col(Judgment.worker_id))
            ).all()
        )
        records = {
            r.worker_id: r
            for r in s.exec(
                select(WorkerRecord).where(WorkerRecord.campaign_id == campaign_id)
            ).all()
        }
        for worker, n in counts.items():
            if worker is None:
                continue
            correct, total = golden.get(worker, (0, 0))
            accepted, written = writing.get(worker, (0, 0))
            on_golden = assess_worker(correct, total, policy)
            on_writing = assess_worker(accepted, written, policy)
            rec = records.get(worker) or WorkerRecord(campaign_id=campaign_id, worker_id=worker)
            rec.golden_correct, rec.golden_total = correct, total
            rec.written_accepted, rec.written_total = accepted, written
            rec.accuracy, rec.p_below = float(on_golden.accuracy), float(on_golden.p_below)
            rec.judgments = int(n)
            # An untrusted verdict is final for the campaign: a lucky streak does not undo it.
            if rec.status in UNTRUSTED:
                s.add(rec)
                continue
            on_answers = WorkerStatus.PROBATION
            # Blocked on the late change point (`CrowdPolicy.blocks_late`) rather than on
            # the whole-record posterior: the answers from that change point on go.
            late_block = False
            row = blind.loc[worker] if blind is not None and worker in blind.index else None
            if row is not None:
                p_blind = float(row["p_blind"])
                if spec.quality.blind_confidence is None:
                    pass  # computed and reported, never acted on
                elif crowd_policy.blocks(
                    p_blind, int(row["answers"])
                ) or crowd_policy.blocks_with_golden(
                    # Or at a lower posterior, with the golden record failing its warning bar.
                    p_blind,
                    int(row["answers"]),
                    on_golden.p_below >= policy.warn_confidence,
                ):
                    on_answers = WorkerStatus.BLOCKED
                elif crowd_policy.blocks_late(
                    float(row["p_late"]),
                    int(row["late_answers"]),
                    int(row["answers"]),
                    bool(row["late_boundary"]),
                    bool(row["has_boundary"]),
                ):
                    on_answers = WorkerStatus.BLOCKED
                    late_block = True
                elif p_blind >= spec.quality.warn_confidence:
                    on_answers = WorkerStatus.WARNED
                elif int(row["answers"]) > 0:
                    on_answers = WorkerStatus.TRUSTED
            golden_status = WorkerStatus(on_golden.status)
            # The golden answers from the worker's change point on, judged alone (None: no
            # credible change point, or not asked for). Only where the veto below cannot
            # undo it: the crowd assessment acted on, its posterior at the base rate or over.
            after_turn = (
                golden_since(s, campaign_id, worker, row, retired, policy)
                if spec.quality.golden_from_drift
                and row is not None
                and spec.quality.blind_confidence is not None
                and float(row["p_blind"]) >= float(row["prior_blind"])
                else None
            )
            if after_turn is not None and after_turn[1].status == "blocked":
                golden_status = WorkerStatus.BLOCKED
            if (
                golden_status == WorkerStatus.BLOCKED
                and row is not None
                and spec.quality.blind_confidence is not None
                and float(row["p_blind"]) < float(row["prior_blind"])
            ):
                # Every answer of theirs says they follow the content (the posterior is
                # below the crowd's base rate): golden items they failed are more likely
                # ambiguous than the worker careless. Measured: the golden rule alone
                # blocked 3 of 60 honest workers on the ambiguous-golden crowd
                # (docs/quality-bench.md).
                golden_status = WorkerStatus.WARNED
            verifier = (
                verifiers.loc[worker]
                if verifiers is not None and worker in verifiers.index
                else None
            )
            if golden_status == WorkerStatus.BLOCKED and verifier is not None:
                # The same for verifiers, whose golden verifications are read twice: if
                # their verification answers, golden ones included, follow the text
                # (`crowdloop.verifier_quality`), their golden misses are slips; else
                # those are judged with the crowd's pooled accuracy on them as the prior
                # (`pooled_golden_policy`), and the Beta rule judges the other golden
                # answers. An honest verifier (93% right) is asked up to six golden
                # verifications at the demo's size, and the campaign's Beta(2, 1) prior
                # blocks at 1 of 4 or 3 of 6 right: 2 of 90 honest workers blocked on
                # the copiers crowd (bench, 1x, 3 seeds), 1 of 30 on the rubber crowd
                # with the first clause alone (seed 0, 1 of 4 right).
                v_correct, v_total = verify_golden.get(worker, (0, 0))
                rest = assess_worker(correct - v_correct, total - v_total, policy)
                follows = float(verifier["p_blind"]) < float(verifier["prior_blind"])
                slips = follows or assess_worker(v_correct, v_total, pooled).status != "blocked"
                if rest.status != "blocked" and slips:
                    golden_status = WorkerStatus.WARNED
            on_verifying = (
                WorkerStatus.BLOCKED if worker in on_demonstrations else WorkerStatus.PROBATION
            )
            status = max(
                (
                    golden_status,
                    WorkerStatus(on_writing.status),
                    on_answers,
                    on_verifying,
                ),
                key=_SEVERITY.__getitem__,
            )
            if status == WorkerStatus.BLOCKED:
                status = fail_status
                if golden_status == WorkerStatus.BLOCKED and on_golden.status == "blocked":
                    rec.block_reason = (
                        f"golden accuracy {on_golden.accuracy:.2f} ({correct}/{total} correct); "
                        f"P(below {policy.min_accuracy}) = {on_golden.p_below:.2f}"
                    )
                elif golden_status == WorkerStatus.BLOCKED and after_turn is not None:
                    start, recent = after_turn
                    rec.block_reason = (
                        f"golden accuracy since {start.isoformat(timespec='seconds')} "
                        f"{recent.accuracy:.2f} ({recent.golden_correct}/{recent.golden_total} "
                        "correct; "
                        f"{correct}/{total} in all); "
                        f"P(below {policy.min_accuracy}) = {recent.p_below:.2f}"
                    )
                    # The answers of the careful start stand, as with the drift exclusion.
                    rec.excluded_from = start
                elif on_writing.status == "blocked":
                    rec.block_reason = (
                        f"texts accepted {on_writing.accuracy:.2f} ({accepted}/{written}); "
                        f"P(below {policy.min_accuracy}) = {on_writing.p_below:.2f}"
                    )
                elif worker in on_demonstrations:
                    rec.block_reason = on_demonstrations[worker][:300]
                elif late_block:
                    assert row is not None
                    late_from = drift_start(s, row, "late_seq")
                    rec.block_reason = (
                        "careless since "
                        f"{late_from.isoformat(timespec='seconds') if late_from else 'the start'}"
                        f": P = {float(row['p_late']):.2f} ({int(row['late_answers'])} of "
                        f"{int(row['answers'])} answers; {blind_evidence(row)})"
                    )[:300]
                    rec.excluded_from = late_from
                else:
                    assert row is not None
                    rec.block_reason = blind_evidence(row)[:300]
                    rec.excluded_from = drift_start(s, row)
                if status in UNTRUSTED:
                    rec.blocked_at = utcnow()
                    result.newly_blocked.append(worker)
            late = (
                drift_start(s, row, "late_seq")
                if status not in UNTRUSTED
                and row is not None
                and spec.quality.blind_confidence is not None
                and spec.quality.on_fail != "warn"
                and crowd_policy.excludes(float(row["p_late"]), bool(row["late_boundary"]))
                else None
            )
            if late is not None:
                # Not a block: the answers from the late change point on are bought again,
                # the worker keeps working and is judged again on what comes next.
                assert row is not None
                status = max(status, WorkerStatus.WARNED, key=_SEVERITY.__getitem__)
                result.excluded_judgments += _exclude_answers(
                    s,
                    campaign_id,
                    worker,
                    late,
                    f"careless since {late.isoformat(timespec='seconds')}: "
                    f"P = {float(row['p_late']):.2f} ({int(row['answers'])} answers)",
                )
            rec.status = status
            s.add(rec)
        result.workers = len(counts)
        s.flush()
        if (
            blind is not None
            and spec.quality.blind_confidence is not None
            and spec.quality.on_fail != "warn"
        ):
            # After the workers' verdicts (a block or the late exclusion takes the held
            # answers over), before the untrusted workers' answers are excluded.
            result.excluded_judgments += apply_probation(s, campaign_id, blind, crowd_policy)[0]
        untrusted = s.exec(
            select(
                WorkerRecord.worker_id, WorkerRecord.block_reason, WorkerRecord.excluded_from
            ).where(
                WorkerRecord.campaign_id == campaign_id,
                col(WorkerRecord.status).in_(UNTRUSTED),
            )
        ).all()
        for worker, reason, since in untrusted:
            # A worker who turned careless keeps the answers of their careful start.
            result.excluded_judgments += _exclude_answers(
                s, campaign_id, worker, since, f"untrusted worker: {reason}"
            )
        # Golden re-asks aimed at suspects (`reask_golden`) are kept off everyone else for
        # that push only: a pair whose aimed answer a block has just excluded goes back to
        # the crowd (`sync.settle_items`), and with its suspects blocked and its spare done
        # nobody could take it (bench, spammy crowd: a round held up to its timeout).
        lift_golden_keep_off(s, campaign_id)
        dynamic = spec.preferences.dynamic_overlap if spec.preferences else None
        result.reopened = reopen_short_comparisons(
            s,
            campaign_id,
            spec.quality.max_requeue_rounds,
            dynamic.min_overlap if dynamic else None,
        )
        # Every blocked worker the marketplace has not confirmed yet, not only the new
        # ones: a block call that failed last time is retried here.
        to_block = list(
            s.exec(
                select(WorkerRecord.worker_id).where(
                    WorkerRecord.campaign_id == campaign_id,
                    WorkerRecord.status == WorkerStatus.BLOCKED,
                    col(WorkerRecord.blocked_on_marketplace).is_(False),
                )
            ).all()
        )
    if to_block:
        if Capability.BLOCK_WORKER in connector.capabilities:
            for worker in to_block:
                # Idempotent on the marketplace: blocking twice changes nothing.
                connector.block_worker(
                    worker, scope=BlockScope.CAMPAIGN, reason="failed quality checks"
                )
                with session_scope() as s:
                    s.execute(
                        update(WorkerRecord)
                        .where(
                            col(WorkerRecord.campaign_id) == campaign_id,
                            col(WorkerRecord.worker_id) == worker,
                        )
                        .values(blocked_on_marketplace=True)
                    )
        else:
            result.warnings.append(
                f"{connector.name} cannot block workers; {len(to_block)} untrusted "
                "worker(s) are excluded on our side only"
            )
    if result.newly_blocked:
        logger.info(
            "%s: %d worker(s) now untrusted (%s)",
            campaign_id,
            len(result.newly_blocked),
            spec.quality.on_fail,
        )
    return result


def _exclude_answers(
    s: Session,
    campaign_id: str,
    worker: str,
    since: datetime | None,
    reason: str,
    *,
    held_too: bool = True,
) -> int:
    """Exclude a worker's answers given at or after ``since`` (None: all of them); how many.

    With ``held_too``, answers held on probation (`apply_probation`) are excluded for this
    reason instead: a verdict on the worker replaces the hold, and is not undone by it."""
    answered = func.coalesce(col(Judgment.submitted_at), col(Judgment.received_at))
    open_rows: ColumnElement[bool] = col(Judgment.excluded).is_(False)
    if held_too:
        open_rows = open_rows | _held_on_probation()
    res = s.execute(
        update(Judgment)
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.worker_id) == worker,
            open_rows,
            *([answered >= since] if since is not None else []),
        )
        .values(excluded=True, exclusion_reason=reason)
    )
    return max(0, cast(CursorResult[Any], res).rowcount or 0)


# The exclusion reason of answers held on probation after the exam (`apply_probation`).
PROBATION = "on probation"


def _held_on_probation() -> ColumnElement[bool]:
    """An answer held on probation (excluded for `PROBATION`, reversibly)."""
    return col(Judgment.excluded).is_(True) & col(Judgment.exclusion_reason).startswith(PROBATION)


def apply_probation(
    s: Session, campaign_id: str, crowd: pd.DataFrame, policy: CrowdPolicy
) -> tuple[int, int]:
    """Hold or release each worker's answers after the exam (`CrowdPolicy.on_probation`);
    (answers newly held, answers released).

    ``crowd``: the crowd assessment indexed by worker. A worker still on probation has
    their answers from the exam's end on excluded for `PROBATION` (review deferred:
    `review_submissions`); one who has cleared gets those answers back (nothing else
    excluded is touched: a block's or the late exclusion's answers stay out). Blocked and
    excluded workers are left alone (their verdict has excluded the held answers for its
    own reason, `_exclude_answers`).

    Why: a worker who passed the exam is judged on their exam, and a sleeper's careless
    answers after it are few (a median of 5-6), often on pairs nobody else answered, so
    the evidence against them comes late or never; an answer that has not earned its
    place waits, and dynamic overlap buys its pair from others meanwhile (their answers
    are also what grades the held ones)."""
    if policy.probation_clear is None or crowd.empty or "boundary_answers" not in crowd:
        return 0, 0
    out = _untrusted(s, campaign_id)
    # Workers with answers held now: only theirs can be released.
    holding = set(
        s.exec(
            select(Judgment.worker_id)
            .where(Judgment.campaign_id == campaign_id, _held_on_probation())
            .distinct()
        ).all()
    )
    held = released = 0
    for worker, row in crowd.iterrows():
        after = int(row["boundary_answers"])
        if after <= 0 or str(worker) in out:
            continue
        if policy.on_probation(float(row["boundary_bf"]), after):
            since = drift_start(s, row, "boundary_seq")
            if since is None:
                continue
            bf = float(row["boundary_bf"])
            p_turned = 1.0 / (1.0 + math.exp(-min(max(bf, -50.0), 50.0))) if bf == bf else 0.5
            held += _exclude_answers(
                s,
                campaign_id,
                str(worker),
                since,
                f"{PROBATION} since {since.isoformat(timespec='seconds')}: "
                f"{after} answers after the exam, P(turned) = {p_turned:.2f}",
                held_too=False,
            )
        elif str(worker) in holding:
            res = s.execute(
                update(Judgment)
                .where(
                    col(Judgment.campaign_id) == campaign_id,
                    col(Judgment.worker_id) == str(worker),
                    _held_on_probation(),
                )
                .values(excluded=False, exclusion_reason=None)
            )
            released += max(0, cast(CursorResult[Any], res).rowcount or 0)
    return held, released


def reopen_short_comparisons(
    s: Session, campaign_id: str, max_requeue_rounds: int, min_overlap: int | None = None
) -> int:
    """Send back to the crowd the collected comparisons that excluded answers left short
    (within the same re-queue allowance as `sync.settle_items`).

    The settle step re-queues only items still out; a pair collected in an earlier round
    whose answers came from a worker blocked later kept no trusted answer at all and, with
    dynamic overlap starting at 1, no verdict (measured: 26 of 315 pairs on the bench's
    same-side crowd once constant answerers were blocked). Only items with an excluded
    answer: a pair an AI judge decided has no human answers and is not short.

    With dynamic overlap (``min_overlap`` given) nothing goes back from here: dynamic
    overlap's next step (`preferences.extend_uncertain`, the same round) asks again about
    every collected pair whose verdict is under the target, a pair left with no trusted
    answer included (its verdict pooled from the prompt's other pairs), and only those.
    Re-buying every pair a blocked worker had emptied cost 17-25% of the baseline's
    spend on the bench's spammy and same-side crowds (docs/quality-bench.md), much of it
    on pairs whose pooled verdict was already sure. Golden pairs are never bought again
    then: they have no verdict to lose. Without dynamic overlap a pair goes back whenever
    it has fewer trusted answers than its overlap.
    """
    if min_overlap is not None:
        return 0
    lost = (
        select(Judgment.item_id)
        .where(Judgment.campaign_id == campaign_id, col(Judgment.excluded).is_(True))
        .distinct()
    )
    items = s.exec(
        select(Item.id, Item.overlap, Item.pushes, Item.extensions).where(
            Item.campaign_id == campaign_id,
            Item.state == ItemState.COLLECTED,
            Item.stage == Stage.COMPARE.value,
            col(Item.id).in_(lost),
        )
    ).all()
    if not items:
        return 0
    trusted = answer_counts(s, campaign_id, trusted_only=True)
    short = [
        item_id
        for item_id, overlap, pushes, extensions in items
        if trusted.get(item_id, 0) < overlap and pushes - extensions <= max_requeue_rounds
    ]
    return move_items(s, short, ItemState.PENDING, from_=ItemState.COLLECTED, strict=False)


# A worker whose crowd posterior of careless answering is under this is judged careful:
# golden re-asks by the workers still unjudged (`reask_golden`) count them out.
CLEARED_BLIND = 0.05


def reask_golden(
    campaign_id: str,
    extended: int,
    share: float,
    by_unjudged: bool = False,
    golden_to: str | None = None,
) -> int:
    """Golden pairs for a dynamic-overlap round: one more answer on ``golden_count(extended,
    share)`` collected golden pairs (fewest answers first; retired ones never), so golden
    items keep flowing to workers after the first round, the exam and a trusted start.
    With `by_unjudged`, that many times the share of the workers not blocked who are still
    unjudged (crowd posterior of careless answering at least `CLEARED_BLIND`), rounded up:
    golden answers are evidence about the workers, and a worker every answer already calls
    careful gains little from one more (golden re-asks were 4-6% of plain overlap 3's cost
    on the bench's crowds, docs/quality-bench.md).

    Why: golden pairs are planned once and all go out in the first round; the rounds after
    it asked only real pairs, so a worker who turned careless later (a sleeper, or anyone
    past the exam) met no known answer again (measured on the bench's sleepers crowd with
    the exam: 10 of 12 sleepers answered no production golden pair). The worker who gets
    the pair has not seen it: a golden pair's copies share one group.

    ``golden_to`` (None: the campaign's `dynamic_overlap.golden_to`) "unchecked", on the
    marketplaces in `PER_TASK_EXCLUSION`: the pairs go to the suspects (`golden_targets`),
    `GOLDEN_PER_SUSPECT` each at most, kept off everyone else but one spare worker; the
    count is the campaign's golden re-asks so far at ``share`` of all its extensions, less
    those already asked, so what a round with few suspects does not spend is left for a
    later one. Why: most pairs are extended right after the first round, when a worker
    who turns careless later has not turned yet (bench, sleepers crowd, seed 0: 43 of 48
    golden re-asks were then, 12 of them to sleepers, about their share of the answers).
    "anyone": the first taker, at this round's count.
    """
    from crowdloop.stages.plan import golden_count

    if golden_count(extended, share) <= 0:
        return 0
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        crowd, audit = assess_campaign_crowd(s, campaign_id, crowd_policy_from(spec.quality))
        retired = set(audit.loc[audit["retired"].astype(bool), "item"]) if len(audit) else set()
        dynamic = spec.preferences.dynamic_overlap if spec.preferences else None
        if golden_to is None:
            golden_to = dynamic.golden_to if dynamic is not None else "anyone"
        aim = golden_to == "unchecked" and spec.connector.name in PER_TASK_EXCLUSION
        if aim:
            made, asked = _extensions(s, campaign_id)
            want = golden_count(made, share) - asked
        else:
            want = golden_count(extended, share)
        if by_unjudged and want > 0:
            want = math.ceil(want * _unjudged_share(s, campaign_id, crowd))
        suspects: list[str] = []
        if aim and want > 0:
            suspects = golden_targets(s, campaign_id, crowd)[: math.ceil(want / GOLDEN_PER_SUSPECT)]
            want = min(want, GOLDEN_PER_SUSPECT * len(suspects))
        if want <= 0:
            return 0
        candidates = s.exec(
            select(Item.id).where(
                Item.campaign_id == campaign_id,
                Item.stage == Stage.COMPARE.value,
                Item.state == ItemState.COLLECTED,
                col(Item.is_golden).is_(True),
            )
        ).all()
        answers, trusted = answer_tallies(s, campaign_id)  # one walk of the judgments
        ordered = sorted(
            (i for i in candidates if i not in retired), key=lambda i: (answers.get(i, 0), i)
        )
        kept_off: dict[str, list[str] | None] = {}
        if aim:
            kept_off = _kept_off(s, campaign_id, crowd, set(suspects), ordered, want)
            ordered = list(kept_off)
        chosen = ordered[:want]
        if aim:
            keep_off(s, {item_id: kept_off.get(item_id) or [] for item_id in chosen})
        by_overlap: dict[int, list[str]] = defaultdict(list)
        for item_id in chosen:
            by_overlap[trusted.get(item_id, 0) + 1].append(item_id)
        return ask_again(s, by_overlap)


# Marketplaces that keep a named worker off one task (and only that task): golden re-asks
# are aimed there. Prolific's exclusions hold for a whole batch; Scale has none.
PER_TASK_EXCLUSION = frozenset({"simulator", "toloka"})
# A worker is a golden re-ask's target only with at least this many comparison answers
# since their last golden one (exam answers count as golden): a worker just checked gains
# little from one more.
UNCHECKED_MIN = 3
# A worker is a suspect when a late change point explains their latest answers this much
# (log Bayes factor, `CrowdPolicy.recent_min_answers`) better than careful answering
# throughout. Bench, sleepers crowd, seed 0: after the first round (sleepers not turned
# yet) 11 workers were over 1, all honest or noisy, and at 3 golden pairs each they took
# the whole budget; over 2, 1 honest. After the second round, over 2: 3 of the 5 were
# sleepers.
SUSPECT_BF = 2.0
# Golden re-asks a suspect may be aimed at in one round (their pairs open to every suspect).
GOLDEN_PER_SUSPECT = 3
# Workers a re-asked golden pair is kept off, at most: beyond it the pair goes to anyone
# (a task's exclusion list is sent with it).
MAX_AIM_EXCLUDED = 1_000


def _extensions(s: Session, campaign_id: str) -> tuple[int, int]:
    """(extensions of real comparisons, of golden ones) so far: every `ask_again` counts
    one on each item it moves."""
    made = dict(
        s.exec(
            select(Item.is_golden, func.coalesce(func.sum(Item.extensions), 0))
            .where(Item.campaign_id == campaign_id, Item.stage == Stage.COMPARE.value)
            .group_by(col(Item.is_golden))
        ).all()
    )
    return int(made.get(False, 0)), int(made.get(True, 0))


def _untrusted(s: Session, campaign_id: str) -> set[str]:
    """The campaign's blocked and excluded workers."""
    return set(
        s.exec(
            select(WorkerRecord.worker_id).where(
                WorkerRecord.campaign_id == campaign_id,
                col(WorkerRecord.status).in_(list(UNTRUSTED)),
            )
        ).all()
    )


def golden_targets(s: Session, campaign_id: str, crowd: pd.DataFrame) -> list[str]:
    """The suspects golden re-asks are aimed at, the most suspect first: workers not
    blocked (nor excluded) with at least `UNCHECKED_MIN` comparison answers since their
    last golden one, whose latest answers a late change point to content-blind answering
    explains better than careful answering throughout (the crowd assessment's
    ``recent_bf`` over `SUSPECT_BF`); by it, then by the answers since their last golden
    one, both highest first.

    Why: a worker who turns careless late (a sleeper) gives few answers after turning,
    most on real pairs whose verdicts are weak evidence, too few for the drift scan; a
    golden answer is strong evidence (a random click is right on a third), a wrong one
    keeps the worker a suspect for the next round and a right one clears them (a
    sequential test)."""
    if crowd.empty:
        return []
    out = _untrusted(s, campaign_id)
    answered = (
        sa_select(col(Judgment.worker_id), col(Judgment.id), col(Item.is_golden))
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(
            col(Judgment.campaign_id) == campaign_id,
            col(Judgment.status) == JudgmentStatus.VALID,
            col(Judgment.worker_id).is_not(None),
            col(Item.kind) == "compare",
        )
    )
    # Answers since the last golden one, in the order they were stored (ids only grow).
    last: dict[str, int] = {}
    given: dict[str, list[int]] = defaultdict(list)
    for worker, jid, golden in s.execute(answered.execution_options(yield_per=EVIDENCE_CHUNK)):
        given[worker].append(int(jid))
        if golden:
            last[worker] = max(last.get(worker, 0), int(jid))
    unchecked = {w: sum(j > last.get(w, 0) for j in ids) for w, ids in given.items()}
    recent = _recent_bf(crowd)
    ranked = [
        w
        for w, n in unchecked.items()
        if n >= UNCHECKED_MIN and w not in out and recent.get(w, -np.inf) > SUSPECT_BF
    ]
    return sorted(ranked, key=lambda w: (-recent[w], -unchecked[w], w))


def _recent_bf(crowd: pd.DataFrame) -> dict[str, float]:
    """worker -> the crowd assessment's ``recent_bf`` (-inf where it has none)."""
    values = (
        crowd["recent_bf"].astype(float)
        if "recent_bf" in crowd.columns
        else pd.Series(-np.inf, index=crowd.index)
    )
    return dict(zip(crowd["worker"].astype(str), values.fillna(-np.inf), strict=True))


def _kept_off(
    s: Session,
    campaign_id: str,
    crowd: pd.DataFrame,
    aimed: set[str],
    items: list[str],
    want: int,
) -> dict[str, list[str] | None]:
    """Golden pairs for the ``aimed`` workers, in the order of ``items``, up to ``want``:
    each pair one of them has not answered, mapped to every worker of the crowd but the
    aimed and one more not blocked who has not answered it either (the spare, the lowest
    posterior of careless answering: so the pair can be taken whoever is blocked
    meanwhile; a pair nobody may take would hold the round up to its timeout). A pair's
    own answerers are kept off it by its group anyway. Over `MAX_AIM_EXCLUDED` workers
    kept off, a pair is kept off nobody (None)."""
    out = _untrusted(s, campaign_id)
    workers = crowd.sort_values(["p_blind", "worker"])["worker"].astype(str).tolist()
    seen: dict[str, set[str]] = defaultdict(set)
    for item_id, worker in s.execute(
        sa_select(col(Judgment.item_id), col(Judgment.worker_id)).where(
            col(Judgment.campaign_id) == campaign_id, col(Judgment.item_id).in_(items)
        )
    ):
        seen[item_id].add(str(worker))
    chosen: dict[str, list[str] | None] = {}
    for item_id in items:
        if len(chosen) >= want:
            break
        if aimed <= seen[item_id]:
            continue
        spare = [w for w in workers if w not in aimed and w not in out and w not in seen[item_id]]
        rest = sorted(set(workers) - aimed - set(spare[:1]))
        chosen[item_id] = rest if rest and len(rest) <= MAX_AIM_EXCLUDED else None
    return chosen


def unjudged_workers(crowd: pd.DataFrame) -> set[str]:
    """Workers of a crowd assessment not yet cleared: posterior of careless answering at
    least `CLEARED_BLIND`."""
    if crowd.empty:
        return set()
    return set(crowd.loc[crowd["p_blind"] >= CLEARED_BLIND, "worker"].astype(str))


def cleared_workers(crowd: pd.DataFrame) -> set[str]:
    """Workers of a crowd assessment cleared: posterior of careless answering under
    `CLEARED_BLIND` (every other assessed worker is in `unjudged_workers`)."""
    if crowd.empty:
        return set()
    return set(crowd.loc[crowd["p_blind"] < CLEARED_BLIND, "worker"].astype(str))


def campaign_crowd(s: Session, campaign_id: str, quality: QualitySpec) -> pd.DataFrame:
    """The campaign's crowd assessment under its quality settings (the round's own: cached
    for the same evidence by `assess_campaign_crowd`)."""
    crowd, _ = assess_campaign_crowd(s, campaign_id, crowd_policy_from(quality))
    return crowd


def campaign_unjudged(s: Session, campaign_id: str, quality: QualitySpec) -> set[str]:
    """`unjudged_workers` of the campaign's crowd assessment."""
    return unjudged_workers(campaign_crowd(s, campaign_id, quality))


def _unjudged_share(s: Session, campaign_id: str, crowd: pd.DataFrame) -> float:
    """Of the workers with a comparison answer who are not blocked (or excluded), the share
    whose posterior of careless answering is at least `CLEARED_BLIND`."""
    if crowd.empty:
        return 1.0
    out = _untrusted(s, campaign_id)
    active = crowd[~crowd["worker"].isin(out)]
    if active.empty:
        return 0.0
    return float((active["p_blind"] >= CLEARED_BLIND).mean())


def review_submissions(
    campaign_id: str, stages: list[Stage], connector: Connector, *, final: bool = False
) -> int:
    """Accept trusted work and reject a blocked worker's, once per submission.

    Exam answers are accepted whatever the grade: failing an exam is its outcome, not
    misconduct, and the work was asked for. With `quality.hold_unjudged_work` a round's
    review leaves the comparison work of workers not yet judged for later; `final` (after
    the last round) reviews what is still held, so nobody waits for the marketplace's
    auto-accept to be paid.
    """
    if Capability.REVIEW not in connector.capabilities:
        return 0
    reviewed = 0
    held: set[str] = set()
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        if spec.quality.hold_unjudged_work and spec.quality.reject_untrusted_work and not final:
            # Work of workers not yet judged waits; a blocked worker's is decided now.
            held = campaign_unjudged(s, campaign_id, spec.quality) - _untrusted(s, campaign_id)
    for stage in stages:
        found = batch_ref(campaign_id, stage)
        if found is None:
            continue
        _, ref, _ = found
        reject_untrusted = spec.quality.reject_untrusted_work and stage != Stage.EXAM
        comment = "failed control tasks" if stage != Stage.EXAM else ""
        # Held: a comparison answer of a worker the crowd assessment has not judged yet.
        holding = held if stage == Stage.COMPARE else set()
        unreviewed = (
            sa_select(
                col(Judgment.id),
                col(Judgment.external_id),
                col(Judgment.excluded),
                # Compared by the database: the driver's 0/1 (or bool), no enum per row.
                col(Judgment.status) == JudgmentStatus.VALID,
                col(Judgment.worker_id),
                # Held on probation (`apply_probation`): left for later, paid at the end.
                func.coalesce(_held_on_probation(), False),
            )
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                col(Judgment.campaign_id) == campaign_id,
                # This marketplace's work only (an AI judge's verdicts are not its).
                col(Judgment.connector) == connector.name,
                col(Item.stage) == stage.value,
                col(Judgment.review).is_(None),
                col(Judgment.id) > bindparam("after"),
            )
            .order_by(col(Judgment.id))
            .limit(REVIEW_CHUNK)
        )
        # A chunk at a time by id (keyset): the first round of a 10^6-judgment campaign has
        # a million unreviewed submissions, and holding their ids at once cost memory.
        after = 0
        while True:
            # Collections resume between chunks: what a chunk's connector call leaves in a
            # reference cycle is not kept through the whole review.
            with collector.paused():
                with session_scope() as s:
                    chunk = _chunk_rows(s, unreviewed, {"after": after})
                if not chunk:
                    break
                after = chunk[-1][0]  # in id order
                sent, outcome = _decide(chunk, holding, reject_untrusted, comment, final)
                if not outcome:
                    continue  # every row held
                # Validated as one list (pydantic's loop, not a model constructor call per row:
                # ~1.6 against ~3.1 us a decision).
                decisions = _DECISIONS.validate_python(sent)
                try:
                    connector.review(ref, decisions)
                except ConnectorError as exc:
                    logger.warning("%s: review failed, will retry next round: %s", campaign_id, exc)
                    return reviewed
                _write_reviews(outcome)
                reviewed += len(decisions)
    return reviewed


def _decide(
    chunk: list[Sequence[Any]],
    holding: set[str],
    reject_untrusted: bool,
    comment: str,
    final: bool = False,
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """A review chunk's decisions (as `ReviewDecision` fields, in id order) and the
    (id, review) of each row decided now, in id order, for the write-back; rows of the
    ``holding`` workers, and rows held on probation, are left for later (the probation's
    are accepted in the ``final`` review: nobody convicted the worker). Rows: (id,
    submission, excluded, valid, worker[, on probation])."""
    sent: list[dict[str, Any]] = []
    outcome: list[tuple[int, str]] = []
    for jid, ext, excluded, valid, worker, *rest in chunk:
        probation = bool(rest and rest[0])
        if worker in holding or (probation and not final):
            continue
        if not valid:
            # Unreadable answers are left to a person: the worker may not be at fault.
            outcome.append((jid, "skipped"))
            continue
        accept = probation or not (excluded and reject_untrusted)
        sent.append(
            {
                "submission_id": ext,
                "accept": accept,
                "comment": comment if excluded and not probation else "",
            }
        )
        outcome.append((jid, "accepted" if accept else "rejected"))
    return sent, outcome


_DECISIONS: TypeAdapter[list[ReviewDecision]] = TypeAdapter(list[ReviewDecision])


def _chunk_rows(s: Session, statement: Executable, params: dict[str, Any]) -> list[Sequence[Any]]:
    """The statement's rows at once (a small result): on SQLite the driver's tuples, as
    `db.driver_rows` reads them (SQLAlchemy's rows cost more than the fetch), elsewhere
    SQLAlchemy's Core rows."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        with conn.execute(statement, params) as result:
            return cast(list[Sequence[Any]], result.cursor.fetchall())
    return list(conn.execute(statement, params).all())


def _write_reviews(outcome: list[tuple[int, str]]) -> None:
    """Set `review` on a chunk's rows (`outcome`: id and value, in id order) in one UPDATE.

    The rows are named by runs of consecutive ids (`id BETWEEN first AND last`: ids are
    integers, so a run has exactly its own rows); a sync page's submissions get
    consecutive ids, so a chunk is usually a few runs. The value is a CASE naming only the
    ids of the less common values (most of a chunk is accepted). This replaced three
    UPDATE ... id IN (...) listing every row (~10 µs a row at 10^6 judgments, a third of it
    SQLAlchemy expanding the lists). The ids are written into the statement as integer
    literals (they are the database's own integers, read back as `int`), the review values
    bound: an ORM UPDATE with expanding IN lists cost ~4x the database's own work in
    SQLAlchemy's statement building and compilation.
    """
    if not outcome:
        return
    by_review: dict[str, list[int]] = defaultdict(list)
    runs: list[list[int]] = []
    for jid, review in outcome:
        by_review[review].append(jid)
        if runs and runs[-1][1] + 1 == jid:
            runs[-1][1] = jid
        else:
            runs.append([jid, jid])
    common = max(by_review, key=lambda r: len(by_review[r]))
    values = {"common": common}
    whens = []
    for n, (review, ids) in enumerate(r for r in by_review.items() if r[0] != common):
        values[f"r{n}"] = review
        whens.append(f"WHEN id IN ({_int_list(ids)}) THEN :r{n} ")
    value = f"CASE {''.join(whens)}ELSE :common END" if whens else ":common"
    # Past a few runs per row listing the ids is shorter than naming the runs.
    rows = (
        " OR ".join(f"id BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in runs)
        if len(runs) * 8 <= len(outcome)
        else f"id IN ({_int_list(jid for jid, _ in outcome)})"
    )
    with session_scope() as s:
        # Every chunk's statement is new text: not kept in the engine's compiled cache
        # (its 500 entries of such statements held ~9 MiB at 10^6 judgments).
        s.execute(
            text(f"UPDATE {Judgment.__tablename__} SET review = {value} WHERE {rows}"),
            values,
            execution_options={"compiled_cache": None},
        )


def _int_list(ids: Iterable[int]) -> str:
    """``1,2,3``: integers only (``int`` of each), so nothing but digits reaches the SQL."""
    return ",".join(map(str, map(int, ids)))
