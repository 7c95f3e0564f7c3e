"""The simulator's AI judge on graded comparisons: its level follows the hidden gap with the
configured accuracy (one level off otherwise), and its completions pass the connector's
strict reader in both orders."""

from __future__ import annotations

import pytest

from crowdloop.connectors.aijudge.kinds import KINDS
from crowdloop.models.domain import CompareTask
from crowdloop.simulator.ai_judge import completion_body, judge, judge_level
from crowdloop.simulator.config import AIJudgeConfig
from crowdloop.simulator.graded import level_of
from crowdloop.simulator.world import response_quality
from tests.test_simulated_ai_judge import _pairs

SCALE = ("negligibly better", "slightly better", "better", "significantly better")


@pytest.mark.parametrize("accuracy", [0.7, 0.95])
def test_the_level_is_the_true_gaps_with_the_configured_accuracy_else_one_off(
    accuracy: float,
) -> None:
    config = AIJudgeConfig(level_accuracy=accuracy)
    exact, off = 0, []
    for prompt, a, b in _pairs(3000):
        gap = response_quality(prompt, a) - response_quality(prompt, b)
        if gap == 0:
            continue
        truth = level_of(gap, len(SCALE))
        level = judge_level(config, 0, prompt, a, b, len(SCALE))
        assert 1 <= level <= len(SCALE)
        if level == truth:
            exact += 1
        else:
            off.append(abs(level - truth))
    share = exact / (exact + len(off))
    assert abs(share - accuracy) < 0.03, share
    assert set(off) == {1}  # a wrong level is one level off, never more


def _task(prompt: str, a: str, b: str, unsure: bool) -> CompareTask:
    return CompareTask(
        instruction="Which is better, and by how much?",
        prompt=prompt,
        left=a,
        right=b,
        scale=SCALE,
        unsure=unsure,
    )


@pytest.mark.parametrize("unsure", [True, False])
def test_its_completions_pass_the_strict_reader_in_both_orders(unsure: bool) -> None:
    config = AIJudgeConfig()
    kind = KINDS["compare"]
    sides, right_levels = 0, []
    for n, (prompt, a, b) in enumerate(_pairs(200)):
        task = _task(prompt, a, b, unsure)
        readings = []
        for ask in kind.asks(task, swap=True):
            body = {
                "model": config.model,
                "messages": [
                    {"role": "system", "content": ask.system},
                    {"role": "user", "content": ask.user},
                ],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": ask.schema_name, "strict": True, "schema": ask.schema},
                },
            }
            reply = completion_body(config, 0, body, f"chatcmpl-{n}")
            readings.append(ask.read(reply["choices"][0]["message"]["content"]))
        combined = kind.combine(task, readings)
        answer_side = combined["choice"]
        if not unsure:
            assert answer_side != "tie"
        truth = judge(config, 0, prompt, a, b).truth
        gap = response_quality(prompt, a) - response_quality(prompt, b)
        if combined["consistent"] and answer_side == {"A": "left", "B": "right"}.get(truth):
            sides += 1
            right_levels.append(abs(combined["detail"]["level"] - level_of(gap, len(SCALE))))
    # Both orders read, and where they agree on the true side, the combined level (the
    # weaker of the two) is within one level of the gap's.
    assert sides > 100
    assert all(d <= 1 for d in right_levels)
