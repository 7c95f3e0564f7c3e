"""Inputs of the graded-preference demo (campaigns/graded.yaml): the top-5 candidates and
golden pairs that carry a level, both from the simulator's task world.

A golden pair's level is what the simulator's hidden truth says
(`crowdloop.simulator.graded.level_of` of the quality gap), so a careful simulated worker
passes it and the golden check measures the same thing the truth test does. Half the
pairs are clear-cut (a perfect list against a broken answer: the strongest level), half
moderate (a perfect list against one with two wrong items: a gap of 0.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crowdloop.demo import top5
from crowdloop.ids import seeded_rng
from crowdloop.models.domain import CompareTask
from crowdloop.simulator.config import CrowdConfig
from crowdloop.simulator.crowd import Crowd
from crowdloop.simulator.graded import level_of, true_grade
from crowdloop.simulator.world import (
    CATALOG,
    PROMPT_TEMPLATES,
    make_prompt,
    render_list,
    response_quality,
    wrong_items,
)


def graded_golden_pairs(
    topics: Sequence[str], seed: int, n: int, labels: Sequence[str]
) -> list[dict[str, Any]]:
    """`n` golden pairs with `answer` and `level` (a label of `labels`, weakest first)."""
    rows: list[dict[str, Any]] = []
    for row in top5.generate_golden_pairs(topics, seed, n):
        i = len(rows)
        if i % 2:
            rng = seeded_rng(seed, "graded-golden", i)
            topic = topics[i % len(topics)]
            prompt = make_prompt(topic, rng.randrange(len(PROMPT_TEMPLATES)))
            good = render_list(rng.sample(CATALOG[topic], 5))
            items = rng.sample(CATALOG[topic], 3) + wrong_items(topic, rng, 2)
            rng.shuffle(items)
            worse = render_list(items)
            left, right = (good, worse) if row["answer"] == "left" else (worse, good)
            row = {**row, "prompt": prompt, "left": left, "right": right}
            row["reason"] = f"the {row['answer']} answer lists five valid {topic}, the other three"
        gap = response_quality(row["prompt"], row["left"]) - response_quality(
            row["prompt"], row["right"]
        )
        rows.append({**row, "level": labels[level_of(gap, len(labels)) - 1]})
    return rows


def write_graded_inputs(
    folder: Path,
    seed: int,
    topics: Sequence[str],
    prompts_per_topic: int,
    golden: int,
    labels: Sequence[str],
) -> None:
    top5.write_jsonl(
        folder / "candidates.jsonl",
        top5.generate_candidates(topics, seed, prompts_per_topic=prompts_per_topic),
    )
    top5.write_jsonl(
        folder / "golden-pairs.jsonl", graded_golden_pairs(topics, seed, golden, labels)
    )


def simulate_graded(
    config: CrowdConfig,
    seed: int,
    prompts_per_topic: int,
    overlap: int,
    labels: Sequence[str],
    topics: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every pair of the demo's four model answers per prompt asked on `labels` (with
    unsure) of `overlap` workers of a simulated crowd, without a marketplace or database.

    Returns the answers (``pair, worker, left, right, label, level``: the frame the
    aggregation reads) and the hidden truth (``pair, true_side, true_level``).
    """
    crowd = Crowd(config, seed)
    rows = top5.generate_candidates(
        list(topics or CATALOG), seed, prompts_per_topic=prompts_per_topic
    )
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    answers: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for pid, cands in sorted(by_prompt.items()):
        for i in range(len(cands)):
            for j in range(i + 1, len(cands)):
                a, b = cands[i], cands[j]
                if seeded_rng(seed, "side", pid, i, j).random() < 0.5:
                    a, b = b, a
                pair = f"{pid}:{a['response_id']}:{b['response_id']}"
                task = CompareTask(
                    instruction="Which is better, and by how much?",
                    prompt=a["prompt"],
                    left=a["response"],
                    right=b["response"],
                    scale=tuple(labels),
                )
                side, level = true_grade(task)
                truth.append({"pair": pair, "true_side": side, "true_level": level})
                order = crowd.permutation(pair)
                for _ in range(overlap):
                    worker = crowd.by_id[next(order)]
                    _, answer = crowd.work(worker, pair, task, None)
                    answers.append(
                        {
                            "pair": pair,
                            "worker": worker.id,
                            "left": a["response_id"],
                            "right": b["response_id"],
                            "label": answer["choice"],
                            "level": answer.get("level"),
                        }
                    )
    return pd.DataFrame(answers), pd.DataFrame(truth)
