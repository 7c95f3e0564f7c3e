"""The scheduled sync: one pass over every open campaign (pull, check workers, settle).

Campaign flows wait for their own results; this deployment keeps campaigns whose flow is
not running (paused, crashed, or launched push-only) moving, and keeps the ops view fresh.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from crowdloop.db import session_scope
from crowdloop.flows import stages as t
from crowdloop.models.domain import Stage
from crowdloop.stages import sync
from crowdloop.stages.plan import open_campaigns
from crowdloop.stages.rounds import connector_for


@flow(name="sync-open-campaigns")
def sync_open_campaigns() -> dict[str, Any]:
    logger = get_run_logger()
    with session_scope() as s:
        campaigns = open_campaigns(s)
    out: dict[str, Any] = {}
    for campaign_id in campaigns:
        stages = list(Stage)
        with connector_for(campaign_id) as c:
            got = [sync.sync_stage(campaign_id, st, c) for st in stages]
        t.check_workers(campaign_id, stages)
        settled = t.settle_items(campaign_id)
        out[campaign_id] = {"stored": sum(g.stored for g in got), **settled}
        logger.info("%s: %s", campaign_id, out[campaign_id])
    return out
