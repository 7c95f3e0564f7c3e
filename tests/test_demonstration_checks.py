"""Demonstrations you can train on (issue 14): text checks, verdicts on sparse data,
re-collection from someone new, and the SFT export's threshold and blocked-author policy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import col, select

from crowdloop.aggregation.verdicts import WeightedVote, aggregate_verdicts
from crowdloop.db import session_scope
from crowdloop.models.domain import VerifyTask
from crowdloop.models.spec import SpecError, TextRules, load_campaign
from crowdloop.models.tables import (
    Item,
    Judgment,
    Prompt,
    Response,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.crowd import Crowd, truth_of
from crowdloop.stages import demonstrations
from crowdloop.stages.export import sft_rows
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds
from crowdloop.textcheck import (
    DuplicateIndex,
    TopicEntries,
    list_entries,
    normalise,
    rule_failure,
    topic_failure,
)
from tests.e2e_helpers import SMALL, campaign_dir, simulator

# --- text checks ---------------------------------------------------------------------------


def test_cosmetic_copies_normalise_alike_and_different_lists_do_not() -> None:
    original = "1. warsaw\n2. Madrid\n3. pineapple\n4. Prague\n5. rome"
    assert normalise(original) == normalise(
        "1) PINEAPPLE\n2) prague\n3) Rome\n4) Warsaw\n5) madrid"
    )
    assert normalise("List the top 5 fruits.") == normalise("  list the TOP 5 fruits!! ")
    assert normalise(original) != normalise("1. warsaw\n2. madrid\n3. paris\n4. prague\n5. rome")


def test_duplicate_index_finds_exact_and_near_copies_not_unrelated_text() -> None:
    index = DuplicateIndex(threshold=0.7)
    first = "Give me your top 5 european capitals, as a numbered list. I need it for a talk."
    index.add("p-1", first, "european capitals")
    index.add("p-2", "Name 5 well-known rivers, one per line, numbered.", "rivers")
    assert index.find(first.upper(), "european capitals") == ("p-1", 1.0)
    near = index.find(first.replace("a talk", "the talk"), "european capitals")
    assert near is not None and near[0] == "p-1" and 0.7 <= near[1] < 1.0
    # The same pattern for another topic is no copy; a near copy is looked for in its topic.
    assert index.find("Name 5 well-known mammals, one per line, numbered.", "mammals") is None
    assert index.find(first.replace("a talk", "the talk"), "rivers") is None
    assert index.find("What are five good examples of sports? Give a top-5 list.", "sports") is None


def test_minhash_recall_on_cosmetic_copies_of_simulated_lists() -> None:
    """Every cosmetic copy the simulator's copiers make of 200 lists is found; none of 200
    independently written lists of the same topics is taken for a copy of another."""
    rng = random.Random(3)
    prompts = [world.make_prompt(t, 0) for t in world.CATALOG]
    originals = [world.write_response(rng.choice(prompts), rng, good=True) for _ in range(200)]
    index = DuplicateIndex(threshold=0.7)
    for n, text in enumerate(originals):
        index.add(f"r-{n}", text)
    copies = [world.cosmetic_copy(t, rng) for t in originals]
    assert all(index.find(c) is not None for c in copies)
    fresh = [world.write_response(rng.choice(prompts), rng, good=True) for _ in range(200)]
    false = [t for t in fresh if (hit := index.find(t)) is not None and hit[1] < 1.0]
    assert len(false) <= 2  # same five entries in another order is a copy (hit[1] == 1.0)


def test_rules_name_what_a_text_breaks() -> None:
    rules = TextRules(min_chars=10, max_chars=40, min_words=3, min_lines=2, pattern=r"^\s*1[.)]")
    assert rule_failure("hi", rules) == "shorter than 10 characters (2)"
    assert rule_failure("x" * 41, rules) == "longer than 40 characters (41)"
    assert rule_failure("abcdefghijk lm", rules) == "fewer than 3 words (2)"
    assert rule_failure("one two three four", rules) == "fewer than 2 lines (1)"
    assert "required format" in (rule_failure("a b c\nd e f", rules) or "")
    assert rule_failure("1. apple pie\n2. pear tart", rules) is None


def test_a_bad_pattern_fails_at_load_naming_file_line_and_field(tmp_path: Path) -> None:
    path = campaign_dir(
        tmp_path,
        "bad-pattern",
        overrides={"demonstrations": {"checks": {"response": {"pattern": "(["}}}},
    )
    with pytest.raises(SpecError) as err:
        load_campaign(path)
    message = str(err.value)
    assert f"{path}:" in message
    assert "field 'demonstrations.checks.response.pattern'" in message
    assert "not a valid regular expression" in message


def test_verifiers_see_the_topic_and_reject_a_prompt_for_another_one() -> None:
    prompt = world.make_prompt("rivers", 1)
    on_topic = VerifyTask(instruction="", target="prompt", prompt="", text=prompt, topic="rivers")
    off_topic = on_topic.model_copy(update={"topic": "mammals"})
    assert truth_of(on_topic) == "accept"
    assert truth_of(off_topic) == "reject"
    crowd = Crowd(CrowdConfig(honest=1, noisy=0, spammer=0, left_bias=0,
                              honest_verify_accuracy=1.0), seed=0)  # fmt: skip
    worker = crowd.workers[0]
    assert crowd.work(worker, "k1", off_topic, truth_of(off_topic))[1] == {"verdict": "reject"}


def test_a_prompt_naming_another_topic_and_not_its_own_is_off_topic() -> None:
    topics = list(world.CATALOG)
    rng = random.Random(0)
    for topic in topics:
        for variant in range(len(world.PROMPT_TEMPLATES)):
            assert topic_failure(world.make_prompt(topic, variant), topic, topics) is None
        other = world.other_topic(topic, rng)
        assert topic_failure(world.write_prompt(other, rng, good=True), topic, topics) == (
            f"off-topic: names {other!r}, not {topic!r}"
        )
    # Plurals and case do not matter; a prompt naming no topic, or its own beside
    # another, is left to the verifiers.
    assert topic_failure("Give me 5 RIVER names", "rivers", topics) is None
    assert topic_failure("Write something nice for me", "rivers", topics) is None
    assert topic_failure("Top 5 rivers where mammals live", "rivers", topics) is None
    # A topic whose name is part of this one's says nothing about it.
    assert (
        topic_failure("Top 5 capitals", "european capitals", ["capitals", "european capitals"])
        is None
    )
    assert topic_failure("List 5 mammals", "", topics) is None


def test_a_list_of_another_topics_entries_and_none_of_its_own_is_off_topic() -> None:
    """Nine in ten simulated off-topic lists are caught once every topic has two lists,
    and no honest list is (300 seeds), whether or not it carries a wrong entry."""
    topics = list(world.CATALOG)
    caught = honest_flagged = 0
    for seed in range(300):
        rng = random.Random(seed)
        answers = TopicEntries()
        for topic in topics:
            for n in range(2):
                answers.add(topic, world.write_response(world.make_prompt(topic, n), rng, True))
        for topic in topics:
            prompt = world.make_prompt(topic, 0)
            honest = world.write_response(prompt, rng, good=True)
            honest_flagged += answers.failure(honest, topic) is not None
            other = world.other_topic(topic, rng)
            off = world.write_response(world.make_prompt(other, 0), rng, good=True)
            failure = answers.failure(off, topic)
            caught += failure is not None
            if failure is not None:
                # It names the topic whose lists share most (honest lists carry a wrong
                # entry or two of other topics, so not always the writer's).
                assert failure.startswith("off-topic: ") and f"of {topic!r}'s" in failure
    assert honest_flagged == 0
    # Two lists a topic leave gaps (an off-topic list may share only one entry with its
    # real topic's two): 3,272 of 3,600 caught when written; the rest go to verifiers.
    assert caught >= 0.9 * 300 * len(topics), caught


def test_a_list_is_left_to_verifiers_without_its_topics_evidence() -> None:
    answers = TopicEntries()
    rivers = "1. Nile\n2. Amazon\n3. Danube\n4. Volga\n5. Rhine"
    fruits = "1. Apple\n2. Pear\n3. Mango\n4. Plum\n5. Kiwi"
    answers.add("fruits", fruits)
    answers.add("fruits", "1) apple\n2) KIWI.\n3) fig")
    # One list of rivers known: too little to say what a rivers list holds.
    answers.add("rivers", rivers)
    assert answers.failure(fruits, "rivers") is None
    answers.add("rivers", "1. Nile\n2. Congo\n3. Volga")
    assert (
        answers.failure(fruits, "rivers")
        == "off-topic: 5 entries of 'fruits' lists, 0 of 'rivers''s"
    )
    # Two more entries of another topic's lists than of its own are needed; a list with
    # as many of its own, a single shared entry, prose and a slot without a topic are
    # left to the verifiers.
    assert answers.failure(fruits.replace("Kiwi", "Nile"), "rivers") is not None
    mixed = fruits.replace("Kiwi", "Nile").replace("Plum", "Congo")
    assert answers.failure(mixed, "rivers") is None
    assert answers.failure("1. Apple\n2. Bridge\n3. Tower", "rivers") is None
    assert answers.failure("Apples, pears and mangoes.", "rivers") is None
    assert answers.failure(fruits, None) is None
    assert list_entries("1. Nile!\n2)  the AMAZON\n- Danube") == {"nile", "the amazon", "danube"}
    assert list_entries("Just one line") == frozenset()


def test_an_off_topic_prompt_is_rejected_unverified_and_held_against_its_writer(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The check rejects it before any verifier is paid, the slot is written again by
    someone else, and a writer with two such prompts is untrusted; with `checks.off_topic`
    false the same prompt goes to verification."""
    from crowdloop.models.tables import ItemState

    for name, on in (("topic-on", True), ("topic-off", False)):
        path = campaign_dir(tmp_path / name, name, SMALL, {
            "preferences": None, "retraining": None,
            "demonstrations": {"checks": {"off_topic": on}},
        })  # fmt: skip
        with session_scope() as s:
            spec = load_campaign(path)
            register_campaign(s, spec)
            slots = list(
                s.exec(
                    select(Item).where(Item.campaign_id == name, Item.kind == "write_prompt")
                ).all()
            )[:2]
            for n, slot in enumerate(slots):
                topic = (slot.subject_id or "").rsplit("#", 1)[0]
                other = next(t for t in spec.demonstrations.topics if t != topic)  # type: ignore[union-attr]
                slot.state = ItemState.COLLECTED
                s.add(slot)
                s.add(Judgment(connector="simulator", external_id=f"{name}-{n}", campaign_id=name,
                               item_id=slot.id, worker_id="w-off",
                               text=world.make_prompt(other, n)))  # fmt: skip
        demonstrations.advance(name)
        with session_scope() as s:
            prompts = list(s.exec(select(Prompt).where(Prompt.campaign_id == name)).all())
            verified = s.exec(
                select(Item).where(
                    Item.campaign_id == name,
                    Item.kind == "verify",
                    col(Item.is_golden).is_(False),
                    col(Item.subject_id).in_([p.id for p in prompts]),
                )
            ).all()
            again = s.exec(
                select(Item).where(
                    Item.campaign_id == name, Item.kind == "write_prompt", Item.attempt == 1
                )
            ).all()
            untrusted = demonstrations.untrusted_on_demonstrations(s, spec)
        assert len(prompts) == 2
        if on:
            assert all((p.check_failure or "").startswith("off-topic: names ") for p in prompts)
            assert all(p.verdict == "reject" for p in prompts)
            assert verified == []  # no verifier paid
            assert len(again) == 2 and all("w-off" in (i.exclude_also or []) for i in again)
            assert "w-off" in untrusted
        else:
            assert all(p.check_failure is None for p in prompts)
            assert len(verified) == 2 and again == []
            assert "w-off" not in untrusted


