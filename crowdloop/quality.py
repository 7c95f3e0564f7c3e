"""Worker quality from golden (known-answer) tasks.

A worker's accuracy on golden tasks gets a ``Beta(prior_correct, prior_incorrect)`` prior;
after ``correct`` of ``total`` golden answers the posterior is
``Beta(prior_correct + correct, prior_incorrect + total - correct)``. Decisions use the
posterior probability that the accuracy is below ``min_accuracy`` (``p_below``) rather than
the raw hit rate, so one unlucky answer early on does not block an honest worker and a lucky
streak (2/2) does not read as accuracy 1.0.

Status, in order of precedence:
    probation  fewer than ``min_golden`` golden answers: no decision yet, never blocked;
    blocked    p_below >= block_confidence;
    warned     p_below >= warn_confidence;
    trusted    otherwise.

Measured (exact binomial sums, spammer accuracy 1/3 as on a 3-way left/right/tie golden
pair, honest accuracy 0.92): with the default ``block_confidence=0.8`` one assessment after
8 golden answers blocks 91% of spammers and 0.2% of honest workers. At 0.9 it would block
only 74% of spammers after 8 answers (it needs <= 3 correct; 4/8 gives p_below 0.85) and
93% after 12, which is why the default is 0.8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import betainc

from crowdloop.allocator import heap_temporaries, release_free_memory
from crowdloop.codes import side_codes

__all__ = ["GoldenPolicy", "WorkerAssessment", "WorkerStatus", "assess_worker", "assess_workers"]

WorkerStatus = Literal["trusted", "probation", "warned", "blocked"]


@dataclass(frozen=True)
class GoldenPolicy:
    """Thresholds of the golden-set assessment (see the module docstring)."""

    prior_correct: float = 2.0
    prior_incorrect: float = 1.0
    min_golden: int = 4
    min_accuracy: float = 0.7
    block_confidence: float = 0.8
    warn_confidence: float = 0.6

    def __post_init__(self) -> None:
        if self.prior_correct <= 0 or self.prior_incorrect <= 0:
            raise ValueError("Beta prior parameters must be > 0")
        if self.min_golden < 0:
            raise ValueError("min_golden must be >= 0")
        if not 0 < self.min_accuracy < 1:
            raise ValueError("min_accuracy must be in (0, 1)")
        if not 0 < self.warn_confidence <= self.block_confidence <= 1:
            raise ValueError("need 0 < warn_confidence <= block_confidence <= 1")


@dataclass(frozen=True)
class WorkerAssessment:
    status: WorkerStatus
    accuracy: float  # posterior mean accuracy
    p_below: float  # P(accuracy < min_accuracy | golden answers)
    golden_total: int
    golden_correct: int


def assess_worker(correct: int, total: int, policy: GoldenPolicy | None = None) -> WorkerAssessment:
    """Assess one worker from ``correct`` right answers out of ``total`` golden tasks."""
    policy = policy or GoldenPolicy()
    status, accuracy, p_below = _assess(
        np.array([correct], dtype=np.int64), np.array([total], dtype=np.int64), policy
    )
    return WorkerAssessment(
        status=status[0],
        accuracy=float(accuracy[0]),
        p_below=float(p_below[0]),
        golden_total=int(total),
        golden_correct=int(correct),
    )


def assess_workers(frame: pd.DataFrame, policy: GoldenPolicy | None = None) -> pd.DataFrame:
    """Assess every worker from one row per golden answer.

    Args:
        frame: columns ``worker`` and ``correct`` (bool: the answer matched the golden one).

    Returns:
        One row per worker, sorted by worker: ``worker, golden_total, golden_correct,
        accuracy, p_below, status``.
    """
    policy = policy or GoldenPolicy()
    missing = {"worker", "correct"} - set(frame.columns)
    if missing:
        raise ValueError(f"golden answer frame lacks columns {sorted(missing)}")
    if frame["correct"].isna().any():
        raise ValueError("correct must not be missing")
    answered = frame["correct"].astype(bool)
    counts = answered.groupby(frame["worker"]).agg(["size", "sum"])
    golden_total = counts["size"].to_numpy(np.int64)
    golden_correct = counts["sum"].to_numpy(np.int64)
    status, accuracy, p_below = _assess(golden_correct, golden_total, policy)
    return pd.DataFrame(
        {
            "worker": counts.index.to_numpy(),
            "golden_total": golden_total,
            "golden_correct": golden_correct,
            "accuracy": accuracy,
            "p_below": p_below,
            "status": status,
        }
    )


def _assess(
    correct: np.ndarray, total: np.ndarray, policy: GoldenPolicy
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised status, posterior mean accuracy and p_below."""
    if np.any(total < 0) or np.any(correct < 0) or np.any(correct > total):
        raise ValueError("need 0 <= correct <= total")
    a = policy.prior_correct + correct
    b = policy.prior_incorrect + (total - correct)
    accuracy = a / (a + b)
    # The Beta posterior's CDF (scipy.stats.beta.cdf's kernel; scipy.stats is ~22 MiB of
    # imports a campaign does not otherwise need).
    p_below = betainc(a, b, policy.min_accuracy)
    status = np.select(
        [
            total < policy.min_golden,
            p_below >= policy.block_confidence,
            p_below >= policy.warn_confidence,
        ],
        ["probation", "blocked", "warned"],
        default="trusted",
    ).astype(object)
    return status, accuracy, p_below


# --- every answer as evidence: content-blind workers, drift, ambiguous golden items --------


