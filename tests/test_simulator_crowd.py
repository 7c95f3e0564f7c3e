"""The simulated crowd: archetype mix, answer quality per archetype, purity of answers."""

from __future__ import annotations

from collections import Counter

import pytest

from crowdloop.models.domain import CompareTask, VerifyTask, WritePromptTask, WriteResponseTask
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd, Payload, Worker, truth_of

PROMPT = world.make_prompt("fruits", 0)
GOOD = world.render_list(["apple", "pear", "kiwi", "plum", "mango"])
WEAK = world.render_list(["apple", "lorem", "ipsum"])


def _compare(i: int) -> CompareTask:
    left, right = (GOOD, WEAK) if i % 2 else (WEAK, GOOD)
    return CompareTask(instruction="pick", prompt=PROMPT, left=left, right=right)


def _rate(crowd: Crowd, worker: Worker, payloads: list[Payload], field: str) -> float:
    """Share of answers equal to the truth over many tasks."""
    hits = 0
    for i, payload in enumerate(payloads):
        _, answer = crowd.work(worker, f"k{i}", payload, truth_of(payload))
        hits += answer[field] == truth_of(payload)
    return hits / len(payloads)


def _first(crowd: Crowd, archetype: str) -> Worker:
    return next(w for w in crowd.workers if w.archetype == archetype)


def test_crowd_has_the_configured_mix_with_opaque_ids() -> None:
    crowd = Crowd(CrowdConfig(honest=5, noisy=3, spammer=2, left_bias=1), seed=1)
    assert Counter(w.archetype for w in crowd.workers) == {
        "honest": 5,
        "noisy": 3,
        "spammer": 2,
        "left_bias": 1,
    }
    assert [w.id for w in crowd.workers] == [f"w{i:03d}" for i in range(1, 12)]
    assert crowd.workers == Crowd(CrowdConfig(honest=5, noisy=3, spammer=2, left_bias=1), 1).workers
    assert {w.speed for w in Crowd(CrowdConfig(), seed=1).workers} == {"fast", "slow"}


def test_truth_follows_the_oracle() -> None:
    assert truth_of(_compare(1)) == "left"
    assert truth_of(_compare(2)) == "right"
    assert truth_of(CompareTask(instruction="", prompt=PROMPT, left=GOOD, right=GOOD)) == "tie"
    verify = VerifyTask(instruction="", target="response", prompt=PROMPT, text=GOOD)
    assert truth_of(verify) == "accept"
    assert truth_of(verify.model_copy(update={"text": WEAK})) == "reject"
    assert truth_of(VerifyTask(instruction="", target="prompt", prompt="", text="hi")) == "reject"
    assert truth_of(WritePromptTask(instruction="", topic="fruits")) is None


@pytest.mark.parametrize(
    ("archetype", "compare_low", "compare_high", "verify_low", "verify_high"),
    [
        ("honest", 0.87, 0.97, 0.88, 0.98),
        ("noisy", 0.64, 0.80, 0.67, 0.83),
        ("spammer", 0.25, 0.42, 0.42, 0.58),
    ],
)
def test_archetype_accuracy(
    archetype: str, compare_low: float, compare_high: float, verify_low: float, verify_high: float
) -> None:
    crowd = Crowd(CrowdConfig(), seed=2)
    worker = _first(crowd, archetype)
    compares: list[Payload] = [_compare(i) for i in range(1500)]
    verifies: list[Payload] = [
        VerifyTask(instruction="", target="response", prompt=PROMPT, text=GOOD if i % 2 else WEAK)
        for i in range(1500)
    ]
    assert compare_low <= _rate(crowd, worker, compares, "choice") <= compare_high
    assert verify_low <= _rate(crowd, worker, verifies, "verdict") <= verify_high


def test_left_bias_prefers_the_left_side() -> None:
    crowd = Crowd(CrowdConfig(), seed=3)
    worker = _first(crowd, "left_bias")
    choices = Counter(
        crowd.work(worker, f"k{i}", _compare(i), truth_of(_compare(i)))[1]["choice"]
        for i in range(1500)
    )
    # Left is truly better on half the tasks; the bias pushes "left" well past that.
    assert choices["left"] / 1500 > 0.75


def test_writers_by_archetype() -> None:
    crowd = Crowd(CrowdConfig(), seed=4)
    task = WriteResponseTask(instruction="", prompt=PROMPT)
    for archetype, low, high in (("honest", 1.0, 1.0), ("noisy", 0.7, 0.9), ("spammer", 0, 0)):
        worker = _first(crowd, archetype)
        good = [
            world.response_quality(PROMPT, crowd.work(worker, f"k{i}", task, None)[1]["text"])
            >= 0.8
            for i in range(400)
        ]
        assert low <= sum(good) / len(good) <= high, archetype
    honest = _first(crowd, "honest")
    _, answer = crowd.work(honest, "p", WritePromptTask(instruction="", topic="rivers"), None)
    assert world.prompt_topic(answer["text"]) == "rivers"


def test_answers_and_delays_are_pure_functions_of_seed_worker_and_task() -> None:
    a, b, other = Crowd(CrowdConfig(), 9), Crowd(CrowdConfig(), 9), Crowd(CrowdConfig(), 10)
    payload = _compare(1)
    runs = [
        [crowd.work(w, f"k{i}", payload, "left") for w in crowd.workers for i in range(5)]
        for crowd in (a, b)
    ]
    assert runs[0] == runs[1]
    assert list(a.permutation("task-1")) == list(b.permutation("task-1"))
    assert list(a.permutation("task-1")) != list(other.permutation("task-1"))
    assert sorted(a.permutation("task-1")) == sorted(w.id for w in a.workers)
    low, high = CrowdConfig().slow_delay_s
    slow = next(w for w in a.workers if w.speed == "slow")
    assert all(low <= a.work(slow, f"k{i}", payload, "left")[0] <= high for i in range(50))
