"""Late careless answers excluded, not blocked (`quality.exclude_late_confidence`,
`crowdloop.quality.CrowdPolicy.late_confidence`): the posterior ``p_late`` that a worker
turned content-blind at a change point with as few as 3 answers after it, with prior mass
on the end of a worker's leading golden run (the exam); the quality check excludes the
answers from that change point on and blocks nobody on it."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Judgment, WorkerRecord, WorkerStatus
from crowdloop.quality import CrowdPolicy, assess_crowd
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.quality_check import check_workers
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


def test_sleepers_past_the_exam_are_read_as_turned_at_its_end() -> None:
    """Nine random answers after a passed exam: most sleepers over ``p_late`` 0.5, the late
    change point at their first production answer; no honest worker over 0.3; the block
    posterior ``p_blind`` is the same with or without the exam boundary's prior."""
    over, at_boundary, flagged, honest_max = 0, 0, 0, 0.0
    for seed in range(3):
        frame, honest, sleepers = exam_crowd(9, 9, seed)
        workers, _ = assess_crowd(frame)
        rows = workers.set_index("worker")
        uniform, _ = assess_crowd(frame, CrowdPolicy(boundary_prior=0.0))
        assert np.array_equal(workers["p_blind"], uniform["p_blind"])
        first_production = frame[frame["time"] >= 0].groupby("worker")["time"].min()
        for w in sleepers:
            over += rows.loc[w, "p_late"] >= 0.5
            at_boundary += rows.loc[w, "late_since"] == first_production[w]
            flagged += bool(rows.loc[w, "late_boundary"])
        honest_max = max(honest_max, float(rows.loc[honest, "p_late"].max()))
    # Measured: 10 of 18 over 0.5, 15 of 18 at the first production answer, 18 at the
    # known boundary, the highest honest 0.22.
    assert over >= 8
    # The boundary is the first answer after the leading golden run, which a production
    # golden pair first in line extends past the first production answer.
    assert at_boundary >= 9 and flagged >= at_boundary
    assert honest_max < 0.3


def test_too_few_answers_have_no_late_change_point() -> None:
    frame = _sequence_frame(
        {"short": ["honest"] * 3, **{f"h{i}": ["honest"] * 20 for i in range(10)}}
    )
    rows = assess_crowd(frame)[0].set_index("worker")
    assert rows.loc["short", "p_late"] == 0.0
    assert rows.loc["short", "late_seq"] is None
    assert CrowdPolicy().excludes(0.99, True) is False  # off unless asked for
    assert CrowdPolicy(late_confidence=0.5).excludes(0.5, True)
    # Away from the known boundary only when asked.
    assert not CrowdPolicy(late_confidence=0.5).excludes(0.9, False)
    assert CrowdPolicy(late_confidence=0.5, late_anywhere=True).excludes(0.9, False)


def _late(monkeypatch: pytest.MonkeyPatch, worker: str, turn: Judgment, on: bool) -> None:
    """The real assessment, with ``worker`` read as turned late at ``turn`` (p_late 0.8, the
    block posterior untouched); the rule on (0.5) or off (the default)."""
    assess_with(monkeypatch, worker, p_late=0.8, late_seq=turn.id, late_boundary=True)
    quality_with(monkeypatch, exclude_late_confidence=0.5 if on else None)


@pytest.mark.parametrize("on", [True, False])
def test_late_answers_are_excluded_and_the_worker_is_not_blocked(
    campaign: CampaignSpec,  # noqa: F811
    sim: SimulatorServer,  # noqa: F811
    connector: Connector,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    on: bool,
) -> None:
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    worker = sorted(by_archetype(sim, "honest"))[0]
    mine = answers_in_time_order(worker)
    turn = first_turn(mine)
    _late(monkeypatch, worker, turn, on)
    result = check_workers(CAMPAIGN, connector)
    assert worker not in result.newly_blocked
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None
        assert record.status not in (WorkerStatus.BLOCKED, WorkerStatus.EXCLUDED)
        answers = {j.id: j for j in s.exec(select(Judgment).where(Judgment.worker_id == worker))}
    at = [j.id for j in mine].index(turn.id)
    assert not any(answers[j.id].excluded for j in mine[:at])
    if on:
        assert record.status == WorkerStatus.WARNED
        assert all(answers[j.id].excluded for j in mine[at:])
        reason = answers[mine[at].id].exclusion_reason or ""
        assert reason.startswith("careless since") and "P = 0.80" in reason
    else:
        assert not any(answers[j.id].excluded for j in mine)
