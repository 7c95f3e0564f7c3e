# ruff: noqa: F811  (the fixtures imported from test_quality_stage are parameters here)
"""The comparison evidence read without the join to items, and without the hash tables
of its Arrow-string categories."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import insert

from crowdloop import quality
from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import Campaign, Item, Judgment
from crowdloop.stages.quality_check import comparison_evidence
from tests.test_quality_evidence import _plain, _reference_evidence
from tests.test_quality_stage import (  # noqa: F401  (fixtures)
    CAMPAIGN,
    campaign,
    connector,
    run_round,
    sim,
)


def _answer(item_id: str, n: int, campaign_id: str = CAMPAIGN) -> dict[str, object]:
    return {
        "connector": "other",
        "external_id": f"x{n}",
        "campaign_id": campaign_id,
        "item_id": item_id,
        "worker_id": f"stray{n % 3}",
        "label": ["left", "right", "tie", "accept"][n % 4],
        "submitted_at": datetime(2026, 1, 2, 3, 4, n, tzinfo=UTC),
    }


def test_answers_to_other_items_are_left_out_as_the_join_left_them(
    campaign: CampaignSpec, connector: Connector
) -> None:
    run_round(connector)
    with session_scope() as s:
        # Answers the join to items dropped: on an item that is no comparison, on an item
        # of another campaign, on no item known at all. Their workers answer nothing else.
        s.add(Item(id="other-verify", campaign_id=CAMPAIGN, stage="verify", kind="verify",
                   payload={}, group="g1"))  # fmt: skip
        s.add(Campaign(id="other-campaign", spec={}, spec_hash="x", connector="simulator"))
        s.flush()
        s.add(Item(id="other-compare", campaign_id="other-campaign", stage="compare",
                   kind="compare", payload={}, group="g2", left_id="a", right_id="b"))  # fmt: skip
        s.flush()
        s.execute(
            insert(Judgment),
            [_answer("other-verify", n) for n in range(4)]
            + [_answer("other-compare", n) for n in range(4, 8)]
            + [_answer("no-such-item", n) for n in range(8, 12)],
        )
    with session_scope() as s:
        coded = comparison_evidence(s, CAMPAIGN)
    # The row-built reference joins on the item's kind only; the read it replaced also
    # required the item to be the campaign's, as the pairs read first are.
    reference = _reference_evidence(CAMPAIGN)
    assert (reference["item"] == "other-compare").sum() == 4
    reference = reference[reference["item"] != "other-compare"].reset_index(drop=True)
    assert len(coded) > 500
    assert _plain(coded) == _plain(reference)
    for columns in (["worker"], ["item"], ["left", "right"], ["label", "golden"]):
        present = sorted({v for c in columns for v in reference[c].dropna()})
        for c in columns:
            assert list(coded[c].cat.categories) == present
    assert not any(w.startswith("stray") for w in coded["worker"].cat.categories)


def test_the_evidence_keeps_no_hash_table_of_its_ids(
    campaign: CampaignSpec, connector: Connector
) -> None:
    """The pairs' and responses' ids are Arrow strings; a hash table of them holds a Python
    string per id (three times the Arrow strings' size). Neither the read nor the
    assessment leaves one on the frame's categories."""
    run_round(connector)
    with session_scope() as s:
        frame = comparison_evidence(s, CAMPAIGN)
    ids = ("item", "left", "right")
    for c in ids:
        assert frame[c].cat.categories.dtype == "str"
        assert "_engine" not in frame[c].cat.categories._cache, c
    workers, audit = quality.assess_crowd(frame)
    for c in ids:
        assert "_engine" not in frame[c].cat.categories._cache, c
    # The same assessment as from the frame with object columns.
    plain = frame.astype({c: object for c in frame.columns if c not in ("time", "seq")})
    workers_b, audit_b = quality.assess_crowd(plain)
    pd.testing.assert_frame_equal(workers, workers_b)
    assert _plain(audit) == _plain(audit_b)


def test_a_retired_golden_item_is_left_out_by_name_on_coded_and_object_columns() -> None:
    frame = pd.DataFrame({"item": ["b", "a", None, "c", "a"]})
    coded = frame.astype({"item": "category"})
    for column in (frame["item"], coded["item"]):
        assert quality._in_set(column, {"a", "c"}).tolist() == [False, True, False, True, True]
        assert quality._in_set(column, set()).tolist() == [False] * 5
