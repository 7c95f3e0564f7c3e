"""The simulator's AI judge on rankings: accuracy and position bias as configured, an
informative confidence, and answers the aijudge connector's strict reader accepts."""

from __future__ import annotations

import json
import random
import statistics

from crowdloop.aggregation.rankings import concordance, kendall_tau
from crowdloop.connectors.aijudge.kinds import KINDS
from crowdloop.models.domain import RankTask
from crowdloop.simulator.ai_judge import completion_body, judge_ranking
from crowdloop.simulator.config import AIJudgeConfig
from crowdloop.simulator.world import CATALOG, make_prompt, render_list, response_quality


def _sets(n: int, k: int = 4) -> list[tuple[str, list[str]]]:
    """Prompts with `k` lists of 0-5 valid items each (junk fills the rest)."""
    rng = random.Random(11)
    topics = sorted(CATALOG)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        valid = CATALOG[topic]
        texts = []
        for j in range(k):
            good = rng.randint(0, 5)
            items = rng.sample(valid, good) + [f"junk {i}-{j}-{m}" for m in range(5 - good)]
            texts.append(render_list(items))
        out.append((make_prompt(topic, i), texts))
    return out


def _right(prompt: str, texts: list[str], places: list[int]) -> float | None:
    """Share of the truly ordered pairs the places order right (None: all equal)."""
    truth = [-round(response_quality(prompt, t) * 5) for t in texts]
    try:
        return concordance(places, truth)
    except ValueError:
        return None


def test_rankings_have_the_configured_accuracy_and_position_bias() -> None:
    sets = _sets(600)

    def mean_right(config: AIJudgeConfig) -> float:
        shares = [_right(p, t, judge_ranking(config, 0, p, t, False).places) for p, t in sets]
        return statistics.mean(x for x in shares if x is not None)

    perfect = AIJudgeConfig(accuracy=1.0, position_bias=0.0)
    assert mean_right(perfect) == 1.0
    # Content accuracy 0.8 per pair: its rankings order about that share of pairs right
    # (a little more: an intransitive mistake is outvoted by the other pairs).
    assert 0.78 < mean_right(AIJudgeConfig(accuracy=0.8, position_bias=0.0)) < 0.9
    assert mean_right(AIJudgeConfig(accuracy=0.6, position_bias=0.0)) < 0.75
    # Position bias 1: the response shown first is always on top.
    always = AIJudgeConfig(accuracy=0.8, position_bias=1.0)
    assert all(judge_ranking(always, 0, p, t, False).places[0] == 1 for p, t in sets)
    # Bias 0.2: it shows as disagreement between the order shown and the reverse.
    biased = AIJudgeConfig(accuracy=0.8, position_bias=0.2)
    fair = AIJudgeConfig(accuracy=0.8, position_bias=0.0)

    def agreement(config: AIJudgeConfig) -> float:
        taus = []
        for p, t in sets:
            shown = judge_ranking(config, 0, p, t, False).places
            back = judge_ranking(config, 0, p, t[::-1], False).places[::-1]
            taus.append(kendall_tau(shown, back))
        return statistics.mean(taus)

    assert agreement(fair) > agreement(biased) + 0.05
    # Deterministic: the same set in the same order is ranked the same way.
    p, t = sets[0]
    assert judge_ranking(biased, 3, p, t, False) == judge_ranking(biased, 3, p, t, False)


def test_confidence_is_informative_but_imperfect() -> None:
    config = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
    exact, off = [], []
    for p, t in _sets(800):
        ranking = judge_ranking(config, 0, p, t, False)
        right = _right(p, t, ranking.places)
        if right == 1.0:
            exact.append(ranking.confidence)
        elif right is not None and right <= 0.5:
            off.append(ranking.confidence)
    assert exact and off
    assert statistics.median(exact) > statistics.median(off) + 0.1
    assert max(off) > statistics.median(exact)


def test_its_completions_are_read_by_the_connector_with_and_without_ties() -> None:
    config = AIJudgeConfig()
    prompt, texts = _sets(1, k=5)[0]
    for ties in (False, True):
        task = RankTask(instruction="Rank.", prompt=prompt, responses=tuple(texts), ties=ties)
        kind = KINDS["rank"]
        for n, ask in enumerate(kind.asks(task, swap=True)):
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
            content = reply["choices"][0]["message"]["content"]
            places, confidence = ask.read(content)
            assert sorted(places) == list(range(1, 6)) or ties
            assert 0 <= confidence <= 1
            assert json.loads(content)["ranking"]
            assert reply["usage"]["prompt_tokens"] > 0
