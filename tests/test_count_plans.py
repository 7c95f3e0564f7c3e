"""SQLite's plans for the counts the push and the settle ask a page of items at a time.

Each page's count must read that page's id range of an index, not the whole campaign:
else the stage is quadratic in the campaign's size (at 10^6 judgments the published
count read all ~500k task records of the batch for each of ~17 pages; migration 0014).
SQLite keeps no statistics here (nothing runs ANALYZE on it), so its plan is decided by
the indexes alone and is the same on every machine.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.sql import Select

from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.stages.counts import _answers, _published


def _plan(statement: Select[tuple[str, int]]) -> str:
    with session_scope() as s:
        bind = s.get_bind()
        sql = statement.compile(bind, compile_kwargs={"literal_binds": True})
        rows = s.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("stages", [None, [Stage.COMPARE]])
def test_a_pages_published_count_reads_only_that_range_of_one_index(
    sqlite_url: str, stages: list[Stage] | None
) -> None:
    plan = _plan(_published("camp", stages, within=("cmp-0a", "cmp-0f")))
    assert (
        "USING COVERING INDEX ix_taskrecord_batch_item (batch_id=? AND item_id>? AND item_id<?)"
        in plan
    ), plan
    assert "SCAN taskrecord" not in plan, plan


def test_a_pages_answer_count_reads_only_that_range_of_the_item_index(sqlite_url: str) -> None:
    plan = _plan(_answers("camp", trusted_only=False, within=("cmp-0a", "cmp-0f")))
    assert "ix_judgment_campaign_item (campaign_id=? AND item_id>? AND item_id<?)" in plan, plan