# --- verdicts on sparse data -------------------------------------------------------------------


def _sparse_votes(seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """60 texts, 3 votes each from a pool of 50 verifiers (3-4 answers each): 85% careful
    (accuracy 0.93), the rest random; 80% of the texts are good."""
    rng = random.Random(seed)
    workers = [(f"w{i}", rng.random() < 0.85) for i in range(50)]
    truth = {f"t{i}": ("accept" if rng.random() < 0.8 else "reject") for i in range(60)}
    rows = []
    for task, label in truth.items():
        for worker, careful in rng.sample(workers, 3):
            if careful:
                answer = (
                    label if rng.random() < 0.93 else ("reject" if label == "accept" else "accept")
                )
            else:
                answer = rng.choice(("accept", "reject"))
            rows.append((task, worker, answer))
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), truth


def test_the_weighted_vote_never_overturns_a_unanimous_vote_on_sparse_data() -> None:
    overturned = {"weighted_vote": 0, "dawid_skene": 0}
    for seed in range(20):
        frame, _ = _sparse_votes(seed)
        unanimous = (
            frame.groupby("task")["label"]
            .agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
            .dropna()
        )
        for method in overturned:
            verdict = aggregate_verdicts(frame, method).set_index("task")["label"]
            overturned[method] += int((verdict[unanimous.index] != unanimous).sum())
    assert overturned["weighted_vote"] == 0
    # What the issue measured: plain Dawid-Skene does overturn some on such data.
    assert overturned["dawid_skene"] > 0


