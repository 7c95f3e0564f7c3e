"""Tell operators: the flow the shipped automations run (deployment `notify`, triggered by
crowdloop's events; see the `triggers:` in deployments/prefect.yaml).

It always writes one line to its run's log (the Prefect UI shows it on the run and in the
automation's history); when `CROWDLOOP_NOTIFY_BLOCK` names a Prefect notification block
(Slack, Microsoft Teams, email, ... created in the UI), the line goes there too.
"""

from __future__ import annotations

import os
from typing import Any, cast

from prefect import flow, get_run_logger

from crowdloop.text import md_escape

NOTIFY_BLOCK_ENV = "CROWDLOOP_NOTIFY_BLOCK"


def _message(event: str, campaign_id: str, details: dict[str, Any] | None) -> str:
    what = event.removeprefix("crowdloop.").replace(".", " ").replace("-", " ")
    facts = ", ".join(f"{k}: {v}" for k, v in sorted((details or {}).items()))
    return f"crowdloop: {what} — campaign {md_escape(campaign_id)}" + (
        f" ({md_escape(facts)[:1000]})" if facts else ""
    )


@flow(name="notify-operators")
def notify_operators(
    event: str, campaign_id: str = "", details: dict[str, Any] | None = None
) -> str:
    """One line about a crowdloop event, to the run log and the notification block."""
    message = _message(event, campaign_id, details)
    logger = get_run_logger()
    logger.warning(message)
    block_name = os.environ.get(NOTIFY_BLOCK_ENV)
    if block_name:
        from prefect.blocks.abstract import NotificationBlock
        from prefect.blocks.core import Block

        block = Block.load(block_name)
        if not isinstance(block, NotificationBlock):
            raise TypeError(f"{NOTIFY_BLOCK_ENV}={block_name!r} is not a notification block")
        # `notify` is sync-compatible: called from sync code it runs and returns None.
        cast(Any, block).notify(message, subject=f"crowdloop: {event}")
        logger.info("sent to notification block %s", block_name)
    return message
