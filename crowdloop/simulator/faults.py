"""Fault injection for the simulated marketplace: which request fails how, which
assignment is served garbled.

Request faults come from one RNG seeded by `FaultConfig.seed`, drawn in request order;
garbling is decided per assignment from (fault seed, assignment id) and remembered, so
every read of a garbled assignment returns the same broken answer.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from enum import StrEnum
from typing import Any

from crowdloop.ids import seeded_rng
from crowdloop.simulator.config import FaultConfig


class Fault(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    FALSE_500 = "false_500"
    GARBLE = "garble"


_GARBLED_BY_KIND: dict[str, tuple[Any, ...]] = {
    "compare": ({"choice": "maybe"}, {}, {"verdict": "accept"}, "left"),
    "verify": ({"verdict": "perhaps"}, {}, {"choice": "left"}, None),
    "write_prompt": ({"text": ""}, {}, {"txt": "typo in the field name"}, 42),
    "write_response": ({"text": ""}, {}, {"verdict": "accept"}, ["1. apple"]),
}


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._garbled: dict[str, Any] = {}
        self.injected: Counter[str] = Counter()
        self.replace(config)

    @property
    def config(self) -> FaultConfig:
        return self._config

    def replace(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)

    def draw(self, method: str) -> Fault | None:
        """The fault (if any) to inject into this /api/v1 request."""
        with self._lock:
            cfg = self._config
            if not cfg.any_request_fault:
                return None
            roll = self._rng.random()
            fault: Fault | None = None
            for candidate, p in (
                (Fault.RATE_LIMIT, cfg.rate_limit),
                (Fault.SERVER_ERROR, cfg.server_error),
                (Fault.TIMEOUT, cfg.timeout),
                # Only a write can have an effect worth lying about.
                (Fault.FALSE_500, cfg.false_500 if method in ("POST", "PUT") else 0.0),
            ):
                if roll < p:
                    fault = candidate
                    break
                roll -= p
            if fault is not None:
                self.injected[fault.value] += 1
            return fault

    def answer_for(self, assignment_id: str, task_kind: str, answer: dict[str, Any]) -> Any:
        """The answer to serve: the real one, or a sticky malformed one."""
        with self._lock:
            if assignment_id in self._garbled:
                return self._garbled[assignment_id]
            if self._config.garble <= 0:
                return answer
            rng = seeded_rng(self._config.seed, "garble", assignment_id)
            if rng.random() >= self._config.garble:
                return answer
            garbled = rng.choice(_GARBLED_BY_KIND[task_kind])
            self._garbled[assignment_id] = garbled
            self.injected[Fault.GARBLE.value] += 1
            return garbled