def test_golden_items_teach_the_weighted_vote_who_rejects_everything() -> None:
    # h1 and h2 rejected all 6 known-good golden texts; c1 accepted them. On a real text
    # the two of them reject and c1 accepts, c1 is believed; by majority vote it is not.
    rows = [(f"g{i}", w, "reject") for i in range(6) for w in ("h1", "h2")]
    rows += [(f"g{i}", "c1", "accept") for i in range(6)]
    rows += [("t", "h1", "reject"), ("t", "h2", "reject"), ("t", "c1", "accept")]
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    golden = {f"g{i}": "accept" for i in range(6)}
    fitted = WeightedVote().fit(frame, golden)
    assert fitted.labels_["t"] == "accept"
    assert fitted.errors_["h1"].loc["accept", "reject"] > 0.5
    assert aggregate_verdicts(frame, "majority_vote").set_index("task")["label"]["t"] == "reject"


@pytest.mark.parametrize(
    ("accepts", "rejects", "excluded", "max_overlap", "min_confidence", "expected"),
    # expected: the item's state, its overlap, and the assignments the push buys for it.
    [
        # A 3-2 accept of five fresh verifiers is 0.89 sure. Below the export threshold
        # at max_verification_overlap (5): two more answers, 7 in all.
        (3, 2, 0, 5, 0.95, ("pending", 7, 2)),
        # Above it: decided (exported), unsure as it is.
        (3, 2, 0, 5, 0.7, ("done", 5, 0)),
        # 2-3 for reject, as unsure (0.89): below the threshold too, two more answers
        # (a reject turned over from an accept by the evidence is 0.14-0.27 sure).
        (2, 3, 0, 5, 0.95, ("pending", 7, 2)),
        # 0-5: a sure reject, decided (the slot is written again), no extra round.
        (0, 5, 0, 5, 0.95, ("done", 5, 0)),
        # Extension turned off (max = verification_overlap): decided on what it has.
        (3, 2, 0, 3, 0.95, ("done", 5, 0)),
        # Two of its 7 answers excluded (a rubber-stamper blocked since): the 3-2 left is
        # as unsure as before, and it goes back at the cap's 7, which the push reads as
        # 7 trusted answers: the two excluded ones are bought again, no more.
        (3, 2, 2, 5, 0.95, ("pending", 7, 2)),
        # ... but not for a sure verdict, nor with extension turned off.
        (0, 5, 2, 5, 0.95, ("done", 7, 0)),
        (3, 2, 2, 3, 0.95, ("done", 7, 0)),
    ],
)
def test_a_verdict_below_the_export_threshold_gets_one_round_beyond_the_maximum_overlap(
    sqlite_url: str,
    tmp_path: Path,
    accepts: int,
    rejects: int,
    excluded: int,
    max_overlap: int,
    min_confidence: float,
    expected: tuple[str, int, int],
) -> None:
    from crowdloop.db import insert_ignore
    from crowdloop.models.tables import ItemState
    from crowdloop.stages.counts import PendingItem, assignment_deficits
    from crowdloop.stages.plan import verify_item

    name = "unsure-accept"
    path = campaign_dir(
        tmp_path, name, SMALL,
        {"preferences": None, "retraining": None,
         "demonstrations": {"max_verification_overlap": max_overlap,
                            "export": {"path": "sft.jsonl", "min_confidence": min_confidence}}},
    )  # fmt: skip
    spec = load_campaign(path)
    assert spec.demonstrations is not None
    assert spec.demonstrations.verification_overlap == 3
    with session_scope() as s:
        register_campaign(s, spec)
        s.add(Prompt(id="p-x", campaign_id=name, text="List the top 5 rivers.", source="crowd",
                     topic="rivers", author="writer", origin_item="w-x"))  # fmt: skip
        item = verify_item(spec, "prompt", "p-x", "", "List the top 5 rivers.", "writer", "rivers")
        item["state"], item["overlap"] = ItemState.COLLECTED, accepts + rejects + excluded
        insert_ignore(s, Item, [item], ["id"])
        labels = ["accept"] * (accepts + excluded) + ["reject"] * rejects
        for k, label in enumerate(labels):
            s.add(Judgment(connector="simulator", external_id=f"e{k}", campaign_id=name,
                           item_id=item["id"], worker_id=f"v{k}", label=label,
                           excluded=k < excluded))  # fmt: skip
        s.flush()
        demonstrations._apply_verdicts(s, spec, demonstrations.AdvanceResult(), [])
        s.flush()
        after = s.get(Item, item["id"])
        prompt = s.get(Prompt, "p-x")
        assert after is not None and prompt is not None
        bought = (
            assignment_deficits(s, name, [PendingItem(after.id, after.pushes, after.overlap)])[0]
            if after.state == ItemState.PENDING
            else 0
        )
        assert (after.state.value, after.overlap, bought) == expected
        assert (prompt.verdict is None) == (expected[0] == "pending")


