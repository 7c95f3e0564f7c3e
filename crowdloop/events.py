"""Prefect events for operators: every event names the campaign as its resource, so one
automation can watch one campaign or all of them (`crowdloop.campaign.*`).

Events are a signal, never the record: the campaign's own log (`CampaignEvent`) is written
first, and an event that cannot be sent is logged and dropped rather than failing the work.
Outside a flow run (the CLI) events are sent only when a Prefect API is configured, so a
command like `crowdloop pause` never starts a temporary Prefect server just to emit one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

# Every event crowdloop emits; deployments/automations.yaml reacts to them.
CAMPAIGN_EVENTS = (
    "crowdloop.campaign.started",
    "crowdloop.campaign.paused",
    "crowdloop.campaign.resumed",
    "crowdloop.campaign.awaiting-approval",
    "crowdloop.campaign.completed",
    "crowdloop.campaign.failed",
    "crowdloop.campaign.cancelled",
    "crowdloop.campaign.stalled",
    "crowdloop.worker.blocked",
    "crowdloop.budget.approval-requested",
    "crowdloop.budget.threshold",
    "crowdloop.budget.exhausted",
    "crowdloop.retraining.requested",
)


def campaign_resource(campaign_id: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"crowdloop.campaign.{campaign_id}",
        "prefect.resource.name": campaign_id,
        "prefect.resource.role": "campaign",
    }


def _in_run_or_configured() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return True
    return bool(os.environ.get("PREFECT_API_URL"))


def emit(
    event: str,
    campaign_id: str,
    payload: dict[str, Any] | None = None,
    *,
    related: list[dict[str, str]] | None = None,
) -> bool:
    """Emit `event` about the campaign; True if it was handed to Prefect's event worker."""
    if event not in CAMPAIGN_EVENTS:
        raise ValueError(f"unknown crowdloop event {event!r}")
    try:
        if not _in_run_or_configured():
            return False
        from prefect.events import emit_event

        sent = emit_event(
            event=event,
            resource=campaign_resource(campaign_id),
            related=related,
            payload=payload or {},
        )
        return sent is not None
    except Exception as exc:  # a lost signal must not fail a campaign
        logger.warning("could not emit %s for %s: %s", event, campaign_id, exc)
        return False