@dataclass(frozen=True)
class CrowdPolicy:
    """Thresholds of the crowd-wide assessment (``assess_crowd``).

    Every comparison a worker gives is evidence, read against two models of that worker:

    * **content-dependent** ("judges"): the answer follows the truth with the worker's
      accuracy ``q``. The truth of a golden pair is its answer with probability
      ``clear_cut``; of a real pair it is P(left better) from a Bradley-Terry fit of the
      *other* workers' answers (cross-fitted over ``folds`` groups of workers, so a worker's
      own answers never vouch for them; a pair nobody else could speak to is 1/2 and says
      nothing). ``q`` is integrated over ``accuracy_grid`` and the worker's tie share over
      ``tie_grid`` (a careful worker says tie sometimes, never always), each worker with
      one (q, tie share) for all their answers.
    * **content-blind**: the answers are draws from the worker's own fixed distribution
      over left/right/tie, whatever the pair (random clicking, always left, always tie, a
      group sharing one answer): a random clicker (each label 1/3) or any fixed
      distribution (Dirichlet(1, 1, 1) marginal likelihood), the crowd's share of random
      clickers among its blind workers learned from it (``blind_uniform``).

    The log Bayes factor of the two, with a prior share of content-blind workers learned
    from the whole crowd (empirical Bayes, ``Beta(*prior_blind)`` hyperprior), gives each
    worker one posterior ``p_blind``: three answers move it a little, thirty a lot, and
    nobody waits behind a ``min_golden`` wall. A tie on a clear-cut golden pair is a wrong
    answer (the golden answer is the truth with probability ``clear_cut``), at most
    ``golden_tie`` of a careful worker's mistakes. ``blocks`` is the decision rule: the
    posterior at ``blind_confidence`` on at least ``min_answers`` answers.

    **Drift**: a change point in the worker's answers in time order (`_change_point_scan`):
    careful up to some answer and content-blind from it on (at least ``drift_min_answers``
    after it), against careful throughout with one accuracy and tie share for every
    answer, so the careful start is what the careless end is measured against. Workers
    who turned have their own crowd-learned share, beside the blind-from-the-start one.
    ``drift_since`` is the most probable change point; the quality check excludes only
    the answers from it on.

    **Ambiguous golden items**: a golden pair on which the workers who look honest
    (``p_blind < 0.5``) agree with its answer less than ``retire_below`` of the time, with
    posterior probability ``retire_confidence`` (Beta(1, 1) prior), with at least
    ``retire_min_answers`` such answers, is retired: it stops counting as evidence about
    anyone.
    """

    blind_confidence: float = 0.95
    # Nobody is blocked on the posterior with fewer answers than this (golden, exam and
    # real pairs together): the bar's own line (a worker with 10+ answers is judged), and
    # at 3-9 answers a run of honest ties or hard pairs can still read as blind.
    min_answers: int = 10
    # The content-dependent model's accuracies. Its lowest value is what a careful worker
    # may be: at 0.72 a worker right on half the clear pairs (a colluding group's shared
    # coin, a random clicker's sides) was explained as careful-but-noisy at about 0.1
    # nats an answer against content-blind, so 20 answers never added up (1 of 20
    # colluders over 0.5 on the bench's saved campaigns, seeds 0-1; graded against the
    # hidden truth instead of the others' verdicts, 4 of 20 over 0.95). From 0.8 a coin
    # costs ~0.1 nats an answer more, and a careful worker's hard pairs still cost nothing
    # (their verdicts are near 1/2). Measured offline on main's saved bench campaigns (all
    # eleven crowds, seeds 0-1, the posterior at three points of each campaign;
    # `bench/diagnose_blocking.py`): bad workers with 10+ answers over 0.95 or on the
    # golden rule 95 -> 110 of 168 (colluders 2 -> 7 of 20, hard 4 -> 6, ambiguous golden
    # 4 -> 8, spammy 21 -> 24), honest 0 of 548 either way, the highest honest posterior
    # 0.60 -> 0.74 (ambiguous golden). In the bench itself, seeds 0-2: 153 -> 179 of 251
    # bad workers blocked, 0 -> 1 of 1,236 honest (docs/quality-bench.md, block10).
    accuracy_grid: tuple[float, ...] = (0.8, 0.9, 0.97)
    clear_cut: float = 0.97
    # The careful worker's tie share, integrated over like q (it was the worker's own
    # share, shrunk and capped at 0.2: a plug-in fitted on the very answers it judged, so
    # a sleeper's random ties set their own price; on a grid, a careful start with few
    # ties makes a later run of them cost).
    tie_grid: tuple[float, ...] = (0.03, 0.08, 0.2)
    prior_blind: tuple[float, float] = (1.0, 4.0)
    folds: int = 5
    # 5 lets a change point leave 5 answers after it (docs/quality-bench.md, sleep10b): more
    # sleepers with short careless stretches caught offline, but on the ambiguous-golden
    # crowd an honest worker's posterior rose over the crowd's base rate early in the
    # campaign, which lets the golden rule block them: not the default.
    drift_min_answers: int = 8
    # The late change point that aims golden re-asks (`recent_bf`): content-blind for at
    # least this many last answers. Never a block: only who is asked a golden pair next.
    recent_min_answers: int = 3
    # A worker who turned keeps the answers before the change point only when those answers
    # are this much (log Bayes factor) better explained as careful than as blind.
    drift_careful_start: float = 3.0
    retire_below: float = 0.75
    # 0.95 at 3 answers: an item goes when all 3 honest-looking workers disagree with it.
    # At 0.9 it went on 2 of 3, which random clickers not yet caught (they look honest at
    # first) often make of a clear item: on the spammy crowd, seeds 0-3, that retired the
    # items that catch them (7 of 63 bad workers blocked, against 14 at 0.95; accuracy
    # 0.844 against 0.869), for 1 honest worker blocked on the ambiguous-golden crowd
    # instead of 4 of 120 (docs/quality-bench.md, "Golden items retired at 3 answers").
    retire_confidence: float = 0.95
    # 3, the overlap golden pairs are asked at: at 4 no golden item was ever retired in a
    # campaign that does not re-ask them.
    retire_min_answers: int = 3
    temperatures: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
    # On a clear-cut golden pair a careful worker's "tie" is a mistake: at most this share
    # of their mistakes (1 - q) are ties; before, it was as likely as on a real pair (the
    # worker's tie share, up to 20%), which explained a random clicker's ties away.
    # Measured offline on saved bench campaigns (docs/quality-bench.md): random clickers
    # caught on the spammy crowd 4 -> 11 of 32, no honest worker more on hard or ambiguous
    # golden pairs.
    # None: the worker's tie share on real pairs.
    golden_tie: float | None = 1 / 3
    # The same on real pairs, weighted by how clear the others' verdict makes the pair.
    # Off: it caught two more random clickers but convicted an honest worker on the
    # ambiguous-golden crowd and lost the colluders it caught.
    tie_by_clarity: bool = False
    # The content-blind model's share of random clickers (answers drawn evenly over
    # left/right/tie, a point mass) beside any fixed distribution over them (Dirichlet(1, 1,
    # 1): a constant answerer, a group's shared coin): its prior, learned from the crowd
    # (empirical Bayes over the workers who look blind from the start, worth
    # ``blind_uniform_strength`` pseudo-workers). None: the Dirichlet alone, as before.
    # See `_blind_log_ml` and `_uniform_share`. Opt-in (0.5 is what was measured): random
    # clickers caught 24 -> 35 of 72 offline, but honest workers on hard pairs and ambiguous
    # golden items, whose answers are spread too, came near a block (3 of 60 blocked on
    # that crowd on the bench against 1; docs/quality-bench.md, sleep10b).
    blind_uniform: float | None = None
    blind_uniform_strength: float = 1.0
    # A worker's answers from a late change point on (``recent_min_answers`` or more after
    # it) are excluded, the worker neither blocked nor warned, at this posterior of having
    # turned there (`_late_posterior`, ``p_late``). None: never. Lower than a block's bar:
    # a wrong exclusion costs a re-ask, a wrong block a worker.
    late_confidence: float | None = None
    # The late change point's prior mass on a known regime boundary: the end of a worker's
    # leading run of ``drift_min_answers`` or more golden answers (the exam). Uniform over
    # every candidate, that boundary was one of ~15-20 and paid log 15-20 nats for it, about
    # all a sleeper's 5-6 careless production answers say. Read by ``p_late`` only.
    boundary_prior: float = 0.5
    # Exclude at a late change point anywhere, not only at the known boundary. Off: on the
    # bench without an exam it excluded few sleepers' answers (3 of 35 sleepers, seeds 0-2)
    # and its runs blocked 4 of 90 honest workers on the ambiguous-golden crowd against
    # main's 0 (docs/quality-bench.md, sleep12).
    late_anywhere: bool = False
    # Block (not only exclude) a worker at this posterior of having turned content-blind at
    # a late change point anywhere (``p_late``, the boundary's prior included when there is
    # one), with at least ``late_block_min_answers`` answers from it on and
    # ``min_answers`` in all; their answers from the change point on are excluded, the
    # careful start's kept. A worker with a known boundary (the exam's end) never away from
    # it: under the exam the crowd's learned share of late turns is high (0.2-0.25, the
    # sleepers'), and an honest worker's change point elsewhere reached 0.92 (bench,
    # sleepers seed 0); at it only with ``late_block_at_boundary``. None: never (the
    # default before block13). See ``blocks_late``.
    late_block_confidence: float | None = None
    late_block_min_answers: int = 6
    # Also block at the known boundary (the exam's end), where the late exclusion
    # (``late_confidence``) already acts on the same posterior. Off: under the exam,
    # blocking there blocked more sleepers (42 of 108 against main's 25 of 180) but their
    # careless share of the verdict judgments was no lower (5.5% against 4.2%; likely: a
    # blocked sleeper's work goes to the sleepers not yet caught, where an excluded one
    # keeps working and keeps having their answers excluded; docs/quality-bench.md, block13).
    late_block_at_boundary: bool = False
    # Block at this lower posterior when the worker's golden record also fails the golden
    # policy's warning bar (``p_below`` at ``warn_confidence``, retired items left out,
    # no ``min_golden`` wall): two kinds of evidence against the worker, each short of a
    # block alone. None: never (the default before block13). See ``blocks_with_golden``.
    golden_blind_confidence: float | None = None
    # Probation after a known boundary (the exam's end, ``boundary_answers`` >= 0): the
    # worker's answers from it on count only once they show the worker careful: at least
    # ``recent_min_answers`` of them, and the posterior that the worker turned
    # content-blind at that boundary, under an even prior (the boundary's own log Bayes
    # factor ``boundary_bf``, not weighted by the crowd's learned share of turns), under
    # this. None: no probation. See ``on_probation``. Why an even prior: the crowd's
    # learned share of late turns is what let sleepers through (0.06 in the runs where
    # their careless share was 9%, 0.24 where it was 1.6%; docs/quality-bench.md,
    # block13): passing the exam is evidence about the exam, not about what comes after
    # it. Why the boundary alone (not ``late_bf``, every late change point): an honest
    # worker with 40 answers after the exam has some 3-answer stretch that looks random,
    # and the late change points' marginal held 3 honest workers' whole production
    # (docs/quality-bench.md, exam14); a turn later than the exam is the late
    # exclusion's business.
    probation_clear: float | None = None

    def __post_init__(self) -> None:
        if not 0.5 < self.blind_confidence < 1:
            raise ValueError("blind_confidence must be in (0.5, 1)")
        if not self.accuracy_grid or not all(0.5 < q < 1 for q in self.accuracy_grid):
            raise ValueError("accuracy_grid values must be in (0.5, 1)")
        if not self.tie_grid or not all(0 < t < 0.5 for t in self.tie_grid):
            raise ValueError("tie_grid values must be in (0, 0.5)")
        if self.folds < 2:
            raise ValueError("folds must be >= 2")
        if self.min_answers < 1:
            raise ValueError("min_answers must be >= 1")
        if self.late_confidence is not None and not 0 < self.late_confidence < 1:
            raise ValueError("late_confidence must be in (0, 1)")
        if self.late_block_confidence is not None and not 0.5 < self.late_block_confidence < 1:
            raise ValueError("late_block_confidence must be in (0.5, 1)")
        if self.golden_blind_confidence is not None and not (
            0.5 < self.golden_blind_confidence < 1
        ):
            raise ValueError("golden_blind_confidence must be in (0.5, 1)")
        if self.late_block_min_answers < 1:
            raise ValueError("late_block_min_answers must be >= 1")
        if self.probation_clear is not None and not 0 < self.probation_clear < 1:
            raise ValueError("probation_clear must be in (0, 1)")

    def blocks(self, p_blind: float, answers: int) -> bool:
        """The decision rule: a high posterior of content-blind answering, on enough answers."""
        return p_blind >= self.blind_confidence and answers >= self.min_answers

    def blocks_with_golden(self, p_blind: float, answers: int, golden_fails: bool) -> bool:
        """The posterior at the lower bar, with the golden record failing its warning bar."""
        return (
            self.golden_blind_confidence is not None
            and golden_fails
            and p_blind >= self.golden_blind_confidence
            and answers >= self.min_answers
        )

    def blocks_late(
        self,
        p_late: float,
        late_answers: int,
        answers: int,
        at_boundary: bool = False,
        has_boundary: bool = False,
    ) -> bool:
        """The late block: the latest answers turned content-blind, on enough of them; for
        a worker with a known regime boundary (an exam), at that boundary only, and only
        with ``late_block_at_boundary``."""
        return (
            self.late_block_confidence is not None
            and p_late >= self.late_block_confidence
            and late_answers >= self.late_block_min_answers
            and answers >= self.min_answers
            and (not has_boundary or (at_boundary and self.late_block_at_boundary))
        )

    def on_probation(self, boundary_bf: float, boundary_answers: int) -> bool:
        """The worker's answers after their known boundary (``boundary_answers`` of them;
        negative: no boundary) have not cleared them yet: too few to read a turn in, or
        a turn to content-blind answering at the boundary not unlikely enough under an
        even prior (``boundary_bf``, `assess_crowd`'s column; NaN: not read, held)."""
        if self.probation_clear is None or boundary_answers <= 0:
            return False
        if boundary_answers < self.recent_min_answers or np.isnan(boundary_bf):
            return True
        return bool(_sigmoid(np.array([boundary_bf]))[0] >= self.probation_clear)

    def excludes(self, p_late: float, at_boundary: bool) -> bool:
        """The answers-only rule: a worker's latest answers look careless enough to re-ask
        (at the known boundary only, unless ``late_anywhere``)."""
        return (
            self.late_confidence is not None
            and p_late >= self.late_confidence
            and (at_boundary or self.late_anywhere)
        )


