"""The simulated crowd: who the workers are and how each archetype answers.

Every draw comes from `seeded_rng(config seed, purpose, worker id and/or task key)`, so
an answer, a delay or a worker order is a pure function of those values: two servers with
the same seed give the same answers however requests interleave.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from crowdloop.demo.top5 import (
    prompt_ok,
    response_quality,
    seeded_rng,
    write_prompt,
    write_response,
)
from crowdloop.models.domain import (
    CompareTask,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from crowdloop.simulator.config import CrowdConfig

Archetype = Literal["honest", "noisy", "spammer", "left_bias"]
Speed = Literal["fast", "slow"]
Payload: TypeAlias = WritePromptTask | WriteResponseTask | VerifyTask | CompareTask
Truth: TypeAlias = Literal["left", "right", "tie", "accept", "reject"] | None

ACCEPT_QUALITY = 0.8  # a response this good (4 of 5 valid items) should be accepted


@dataclass(frozen=True)
class Worker:
    id: str
    archetype: Archetype
    speed: Speed


def truth_of(payload: Payload) -> Truth:
    """The hidden correct answer for a judgment task; None for writing tasks."""
    if isinstance(payload, CompareTask):
        left = response_quality(payload.prompt, payload.left)
        right = response_quality(payload.prompt, payload.right)
        if left == right:
            return "tie"
        return "left" if left > right else "right"
    if isinstance(payload, VerifyTask):
        if payload.target == "prompt":
            ok = prompt_ok(payload.text)
        else:
            ok = response_quality(payload.prompt, payload.text) >= ACCEPT_QUALITY
        return "accept" if ok else "reject"
    return None


def build_workers(config: CrowdConfig, seed: int) -> list[Worker]:
    counts: dict[Archetype, int] = {
        "honest": config.honest,
        "noisy": config.noisy,
        "spammer": config.spammer,
        "left_bias": config.left_bias,
    }
    archetypes = [archetype for archetype, n in counts.items() for _ in range(n)]
    rng = seeded_rng(seed, "crowd")
    # Shuffled so a worker id says nothing about its archetype.
    rng.shuffle(archetypes)
    return [
        Worker(
            id=f"w{i:03d}",
            archetype=archetype,
            speed="fast" if rng.random() < config.fast_fraction else "slow",
        )
        for i, archetype in enumerate(archetypes, start=1)
    ]


class Crowd:
    def __init__(self, config: CrowdConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.workers = build_workers(config, seed)
        self.by_id = {w.id: w for w in self.workers}
        self._ids = [w.id for w in self.workers]

    def permutation(self, task_key: str) -> Iterator[str]:
        """The order in which workers are offered a task.

        A lazy Fisher-Yates shuffle: a task usually needs only its first few workers, so
        drawing the whole order up front would waste most of the draws.
        """
        order = list(self._ids)
        rng = seeded_rng(self.seed, "permutation", task_key)
        for i in range(len(order)):
            j = rng.randrange(i, len(order))
            order[i], order[j] = order[j], order[i]
            yield order[i]

    def work(
        self, worker: Worker, task_key: str, payload: Payload, truth: Truth
    ) -> tuple[float, dict[str, Any]]:
        """How long this worker takes on this task (simulated seconds) and their wire answer."""
        rng = seeded_rng(self.seed, "work", worker.id, task_key)
        low, high = self.config.fast_delay_s if worker.speed == "fast" else self.config.slow_delay_s
        return rng.uniform(low, high), self._answer(worker, rng, payload, truth)

    def _answer(
        self, worker: Worker, rng: random.Random, payload: Payload, truth: Truth
    ) -> dict[str, Any]:
        if isinstance(payload, CompareTask):
            return {"choice": self._compare(worker, rng, truth)}
        if isinstance(payload, VerifyTask):
            return {"verdict": self._verify(worker, rng, truth)}
        good = self._writes_well(worker, rng)
        if isinstance(payload, WritePromptTask):
            return {"text": write_prompt(payload.topic, rng, good)}
        return {"text": write_response(payload.prompt, rng, good)}

    # --- archetypes ----------------------------------------------------------------------

    def _compare(self, worker: Worker, rng: random.Random, truth: Truth) -> str:
        cfg = self.config
        if worker.archetype == "spammer":
            return rng.choice(("left", "right", "tie"))
        if worker.archetype == "left_bias" and rng.random() < cfg.left_bias_rate:
            return "left"
        accuracy = (
            cfg.noisy_compare_accuracy
            if worker.archetype == "noisy"
            else cfg.honest_compare_accuracy
        )
        if truth == "tie":
            return "tie" if rng.random() < cfg.tie_when_equal else rng.choice(("left", "right"))
        if rng.random() < accuracy:
            return str(truth)
        # A mistake: mostly the worse side, sometimes a cautious "tie".
        if rng.random() < 0.75:
            return "right" if truth == "left" else "left"
        return "tie"

    def _verify(self, worker: Worker, rng: random.Random, truth: Truth) -> str:
        cfg = self.config
        if worker.archetype == "spammer":
            return rng.choice(("accept", "reject"))
        accuracy = (
            cfg.noisy_verify_accuracy if worker.archetype == "noisy" else cfg.honest_verify_accuracy
        )
        if rng.random() < accuracy:
            return str(truth)
        return "reject" if truth == "accept" else "accept"

    def _writes_well(self, worker: Worker, rng: random.Random) -> bool:
        if worker.archetype == "spammer":
            return False
        if worker.archetype == "noisy":
            return rng.random() < self.config.noisy_good_text
        return True
