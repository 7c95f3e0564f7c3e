"""Trigger reward-model retraining once enough new preference pairs are exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.deployments import run_deployment
from prefect.events import emit_event

from crowdloop.flows.retrain import train_reward_model_flow
from crowdloop.stages.export import exported_pairs
from crowdloop.stages.rounds import campaign_spec
from crowdloop.stages.trigger import finish_trigger, plan_trigger

RETRAIN_EVENT = "crowdloop.retraining.requested"


@task(name="trigger-retraining", retries=2, retry_delay_seconds=5)
def trigger_retraining(campaign_id: str) -> dict[str, Any] | None:
    spec = campaign_spec(campaign_id)
    if spec.retraining is None or spec.preferences is None:
        return None
    target = spec.retraining.target
    total = exported_pairs(campaign_id)
    record = plan_trigger(
        campaign_id,
        total,
        spec.retraining.threshold_pairs,
        target.deployment if target.kind == "deployment" else target.kind,  # type: ignore[arg-type]
    )
    logger = get_run_logger()
    if record is None:
        logger.info("%d exported pair(s): below the retraining threshold", total)
        return None
    dataset = str(spec.preferences.export.path)
    round_no = int(record.key.rsplit(":", 1)[1])
    history = str(Path(spec.output_dir) / "reward-model-rounds.jsonl")
    params: dict[str, Any] = {
        "dataset_path": dataset,
        "campaign_id": campaign_id,
        "round": round_no,
        "history_path": history,
    }
    flow_run_id: str | None = None
    result: dict[str, Any] | None = None
    if target.kind == "deployment":
        assert target.deployment is not None
        # The same key on a retried flow returns the same flow run instead of a second one.
        run = run_deployment(
            target.deployment, parameters=params, idempotency_key=record.key, timeout=0
        )
        flow_run_id = str(run.id)  # type: ignore[union-attr]
    elif target.kind == "inline":
        result = train_reward_model_flow(dataset, campaign_id, round_no, history)
    if target.emit_event or target.kind == "event":
        emit_event(
            event=RETRAIN_EVENT,
            resource={
                "prefect.resource.id": f"crowdloop.campaign.{campaign_id}",
                "crowdloop.trigger-key": record.key,
            },
            payload={"dataset_path": dataset, "pairs": total, "new_pairs": record.new_pairs},
        )
    finish_trigger(record.key, flow_run_id=flow_run_id, result=result)
    logger.info("retraining triggered (%s) on %d pairs, key %s", record.target, total, record.key)
    return {"key": record.key, "flow_run_id": flow_run_id, "result": result}
