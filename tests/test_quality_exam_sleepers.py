"""Probation after the exam (`quality.exam_probation`,
`crowdloop.quality.CrowdPolicy.probation_clear`): a worker's answers from the exam's end on
count only once they show the worker careful (3 or more, and a late turn to content-blind
answering unlikely under an even prior); until then the quality check holds them
(excluded for "on probation", review deferred) and releases them when the worker clears.
Sleepers (careful through the exam, random after) used to reach the verdicts whenever the
late exclusion's posterior (weighted by the crowd's learned share of turns) stayed under
0.5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec, QualitySpec
from crowdloop.models.tables import Judgment, WorkerRecord, WorkerStatus
from crowdloop.quality import CrowdPolicy, assess_crowd
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.quality_check import PROBATION, _decide, check_workers
from crowdloop.stages.sync import settle_items
from tests.test_quality_crowd import _sequence_frame, exam_crowd
from tests.test_quality_stage import (  # noqa: F401  (fixtures)
    CAMPAIGN,
    answers_in_time_order,
    assess_with,
    by_archetype,
    campaign,
    connector,
    first_turn,
    quality_with,
    run_round,
    sim,
)

# The late exclusion as the default has it, with and without the probation.
LATE = CrowdPolicy(late_confidence=0.5)
PROBATION_ON = CrowdPolicy(late_confidence=0.5, probation_clear=QualitySpec().exam_probation)


def _kept(policy: CrowdPolicy, rows: pd.DataFrame, worker: str) -> bool:
    """The worker's answers after the exam reach the verdicts under ``policy``: neither
    excluded by the late rule nor held on probation."""
    row = rows.loc[worker]
    excluded = policy.excludes(float(row["p_late"]), bool(row["late_boundary"]))
    held = policy.on_probation(float(row["boundary_bf"]), int(row["boundary_answers"]))
    return not (excluded or held)


def test_sleepers_careless_answers_are_held_where_the_late_rule_kept_them() -> None:
    """Five random answers after a passed exam: the late exclusion alone lets most sleepers
    through; on probation at most one in six per crowd; honest workers with 20 careful
    answers are mostly cleared."""
    kept_late = kept_probation = honest_held = 0
    for seed in range(3):
        frame, honest, sleepers = exam_crowd(20, 5, seed)
        rows = assess_crowd(frame, PROBATION_ON)[0].set_index("worker")
        assert (rows.loc[[*honest, *sleepers], "boundary_answers"] > 0).all()
        kept_late += sum(_kept(LATE, rows, w) for w in sleepers)
        kept_probation += sum(_kept(PROBATION_ON, rows, w) for w in sleepers)
        honest_held += sum(not _kept(PROBATION_ON, rows, w) for w in honest)
    # Measured: the late rule kept 12 of 18 sleepers, the probation 2; 4 of 90 honest held.
    assert kept_late >= 9
    assert kept_probation <= 3
    assert honest_held <= 9


def test_an_honest_worker_with_unlucky_answers_is_held_then_cleared_never_blocked() -> None:
    """An honest worker whose first answers after the exam go wrong is held, not blocked;
    with more careful answers the evidence clears them and the held answers count again.
    No exam, no probation."""
    policy = PROBATION_ON
    unlucky = ["wrong", "wrong", "honest"]
    held_then = cleared_later = 0
    for seed in range(3):
        for answers, count in ((unlucky, "held"), (unlucky + ["honest"] * 17, "cleared")):
            case, _, _ = exam_crowd(20, 5, seed, {"unlucky": answers})
            rows = assess_crowd(case, policy)[0].set_index("worker")
            row = rows.loc["unlucky"]
            assert not policy.blocks(float(row["p_blind"]), int(row["answers"]))
            on = policy.on_probation(float(row["boundary_bf"]), int(row["boundary_answers"]))
            if count == "held":
                held_then += on
            else:
                cleared_later += not on
    # Measured: held at 2-3 answers after the exam (boundary_bf 0.8, 2.8; NaN on 2
    # answers), cleared at 19-20 (boundary_bf -4.1 to -5.7).
    assert held_then == 3
    assert cleared_later == 3
    # Without a leading golden run (no exam) nobody has a boundary, so nobody is held.
    plain = _sequence_frame({f"w{i}": ["honest"] * 6 for i in range(10)})
    rows = assess_crowd(plain, policy)[0]
    assert (rows["boundary_answers"] == -1).all()
    assert not any(policy.on_probation(0.0, int(n)) for n in rows["boundary_answers"])
    assert CrowdPolicy().on_probation(5.0, 4) is False  # off unless asked for


def test_held_answers_wait_for_review_and_are_paid_at_the_end() -> None:
    rows = [(1, "a", True, True, "w1", True), (2, "b", True, True, "w2", False)]
    sent, outcome = _decide(rows, set(), True, "failed control tasks")
    assert outcome == [(2, "rejected")]  # the held one is left for later
    sent, outcome = _decide(rows, set(), True, "failed control tasks", final=True)
    assert outcome == [(1, "accepted"), (2, "rejected")]
    assert sent[0]["comment"] == ""


@pytest.mark.parametrize("on", [True, False])
def test_the_quality_check_holds_and_releases_the_answers_after_the_exam(
    campaign: CampaignSpec,  # noqa: F811
    sim: SimulatorServer,  # noqa: F811
    connector: Connector,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    on: bool,
) -> None:
    """The real assessment with one honest worker read as past an exam that ended at
    ``turn`` and not yet cleared: their answers from it on are held (not blocked); read as
    cleared at the next check, the same answers count again."""
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    worker = sorted(by_archetype(sim, "honest"))[0]
    mine = answers_in_time_order(worker)
    turn = first_turn(mine)
    at = [j.id for j in mine].index(turn.id)
    quality_with(monkeypatch, exam_probation=0.1 if on else None)
    after = len(mine) - at
    assess_with(monkeypatch, worker, boundary_bf=0.0, boundary_seq=turn.id, boundary_answers=after)
    result = check_workers(CAMPAIGN, connector)
    assert worker not in result.newly_blocked

    def excluded() -> list[tuple[bool, str]]:
        with session_scope() as s:
            rows = {j.id: j for j in s.exec(select(Judgment).where(Judgment.worker_id == worker))}
            return [(rows[j.id].excluded, rows[j.id].exclusion_reason or "") for j in mine]

    now = excluded()
    assert not any(e for e, _ in now[:at])
    if not on:
        assert not any(e for e, _ in now)
        return
    assert all(e and reason.startswith(PROBATION) for e, reason in now[at:])
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None
        assert record.status not in (WorkerStatus.BLOCKED, WorkerStatus.EXCLUDED)
    # Cleared at the next check (the patch over the one above): everything counts again.
    assess_with(monkeypatch, worker, boundary_bf=-5.0, boundary_seq=turn.id, boundary_answers=after)
    check_workers(CAMPAIGN, connector)
    assert not any(e for e, _ in excluded())


def _boundary_by_sorting(
    worker: np.ndarray,
    golden: np.ndarray,
    use: np.ndarray,
    n_workers: int,
    min_len: int,
    seqs: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The boundary as exam14 first found it: each worker's used rows by a sort, apart
    from the change-point scan."""
    seq = np.full(n_workers, None, dtype=object)
    after = np.full(n_workers, -1, dtype=np.int64)
    rows = np.flatnonzero(use)
    w = worker[rows]
    by_worker = np.argsort(w, kind="stable")
    bounds = np.searchsorted(w[by_worker], np.arange(n_workers + 1))
    for k in range(n_workers):
        idx = rows[by_worker[bounds[k] : bounds[k + 1]]]
        g = golden[idx]
        lead = int(np.argmin(g)) if not g.all() else idx.size
        if idx.size == 0 or lead < min_len:
            continue
        after[k] = idx.size - lead
        if lead < idx.size and seqs is not None:
            seq[k] = int(seqs[idx[lead]])
    return seq, after


