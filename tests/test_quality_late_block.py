"""A worker blocked at a late change point (`quality.block_late_confidence`,
`crowdloop.quality.CrowdPolicy.late_block_confidence`): the posterior ``p_late`` that they
turned content-blind there, on enough answers after it; the answers from the change point
on are excluded, the careful start's kept."""

from __future__ import annotations

import pytest
from sqlmodel import select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec, QualitySpec
from crowdloop.models.tables import Judgment, WorkerRecord, WorkerStatus
from crowdloop.quality import CrowdPolicy, assess_crowd
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.quality_check import check_workers, crowd_policy_from
from crowdloop.stages.sync import settle_items
from tests.test_quality_crowd import _sequence_frame
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


def test_the_late_block_rule() -> None:
    assert not CrowdPolicy().blocks_late(0.99, 30, 40)  # off unless asked for
    policy = CrowdPolicy(late_block_confidence=0.85, late_block_min_answers=6)
    assert policy.blocks_late(0.85, 6, 10)
    assert not policy.blocks_late(0.84, 6, 10)
    assert not policy.blocks_late(0.9, 5, 10)  # too few answers after the change point
    assert not policy.blocks_late(0.9, 6, 9)  # too few in all (min_answers)
    # With a known boundary (an exam): never away from it; at it only when asked.
    assert not policy.blocks_late(0.9, 6, 10, at_boundary=True, has_boundary=True)
    assert not policy.blocks_late(0.9, 6, 10, at_boundary=False, has_boundary=True)
    at_exam = CrowdPolicy(late_block_confidence=0.85, late_block_at_boundary=True)
    assert at_exam.blocks_late(0.9, 6, 10, at_boundary=True, has_boundary=True)
    assert not at_exam.blocks_late(0.9, 6, 10, at_boundary=False, has_boundary=True)
    with pytest.raises(ValueError):
        CrowdPolicy(late_block_confidence=0.5)
    mapped = crowd_policy_from(QualitySpec(block_late_confidence=0.9, block_late_min_answers=7))
    assert (mapped.late_block_confidence, mapped.late_block_min_answers) == (0.9, 7)


def test_late_answers_count_the_answers_from_the_late_change_point_on() -> None:
    frame = _sequence_frame(
        {
            "sleeper": ["honest"] * 15 + ["random"] * 10,
            **{f"h{i}": ["honest"] * 25 for i in range(12)},
        },
        seed=1,
    )
    rows = assess_crowd(frame)[0].set_index("worker")
    ordered = frame.sort_values("time", kind="stable")
    for worker, row in rows.iterrows():
        mine = ordered[ordered["worker"] == worker]
        expected = 0 if row["late_seq"] is None else int((mine["time"] >= row["late_since"]).sum())
        assert row["late_answers"] == expected


def _late(monkeypatch: pytest.MonkeyPatch, worker: str, turn: Judgment, after: int) -> None:
    """The real assessment, with ``worker`` read as turned late at ``turn`` (p_late 0.9 on
    ``after`` answers, the block posterior untouched); the late block at 0.85 on 6."""
    assess_with(
        monkeypatch,
        worker,
        p_blind=0.01,
        p_late=0.9,
        late_seq=turn.id,
        late_boundary=False,
        has_boundary=False,
        late_answers=after,
    )
    quality_with(monkeypatch, block_late_confidence=0.85, block_late_min_answers=6)


@pytest.mark.parametrize("after", [6, 5])
def test_a_late_block_keeps_the_careful_start(
    campaign: CampaignSpec,  # noqa: F811
    sim: SimulatorServer,  # noqa: F811
    connector: Connector,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    after: int,
) -> None:
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    worker = next(
        w for w in sorted(by_archetype(sim, "honest")) if len(answers_in_time_order(w)) >= 10
    )
    mine = answers_in_time_order(worker)
    turn = first_turn(mine)
    _late(monkeypatch, worker, turn, after)
    result = check_workers(CAMPAIGN, connector)
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None
        answers = {j.id: j for j in s.exec(select(Judgment).where(Judgment.worker_id == worker))}
    at = [j.id for j in mine].index(turn.id)
    assert not any(answers[j.id].excluded for j in mine[:at])
    if after >= 6:
        assert worker in result.newly_blocked
        assert record.status == WorkerStatus.BLOCKED
        assert (record.block_reason or "").startswith("careless since")
        assert all(answers[j.id].excluded for j in mine[at:])
    else:
        assert worker not in result.newly_blocked
        assert record.status != WorkerStatus.BLOCKED
