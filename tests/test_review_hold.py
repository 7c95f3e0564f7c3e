"""`quality.hold_unjudged_work`: a worker's comparison submissions are reviewed only once
the crowd assessment has cleared or blocked them, so a worker blocked in a later round has
that work rejected (unpaid) too (docs/quality-bench.md, cost10e)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Judgment
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import quality_check
from crowdloop.stages.quality_check import check_workers
from tests.test_quality_stage import (  # noqa: F401 (fixtures)
    CAMPAIGN,
    by_archetype,
    campaign,
    connector,
    run_round,
    sim,
)


def _hold_on(monkeypatch: pytest.MonkeyPatch, registered: CampaignSpec) -> None:
    """The campaign's spec with `quality.hold_unjudged_work` on, whatever the default."""
    spec = registered.model_copy(
        update={"quality": registered.quality.model_copy(update={"hold_unjudged_work": True})}
    )
    monkeypatch.setattr(quality_check, "load_spec", lambda s, campaign_id: spec)


def _checked_round(
    request: pytest.FixtureRequest,
) -> tuple[CampaignSpec, SimulatorServer, Connector]:
    """test_quality_stage's fixtures (a registered campaign, its simulator and marketplace)
    after one round and its quality check, with every review undone: as if nothing had
    been reviewed yet."""
    registered: CampaignSpec = request.getfixturevalue("campaign")
    server: SimulatorServer = request.getfixturevalue("sim")
    marketplace: Connector = request.getfixturevalue("connector")
    run_round(marketplace)
    check_workers(CAMPAIGN, marketplace)
    with session_scope() as s:
        s.execute(update(Judgment).values(review=None))
    return registered, server, marketplace


def test_unjudged_workers_are_those_not_cleared() -> None:
    crowd = pd.DataFrame({"worker": ["a", "b", "c"], "p_blind": [0.01, 0.05, 0.9]})
    assert quality_check.unjudged_workers(crowd) == {"b", "c"}
    assert quality_check.unjudged_workers(crowd.iloc[:0]) == set()


def test_held_work_waits_until_its_worker_is_cleared_or_blocked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the hold on, an unjudged worker's work is left unreviewed and a blocked
    worker's is rejected even if the assessment has not cleared them; once the held worker
    is cleared, the next review accepts their work. Without the hold everything is
    reviewed at once (`test_submissions_are_reviewed_once_a_chunk_at_a_time`)."""
    registered, server, marketplace = _checked_round(request)
    with session_scope() as s:
        rows = s.exec(select(Judgment.worker_id, Judgment.excluded)).all()
    blocked = {w for w, excluded in rows if excluded}
    assert blocked, "nobody blocked: the test shows nothing"
    held_worker = sorted(by_archetype(server, "honest") - blocked)[0]
    unjudged = {held_worker, sorted(blocked)[0]}
    monkeypatch.setattr(quality_check, "unjudged_workers", lambda crowd: set(unjudged))
    _hold_on(monkeypatch, registered)
    reviewed = quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], marketplace)
    with session_scope() as s:
        after = s.exec(select(Judgment.worker_id, Judgment.excluded, Judgment.review)).all()
    assert reviewed == sum(w != held_worker for w, _, _ in after)
    for worker, excluded, review in after:
        if worker == held_worker:
            assert review is None
        else:
            assert review == ("rejected" if excluded else "accepted")
    # Cleared: the held work is accepted, nothing else is reviewed twice.
    unjudged.clear()
    again = quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], marketplace)
    assert again == sum(w == held_worker for w, _, _ in after) > 0
    with session_scope() as s:
        left = s.exec(select(Judgment.review).where(Judgment.worker_id == held_worker)).all()
    assert set(left) == {"accepted"}


def test_the_review_after_the_last_round_settles_held_work(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`final=True` (the flow's review-held step) reviews what the hold still holds, so an
    honest worker never judged is paid at the campaign's close, not at the marketplace's
    auto-accept."""
    registered, server, marketplace = _checked_round(request)
    honest = by_archetype(server, "honest")
    monkeypatch.setattr(quality_check, "unjudged_workers", lambda crowd: set(honest))
    _hold_on(monkeypatch, registered)
    quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], marketplace)
    with session_scope() as s:
        held = s.exec(select(Judgment.review).where(col(Judgment.worker_id).in_(honest))).all()
    assert held and set(held) == {None}
    quality_check.review_submissions(CAMPAIGN, [Stage.COMPARE], marketplace, final=True)
    with session_scope() as s:
        rows = s.exec(select(Judgment.worker_id, Judgment.excluded, Judgment.review)).all()
    assert all(review == ("rejected" if excluded else "accepted") for _, excluded, review in rows)
    assert any(w in honest for w, _, _ in rows)
