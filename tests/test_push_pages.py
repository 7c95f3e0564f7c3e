"""The push reads its pending items a page at a time (`ledger.PUSH_PAGE`), with the counts
of each page's id range only: the tasks sent, their chunks and what each item still needs
are what one read of every item gave.

- A first push with pages of 3 items and chunks of 4 sends every item once, in id order,
  in chunks of 4 (a chunk spans pages; the last is the remainder).
- A second push after some items were raised to overlap 5 and put back to PENDING (3
  assignments each outstanding already): with pages of 2, exactly those items get 2 more
  assignments each, as the whole campaign's `assignment_deficits` said before the push,
  and the pending items that need nothing are moved to PUSHED without a task.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Item, ItemState
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import ledger
from crowdloop.stages.counts import PendingItem, assignment_deficits
from crowdloop.stages.plan import register_campaign
from tests.e2e_helpers import record_add_items, spec_for


def _spec(tmp_path: Path) -> CampaignSpec:
    spec = spec_for(tmp_path, "pages", {})
    return spec.model_copy(update={"batch_size": 4})


def _pending() -> list[PendingItem]:
    with session_scope() as s:
        rows = s.exec(
            select(Item.id, Item.pushes, Item.overlap)
            .where(Item.state == ItemState.PENDING)
            .order_by(col(Item.id))
        ).all()
    return [PendingItem(*row) for row in rows]


def test_paged_push_sends_what_one_read_did(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path)
    with session_scope() as s:
        register_campaign(s, spec)
    in_order = [item.id for item in _pending()]
    assert len(in_order) == 16
    with SimulatorServer(SimulatorConfig(seed=1, time_scale=1e6)) as sim:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        with build_connector("simulator", {}, None) as connector:
            tasks = record_add_items(monkeypatch, connector)

            def calls() -> list[list[tuple[str, int]]]:
                """Each add-items call's tasks as (item, assignments)."""
                return [[(t.key.rsplit(".", 1)[0], t.overlap) for t in call] for call in tasks]

            monkeypatch.setattr(ledger, "PUSH_PAGE", 3)
            first = ledger.push_pending(spec.name, Stage.COMPARE, connector)
            assert [len(c) for c in calls()] == [4, 4, 4, 4]
            assert [item for c in calls() for item, _ in c] == in_order
            assert {overlap for c in calls() for _, overlap in c} == {3}
            assert first.assignments == 48 and not _pending()

            # Five items now want 5 answers and go back to PENDING (3 outstanding each);
            # three others go back as they were (they need nothing more).
            raised, unchanged = in_order[1:11:2], in_order[2:8:2]
            with session_scope() as s:
                s.execute(update(Item).where(col(Item.id).in_(raised)).values(overlap=5))
                s.execute(
                    update(Item)
                    .where(col(Item.id).in_(raised + unchanged))
                    .values(state=ItemState.PENDING)
                )
            with session_scope() as s:
                whole = assignment_deficits(s, spec.name, _pending())
            assert whole == [2 if item.id in raised else 0 for item in _pending()]
            tasks.clear()
            monkeypatch.setattr(ledger, "PUSH_PAGE", 2)
            second = ledger.push_pending(spec.name, Stage.COMPARE, connector)
    assert [len(c) for c in calls()] == [4, 1]
    assert [item for c in calls() for item, _ in c] == sorted(raised)
    assert {overlap for c in calls() for _, overlap in c} == {2}
    assert second.assignments == 10
    assert not _pending()
