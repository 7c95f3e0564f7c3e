"""The simulated crowd: who the workers are and how each archetype answers.

Every draw comes from `seeded_rng(config seed, purpose, worker id and/or task key)`, so
an answer, a delay or a worker order is a pure function of those values: two servers with
the same seed give the same answers however requests interleave. One exception: a
sleeper's answer also depends on how many tasks the sleeper was handed before (careful
for the first `sleeper_careful_answers`), i.e. on the order in which work was published.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from crowdloop.ids import seeded_rng
from crowdloop.models.domain import (
    CompareTask,
    RankTask,
    RateTask,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.graded import graded_answer, scale_factor
from crowdloop.simulator.rating import rating_answer, worker_style
from crowdloop.simulator.world import (
    cosmetic_copy,
    make_prompt,
    other_topic,
    prompt_ok,
    prompt_topic,
    response_quality,
    write_lazy,
    write_prompt,
    write_response,
)

Archetype = Literal[
    "honest",
    "noisy",
    "spammer",
    "left_bias",
    "sleeper",
    "always_tie",
    "same_side",
    "colluder",
    "volume_spammer",
    # writers (they verify and compare carefully)
    "lazy",
    "copy_paste",
    "copier",
    "off_topic",
    # verifiers (they write and compare carefully)
    "rubber_stamp",
    "harsh",
    "random_verifier",
]
# Archetypes whose answers (all, or after a while) do not depend on the content: the
# workers a quality check should catch. Noisy and left-biased workers are imperfect but
# informative, and are counted as neither honest nor bad by the benchmarks.
BAD_ARCHETYPES: frozenset[str] = frozenset(
    {"spammer", "sleeper", "always_tie", "same_side", "colluder", "volume_spammer"}
)
# Careless from the start (a sleeper's careless answers are a spammer's).
_CARELESS = BAD_ARCHETYPES - {"sleeper"}
# Bad at one job only: writers whose texts should not be trained on (lazy; the same text
# everywhere; copies of other people's texts; text about another topic), and verifiers
# whose verdicts do not follow the text (accept everything; reject nearly everything;
# random). bench/bench_demonstrations.py mixes them in.
BAD_WRITERS: frozenset[str] = frozenset({"lazy", "copy_paste", "copier", "off_topic"})
BAD_VERIFIERS: frozenset[str] = frozenset({"rubber_stamp", "harsh", "random_verifier"})
Speed = Literal["fast", "slow"]
Payload: TypeAlias = (
    WritePromptTask | WriteResponseTask | VerifyTask | CompareTask | RankTask | RateTask
)
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
            # A prompt written for another topic than asked is off-topic (when the task
            # says which topic; golden items without one are judged on their own).
            ok = prompt_ok(payload.text) and (
                not payload.topic or prompt_topic(payload.text) == payload.topic
            )
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
        "sleeper": config.sleeper,
        "always_tie": config.always_tie,
        "same_side": config.same_side,
        "colluder": config.colluder,
        "volume_spammer": config.volume_spammer,
        "lazy": config.lazy,
        "copy_paste": config.copy_paste,
        "copier": config.copier,
        "off_topic": config.off_topic,
        "rubber_stamp": config.rubber_stamp,
        "harsh": config.harsh,
        "random_verifier": config.random_verifier,
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
        self._weights = [
            config.volume_weight if w.archetype == "volume_spammer" else 1.0 for w in self.workers
        ]
        # Tasks each worker was handed so far (sleepers turn careless after a few).
        self._handed: dict[str, int] = {}
        self._busy_until: dict[str, float] = {}
        # Texts written so far, for copiers: (kind, topic, text, writer). Like a sleeper's
        # count, this makes a copier's answer depend on the order work was handed out.
        self._written: list[tuple[str, str | None, str, str]] = []
        # A copy-paster's one text per kind.
        self._pasted: dict[tuple[str, str], str] = {}

    def permutation(self, task_key: str) -> Iterator[str]:
        """The order in which workers are offered a task.

        A lazy Fisher-Yates shuffle: a task usually needs only its first few workers, so
        drawing the whole order up front would waste most of the draws. With high-volume
        workers in the crowd, a weighted order instead (Efraimidis-Spirakis keys
        u^(1/weight)): a worker of weight w comes first about w times as often.
        """
        rng = seeded_rng(self.seed, "permutation", task_key)
        if any(w != 1.0 for w in self._weights):
            keys = [rng.random() ** (1.0 / w) for w in self._weights]
            ranked = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)
            yield from (self._ids[i] for i in ranked)
            return
        order = list(self._ids)
        for i in range(len(order)):
            j = rng.randrange(i, len(order))
            order[i], order[j] = order[j], order[i]
            yield order[i]

    def work(
        self, worker: Worker, task_key: str, payload: Payload, truth: Truth, now: float = 0.0
    ) -> tuple[float, dict[str, Any]]:
        """How long this worker takes on this task (simulated seconds) and their wire answer.

        A sleeper works through their tasks one after another (each starts when the last
        was submitted), so their careful answers are also their first ones in time.
        """
        rng = seeded_rng(self.seed, "work", worker.id, task_key)
        low, high = self.config.fast_delay_s if worker.speed == "fast" else self.config.slow_delay_s
        delay = rng.uniform(low, high)
        if worker.archetype == "sleeper":
            handed = self._handed.get(worker.id, 0)
            self._handed[worker.id] = handed + 1
            start = max(now, self._busy_until.get(worker.id, now))
            self._busy_until[worker.id] = start + delay
            delay += start - now
            if handed >= self.config.sleeper_careful_answers:
                worker = Worker(id=worker.id, archetype="spammer", speed=worker.speed)
        return delay, self._answer(worker, rng, payload, truth)

    def _answer(
        self, worker: Worker, rng: random.Random, payload: Payload, truth: Truth
    ) -> dict[str, Any]:
        if isinstance(payload, CompareTask):
            answer = (
                self._graded(worker, rng, payload)
                if payload.scale
                else {"choice": self._compare(worker, rng, truth, payload)}
            )
            return self._with_rationale(worker, rng, payload, answer)
        if isinstance(payload, VerifyTask):
            answer = {"verdict": self._verify(worker, rng, truth)}
            return self._with_rationale(worker, rng, payload, answer)
        if isinstance(payload, RankTask):
            return {"ranks": self._rank(worker, rng, payload)}
        if isinstance(payload, RateTask):
            return self._with_rationale(worker, rng, payload, self._rate(worker, rng, payload))
        topic: str | None
        if isinstance(payload, WritePromptTask):
            kind, topic = "prompt", payload.topic
        else:
            kind, topic = "response", prompt_topic(payload.prompt)
        text = self._write(worker, rng, payload, kind, topic)
        self._written.append((kind, topic, text, worker.id))
        return {"text": text}

    def _write(
        self,
        worker: Worker,
        rng: random.Random,
        payload: WritePromptTask | WriteResponseTask,
        kind: str,
        topic: str | None,
    ) -> str:
        archetype = worker.archetype
        if archetype == "lazy":
            return write_lazy(kind, rng)
        if archetype == "off_topic":
            elsewhere = other_topic(topic, rng)
            if kind == "prompt":
                return write_prompt(elsewhere, rng, good=True)
            return write_response(make_prompt(elsewhere, 0), rng, good=True)
        if archetype == "copy_paste":
            pasted = self._pasted.get((worker.id, kind))
            if pasted is None:
                pasted = self._write_own(worker, rng, payload)
                self._pasted[(worker.id, kind)] = pasted
            return pasted
        if archetype == "copier":
            others = [t for k, tp, t, w in self._written if k == kind and w != worker.id]
            same_topic = [
                t for k, tp, t, w in self._written if k == kind and w != worker.id and tp == topic
            ]
            pool = same_topic or others
            if pool:
                source = rng.choice(pool)
                return source if rng.random() < 0.5 else cosmetic_copy(source, rng)
        return self._write_own(worker, rng, payload)

    def _write_own(
        self, worker: Worker, rng: random.Random, payload: WritePromptTask | WriteResponseTask
    ) -> str:
        good = self._writes_well(worker, rng)
        if isinstance(payload, WritePromptTask):
            return write_prompt(payload.topic, rng, good)
        return write_response(payload.prompt, rng, good)

    # --- archetypes ----------------------------------------------------------------------

    def is_hard(self, payload: CompareTask) -> bool:
        """Whether careful workers are near 50/50 on this pair (a property of the pair)."""
        cfg = self.config
        if cfg.hard_share <= 0:
            return False
        if not cfg.hard_clear_cut:
            gap = abs(
                response_quality(payload.prompt, payload.left)
                - response_quality(payload.prompt, payload.right)
            )
            if gap >= 0.8:
                return False
        sides = sorted((payload.left, payload.right))
        return seeded_rng(self.seed, "hard", payload.prompt, *sides).random() < cfg.hard_share

    def _compare(
        self, worker: Worker, rng: random.Random, truth: Truth, payload: CompareTask
    ) -> str:
        cfg = self.config
        if worker.archetype in ("spammer", "volume_spammer"):
            return rng.choice(("left", "right", "tie"))
        if worker.archetype == "always_tie":
            return "tie"
        if worker.archetype == "same_side":
            return "left"
        if worker.archetype == "colluder":
            # One answer per pair shared by the whole group, whatever the content.
            shared = seeded_rng(self.seed, "collude", payload.prompt, payload.left, payload.right)
            return shared.choice(("left", "right"))
        if worker.archetype == "left_bias" and rng.random() < cfg.left_bias_rate:
            return "left"
        accuracy = (
            cfg.noisy_compare_accuracy
            if worker.archetype == "noisy"
            else cfg.honest_compare_accuracy
        )
        if truth in ("left", "right") and self.is_hard(payload):
            accuracy = cfg.hard_accuracy
        if truth == "tie":
            return "tie" if rng.random() < cfg.tie_when_equal else rng.choice(("left", "right"))
        if rng.random() < accuracy:
            return str(truth)
        # A mistake: mostly the worse side, sometimes a cautious "tie".
        if rng.random() < 0.75:
            return "right" if truth == "left" else "left"
        return "tie"

    def _rank(self, worker: Worker, rng: random.Random, payload: RankTask) -> list[int]:
        """Places (1 best) for the responses as shown. Careful workers order by the hidden
        quality plus noise; random clickers shuffle; same-side workers keep the shown order
        (always-tie workers too where ties are not allowed); colluders share one shuffle."""
        cfg = self.config
        k = len(payload.responses)
        shown = list(range(1, k + 1))
        archetype = worker.archetype
        if archetype in ("spammer", "volume_spammer"):
            rng.shuffle(shown)
            return shown
        if archetype == "same_side" or (archetype == "always_tie" and not payload.ties):
            return shown
        if archetype == "always_tie":
            return [1] * k
        if archetype == "colluder":
            shared = seeded_rng(self.seed, "collude", payload.prompt, *payload.responses)
            shared.shuffle(shown)
            return shown
        if archetype == "left_bias" and rng.random() < cfg.left_bias_rate:
            return shown
        noise = cfg.noisy_rank_noise if archetype == "noisy" else cfg.honest_rank_noise
        perceived = [
            response_quality(payload.prompt, text) + rng.gauss(0.0, noise)
            for text in payload.responses
        ]
        order = sorted(range(k), key=lambda i: -perceived[i])
        places = [0] * k
        for position, i in enumerate(order):
            prev = order[position - 1] if position else None
            tied = (
                payload.ties
                and prev is not None
                and perceived[prev] - perceived[i] < cfg.rank_tie_gap
            )
            places[i] = places[prev] if tied and prev is not None else position + 1
        return places

    def _rate(self, worker: Worker, rng: random.Random, payload: RateTask) -> dict[str, Any]:
        cfg = self.config
        style = {
            a.name: worker_style(
                self.seed, worker.id, a.name, cfg.rating_bias_spread, cfg.rating_scale_spread
            )
            for a in payload.aspects
        }
        return rating_answer(
            worker.archetype,
            rng,
            payload,
            noise=cfg.noisy_rating_noise if worker.archetype == "noisy" else cfg.rating_noise,
            style=style,
            shared=seeded_rng(self.seed, "collude", payload.prompt, payload.response),
        )

    def _graded(self, worker: Worker, rng: random.Random, payload: CompareTask) -> dict[str, Any]:
        cfg = self.config
        noisy = worker.archetype == "noisy"
        shared = seeded_rng(self.seed, "collude", payload.prompt, payload.left, payload.right)
        return graded_answer(
            worker.archetype,
            rng,
            payload,
            noise=cfg.noisy_graded_noise if noisy else cfg.graded_noise,
            factor=scale_factor(self.seed, worker.id, cfg.graded_scale_spread),
            left_bias_rate=cfg.left_bias_rate,
            shared=shared,
        )

    def _with_rationale(
        self,
        worker: Worker,
        rng: random.Random,
        payload: CompareTask | VerifyTask | RateTask,
        answer: dict[str, Any],
    ) -> dict[str, Any]:
        """A careful worker sometimes says why, when the task offers it; careless ones never."""
        if not payload.rationale or worker.archetype in _CARELESS:
            return answer
        if rng.random() >= self.config.rationale_rate:
            return answer
        if isinstance(payload, CompareTask):
            left = response_quality(payload.prompt, payload.left)
            right = response_quality(payload.prompt, payload.right)
            why = f"A has {round(left * 5)} good items of 5, B has {round(right * 5)}."
        elif isinstance(payload, RateTask):
            good = round(response_quality(payload.prompt, payload.response) * 5)
            why = f"The list has {good} good items of 5."
        else:
            why = f"I would {answer['verdict']} this text as it stands."
        return {**answer, "rationale": why}

    def _verify(self, worker: Worker, rng: random.Random, truth: Truth) -> str:
        cfg = self.config
        if worker.archetype in _CARELESS or worker.archetype == "random_verifier":
            return rng.choice(("accept", "reject"))
        if worker.archetype == "rubber_stamp":
            return "accept"
        if worker.archetype == "harsh" and rng.random() < cfg.harsh_reject_rate:
            return "reject"
        accuracy = (
            cfg.noisy_verify_accuracy if worker.archetype == "noisy" else cfg.honest_verify_accuracy
        )
        if rng.random() < accuracy:
            return str(truth)
        return "reject" if truth == "accept" else "accept"

    def _writes_well(self, worker: Worker, rng: random.Random) -> bool:
        if worker.archetype in _CARELESS:
            return False
        if worker.archetype == "noisy":
            return rng.random() < self.config.noisy_good_text
        return True
