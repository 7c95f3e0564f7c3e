"""The scheduled sync: one pass over every running campaign (pull, check workers, settle).

Campaign flows wait for their own results; this deployment keeps campaigns whose flow is
not running (crashed, or launched push-only) moving, and keeps the ops view fresh. It
never competes with a live run: a campaign whose lease is held is skipped, and the pass
takes each lease it works under. One campaign's failure (a connector that does not load,
a marketplace that is down) is reported and the others still sync; the run then ends
failed, naming how many failed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from crowdloop.db import session_scope
from crowdloop.flows import hooks
from crowdloop.flows import stages as t
from crowdloop.models.domain import Stage
from crowdloop.stages import lease, sync
from crowdloop.stages.plan import open_campaigns
from crowdloop.stages.rounds import connector_for


def _sync_one(campaign_id: str) -> dict[str, Any]:
    stages = list(Stage)
    with connector_for(campaign_id) as c:
        got = [sync.sync_stage(campaign_id, st, c) for st in stages]
    t.check_workers(campaign_id, stages)
    settled = t.settle_items(campaign_id)
    t.publish_progress(campaign_id)
    return {"stored": sum(g.stored for g in got), **settled}


@flow(name="sync-open-campaigns")
def sync_open_campaigns() -> State:
    logger = get_run_logger()
    with session_scope() as s:
        campaigns = open_campaigns(s)
    synced: dict[str, Any] = {}
    skipped: list[str] = []
    failed: dict[str, str] = {}
    for campaign_id in campaigns:
        try:
            with lease.held(
                campaign_id, description=f"the scheduled sync ({hooks.driver_description()})"
            ):
                synced[campaign_id] = _sync_one(campaign_id)
            logger.info("%s: %s", campaign_id, synced[campaign_id])
        except lease.CampaignBusy:
            skipped.append(campaign_id)
            logger.info("%s: skipped, a live run drives it", campaign_id)
        except Exception as exc:  # isolate: the next campaign still syncs
            failed[campaign_id] = f"{type(exc).__name__}: {exc}"
            logger.error("%s: sync failed: %s", campaign_id, failed[campaign_id])
    result = {"synced": synced, "skipped": skipped, "failed": failed}
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(campaigns)} campaign(s) failed to sync: "
            + "; ".join(f"{k} ({v})" for k, v in failed.items()),
            data=result,
        )
    return Completed(
        message=f"{len(synced)} synced, {len(skipped)} skipped (driven by a live run)",
        data=result,
    )