_LABELS = {"left": 0, "right": 1, "tie": 2}


def cross_fit_delta(
    frame: pd.DataFrame,
    folds: int,
    worker_weight: pd.Series | None = None,
    row_weight: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Score difference (left - right) per real comparison from the other workers' answers
    only; sigmoid of it is P(left better).

    ``frame``: ``worker, left, right, label`` (left/right/tie). Workers are split into
    ``folds`` groups by a hash of their id; each group's comparisons are scored by a
    Bradley-Terry fit of the other groups' (weighted by ``worker_weight`` when given, or
    answer by answer by ``row_weight``, one per row of ``frame``). ``rows`` (a boolean
    mask of ``frame``'s rows): only those comparisons, as if ``frame[rows]`` and
    ``row_weight[rows]`` were given, without the caller holding those copies through the
    fits (``assess_crowd``'s real answers); one value per such row is returned.

    Each fold's fit is `bradley_terry`'s on the other folds' rows (``tol=1e-5``), from
    one sort of all the rows by pair (`bradley_terry.fit_sorted_rows`): a fold's training
    rows in that order are its rows sorted by pair, ties in row order, the order
    `bradley_terry`'s weighted collapse sums them in, so each pair's wins are the same
    floats and so are the fits. Per answer only the sorted rows' pair number,
    row, side order, fold and the lower side's half wins are kept (11 bytes, and the
    weight in that order), where each fold's `bradley_terry` call made ~100 bytes a
    training row of copies and sort beside ~40 of the columns: the quality check's peak
    at 10^6 answers was there.
    """
    import zlib

    from crowdloop.aggregation.bradley_terry import SELF_COMPARISON, fit_sorted_rows, run_flags

    if rows is not None:
        frame = pd.DataFrame(
            {c: frame[c].array[rows] for c in ("worker", "left", "right", "label")}
        )
        if row_weight is not None:
            row_weight = np.asarray(row_weight)[rows]
    p = np.zeros(len(frame))
    if frame.empty:
        return p
    left, right, items = side_codes(frame["left"], frame["right"])
    n_items, size = len(items), len(frame)
    if left.min() < 0 or right.min() < 0:
        raise ValueError(f"item codes must be in [0, {n_items})")  # a missing side
    if np.any(left == right):
        raise ValueError(SELF_COMPARISON)
    # The left side's half wins (2 won, 1 tie, 0 lost).
    halves = frame["label"].map({"left": 2.0, "right": 0.0, "tie": 1.0}).to_numpy(np.float64)
    if np.isnan(halves).any():
        raise ValueError("outcome values must be in [0, 1] (1 left won, 0 right won, 0.5 tie)")
    half = halves.astype(np.int8)
    del halves
    # The rows sorted by unordered pair, ties in row order: (pair code, row) packed in one
    # int64 and sorted (a unique key, so any sort keeps the rows' order), as
    # `bradley_terry` sorts them.
    key = np.minimum(left, right).astype(np.int64)
    key *= n_items
    key += np.maximum(left, right)
    index_bits = max(size - 1, 1).bit_length()
    if (n_items * n_items) << index_bits < 2**63:
        key <<= index_bits
        key |= np.arange(size, dtype=np.int64)
        key.sort()
        by_pair = (key & ((1 << index_bits) - 1)).astype(np.int32)
        key >>= index_bits
    else:
        by_pair = np.argsort(key, kind="stable").astype(np.int32)
        key = key[by_pair]
    starts = run_flags(key)
    pair_key = key[starts]
    del key
    pair_of = np.cumsum(starts, dtype=np.int32)
    pair_of -= 1
    del starts
    # Per sorted row: whether its left side is the pair's higher item, and the lower
    # item's half wins.
    flipped = (left > right)[by_pair]
    del left, right
    low_half = half[by_pair]
    del half
    np.subtract(2, low_half, out=low_half, where=flipped)
    workers, codes = _unique_str(frame["worker"])
    fold_of_worker = np.array(
        [zlib.crc32(w.encode()) % folds for w in workers], dtype=np.min_scalar_type(folds)
    )
    fold = fold_of_worker[codes[by_pair]]
    del codes
    weight: np.ndarray | None = None
    if row_weight is not None:
        weight = np.asarray(row_weight, dtype=np.float64)
    elif worker_weight is not None:
        weight = frame["worker"].map(worker_weight).fillna(1.0).to_numpy(dtype=np.float64)
    del frame, row_weight  # with ``rows``, this function's own copies
    if weight is not None:
        if not (np.all(np.isfinite(weight)) and weight.min() >= 0.0):
            raise ValueError("weights must be finite and >= 0")
        weight = weight[by_pair]  # in the sorted rows' order, as the folds read them
    low, high = np.divmod(pair_key, n_items)
    per_fold = np.bincount(fold, minlength=folds)
    for k in range(folds):
        if per_fold[k] in (0, size):  # no answers to score, or none to score them by
            continue
        train = fold != k
        # The fold's training rows, gathered for the fit alone (it drops them before
        # solving). `bradley_terry`'s defaults but a loose tolerance: these scores only
        # grade answers, a 1e-5 change is no evidence.
        scores = fit_sorted_rows(
            n_items,
            pair_key,
            pair_of[train],
            low_half[train] * 0.5,  # float64: 0, 0.5 or 1, exactly
            None if weight is None else weight[train],
            prior=1.0,
            tol=1e-5,
            max_iter=10_000,
        ).scores
        held = ~train
        del train
        pair = pair_of[held]
        # scores[left] - scores[right]: of the pair's lower item minus its higher one, or
        # that negated (exactly) where left is the higher.
        delta = scores[low[pair]] - scores[high[pair]]
        del pair
        np.negative(delta, out=delta, where=flipped[held])
        p[by_pair[held]] = delta
        del held, delta
    return p


def _unique_str(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values.astype(str), return_inverse=True)``; on a categorical column
    from its categories and codes, without a string per row."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        uniques, inverse = np.unique(values.astype(str).to_numpy(), return_inverse=True)
        return uniques, inverse
    row_codes = values.cat.codes.to_numpy()
    present = np.unique(row_codes)
    names = np.asarray(values.cat.categories.astype(str), dtype=object)[present]
    uniques, inverse = np.unique(names, return_inverse=True)
    lookup = np.zeros(len(values.cat.categories), dtype=np.int64)
    lookup[present] = inverse
    return uniques, lookup[row_codes]


# Rows per block when the (answers x accuracy grid) log-likelihood is computed: each of its
# temporaries is then a block's size, not the campaign's. Under the mmap threshold
# (`allocator.MMAP_THRESHOLD`, 1 MiB) with the grid's 9 columns (590 KiB), so the blocks
# reuse the heap's memory: at 65,536 rows (4.7 MiB) every temporary of every block was
# mapped and faulted in afresh (docs/at-scale.md, cpu16).
_LL_BLOCK = 8_192


def _dirichlet_log_ml(counts: np.ndarray) -> np.ndarray:
    """Log marginal likelihood of label sequences under Dirichlet(1, ..., 1) (one per
    column: left/right/tie here, accept/reject for verifiers); rows of counts."""
    from scipy.special import gammaln

    n, k = counts.sum(axis=-1), counts.shape[-1]
    return gammaln(k) - gammaln(n + k) + gammaln(counts + 1.0).sum(axis=-1)


def _blind_log_ml(counts: np.ndarray, uniform: float | None) -> np.ndarray:
    """Log marginal likelihood of label counts (rows) under the content-blind model: with
    weight ``uniform`` a random clicker (each of the k labels 1/k), else any fixed
    distribution over them (`_dirichlet_log_ml`).

    Why: the Dirichlet alone pays for learning a distribution a random clicker does not
    have (about 2 nats on 20 answers spread evenly, 1 on 6), which a careful model with a
    low accuracy then undercuts; a constant answerer still gets the Dirichlet's fit."""
    dirichlet = _dirichlet_log_ml(counts)
    if uniform is None:
        return dirichlet
    clicker = counts.sum(axis=-1) * -np.log(counts.shape[-1])
    return np.logaddexp(np.log(uniform) + clicker, np.log1p(-uniform) + dirichlet)


def _uniform_share(counts: np.ndarray, blind: np.ndarray, policy: CrowdPolicy) -> float:
    """The content-blind model's share of random clickers, learned from the workers who
    look blind from the start (``blind``: their posterior of it; ``counts``: their label
    counts), by EM, with ``blind_uniform_strength`` pseudo-workers at the policy's share:
    a crowd whose blind workers click at random learns to expect that, a crowd of constant
    answerers or of a colluding group (never a tie) learns the Dirichlet."""
    assert policy.blind_uniform is not None
    u = policy.blind_uniform
    clicker = counts.sum(axis=-1) * -np.log(counts.shape[-1])
    dirichlet = _dirichlet_log_ml(counts)
    for _ in range(50):
        a, b = np.log(u) + clicker, np.log1p(-u) + dirichlet
        r = np.exp(a - np.logaddexp(a, b))
        k = policy.blind_uniform_strength
        new = float((k * policy.blind_uniform + (blind * r).sum()) / (k + blind.sum()))
        new = min(max(new, 1e-3), 1 - 1e-3)
        if abs(new - u) < 1e-6:
            return new
        u = new
    return u


def _judge_log_lik(
    label: np.ndarray,
    p_left: np.ndarray,
    tie: np.ndarray,
    grid: np.ndarray,
    clarity: np.ndarray | None = None,
    mistake_tie: float | None = None,
) -> np.ndarray:
    """`_judge_log_lik_block` a block of rows at a time (elementwise, so the same values)."""
    out = np.empty((label.size, grid.size * tie.shape[1]))
    for at in range(0, label.size, _LL_BLOCK):
        rows = slice(at, at + _LL_BLOCK)
        out[rows] = _judge_log_lik_block(
            label[rows],
            p_left[rows],
            tie[rows],
            grid,
            None if clarity is None else clarity[rows],
            mistake_tie,
        )
    return out


def _clarity(clear: np.ndarray, p_left: np.ndarray, policy: CrowdPolicy) -> np.ndarray:
    """How clear-cut each pair is for `_judge_log_lik` (1 on clear golden pairs)."""
    return np.where(clear, 1.0, np.abs(2 * p_left - 1) if policy.tie_by_clarity else 0.0)


def _judge_log_lik_per_worker(
    label: np.ndarray,
    p_left: np.ndarray,
    tie: np.ndarray | _PairTie,
    grid: np.ndarray,
    clarity: np.ndarray,
    policy: CrowdPolicy,
    use: np.ndarray,
    wcode: np.ndarray,
    n_workers: int,
) -> np.ndarray:
    """The sum over each worker's used answers of `_judge_log_lik` (workers x columns), a block
    of rows at a time: the same sums as over the whole (answers x grid) array (np.add.at
    adds rows in order either way), without it (24 bytes an answer at 10^6 answers, for
    each temperature tried)."""
    out = np.zeros((n_workers, grid.size * tie.shape[1]))
    for at in range(0, label.size, _LL_BLOCK):
        rows = slice(at, at + _LL_BLOCK)
        ll = _judge_log_lik_block(
            label[rows], p_left[rows], tie[rows], grid, clarity[rows], policy.golden_tie
        )
        ll[~use[rows]] = 0.0
        _add_per_worker(out, wcode[rows], ll)
    return out


def _add_per_worker(out: np.ndarray, wcode: np.ndarray, values: np.ndarray) -> None:
    """``np.add.at(out, wcode, values)`` (rows of values summed per worker), a bincount
    per column: the same sums up to the order of the additions, several times faster."""
    for column in range(out.shape[1]):
        out[:, column] += np.bincount(wcode, values[:, column], out.shape[0])


@dataclass(frozen=True)
class _RealAnswers:
    """What a temperature changes in `_judge_log_lik_per_worker`'s sums, split from what
    it does not (without ``tie_by_clarity``).

    On a real pair the careful worker's answer is a tie with the tie share ``t`` and else
    a side with ``(1 - t) * p_side(q)``; the log of that product is ``log(1 - t) +
    log(p_side(q))``, so a worker's sum over their (q, t) columns is a sum over t (the
    tie shares, fixed) plus a sum over q (the sides, which the temperature moves), and the
    golden pairs' terms do not depend on the temperature at all. Each temperature then
    costs one log per real side answer and accuracy value (3 columns), where it cost the
    whole (answers x 9 columns) log-likelihood with its clarity mix (measured: 14 such
    passes were a quarter of `assess_crowd`'s CPU). The sums equal the whole ones up to
    rounding (log of a product against the sum of logs; the product never reaches the
    1e-12 floor there: t >= min(tie_grid), 1 - t >= 2 (1 - t_own) / (others + 2), and
    p_side >= 1 - max(accuracy_grid))."""

    fixed: np.ndarray  # workers x (q, t) columns: golden pairs, and real pairs' tie shares
    picks_left: np.ndarray  # per real side answer: it chose left
    delta: np.ndarray  # its pair's cross-fitted score difference
    wcode: np.ndarray  # its worker

    @classmethod
    def of(
        cls,
        label: np.ndarray,
        gl: np.ndarray,
        tie: np.ndarray | _PairTie,
        grid: np.ndarray,
        clear: np.ndarray,
        policy: CrowdPolicy,
        use: np.ndarray,
        wcode: np.ndarray,
        n_workers: int,
        real: np.ndarray,
        delta: np.ndarray,
    ) -> _RealAnswers:
        golden = ~real
        fixed = _judge_log_lik_per_worker(
            label[golden],
            gl,  # P(left) of the golden rows only, in row order
            tie[golden],
            grid,
            clear[golden].astype(np.float64),
            policy,
            use[golden],
            wcode[golden],
            n_workers,
        )
        # The tie-share part of the real pairs, a block at a time (each block's
        # temporaries are 3 columns of its rows).
        real_rows = np.flatnonzero(real & use)
        tie_part = np.zeros((n_workers, tie.shape[1]))
        for at in range(0, real_rows.size, _LL_BLOCK):
            rows = real_rows[at : at + _LL_BLOCK]
            t = tie[rows]
            _add_per_worker(
                tie_part,
                wcode[rows],
                np.where(label[rows, None] == 2, np.log(t), np.log1p(-t)),
            )
        fixed += np.tile(tie_part, grid.size)  # column i * T + j gets tie column j
        side = (label != 2) & use
        return cls(
            fixed=fixed,
            picks_left=label[side & real] == 0,
            delta=delta[side[real]],
            wcode=wcode[side & real],
        )

    def per_worker(self, temperature: float, grid: np.ndarray, ties: int) -> np.ndarray:
        """The sums of `_judge_log_lik_per_worker` at this temperature."""
        p = _sigmoid(temperature * self.delta)
        chosen = np.where(self.picks_left, p, 1 - p)  # P(the side answered is better)
        side = np.zeros((self.fixed.shape[0], grid.size))
        for at in range(0, chosen.size, _LL_BLOCK):
            rows = slice(at, at + _LL_BLOCK)
            # q * chosen + (1 - q) * (1 - chosen), the block's rows x accuracy values.
            p_side = (1 - grid)[None, :] + chosen[rows, None] * (2 * grid - 1)[None, :]
            _add_per_worker(side, self.wcode[rows], np.log(p_side))
        return self.fixed + np.repeat(side, ties, axis=1)


def _judge_log_lik_block(
    label: np.ndarray,
    p_left: np.ndarray,
    tie: np.ndarray,
    grid: np.ndarray,
    clarity: np.ndarray | None = None,
    mistake_tie: float | None = None,
) -> np.ndarray:
    """log P(answer | content-dependent, accuracy q, tie share) per comparison (rows) and
    (q, tie share) (columns, q-major: column ``i * T + j`` is ``grid[i]`` with tie column j).

    ``p_left``: P(left is the better side) (NaN for a golden tie, see below); ``tie``: the
    tie probability per row and tie-share column (rows x T). A golden pair whose answer is
    tie (``p_left`` NaN) is answered tie with probability q. ``clarity`` (0..1 per row) is
    how clear-cut the pair is: on a clear pair a careful worker's tie is one of their
    mistakes, at most ``mistake_tie * (1 - q)`` likely; on a close one it is the worker's
    tie share ``tie``; in between, the mix of the two.
    """
    p = p_left[:, None, None]
    q = grid[None, :, None]
    t = tie[:, None, :]
    lab = label[:, None, None]
    if clarity is not None and mistake_tie is not None:
        c = clarity[:, None, None]
        t = (1 - c) * t + c * np.minimum(t, mistake_tie * (1 - q))
    golden_tie_row = np.isnan(p)
    p = np.where(golden_tie_row, 0.5, p)
    p_side = np.where(lab == 0, p * q + (1 - p) * (1 - q), (1 - p) * q + p * (1 - q))
    prob = np.where(lab == 2, t, (1 - t) * p_side)
    prob = np.where(golden_tie_row, np.where(lab == 2, q, (1 - q) / 2), prob)
    prob = np.broadcast_to(prob, (label.size, grid.size, tie.shape[1]))
    return np.log(np.maximum(prob, 1e-12)).reshape(label.size, -1)


def _ordered_log_lik(
    rows: np.ndarray,
    order: np.ndarray,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray | _PairTie, np.ndarray],
    grid: np.ndarray,
    mistake_tie: float | None,
) -> np.ndarray:
    """`_judge_log_lik_block` of the answers at positions ``rows`` of the time ``order``;
    ``columns``: label, p_left, tie and clarity per answer."""
    label, p_left, tie, clarity = (c[order[rows]] for c in columns)
    return _judge_log_lik_block(label, p_left, tie, grid, clarity, mistake_tie)


