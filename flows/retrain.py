"""The reference retraining deployment: fit a reward model on the exported pairs.

Small and CPU-only on purpose (a linear Bradley-Terry model over text features), so the
feedback loop visibly closes on any machine; swap in your trainer by pointing the
campaign's retraining target at your own deployment.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from crowdloop.reward_model import load_pairs, train_reward_model


@flow(name="train-reward-model", log_prints=False)
def train_reward_model_flow(
    dataset_path: str, campaign_id: str = "", round: int = 1, history_path: str | None = None
) -> dict[str, Any]:
    """Train on a TRL-style preference JSONL and report held-out pairwise accuracy."""
    logger = get_run_logger()
    rows = load_pairs(Path(dataset_path))
    report = train_reward_model(rows)
    result = {"campaign": campaign_id, "round": round, **asdict(report)}
    logger.info(
        "reward model round %d: %d train / %d held-out pairs, held-out accuracy %s",
        round,
        report.train_pairs,
        report.heldout_pairs,
        "n/a" if report.heldout_accuracy is None else f"{report.heldout_accuracy:.3f}",
    )
    history: list[dict[str, Any]] = [result]
    if history_path:
        path = Path(history_path)
        if path.exists():
            history = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            history = [h for h in history if h.get("round") != round] + [result]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    create_table_artifact(
        key="reward-model-rounds",
        table=history,
        description="Reward model held-out pairwise accuracy per retraining round",
    )
    return result
