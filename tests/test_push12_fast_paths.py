"""push12's fast paths give what the plain ones gave.

- Registration builds each comparison's payload from one dumped blank task with its own
  prompt and texts: every stored payload equals `compare_task(...).model_dump()` (values
  and key order), plain and graded with the opt-ins set, and the real pairs are the ones
  `real_pairs` (the estimate's view) makes.
- The push reads an item's kept-off workers as stored JSON text and decodes only lists
  with workers in them: the exclusions sent are the author and the stored list, as the
  JSON column gave them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.models.domain import Stage, TaskItem
from crowdloop.models.tables import Item
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.ledger import push_pending
from crowdloop.stages.plan import (
    _response_key,
    compare_task,
    real_pairs,
    register_campaign,
    scan_candidates,
)
from tests.e2e_helpers import record_add_items, spec_for


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="plain"),
        pytest.param(
            {"graded": {"unsure": False}, "rationale": True},
            id="graded-with-rationale",
        ),
    ],
)
def test_registered_payloads_are_the_task_models_dumps(
    sqlite_url: str, tmp_path: Path, extra: dict[str, Any]
) -> None:
    spec = spec_for(tmp_path, "payloads", extra)
    prefs = spec.preferences
    assert prefs is not None
    with session_scope() as s:
        register_campaign(s, spec)
    with session_scope() as s:
        items = s.exec(select(Item).where(Item.stage == Stage.COMPARE.value)).all()
        stored = {item.id: (item.payload, item.is_golden) for item in items}
    assert len(stored) == 16 and sum(golden for _, golden in stored.values()) == 4
    for payload, _ in stored.values():
        want = compare_task(prefs, payload["prompt"], payload["left"], payload["right"])
        dumped = json.loads(json.dumps(want.model_dump()))
        assert payload == dumped
        assert list(payload) == list(dumped)  # the stored JSON's key order too
    with session_scope() as s:
        real = {
            (item.left_id, item.right_id): item.payload
            for item in s.exec(select(Item).where(col(Item.is_golden).is_(False))).all()
        }
    pairs = list(real_pairs(spec, scan_candidates(prefs.candidates_file)))
    assert len(pairs) == len(real) == 12
    for _, a, b, task in pairs:
        key = (_response_key(spec.name, a), _response_key(spec.name, b))
        assert real[key] == json.loads(json.dumps(task.model_dump()))


def test_pushed_exclusions_are_the_author_and_the_stored_list(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_for(tmp_path, "exclusions", {})
    with session_scope() as s:
        register_campaign(s, spec)
    with session_scope() as s:
        ids = sorted(s.exec(select(Item.id)).all())
        # [] (as planned), a list with the author repeated in it, JSON null, SQL NULL.
        s.execute(
            update(Item)
            .where(col(Item.id) == ids[1])
            .values(exclude_worker="w-author", exclude_also=["w2", "w-author", "w1"])
        )
        s.execute(update(Item).where(col(Item.id) == ids[2]).values(exclude_worker="w-only"))
        s.execute(update(Item).where(col(Item.id) == ids[3]).values(exclude_also=None))
        s.execute(text("UPDATE item SET exclude_also = NULL WHERE id = :i"), {"i": ids[4]})
    with session_scope() as s:
        stored = {
            item_id: (author, also)
            for item_id, author, also in s.exec(
                select(Item.id, Item.exclude_worker, Item.exclude_also)
            ).all()
        }
    with SimulatorServer(SimulatorConfig(seed=1, time_scale=1e6)) as sim:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        with build_connector("simulator", {}, None) as connector:
            calls = record_add_items(monkeypatch, connector)
            push_pending(spec.name, Stage.COMPARE, connector)
    sent: list[TaskItem] = [task for call in calls for task in call]
    by_item = {task.key.rsplit(".", 1)[0]: task.exclude_workers for task in sent}
    assert len(by_item) == len(stored) == 16
    assert by_item[ids[1]] == ("w-author", "w2", "w1")
    assert by_item[ids[2]] == ("w-only",)
    assert by_item[ids[0]] == by_item[ids[3]] == by_item[ids[4]] == ()
    for item_id, (author, also) in stored.items():
        first = (author,) if author else ()
        assert by_item[item_id] == tuple(dict.fromkeys((*first, *(also or ()))))
