"""Retraining-trigger bookkeeping: decide when to trigger, and trigger once per key.

The key is `<campaign>:retrain:<n>`; it is recorded (intent) before the target is called
and sent as the idempotency key, so a retried or rerun flow triggers the same run once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.models.tables import TriggerRecord


def plan_trigger(
    campaign_id: str, pairs_total: int, threshold: int, target: str
) -> TriggerRecord | None:
    """The trigger to run now: an unfinished one, or a new one past the threshold."""
    with session_scope() as s:
        pending = s.exec(
            select(TriggerRecord).where(
                TriggerRecord.campaign_id == campaign_id, TriggerRecord.state == "intent"
            )
        ).first()
        if pending is not None:
            return pending
        done = s.exec(
            select(func.count(), func.max(TriggerRecord.pairs_total)).where(
                TriggerRecord.campaign_id == campaign_id
            )
        ).one()
        count, last_total = int(done[0]), int(done[1] or 0)
        if pairs_total - last_total < threshold:
            return None
        record = TriggerRecord(
            key=f"crowdloop:{campaign_id}:retrain:{count + 1}",
            campaign_id=campaign_id,
            pairs_total=pairs_total,
            new_pairs=pairs_total - last_total,
            target=target,
        )
        s.add(record)
        return record


def finish_trigger(key: str, *, flow_run_id: str | None, result: dict[str, Any] | None) -> None:
    with session_scope() as s:
        record = s.get(TriggerRecord, key)
        assert record is not None
        record.state = "done"
        record.flow_run_id = flow_run_id
        record.result = result
        s.add(record)


def triggers(campaign_id: str) -> list[TriggerRecord]:
    with session_scope() as s:
        return list(
            s.exec(
                select(TriggerRecord)
                .where(TriggerRecord.campaign_id == campaign_id)
                .order_by(col(TriggerRecord.created_at))
            ).all()
        )
