"""The replay connector (a recorded crowd study served as a marketplace) under the contract
suite. It has no HTTP underneath, so the transport-fault tests do not apply to it."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from crowdloop.connectors.base import Connector
from crowdloop.connectors.replay.connector import ReplayConnector, market_for, reset_replay_state
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, CompareTask, TaskItem

PAIRS = 8
WORKERS = ("w1", "w2", "w3")
WINNERS = ("left", "right", "tie")


class ReplayHarness(Harness):
    name = "replay"
    http = False
    routes: ClassVar[Mapping[Op, Route]] = {}

    def __init__(self) -> None:
        super().__init__()
        reset_replay_state()
        self._dir = tempfile.TemporaryDirectory(prefix="crowdloop-contract-replay-")
        folder = Path(self._dir.name)
        self.options = {
            "comparisons": str(folder / "comparisons.csv"),
            "pairs": str(folder / "pairs.jsonl"),
            "page_limit": 3,
        }
        # Record exactly the pairs `Harness.items` publishes, each judged by every worker.
        rows = []
        for item in self.items(PAIRS):
            payload = item.payload
            assert isinstance(payload, CompareTask)
            index = int(item.group.rsplit("-", 1)[1])
            rows.append(
                {
                    "id": index,
                    "prompt": 100 + index,
                    "text": payload.prompt,
                    "model_x": 1,
                    "result_x": payload.left,
                    "model_y": 2,
                    "result_y": payload.right,
                }
            )
        Path(self.options["pairs"]).write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
        with Path(self.options["comparisons"]).open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["id", "prompt", "model_x", "model_y", "worker", "winner"])
            for r in rows:
                for n, worker in enumerate(WORKERS):
                    winner = WINNERS[(r["id"] + n) % 3]
                    out.writerow([r["id"], r["prompt"], 1, 2, worker, winner])

    def connector(self, wrap: Wrap | None = None) -> Connector:
        return ReplayConnector.from_config(self.options, None)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        # Recorded judgments are served as soon as a task is published.
        return sum(min(item.overlap, len(WORKERS)) for item in items)

    def created(self) -> tuple[int, int]:
        market = market_for(Path(self.options["comparisons"]), Path(self.options["pairs"]))
        return market.stats["batches_created"], market.stats["tasks_created"]

    def close(self) -> None:
        reset_replay_state()
        self._dir.cleanup()


def make_harness() -> Harness:
    return ReplayHarness()
