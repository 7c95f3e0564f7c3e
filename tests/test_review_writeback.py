"""The review's write-back (`_write_reviews`, docs/at-scale.md, rev11): one UPDATE per chunk naming
the rows by runs of consecutive ids and the values by a CASE over the less common ones
must set exactly the given rows to exactly the given values, whatever lies between them."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from crowdloop.connectors.base import Connector
from crowdloop.db import session_scope
from crowdloop.models.tables import Judgment
from crowdloop.stages import quality_check
from tests.test_quality_stage import (  # noqa: F401 (fixtures)
    CAMPAIGN,
    campaign,
    connector,
    run_round,
    sim,
)


@pytest.mark.parametrize("pattern", ["runs", "scattered", "one value"])
def test_write_back_sets_exactly_the_given_rows(
    request: pytest.FixtureRequest, pattern: str
) -> None:
    request.getfixturevalue("campaign")
    request.getfixturevalue("sim")
    marketplace: Connector = request.getfixturevalue("connector")
    run_round(marketplace)
    with session_scope() as s:
        s.execute(update(Judgment).values(review=None))
        ids = sorted(i for i in s.exec(select(Judgment.id)).all() if i is not None)
    assert len(ids) > 40, "too few rows to show anything"
    values = ["accepted", "rejected", "skipped"]
    if pattern == "runs":
        # Long runs of consecutive ids, with rows left out (held, another stage's) inside.
        chosen = [i for k, i in enumerate(ids) if k % 17 not in (5, 6)]
        outcome = [(i, values[(k // 7) % 3]) for k, i in enumerate(chosen)]
    elif pattern == "scattered":
        chosen = ids[::2]  # no two consecutive: the ids are listed, not ranged
        outcome = [(i, values[k % 3]) for k, i in enumerate(chosen)]
    else:
        chosen = ids[3:-3]
        outcome = [(i, "accepted") for i in chosen]
    quality_check._write_reviews(outcome)
    with session_scope() as s:
        got = dict(
            s.exec(
                select(Judgment.id, Judgment.review).where(col(Judgment.campaign_id) == CAMPAIGN)
            ).all()
        )
    want = dict(outcome)
    assert got == {i: want.get(i) for i in ids}