def assess_crowd(
    frame: pd.DataFrame, policy: CrowdPolicy | None = None, *, iterations: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One posterior per worker from all their comparisons; and the golden-item audit.

    Args:
        frame: one row per comparison answer: ``worker``, ``item`` (pair id), ``left``,
            ``right`` (response ids), ``label`` (left/right/tie), ``golden`` (the golden
            answer, or None for a real pair) and ``time`` (sortable; answer order).

    Returns:
        (workers, golden_items). ``workers``: one row per worker with ``answers``,
        ``golden_total``, ``golden_correct`` (retired items left out), ``n_left``,
        ``n_right``, ``n_tie``, ``agreement`` (mean probability the others' verdicts gave
        the side the worker chose, on real pairs with a verdict), ``accuracy`` (posterior
        mean q if content-dependent), ``log_bf`` (content-blind vs dependent, all answers),
        ``p_blind`` (posterior of careless answering: blind from the start, or from a change
        point on), ``drift_since`` (the time of the first answer after the most probable
        change point, when the posterior says the worker turned rather than was blind from
        the start), ``drift_seq`` (that answer's ``seq``, when the frame has the column: the
        judgment id), ``prior_blind`` (the crowd's learned share of careless workers, both
        kinds), ``prior_drift`` (of those who turned) and ``recent_bf`` (the log Bayes
        factor of the likeliest change point leaving ``recent_min_answers`` or more after
        it against careful throughout, -inf on fewer answers: how suspect the worker's
        latest answers are, which golden re-asks are aimed by). ``golden_items``: ``item, golden,
        answers, agree, split, p_below, retired`` for every golden pair answered.
    """
    policy = policy or CrowdPolicy()
    needed = {"worker", "item", "left", "right", "label", "golden", "time"}
    if missing := needed - set(frame.columns):
        raise ValueError(f"comparison frame lacks columns {sorted(missing)}")
    keep = frame["label"].isin(list(_LABELS)).to_numpy()
    # A copy only when some answer is unreadable (the evidence holds only readable ones).
    frame = frame if keep.all() else frame[keep]
    frame = frame.reset_index(drop=True)
    grid = np.asarray(policy.accuracy_grid, dtype=np.float64)
    # Narrow codes (labels 0-2, workers and pairs under 2^31): the same values, a quarter to
    # an eighth of the int64 arrays' memory for each of these per-answer arrays.
    label = frame["label"].map(_LABELS).to_numpy(np.int8)
    is_golden = frame["golden"].notna().to_numpy()
    # The golden answer as a label code (-1: none, or not a label), not an object array.
    golden_code = (
        frame["golden"].map(_LABELS).astype("float64").fillna(-1.0).to_numpy().astype(np.int8)
    )
    workers, wide_code = _unique_str(frame["worker"])
    wcode = wide_code.astype(np.int32)
    del wide_code
    n_w = len(workers)
    counts = np.zeros((n_w, 3))
    np.add.at(counts, (wcode, label), 1.0)
    tie_grid = np.asarray(policy.tie_grid, dtype=np.float64)
    # q of each (q, tie share) column of the log-likelihoods.
    q_of_column = np.repeat(grid, tie_grid.size)
    item_codes = pd.factorize(frame["item"])[0].astype(np.int32)

    # Each answer's P(left better) at the chosen temperature: made by the temperature loop
    # below, after the cross-fit (every row is real or golden, so each try sets them all).
    p_left: np.ndarray | None = None
    gl = np.where(
        golden_code == 0,
        policy.clear_cut,
        np.where(golden_code == 1, 1 - policy.clear_cut, np.nan),
    )
    real = ~is_golden
    clear = is_golden & ~np.isnan(gl)
    gl = gl[is_golden]  # only the golden rows' are read
    # int32 positions: the time order is alive through both iterations.
    # The row numbers as the tie-break (the index is 0..n-1 here): the index's own array
    # would be materialised and cached on it, 8 bytes an answer alive through the call.
    rows = np.arange(len(frame), dtype=np.int32)
    order = np.lexsort((rows, frame["time"].to_numpy())).astype(np.int32)
    del rows

    golden_frame = frame.loc[is_golden, ["item", "worker", "label", "golden"]]
    if isinstance(golden_frame["item"].dtype, pd.CategoricalDtype):
        # The golden pairs' own categories (the same order, so the audit's groupby is the
        # same): its groupby builds a hash table of the categories, a Python string each
        # for Arrow ones, which over every pair's id (~340k at 10^6 judgments) stayed
        # alive with the frame's categories through the next iteration.
        golden_frame["item"] = golden_frame["item"].cat.remove_unused_categories()
    retired: set[str] = set()
    p_blind_w = np.full(n_w, 0.2)
    # Per answer, the probability it was given content-blind (a blind worker's every
    # answer; a drifting worker's from the change point on): the next iteration weighs the
    # answers by 1 - it, so a sleeper's careful start still vouches for verdicts and ties.
    blind_answer: np.ndarray | None = None
    audit = pd.DataFrame()
    prior = 0.2
    prior_drift = 0.05
    chosen_temperature = 1.0
    # The blind model's share of random clickers (`_blind_log_ml`), learned below when asked.
    uniform = policy.blind_uniform
    for _ in range(iterations):
        # What the last iteration freed goes back to the OS before the cross-fit's
        # temporaries: else they land above the holes and the heap's resident size grows
        # (with the row numbers above, 24.5 MiB of the call's RSS rise at 10^6 answers in
        # one sampled run, 205.1 -> 180.6 MiB).
        release_free_memory()
        trust = None if blind_answer is None else 1.0 - blind_answer
        blind_answer = None  # remade below; one per-answer array less alive meanwhile
        # The last iteration's choice is remade below: not alive under the cross-fit, where
        # the check's peak is (a float an answer, 9.4 MiB at 10^6 answers).
        p_left = None
        tie = _PairTie(item_codes, label, tie_grid, trust)
        # The real rows picked inside: their columns and weights are not held here
        # through every fold's fit.
        delta = cross_fit_delta(frame, policy.folds, row_weight=trust, rows=real)
        use = np.ones(len(frame), dtype=bool)
        if retired:
            use &= ~_in_set(frame["item"], retired)
        used_counts = np.zeros((n_w, 3))
        np.add.at(used_counts, (wcode[use], label[use]), 1.0)
        log_blind = _blind_log_ml(used_counts, uniform)
        # Scores fitted on a few answers per pair are shrunk towards each other; the
        # temperature that best explains the crowd's answers (marginal likelihood of the
        # two-model mixture) undoes that, so a clear pair reads as clear.
        best = -np.inf
        split = (
            None
            if policy.tie_by_clarity  # then a real pair's tie share moves with the temperature
            else _RealAnswers.of(label, gl, tie, grid, clear, policy, use, wcode, n_w, real, delta)
        )
        for temperature in policy.temperatures:
            p_try = np.full(len(frame), 0.5)
            p_try[real] = _sigmoid(temperature * delta)
            p_try[is_golden] = gl
            # Per worker only: the (answers x columns) log-likelihood is summed a block at
            # a time, never held whole for each temperature tried.
            per_try = (
                _judge_log_lik_per_worker(
                    label, p_try, tie, grid, _clarity(clear, p_try, policy), policy, use, wcode, n_w
                )
                if split is None
                else split.per_worker(temperature, grid, tie_grid.size)
            )
            judge_try = _logmeanexp(per_try)
            fit = float(
                np.logaddexp(np.log(prior) + log_blind, np.log(1 - prior) + judge_try).sum()
            )
            if fit > best:
                best, p_left, per_worker, log_judge = fit, p_try, per_try, judge_try
                chosen_temperature = temperature
            del p_try
        if p_left is None:
            raise ValueError("no temperature gave a finite fit of the crowd's answers")
        # The cross-fit and its split are this iteration's only (p_left keeps the chosen
        # temperature's): freed before the scan and the next iteration's cross-fit, which
        # held them alive beside their own (per real answer: the scores, and the split's
        # choice, score and worker of each side answer).
        del split, delta
        log_bf = log_blind - log_judge
        # The chosen temperature's per-answer log-likelihood, a worker's answers at a time
        # (the scan reads them so): never the whole (answers x columns) array, 72 bytes an
        # answer and a time-ordered copy of it, which made assess_crowd's peak at 10^6.
        answers_ll = partial(
            _ordered_log_lik,
            order=order,
            columns=(label, p_left, tie, _clarity(clear, p_left, policy)),
            grid=grid,
            mistake_tie=policy.golden_tie,
        )
        scanned = _change_point_scan(
            wcode[order],
            label[order],
            answers_ll,
            use[order],
            n_w,
            policy.drift_min_answers,
            policy.recent_min_answers,
            uniform,
            is_golden[order],
            policy.boundary_prior,
        )
        (
            drift_bf,
            drift_at,
            careful_start,
            turned,
            recent_bf,
            late_bf,
            late_at,
            boundary_at,
            boundary_bf,
            boundary_row,
            boundary_answers,
        ) = scanned
        del scanned
        del answers_ll
        # Empirical Bayes, one share per kind of careless worker: blind from the start, and
        # turned at a change point. Apart, so a crowd with many random clickers does not
        # make drift more likely a priori (one shared share convicted an honest worker
        # whose last answers fell on hard pairs, in a crowd with four random clickers).
        a, b = policy.prior_blind
        for _ in range(20):
            joint = np.stack(
                [
                    np.full(n_w, np.log(1 - prior - prior_drift)),
                    np.log(prior) + log_bf,
                    np.log(prior_drift) + drift_bf,
                ]
            )
            post = np.exp(joint - np.logaddexp.reduce(joint, axis=0))
            prior, prior_drift = (
                float(np.clip((a - 1 + post[k].sum()) / (a + b - 2 + n_w), 0.01, 0.45))
                for k in (1, 2)
            )
        p_blind_w = post[1] + post[2]
        if uniform is not None:
            uniform = _uniform_share(used_counts, post[1], policy)
        # Of a worker's "bad" posterior, the share that is blind from the start against
        # turned at the change point.
        from_start = post[1] / np.maximum(p_blind_w, 1e-300)
        turned_at = np.empty(len(frame))
        turned_at[order] = turned
        blind_answer = np.clip(
            p_blind_w[wcode] * (from_start[wcode] + (1 - from_start[wcode]) * turned_at), 0, 1
        )
        del turned, turned_at  # two floats an answer, else alive through the next cross-fit
        honest_looking = pd.Series(p_blind_w < 0.5, index=workers)
        audit = _audit_golden(golden_frame, honest_looking, policy)
        retired = set(audit.loc[audit["retired"], "item"])

    if p_left is None:
        raise ValueError("assess_crowd needs at least one iteration")
    post_q = _softmax(per_worker)
    accuracy = post_q @ q_of_column
    # The time and id columns as the frame holds them (views, no copies): the time-ordered
    # row i is the frame's row order[i]. Each indexed at a few rows per worker below; a
    # time-ordered copy of each was 16 bytes an answer at the check's peak.
    time_col = frame["time"].to_numpy()
    seq_col = frame["seq"].to_numpy() if "seq" in frame.columns else None
    p_late, prior_late = _late_posterior(log_bf, late_bf, prior, policy)
    # Turned rather than blind from the start, by the posterior (the crowd's two shares
    # included): a random clicker whose first answers happened to be right is not a
    # careful worker who turned, and keeps none of their answers.
    # And only when the answers before the change point are themselves clearly careful:
    # a random clicker's lucky first answers are no careful start (measured on the spammy
    # crowd: three random clickers would have kept their first 4-10 answers).
    drifted = [
        i >= 0 and from_start[w] < 0.5 and careful_start[w] <= -policy.drift_careful_start
        for w, i in enumerate(drift_at)
    ]
    since = np.array(
        [time_col[order[i]] if d else None for d, i in zip(drifted, drift_at, strict=True)],
        dtype=object,
    )
    # The judgment id of the first answer of the drift (when the frame carries ids, as
    # `comparison_evidence` does): the quality check excludes from it on.
    since_seq = np.array(
        [
            int(seq_col[order[i]]) if d and seq_col is not None else None
            for d, i in zip(drifted, drift_at, strict=True)
        ],
        dtype=object,
    )
    late_ok = late_at >= 0
    late_since = np.where(late_ok, time_col[order[np.maximum(late_at, 0)]], np.nan)
    # Used answers from the late change point on (the rows are in time order), in int32
    # positions (the int64 ones were 16 bytes an answer more at the check's peak).
    ordered_w = wcode[order]
    from_late = np.arange(len(order), dtype=np.int32) >= late_at.astype(np.int32)[ordered_w]
    late_answers = np.bincount(ordered_w, use[order] & late_ok[ordered_w] & from_late, n_w).astype(
        np.int64
    )
    del ordered_w, from_late
    late_seq = np.array(
        [
            int(seq_col[order[i]]) if ok and seq_col is not None else None
            for ok, i in zip(late_ok, late_at, strict=True)
        ],
        dtype=object,
    )
    boundary_seq = np.array(
        [int(seq_col[order[r]]) if r >= 0 and seq_col is not None else None for r in boundary_row],
        dtype=object,
    )
    g_use = is_golden & use
    g_correct = g_use & (label == golden_code)
    agree = np.where(label == 0, p_left, np.where(label == 1, 1 - p_left, np.nan))
    has_verdict = real & (np.abs(p_left - 0.5) > 0.05) & (label != 2)
    out = pd.DataFrame(
        {
            "worker": workers,
            "answers": counts.sum(axis=1).astype(np.int64),
            "golden_total": np.bincount(wcode, g_use, n_w).astype(np.int64),
            "golden_correct": np.bincount(wcode, g_correct, n_w).astype(np.int64),
            "n_left": counts[:, 0].astype(np.int64),
            "n_right": counts[:, 1].astype(np.int64),
            "n_tie": counts[:, 2].astype(np.int64),
            "agreement": np.bincount(wcode, np.where(has_verdict, agree, 0.0), n_w)
            / np.maximum(np.bincount(wcode, has_verdict, n_w), 1),
            "agreement_n": np.bincount(wcode, has_verdict, n_w).astype(np.int64),
            "accuracy": accuracy,
            "log_bf": log_bf,
            "p_blind": p_blind_w,
            "drift_since": since,
            "drift_seq": since_seq,
            "recent_bf": recent_bf,
            "p_late": p_late,
            "late_since": late_since,
            "late_seq": late_seq,
            "late_answers": late_answers,
            # The late change point is the known boundary (the exam's end).
            "late_boundary": late_ok & (late_at == boundary_at),
            # The worker has a known boundary at all (a leading golden run: the exam).
            "has_boundary": boundary_at >= 0,
            "prior_late": prior_late,
            # The late change point's log Bayes factor against careful throughout (the
            # boundary's prior included), which ``p_late`` weighs by the crowd's share.
            "late_bf": late_bf,
            # The first answer after the worker's leading run of ``drift_min_answers`` or
            # more golden answers (the exam) as its ``seq`` (None: no such run, no ``seq``
            # column, or nothing after it), and how many used answers follow it (-1: no
            # such run). Unlike ``has_boundary``, also with fewer than
            # ``recent_min_answers`` after it (``CrowdPolicy.on_probation``).
            "boundary_seq": boundary_seq,
            "boundary_answers": boundary_answers,
            # The change point at that boundary alone (careful before it, content-blind
            # from it on) against careful throughout, as a log Bayes factor (NaN: fewer
            # than ``recent_min_answers`` answers after it, or no boundary).
            "boundary_bf": boundary_bf,
            "prior_blind": prior + prior_drift,
            "prior_drift": prior_drift,
            "temperature": chosen_temperature,
        }
    )
    return out, audit


def _late_posterior(
    log_bf: np.ndarray, late_bf: np.ndarray, prior_blind: float, policy: CrowdPolicy
) -> tuple[np.ndarray, float]:
    """Per worker, the posterior that their answers turned content-blind at a late change
    point (``late_bf``: leaving ``recent_min_answers`` or more after it, marginalised),
    against careful throughout and blind from the start (``log_bf`` at the crowd's share
    ``prior_blind``); and the crowd's learned share of such workers (empirical Bayes, the
    same hyperprior and clip as the other shares).

    Apart from ``p_blind``, which blocks: this one only excludes answers
    (`CrowdPolicy.excludes`), where a mistake costs a re-ask, so it may read change points
    with as few careless answers after them as a sleeper gives (a median of 5-6 on the
    bench) without raising anyone's block posterior.
    """
    a, b = policy.prior_blind
    share = 0.05
    finite = np.where(np.isfinite(late_bf), late_bf, -np.inf)
    for _ in range(20):
        joint = np.stack(
            [
                np.full(log_bf.size, np.log(1 - prior_blind - share)),
                np.log(prior_blind) + log_bf,
                np.log(share) + finite,
            ]
        )
        post = np.exp(joint - np.logaddexp.reduce(joint, axis=0))
        share = float(np.clip((a - 1 + post[2].sum()) / (a + b - 2 + log_bf.size), 0.01, 0.45))
    return post[2], share


class _PairTie:
    """Per answer (rows) and tie share of the worker (columns, ``own``), the probability a
    careful worker says tie on this pair: that share, raised towards the tie share of the
    *other* workers' answers on the same pair (weighted by ``trust`` per answer when given;
    ``strength`` pseudo-answers of the worker's own share).

    Why: dynamic overlap asks again about the pairs that stay unsure, and pairs of equal
    responses are the surest to stay unsure, so a careful worker's late answers are mostly
    on such pairs and mostly "tie". Judged with the worker's own capped share, a run of
    honest ties read as a worker turning content-blind (measured: 8 of 12 of an all-honest
    team blocked on the drift evidence alone).

    Indexed like the (answers x tie shares) array (``tie[rows]``), the rows asked are
    computed then, elementwise (the same values): the whole array, 24 bytes an answer, was
    alive through both iterations and every temperature tried.
    """

    def __init__(
        self,
        item: np.ndarray,
        label: np.ndarray,
        own: np.ndarray,
        trust: np.ndarray | None,
        strength: float = 2.0,
    ) -> None:
        self.item, self.own, self.trust, self.strength = item, own, trust, strength
        self.is_tie = label == 2
        w = np.ones(item.size) if trust is None else trust
        self.n_item = np.bincount(item, w)
        self.tie_item = np.bincount(item, np.where(self.is_tie, w, 0.0))
        self.shape = (item.size, own.size)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        ir = self.item[rows]
        wr = np.ones(ir.size) if self.trust is None else self.trust[rows]
        tr = self.is_tie[rows].astype(np.float64)
        others = (self.n_item[ir] - wr)[:, None]
        others_tie = (self.tie_item[ir] - wr * tr)[:, None]
        t = self.own[None, :]
        # Only ever raised: on a pair the others do not call tie, the worker's own share
        # stands (a constant tie-answerer is judged as before).
        return np.maximum(
            t, (others_tie + self.strength * t) / (np.maximum(others, 0.0) + self.strength)
        )


def _in_set(column: pd.Series, values: set[str]) -> np.ndarray:
    """``column.isin(values).to_numpy()``; on a categorical column per category and taken
    by code, so the categories' hash table is not built (a Python string per category
    when they are Arrow strings: ~27 MiB over the pairs' ids at 10^6 judgments)."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column.isin(values).to_numpy()
    per_code = column.cat.categories.isin(list(values))
    # A missing value (code -1) is in no set, as isin has it.
    return np.append(per_code, False)[column.cat.codes.to_numpy()]