@pytest.mark.parametrize("seed", range(6))
def test_the_scan_finds_the_boundary_the_sort_found(seed: int) -> None:
    """The change-point scan, which walks each worker's used answers anyway, gives the
    first answer after the exam and how many follow as the separate sort gave them, on
    workers with and without a leading golden run, unused rows and workers with no
    answers at all (and whatever `ll` says: the boundary is in the answers' order)."""
    from crowdloop.quality import _change_point_scan

    rng = np.random.default_rng(seed)
    n_workers, n = 30, 2_000
    worker = rng.integers(0, n_workers - 3, n).astype(np.int32)  # the last 3 answer nothing
    golden = rng.random(n) < 0.25
    exam_takers = rng.choice(n_workers - 3, 12, replace=False)
    for k in exam_takers:  # a leading golden run of 2-12 answers
        rows = np.flatnonzero(worker == k)
        golden[rows[: rng.integers(2, 13)]] = True
    use = rng.random(n) < 0.9
    seqs = rng.permutation(n).astype(np.int64)
    found = {}
    for min_len in (1, 4, 8):
        for with_seqs in (seqs, None):
            row, after = _change_point_scan(
                worker,
                rng.integers(0, 3, n),
                lambda rows: np.zeros((len(rows), 3)),
                use,
                n_workers,
                min_len,
                3,
                golden=golden,
                boundary_prior=0.1,
            )[-2:]
            got = [int(with_seqs[r]) if r >= 0 and with_seqs is not None else None for r in row]
            want = _boundary_by_sorting(worker, golden, use, n_workers, min_len, with_seqs)
            assert got == want[0].tolist()
            assert after.tolist() == want[1].tolist()
        found[min_len] = int((want[1] >= 0).sum())
    assert found[1] > found[8] >= 1  # runs of every length are there to find
