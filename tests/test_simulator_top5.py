"""The top-5 demo domain: catalog, oracle, text writers and generators."""

from __future__ import annotations

import json
import random
from pathlib import Path
from statistics import mean

import pytest

from crowdloop.demo import top5
from crowdloop.models.domain import VerifyTask
from crowdloop.simulator import world
from crowdloop.simulator.crowd import truth_of


def test_catalog_has_a_dozen_topics_with_enough_items() -> None:
    assert len(world.CATALOG) >= 12
    for topic, items in world.CATALOG.items():
        assert len(set(items)) == len(items) >= 10, topic


@pytest.mark.parametrize("topic", sorted(world.CATALOG))
def test_every_prompt_phrasing_names_its_topic(topic: str) -> None:
    for variant in range(6):
        prompt = world.make_prompt(topic, variant)
        assert world.prompt_topic(prompt) == topic
        assert world.prompt_ok(prompt)


def test_junk_prompts_have_no_topic() -> None:
    for text in ["Tell me something.", "asdf qwerty blah", "List some things.", ""]:
        assert world.prompt_topic(text) is None
        assert not world.prompt_ok(text)
    # Naming a topic is not enough: the prompt must ask for five.
    assert world.prompt_topic("I like fruits") == "fruits"
    assert not world.prompt_ok("I like fruits")


def test_render_and_parse_round_trip() -> None:
    items = ["apple", "ticket to ride", "c++"]
    assert world.render_list(items) == "1. apple\n2. ticket to ride\n3. c++"
    assert world.parse_list(world.render_list(items)) == items
    assert world.parse_list("Here you go:\n1) kiwi\n  2.  plum  \nthanks") == ["kiwi", "plum"]
    assert world.parse_list("kiwi, plum") == []


def test_response_quality_counts_distinct_valid_items_in_the_first_five_lines() -> None:
    prompt = world.make_prompt("fruits", 0)
    assert world.response_quality(prompt, "1. apple\n2. pear\n3. kiwi\n4. plum\n5. mango") == 1.0
    assert world.response_quality(prompt, "1. Apple\n2. apple\n3. APPLE") == pytest.approx(0.2)
    assert world.response_quality(prompt, "1. carrot\n2. python\n3. apple") == pytest.approx(0.2)
    sixth_is_ignored = "1. x\n2. y\n3. z\n4. w\n5. v\n6. apple"
    assert world.response_quality(prompt, sixth_is_ignored) == 0.0
    assert world.response_quality(prompt, "apple pear kiwi plum mango") == 0.0
    assert world.response_quality("hello?", "1. apple\n2. pear") == 0.0


def test_writers_produce_good_and_bad_text_on_demand() -> None:
    rng = random.Random(3)
    for topic in world.CATALOG:
        for _ in range(20):
            good_prompt = world.write_prompt(topic, rng, good=True)
            assert world.prompt_ok(good_prompt)
            assert not world.prompt_ok(world.write_prompt(topic, rng, good=False))
            assert (
                world.response_quality(good_prompt, world.write_response(good_prompt, rng, True))
                >= 0.8
            )
            bad = world.write_response(good_prompt, rng, good=False)
            assert world.response_quality(good_prompt, bad) <= 0.4


def test_candidates_are_deterministic_with_stable_unique_ids() -> None:
    rows = top5.generate_candidates(["fruits", "rivers"], seed=5, prompts_per_topic=3)
    assert rows == top5.generate_candidates(["fruits", "rivers"], seed=5, prompts_per_topic=3)
    assert rows != top5.generate_candidates(["fruits", "rivers"], seed=6, prompts_per_topic=3)
    assert len(rows) == 2 * 3 * len(top5.MODELS)
    assert len({r["response_id"] for r in rows}) == len(rows)
    assert len({r["prompt_id"] for r in rows}) == 6
    assert {r["model"] for r in rows} == set(top5.MODELS)
    for row in rows:
        assert set(row) == {"prompt_id", "prompt", "response_id", "response", "model"}
        assert world.prompt_ok(row["prompt"])


def test_candidate_models_are_ranked_by_skill() -> None:
    rows = top5.generate_candidates(None, seed=1, prompts_per_topic=10)
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(
            world.response_quality(r["prompt"], r["response"])
        )
    quality = {model: mean(scores) for model, scores in by_model.items()}
    assert quality["model-strong"] > quality["model-good"] > quality["model-mediocre"]
    assert quality["model-mediocre"] > quality["model-weak"]
    assert quality["model-strong"] >= 0.9
    assert quality["model-weak"] <= 0.45


def test_unknown_topic_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="fruits"):
        top5.generate_candidates(["planets"], seed=1)


def test_golden_pairs_are_clear_cut_and_sides_vary() -> None:
    pairs = top5.generate_golden_pairs(None, seed=2, n=40)
    assert pairs == top5.generate_golden_pairs(None, seed=2, n=40)
    assert {p["answer"] for p in pairs} == {"left", "right"}
    assert len({p["id"] for p in pairs}) == 40
    for pair in pairs:
        loser = "right" if pair["answer"] == "left" else "left"
        assert world.response_quality(pair["prompt"], pair[pair["answer"]]) == 1.0
        assert world.response_quality(pair["prompt"], pair[loser]) <= 0.2
        assert pair["reason"]


def test_golden_verifications_agree_with_the_oracle() -> None:
    items = top5.generate_golden_verifications(["sports", "mammals"], seed=4, n=24)
    assert items == top5.generate_golden_verifications(["sports", "mammals"], seed=4, n=24)
    assert {(i["target"], i["verdict"]) for i in items} == {
        ("prompt", "accept"),
        ("prompt", "reject"),
        ("response", "accept"),
        ("response", "reject"),
    }
    off_topic = 0
    for item in items:
        task = VerifyTask(instruction="", target=item["target"], prompt=item["prompt"],
                          text=item["text"], topic=item["topic"])  # fmt: skip
        assert truth_of(task) == item["verdict"], item
        if item["target"] == "response":
            assert world.prompt_ok(item["prompt"])
        # Off-topic: a good text, but about another topic than the one it was written for.
        fine_elsewhere = (
            world.prompt_ok(item["text"])
            if item["target"] == "prompt"
            else any(
                world.response_quality(world.make_prompt(t, 0), item["text"]) == 1.0
                for t in world.CATALOG
            )
        )
        off_topic += int(item["verdict"] == "reject" and fine_elsewhere)
    assert off_topic >= 24 // 6 * 2


def test_write_jsonl_writes_one_sorted_object_per_line(tmp_path: Path) -> None:
    rows = top5.generate_golden_pairs(["fruits"], seed=1, n=3)
    path = top5.write_jsonl(tmp_path / "sub" / "golden.jsonl", rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
