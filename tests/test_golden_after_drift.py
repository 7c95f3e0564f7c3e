"""The golden rule from a worker's change point on (`quality_check.golden_since`): a worker
the crowd assessment finds turned careless at a change point is judged on the golden
answers from it on as well as on the whole record; the veto (the crowd posterior under its
base rate) still applies, and only the answers from the change point on are excluded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec, QualitySpec
from crowdloop.models.tables import Item, Judgment, WorkerRecord
from crowdloop.quality import assess_worker
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import quality_check
from crowdloop.stages.quality_check import check_workers, golden_tally, policy_from
from crowdloop.stages.sync import settle_items
from tests.test_quality_stage import (  # noqa: F401  (fixtures)
    CAMPAIGN,
    by_archetype,
    campaign,
    connector,
    run_round,
    sim,
)

# Golden answers after the change point, all made wrong: few enough that the whole record
# (the careful ones before included) does not block, enough that they alone do.
WRONG_AFTER = 5


def _turned_worker(server: SimulatorServer) -> tuple[str, list[Judgment], Judgment]:
    """An honest worker, their answers in time order, and the answer the change point is
    put at: the one with `WRONG_AFTER` golden answers from it on. Those are made wrong."""
    with session_scope() as s:
        golden = {
            i.id: i.golden_answer for i in s.exec(select(Item).where(col(Item.is_golden))).all()
        }
        for worker in sorted(by_archetype(server, "honest")):
            mine = sorted(
                s.exec(select(Judgment).where(Judgment.worker_id == worker)).all(),
                key=lambda j: (j.submitted_at or j.received_at, j.id),
            )
            on_golden = [j for j in mine if j.item_id in golden]
            if len(on_golden) < 3 * WRONG_AFTER:
                continue
            turn = on_golden[-WRONG_AFTER]
            # The last answer before the turn must be earlier (no tie in time at the turn).
            before = mine[mine.index(turn) - 1]
            if (before.submitted_at or before.received_at) >= (
                turn.submitted_at or turn.received_at
            ):
                continue
            for j in on_golden[-WRONG_AFTER:]:
                wrong = "right" if golden[j.item_id] == "left" else "left"
                s.execute(update(Judgment).where(col(Judgment.id) == j.id).values(label=wrong))
            s.expunge_all()
            return worker, mine, turn
    raise AssertionError("no honest worker with enough golden answers")


def _read_as_turned(
    monkeypatch: pytest.MonkeyPatch, worker: str, turn: Judgment, p_blind: float
) -> None:
    """The real assessment, with `worker` read as turned at `turn` at posterior `p_blind`
    (under the block, 0.95; at or over the crowd's base rate unless asked otherwise)."""
    assessed = quality_check.assess_campaign_crowd

    def drifted(s: Any, campaign_id: str, policy: Any) -> Any:
        crowd, audit = assessed(s, campaign_id, policy)
        at = crowd["worker"] == worker
        crowd.loc[at, "p_blind"] = p_blind
        crowd["drift_seq"] = crowd["drift_seq"].astype(object)
        crowd.loc[at, "drift_seq"] = turn.id
        crowd.loc[at, "drift_since"] = 0.0
        return crowd, audit

    monkeypatch.setattr(quality_check, "assess_campaign_crowd", drifted)


def _rule(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    """The campaign's spec as stored, with the rule on or off (off by default)."""
    load = quality_check.load_spec

    def loaded(s: Any, campaign_id: str) -> CampaignSpec:
        spec = load(s, campaign_id)
        quality = spec.quality.model_copy(update={"golden_from_drift": on})
        return spec.model_copy(update={"quality": quality})

    monkeypatch.setattr(quality_check, "load_spec", loaded)


@pytest.fixture
def turned(
    campaign: CampaignSpec,  # noqa: F811
    sim: SimulatorServer,  # noqa: F811
    connector: Connector,  # noqa: F811
) -> tuple[str, list[Judgment], Judgment]:
    run_round(connector)
    assert settle_items(CAMPAIGN, max_requeue_rounds=3)["collected"] > 0
    worker, mine, turn = _turned_worker(sim)
    policy = policy_from(campaign.quality)
    with session_scope() as s:
        correct, total = golden_tally(s, CAMPAIGN)[worker]
        start = turn.submitted_at or turn.received_at
        after = golden_tally(s, CAMPAIGN, since=(worker, start))[worker]
    # The case the rule is for: the whole record passes, the answers after the turn fail.
    assert assess_worker(correct, total, policy).status != "blocked"
    assert after == (0, WRONG_AFTER)
    assert assess_worker(*after, policy).status == "blocked"
    return worker, mine, turn


def test_golden_answers_after_the_change_point_block_and_exclude_from_it_on(
    turned: tuple[str, list[Judgment], Judgment],
    sim: SimulatorServer,  # noqa: F811
    connector: Connector,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker, mine, turn = turned
    _read_as_turned(monkeypatch, worker, turn, p_blind=0.5)
    _rule(monkeypatch, True)
    result = check_workers(CAMPAIGN, connector)
    assert worker in result.newly_blocked
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None
        assert record.excluded_from == (turn.submitted_at or turn.received_at)
        assert record.block_reason is not None
        assert record.block_reason.startswith("golden accuracy since")
        assert f"(0/{WRONG_AFTER} correct" in record.block_reason
        excluded = {
            j.id: j.excluded for j in s.exec(select(Judgment).where(Judgment.worker_id == worker))
        }
    at = [j.id for j in mine].index(turn.id)
    assert not any(excluded[j.id] for j in mine[:at])
    assert all(excluded[j.id] for j in mine[at:])


@pytest.mark.parametrize("why", ["veto", "off"])
def test_no_block_under_the_veto_or_when_off(
    turned: tuple[str, list[Judgment], Judgment],
    connector: Connector,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    why: str,
) -> None:
    """Under the crowd's base rate the worker's answers vouch for them (the golden items
    they failed are likelier ambiguous); and the rule is opt-in."""
    worker, _, turn = turned
    if why == "veto":
        _read_as_turned(monkeypatch, worker, turn, p_blind=0.0)
        _rule(monkeypatch, True)
    else:  # the default
        assert not QualitySpec().golden_from_drift
        _read_as_turned(monkeypatch, worker, turn, p_blind=0.5)
    result = check_workers(CAMPAIGN, connector)
    assert worker not in result.newly_blocked
    with session_scope() as s:
        record = s.get(WorkerRecord, (CAMPAIGN, worker))
        assert record is not None and record.status not in ("blocked", "excluded")