def _honest_rows(worker: pd.Series, honest_looking: pd.Series) -> np.ndarray:
    """``worker.astype(str).map(honest_looking).fillna(False)`` as a bool array; on a
    categorical column looked up per category and taken by code, without a string per
    row (the golden rows' strings were made anew by every iteration's audit)."""
    if not isinstance(worker.dtype, pd.CategoricalDtype):
        return worker.astype(str).map(honest_looking).fillna(False).astype(bool).to_numpy()
    names = pd.Series(worker.cat.categories.astype(str))
    per_code = names.map(honest_looking).fillna(False).astype(bool).to_numpy()
    # A missing worker (code -1) stays missing under astype(str), so maps to False.
    return np.append(per_code, False)[worker.cat.codes.to_numpy()]


def _audit_golden(
    golden: pd.DataFrame, honest_looking: pd.Series, policy: CrowdPolicy
) -> pd.DataFrame:
    columns = ["item", "golden", "answers", "agree", "split", "p_below", "retired"]
    if golden.empty:
        return pd.DataFrame(columns=columns)
    trusted = pd.Series(_honest_rows(golden["worker"], honest_looking), index=golden.index)
    # As values: two coded columns compare only when their categories are the same.
    agrees = (golden["label"].astype(object) == golden["golden"].astype(object)) & trusted
    labels = pd.get_dummies(golden["label"].where(trusted)).reindex(
        columns=list(_LABELS), fill_value=0
    )
    per_item = (
        pd.concat(
            [
                golden[["item", "golden"]],
                trusted.rename("answers").astype(int),
                agrees.rename("agree").astype(int),
                labels.astype(int),
            ],
            axis=1,
        )
        .groupby("item", sort=True)
        .agg(
            golden=("golden", "first"),
            answers=("answers", "sum"),
            agree=("agree", "sum"),
            **{k: (k, "sum") for k in _LABELS},
        )
        .reset_index()
    )
    n = per_item["answers"].to_numpy()
    agree = per_item["agree"].to_numpy()
    p_below = betainc(1 + agree, 1 + n - agree, policy.retire_below)
    # Column by column (a dict per golden item, each read with getattr, was ~0.25 s of
    # every iteration at 5k golden items); plain Python values, as the rows held.
    split = zip(*(per_item[k].astype(np.int64).tolist() for k in _LABELS), strict=True)
    template = "/".join(f"{k} {{}}" for k in _LABELS)
    return pd.DataFrame(
        {
            "item": per_item["item"].tolist(),
            "golden": per_item["golden"].tolist(),
            "answers": n.astype(np.int64).tolist(),
            "agree": agree.astype(np.int64).tolist(),
            "split": [template.format(*counts) for counts in split],
            "p_below": p_below.astype(np.float64).tolist(),
            "retired": (
                (n >= policy.retire_min_answers) & (p_below >= policy.retire_confidence)
            ).tolist(),
        },
        columns=columns,
    )