# --- re-collection and export, end to end on the simulator --------------------------------------


LAZY_CROWD = SimulatorConfig(
    seed=0, crowd=CrowdConfig(honest=8, noisy=0, spammer=0, left_bias=0, lazy=8, copy_paste=2)
)


@pytest.fixture
def lazy_campaign(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "recollect"
    path = campaign_dir(
        tmp_path / name,
        name,
        SMALL,
        {
            "preferences": None,
            "retraining": None,
            "poll_interval_s": 0.05,
            "demonstrations": {"prompts_per_topic": 3, "max_attempts": 4},
        },
    )
    with simulator(monkeypatch, LAZY_CROWD):
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        with connector_for(name) as connector:
            run_rounds(name, demonstrations.DEMO_STAGES, bare_ops(connector), advance=True)
    return name


def test_a_recollected_slot_never_goes_to_a_writer_who_failed_it(lazy_campaign: str) -> None:
    with session_scope() as s:
        items = list(
            s.exec(select(Item).where(col(Item.kind).in_(["write_prompt", "write_response"]))).all()
        )
        authors = {
            j.item_id: j.worker_id
            for j in s.exec(
                select(Judgment).where(col(Judgment.item_id).in_([i.id for i in items]))
            )
        }
        failed: dict[tuple[str, str | None], list[tuple[int, str]]] = {}
        for table in (Prompt, Response):
            for row in s.exec(select(table).where(table.verdict == "reject")).all():
                origin = s.get(Item, row.origin_item)
                assert origin is not None and row.author is not None
                failed.setdefault((origin.kind, origin.subject_id), []).append(
                    (origin.attempt, row.author)
                )
        summary = demonstrations.writing_summary(s, lazy_campaign)
    checked = 0
    for item in items:
        if item.attempt == 0:
            continue
        before = {w for a, w in failed.get((item.kind, item.subject_id), []) if a < item.attempt}
        assert before, f"{item.id} re-collected without a failed attempt"
        assert before <= set(item.exclude_also or ())
        if item.id in authors:
            assert authors[item.id] not in before
            checked += 1
    assert checked >= 5  # lazy writers fail often: many slots were re-collected
    assert summary is not None
    assert sum(summary["attempts_per_slot"].values()) == summary["slots"]
    assert any(int(n) > 1 for n in summary["attempts_per_slot"])
    # The copy-pasters' second texts are rejected by the checks, without verification.
    assert (
        summary["rejected_by_checks"].get("rules", 0)
        + summary["rejected_by_checks"].get("duplicate", 0)
        > 0
    )


def _accepted_pair(s: object, campaign: str, n: int, author: str, conf: float) -> None:
    from sqlmodel import Session

    assert isinstance(s, Session)
    s.add(Prompt(id=f"p{n}", campaign_id=campaign, text=f"List the top 5 rivers ({n})",
                 source="crowd", topic="rivers", author="wp", verdict="accept",
                 confidence=0.99))  # fmt: skip
    s.add(Response(id=f"r{n}", campaign_id=campaign, prompt_id=f"p{n}",
                   text=f"1. nile\n2. amazon ({n})", source="crowd", author=author,
                   verdict="accept", confidence=conf))  # fmt: skip


@pytest.mark.parametrize(
    ("export", "expected"),
    [
        # threshold 0.7, authors blocked later dropped: r1 only (r2 below it, r3 by w-bad)
        ({"min_confidence": 0.7, "blocked_authors": "drop"}, ["r1"]),
        ({"min_confidence": 0.7, "blocked_authors": "keep"}, ["r1", "r3"]),
        ({"min_confidence": 0.5, "blocked_authors": "keep"}, ["r1", "r2", "r3"]),
        ({"min_confidence": 0.95, "blocked_authors": "keep"}, ["r3"]),
        # reverify: r3 waits for a second verification and is not exported meanwhile
        ({"min_confidence": 0.7, "blocked_authors": "reverify"}, ["r1"]),
    ],
)
def test_the_campaign_files_threshold_and_blocked_author_policy_choose_the_rows(
    sqlite_url: str, tmp_path: Path, export: dict[str, object], expected: list[str]
) -> None:
    name = "export-policy"
    path = campaign_dir(
        tmp_path, name, SMALL,
        {"preferences": None, "retraining": None,
         "demonstrations": {"export": {"path": "sft.jsonl", **export}}},
    )  # fmt: skip
    spec = load_campaign(path)
    with session_scope() as s:
        register_campaign(s, spec)
        _accepted_pair(s, name, 1, "w-good", 0.9)
        _accepted_pair(s, name, 2, "w-good", 0.6)
        _accepted_pair(s, name, 3, "w-bad", 0.95)
        s.add(WorkerRecord(campaign_id=name, worker_id="w-good", status=WorkerStatus.TRUSTED))
        s.add(WorkerRecord(campaign_id=name, worker_id="w-bad", status=WorkerStatus.BLOCKED))
    rows = sft_rows(name)
    assert [r["response_id"] for r in rows] == expected
    for row in rows:
        standing = "blocked" if row["response_id"] == "r3" else "trusted"
        assert row["response_author_standing"] == standing
        assert row["prompt_author_standing"] == "unknown"  # "wp" has no record
    assert all("w-bad" not in json.dumps(r) for r in rows)


def test_reverify_sends_a_blocked_authors_text_to_new_verifiers(
    sqlite_url: str, tmp_path: Path
) -> None:
    name = "reverify"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    spec = load_campaign(path)
    assert spec.demonstrations is not None
    assert spec.demonstrations.export.blocked_authors == "reverify"
    with session_scope() as s:
        register_campaign(s, spec)
        _accepted_pair(s, name, 3, "w-bad", 0.95)
        s.add(WorkerRecord(campaign_id=name, worker_id="w-bad", status=WorkerStatus.BLOCKED))
        s.flush()
        first = demonstrations._reverify_blocked(s, spec)
        s.flush()
        from crowdloop.db import insert_ignore

        insert_ignore(s, Item, first, ["id"])
        assert demonstrations._reverify_blocked(s, spec) == []  # once per text
    assert [i["subject_id"] for i in first] == ["r3"]
    assert first[0]["exclude_worker"] == "w-bad" and first[0]["attempt"] == 1
    with session_scope() as s:
        response = s.get(Response, "r3")
        assert response is not None and response.verdict is None  # pending again
    assert sft_rows(name) == []


def test_a_blocked_authors_text_accepted_at_the_target_confidence_is_not_verified_again(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`reverify` re-verifies what is below `verify_target_confidence` (0.97) only: a
    verdict that sure is exported as it stands, without three more answers."""
    name = "reverify-sure"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    spec = load_campaign(path)
    assert spec.demonstrations is not None
    assert spec.demonstrations.verify_target_confidence == 0.97
    with session_scope() as s:
        register_campaign(s, spec)
        _accepted_pair(s, name, 3, "w-bad", 0.95)
        _accepted_pair(s, name, 4, "w-bad", 0.99)
        s.add(WorkerRecord(campaign_id=name, worker_id="w-bad", status=WorkerStatus.BLOCKED))
        s.flush()
        again = demonstrations._reverify_blocked(s, spec)
        s.flush()
    assert [i["subject_id"] for i in again] == ["r3"]
    with session_scope() as s:
        sure = s.get(Response, "r4")
        assert sure is not None and sure.verdict == "accept"
    rows = sft_rows(name)
    assert [r["response_id"] for r in rows] == ["r4"]
    assert rows[0]["response_author_standing"] == "blocked"
    assert rows[0]["verified_again"] == []


def test_a_writers_record_counts_only_trusted_verdicts(sqlite_url: str, tmp_path: Path) -> None:
    from crowdloop.stages.demonstrations import NEAR_COPY_CONFIDENCE
    from crowdloop.stages.quality_check import _writing_tally

    name = "tally"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    with session_scope() as s:
        register_campaign(s, load_campaign(path))
        verdicts = [
            ("accept", 0.99, None),
            ("reject", 0.95, None),
            ("reject", 0.62, None),  # a split vote: not held against the writer
            ("reject", 1.0, "duplicate: the same as p-0"),  # an exact copy: certain
            ("reject", NEAR_COPY_CONFIDENCE, "duplicate: near copy (74% alike) of p-0"),
        ]
        for n, (verdict, confidence, failure) in enumerate(verdicts):
            s.add(Prompt(id=f"p{n}", campaign_id=name, text=f"t{n}", source="crowd",
                         author="w1", verdict=verdict, confidence=confidence,
                         check_failure=failure))  # fmt: skip
        s.flush()
        assert _writing_tally(s, name, 0.8) == {"w1": (1, 3)}
        assert _writing_tally(s, name, 0.0) == {"w1": (1, 5)}


# --- duplicates against earlier campaigns ------------------------------------------------------


def test_a_text_copied_from_an_earlier_campaign_is_caught_and_written_again_unverified(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first campaign's accepted texts are signed (and only those); a prompt of the
    second campaign that copies one with cosmetic edits is rejected by the checks, no
    verifier is asked about it, and its slot is written again by someone else."""
    from crowdloop.models.tables import ItemState, TextSignature
    from crowdloop.stages.signatures import find_earlier

    overrides = {"preferences": None, "retraining": None, "poll_interval_s": 0.05}
    first = campaign_dir(tmp_path / "first", "first", SMALL, overrides)
    with simulator(monkeypatch, SimulatorConfig(seed=0, crowd=CrowdConfig(honest=12, noisy=0,
                                                spammer=0, left_bias=0))):  # fmt: skip
        with session_scope() as s:
            register_campaign(s, load_campaign(first))
        with connector_for("first") as connector:
            run_rounds("first", demonstrations.DEMO_STAGES, bare_ops(connector), advance=True)
    with session_scope() as s:
        accepted = {
            (kind, row.id)
            for kind, table in (("prompt", Prompt), ("response", Response))
            for row in s.exec(
                select(table).where(table.campaign_id == "first", table.verdict == "accept")
            )
        }
        signed = {(r.kind, r.text_id) for r in s.exec(select(TextSignature))}
        original = s.exec(
            select(Prompt).where(Prompt.campaign_id == "first", Prompt.verdict == "accept")
        ).first()
        response = s.exec(
            select(Response).where(Response.campaign_id == "first", Response.verdict == "accept")
        ).first()
    assert accepted and signed == accepted
    assert original is not None and original.topic and response is not None

    second = campaign_dir(tmp_path / "second", "second", SMALL, overrides)
    with session_scope() as s:
        register_campaign(s, load_campaign(second))
        slot = s.exec(
            select(Item).where(
                Item.campaign_id == "second",
                Item.kind == "write_prompt",
                col(Item.subject_id).startswith(f"{original.topic}#"),
            )
        ).first()
        assert slot is not None
        slot.state = ItemState.COLLECTED
        s.add(slot)
        s.add(Judgment(connector="simulator", external_id="copy-1", campaign_id="second",
                       item_id=slot.id, worker_id="w-copier",
                       text=f"  {original.text.upper()}!! "))  # fmt: skip
        # A response copied with its list reordered is found too (the same list).
        lines = response.text.splitlines()
        assert find_earlier(s, "response", "second", "\n".join(reversed(lines)), None, 0.7)
        assert find_earlier(s, "response", "first", response.text, None, 0.7) is None
    demonstrations.advance("second")
    with session_scope() as s:
        copy = s.exec(select(Prompt).where(Prompt.origin_item == slot.id)).one()
        verifications = s.exec(
            select(Item).where(Item.kind == "verify", Item.subject_id == copy.id)
        ).all()
        again = s.exec(
            select(Item).where(
                Item.campaign_id == "second",
                Item.kind == "write_prompt",
                Item.subject_id == slot.subject_id,
                Item.attempt == 1,
            )
        ).one()
    assert copy.verdict == "reject"
    assert copy.check_failure == f"duplicate: the same as {original.id} (campaign first)"
    assert verifications == []  # no verifier paid for it
    assert "w-copier" in (again.exclude_also or [])
