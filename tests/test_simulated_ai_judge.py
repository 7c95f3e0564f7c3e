"""The simulator's AI judge: its documented model (accuracy, position bias, informative but
imperfect confidence) and its OpenAI-compatible endpoint behind the simulator's token."""

from __future__ import annotations

import random
import statistics

import httpx

from crowdloop.connectors.aijudge.prompt import render_pair, system_message
from crowdloop.simulator.ai_judge import judge
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.simulator.world import CATALOG, make_prompt, render_list


def _pairs(n: int) -> list[tuple[str, str, str]]:
    """Prompts with two lists of different quality (some valid items, some not)."""
    rng = random.Random(5)
    out = []
    topics = sorted(CATALOG)
    for i in range(n):
        topic = topics[i % len(topics)]
        prompt = make_prompt(topic, i)
        valid = CATALOG[topic]
        good, bad = rng.sample(range(1, 6), 2)
        a = render_list(valid[:good] + [f"nothing {i}-{k}" for k in range(5 - good)])
        b = render_list(valid[good : good + bad] + [f"junk {i}-{k}" for k in range(5 - bad)])
        out.append((prompt, a, b))
    return out


def test_the_model_has_its_configured_accuracy_bias_and_an_informative_confidence() -> None:
    config = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
    pairs = _pairs(3000)
    first = [judge(config, 0, p, a, b) for p, a, b in pairs]
    swapped = [judge(config, 0, p, b, a) for p, a, b in pairs]
    # Content accuracy 0.8 and a 10% lean to "A": about 0.8 * 0.9 + 0.1 * P(truth = A).
    share_a = sum(j.truth == "A" for j in first) / len(first)
    expected = 0.8 * 0.9 + 0.1 * share_a
    measured = sum(j.right for j in first) / len(first)
    assert abs(measured - expected) < 0.03, (measured, expected)
    a_rate = sum(j.winner == "A" for j in first) / len(first)
    b_rate = sum(j.winner == "B" for j in first) / len(first)
    assert a_rate - b_rate > 0.05  # the position bias shows
    # The swap catches most biased answers: the two orders disagree on about 2b(1 - b)/2+.
    flips = sum(
        {"A": "B", "B": "A", "tie": "tie"}[s.winner] != f.winner
        for f, s in zip(first, swapped, strict=True)
    ) / len(first)
    assert 0.08 < flips < 0.25
    # Informative: right answers are more confident; imperfect: the ranges overlap.
    right = [j.confidence for j in first if j.right]
    wrong = [j.confidence for j in first if not j.right]
    assert statistics.median(right) > statistics.median(wrong) + 0.15
    assert max(wrong) > statistics.median(right)
    # Deterministic: the same pair in the same order gets the same answer.
    assert first == [judge(config, 0, p, a, b) for p, a, b in pairs]


def test_the_endpoint_wants_the_token_and_answers_in_openai_shape() -> None:
    with SimulatorServer(SimulatorConfig(seed=1)) as sim:
        prompt, a, b = _pairs(1)[0]
        body = {
            "model": "sim-judge-1",
            "messages": [
                {"role": "system", "content": system_message("Which is better?")},
                {"role": "user", "content": render_pair(prompt, a, b)},
            ],
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "v", "strict": True, "schema": {"type": "object"}},
            },
        }
        url = f"{sim.url}/openai/v1/chat/completions"
        assert httpx.post(url, json=body, timeout=10).status_code == 401
        auth = {"Authorization": f"Bearer {sim.token}"}
        answer = httpx.post(url, json=body, headers=auth, timeout=10).json()
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["finish_reason"] == "stop"
        usage = answer["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        not_pairwise = {**body, "messages": [{"role": "user", "content": "hello"}]}
        refused = httpx.post(url, json=not_pairwise, headers=auth, timeout=10)
        assert refused.status_code == 400
        model = httpx.get(f"{sim.url}/openai/v1/models/sim-judge-1", headers=auth, timeout=10)
        assert model.json()["id"] == "sim-judge-1"