# A worker's arrays (answers x grid columns) are 1.8 MiB each at 10^6 judgments, one
# worker after another of similar size: from the heap, reused (`allocator.heap_temporaries`).
@heap_temporaries()
def _change_point_scan(
    worker: np.ndarray,
    label: np.ndarray,
    ll: Callable[[np.ndarray], np.ndarray],
    use: np.ndarray,
    n_workers: int,
    min_len: int,
    recent_len: int | None = None,
    blind_uniform: float | None = None,
    golden: np.ndarray | None = None,
    boundary_prior: float = 0.0,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
]:
    """Drift as a change point in each worker's answers (rows already in time order).

    Two models of a worker: careful throughout (one accuracy ``q`` for every answer,
    integrated over the grid), and careful up to answer k then content-blind from k on
    (the prefix with its own ``q``, the rest Dirichlet-multinomial), k uniform over the
    answers that leave at least ``min_len`` after them and one before. The careful start
    pins ``q``: under the first model the careless answers must be explained by the same
    accuracy as the careful ones, so they cost more than when a suffix is judged alone
    (the scan before this one), which is what lets a short careless stretch show.

    ``ll(rows)``: the careful model's log-likelihoods (rows x grid columns) of those rows
    (`_judge_log_lik_block`), asked one worker's used answers at a time.

    Returns per worker the log Bayes factor (change point against careful throughout, the
    change point marginalised), the row of the most probable change point (-1: none
    tried), the log Bayes factor of content-blind against careful on the answers before
    it (how sure the careful start is), per row P(the change point is at or before
    this answer | the worker turned), 0 for rows left out by ``use``, and per worker the
    log Bayes factor of the likeliest change point leaving at least ``recent_len`` answers
    after it (default ``min_len``) against careful throughout, unpenalised (-inf: fewer
    than ``recent_len + 1`` answers): how suspect the latest answers are; and the same
    late change point marginalised (penalised like the drift's: every candidate leaving
    ``recent_len`` or more, uniform) with the row of its most probable one (-1: none), and
    the row of the worker's known boundary (below; -1: none) and the log Bayes factor of
    the change point at that boundary alone against careful throughout (NaN: none); and,
    with ``golden``, whatever follows it, however few: the row of the first used answer
    after the worker's leading run of at least ``min_len`` used golden answers (-1: no
    such run, or nothing after it) and how many used answers follow the run (-1: no such
    run), which the exam's probation reads.
    With ``golden`` (per row, a golden pair's answer) and ``boundary_prior`` > 0, the late
    change point's prior puts that mass on a known regime boundary: the first answer after
    the worker's leading run of at least ``min_len`` golden answers (an exam, which
    production answers follow; a worker on probation behaves), the rest uniform as before.
    """
    recent_len = min_len if recent_len is None else recent_len
    shortest = min(min_len, recent_len)
    best = np.full(n_workers, -np.inf)
    recent = np.full(n_workers, -np.inf)
    late = np.full(n_workers, -np.inf)
    late_start = np.full(n_workers, -1, dtype=np.int64)
    boundary = np.full(n_workers, -1, dtype=np.int64)
    boundary_bf = np.full(n_workers, np.nan)
    lead_end = np.full(n_workers, -1, dtype=np.int64)
    lead_after = np.full(n_workers, -1, dtype=np.int64)
    start = np.full(n_workers, -1, dtype=np.int64)
    before = np.zeros(n_workers)
    turned = np.zeros(worker.size)
    rows_of = np.argsort(worker, kind="stable")
    bounds = np.searchsorted(worker[rows_of], np.arange(n_workers + 1))
    for w in range(n_workers):
        idx = rows_of[bounds[w] : bounds[w + 1]]
        idx = idx[use[idx]]
        n = idx.size
        lead = 0  # the worker's leading run of golden answers
        if golden is not None and n:
            lead = int(np.argmin(golden[idx])) if not golden[idx].all() else n
            if lead >= min_len:
                lead_after[w] = n - lead
                if lead < n:
                    lead_end[w] = int(idx[lead])
        if n < shortest + 1:
            continue
        onehot = np.zeros((n, 3))
        onehot[np.arange(n), label[idx]] = 1.0
        suffix_counts = np.cumsum(onehot[::-1], axis=0)[::-1]  # counts from k to the end
        rows_ll = ll(idx)
        prefix_ll = np.zeros((n + 1, rows_ll.shape[1]))
        np.cumsum(rows_ll, axis=0, out=prefix_ll[1:])  # row k: answers before k
        del rows_ll
        # Every change point leaving `shortest` answers after it; the drift's are the first
        # n - min_len of them.
        every = np.arange(1, n - shortest + 1)
        all_terms = _logmeanexp(prefix_ll[every]) + _blind_log_ml(
            suffix_counts[every], blind_uniform
        )
        careful = float(_logmeanexp(prefix_ll[n]))
        if n >= recent_len + 1:
            late_terms = all_terms[: n - recent_len]
            recent[w] = float(late_terms.max()) - careful
            log_prior = np.full(late_terms.size, -np.log(late_terms.size))
            # The leading golden run's end, when it leaves recent_len answers after it
            # (candidate k is every[k - 1]).
            if golden is not None and boundary_prior > 0 and min_len <= lead <= late_terms.size:
                boundary[w] = int(idx[lead])
                log_prior += np.log1p(-boundary_prior)
                log_prior[lead - 1] = np.logaddexp(log_prior[lead - 1], np.log(boundary_prior))
                boundary_bf[w] = float(late_terms[lead - 1]) - careful
            weighted = late_terms + log_prior
            late[w] = float(np.logaddexp.reduce(weighted)) - careful
            late_start[w] = int(idx[int(every[int(np.argmax(weighted))])])
        if n < min_len + 1:
            continue
        cand = every[: n - min_len]
        terms = all_terms[: n - min_len]
        top = float(terms.max())
        weights = np.exp(terms - top)
        best[w] = top + float(np.log(weights.mean())) - careful
        k = int(cand[int(np.argmax(terms))])
        start[w] = int(idx[k])
        head = suffix_counts[0] - suffix_counts[k]
        before[w] = float(_blind_log_ml(head, blind_uniform) - _logmeanexp(prefix_ll[k]))
        cdf = np.zeros(n)
        cdf[cand] = np.cumsum(weights) / weights.sum()
        cdf[cand[-1] :] = 1.0
        turned[idx] = cdf
    return (
        best,
        start,
        before,
        turned,
        recent,
        late,
        late_start,
        boundary,
        boundary_bf,
        lead_end,
        lead_after,
    )


def _logmeanexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(x - top).mean(axis=-1, keepdims=True)))[..., 0]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))
