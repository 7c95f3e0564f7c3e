"""The simulated AI judge on rating prompts: its error follows its configured leniency and
noise, its confidence is informative, and its completions pass the connector's strict
reader with the aspects in either order."""

from __future__ import annotations

import statistics

from crowdloop.connectors.aijudge.kinds import KINDS
from crowdloop.models.domain import RatedAspect, RateTask
from crowdloop.simulator.ai_judge import completion_body, judge_rating
from crowdloop.simulator.config import AIJudgeConfig
from crowdloop.simulator.rating import true_score
from crowdloop.simulator.world import render_list

ASPECTS = [
    RatedAspect(name="helpfulness", low=0, high=4),
    RatedAspect(name="verbosity", low=1, high=7),
]


def _responses(n: int) -> list[tuple[str, str]]:
    fruit = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "sloe"]
    return [
        (f"List the top 5 fruits, take {i}", render_list(fruit[i % 3 : i % 3 + 1 + i % 5]))
        for i in range(n)
    ]


def test_its_scores_carry_its_leniency_and_its_confidence_follows_its_error() -> None:
    config = AIJudgeConfig(accuracy=0.8, rating_bias=0.5)
    signed: list[float] = []
    by_confidence: list[tuple[float, float]] = []
    for prompt, response in _responses(300):
        rated = judge_rating(config, 0, prompt, response, ASPECTS)
        errors = [rated.scores[a.name] - true_score(prompt, response, a) for a in ASPECTS]
        signed.extend(errors)
        by_confidence.append((rated.confidence, statistics.mean(map(abs, errors))))
        assert all(a.low <= rated.scores[a.name] <= a.high for a in ASPECTS)
    # Lenient by about its bias (less where the top of the scale clips it).
    assert 0.25 < statistics.mean(signed) < 0.6
    by_confidence.sort()
    half = len(by_confidence) // 2
    unsure = statistics.mean(e for _, e in by_confidence[:half])
    sure = statistics.mean(e for _, e in by_confidence[half:])
    assert sure < unsure


def test_an_accurate_judge_errs_less_than_a_confused_one() -> None:
    def error(accuracy: float) -> float:
        config = AIJudgeConfig(accuracy=accuracy, rating_bias=0.0)
        out = []
        for prompt, response in _responses(200):
            rated = judge_rating(config, 1, prompt, response, ASPECTS)
            out += [abs(rated.scores[a.name] - true_score(prompt, response, a)) for a in ASPECTS]
        return statistics.mean(out)

    assert error(1.0) < error(0.0) - 0.2


def test_its_completions_are_read_by_the_connector_in_both_orders() -> None:
    config = AIJudgeConfig()
    prompt, response = _responses(1)[0]
    task = RateTask(instruction="Rate.", prompt=prompt, response=response, aspects=tuple(ASPECTS))
    for n, ask in enumerate(KINDS["rate"].asks(task, swap=True)):
        body = {
            "model": config.model,
            "messages": [
                {"role": "system", "content": ask.system},
                {"role": "user", "content": ask.user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": ask.schema_name, "schema": ask.schema},
            },
        }
        reply = completion_body(config, 0, body, f"chatcmpl-{n}")
        scores, confidence = ask.read(reply["choices"][0]["message"]["content"])
        assert set(scores) == {"helpfulness", "verbosity"}
        assert confidence is not None and 0 <= confidence <= 1
        assert reply["usage"]["prompt_tokens"] > 0
