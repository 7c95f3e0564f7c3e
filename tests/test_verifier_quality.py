"""Verifiers held to account: the content-blind posterior over verification answers
(crowdloop/verifier_quality.py) and the golden verifications asked of verifiers not yet
cleared (crowdloop/stages/demonstrations.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import Item, ItemState, Judgment, WorkerRecord, WorkerStatus
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.stages import demonstrations
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds
from crowdloop.verifier_quality import VerifierPolicy, assess_verifiers
from tests.e2e_helpers import SMALL, campaign_dir, simulator


def _answer(kind: str, truth: str, rng: random.Random) -> str:
    if kind == "rubber":
        return "accept"
    if kind == "harsh":
        return "reject" if rng.random() < 0.8 else truth
    if kind == "random":
        return rng.choice(("accept", "reject"))
    return truth if rng.random() < 0.93 else ("reject" if truth == "accept" else "accept")


def _crowd(seed: int, golden_each: int, real_each: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """40 careful verifiers (accuracy 0.93), 8 rubber-stampers, 8 harsh: each gives
    `golden_each` golden answers (2 of 3 known-bad, as in the demo's golden set) and
    `real_each` answers on real texts (80% good) that two careful others also judged."""
    rng = random.Random(seed)
    kinds = {f"c{i}": "careful" for i in range(40)}
    kinds |= {f"r{i}": "rubber" for i in range(8)} | {f"h{i}": "harsh" for i in range(8)}
    careful = [w for w, k in kinds.items() if k == "careful"]
    rows: list[tuple[str, str, str, str | None]] = []
    n = 0
    for worker, kind in kinds.items():
        for g in range(golden_each):
            truth = "accept" if g % 3 == 0 else "reject"
            rows.append((f"g{n}", worker, _answer(kind, truth, rng), truth))
            n += 1
        for _ in range(real_each):
            truth = "accept" if rng.random() < 0.8 else "reject"
            task = f"t{n}"
            n += 1
            for w in [worker, *rng.sample([c for c in careful if c != worker], 2)]:
                rows.append((task, w, _answer(kinds[w], truth, rng), None))
    return pd.DataFrame(rows, columns=["task", "worker", "label", "golden"]), kinds


def test_rubber_stampers_and_harsh_verifiers_are_found_careful_ones_are_not() -> None:
    found = {"careful": 0, "rubber": 0, "harsh": 0}
    for seed in range(5):
        frame, kinds = _crowd(seed, golden_each=3, real_each=3)
        result = assess_verifiers(frame)
        for worker in result.loc[result["blind"], "worker"]:
            found[kinds[worker]] += 1
    # Three golden answers each: about a third of the bad verifiers (14 and 17 of 40 when
    # written), none of the careful ones.
    assert found["careful"] == 0  # of 200
    assert found["rubber"] >= 10  # of 40
    assert found["harsh"] >= 10  # of 40
    assert 0.1 < result["prior_blind"].iloc[0] < 0.5  # learned from the crowd


def test_nobody_is_convicted_on_one_answer_or_one_slip() -> None:
    rows = [("g0", "slip", "accept", "reject"), ("t0", "slip", "accept", None)]
    rows += [("t0", f"c{i}", "accept", None) for i in range(3)]
    rows += [(f"g{i}", f"c{i}", "reject", "reject") for i in range(1, 4)]
    rows += [("g9", "once", "accept", "reject")]
    frame = pd.DataFrame(rows, columns=["task", "worker", "label", "golden"])
    result = assess_verifiers(frame).set_index("worker")
    assert not result["blind"].any()
    assert result.loc["once", "answers"] == 1
    with pytest.raises(ValueError, match="blind_confidence"):
        VerifierPolicy(blind_confidence=1.0)
    with pytest.raises(ValueError, match="lacks columns"):
        assess_verifiers(frame.drop(columns="golden"))


RUBBER_CROWD = SimulatorConfig(
    seed=0, crowd=CrowdConfig(honest=12, noisy=0, spammer=0, left_bias=0, rubber_stamp=6)
)


@pytest.mark.slow
def test_golden_verifications_go_to_uncleared_verifiers_and_rubber_stampers_are_blocked(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "accountable"
    path = campaign_dir(
        tmp_path / name,
        name,
        SMALL,
        {
            "preferences": None,
            "retraining": None,
            "poll_interval_s": 0.05,
            "demonstrations": {"prompts_per_topic": 3, "golden_per_verifier": 4},
        },
    )
    with simulator(monkeypatch, RUBBER_CROWD) as sim:
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        with connector_for(name) as connector:
            run_rounds(name, demonstrations.DEMO_STAGES, bare_ops(connector), advance=True)
        archetype = {w.id: w.archetype for w, _ in sim.state.workers()}
    with session_scope() as s:
        targeted = list(
            s.exec(
                select(Item).where(
                    Item.campaign_id == name, col(Item.is_golden).is_(True), Item.overlap == 1
                )
            ).all()
        )
        answered_by = {
            j.item_id: j.worker_id
            for j in s.exec(
                select(Judgment).where(col(Judgment.item_id).in_([i.id for i in targeted]))
            )
        }
        blocked = {
            r.worker_id: r.block_reason
            for r in s.exec(
                select(WorkerRecord).where(
                    WorkerRecord.campaign_id == name, WorkerRecord.status == WorkerStatus.BLOCKED
                )
            )
        }
    assert targeted, "no golden verification was asked of an uncleared verifier"
    for item in targeted:
        # Kept off the verifiers already cleared when it was created.
        assert answered_by.get(item.id) not in set(item.exclude_also or ())
    assert not {w for w in blocked if archetype[w] == "honest"}
    rubber = {w for w in blocked if archetype[w] == "rubber_stamp"}
    assert rubber, "no rubber-stamper was blocked"
    # On their verification answers: the content-blind posterior or the golden record
    # (which of the two convicts first depends on how many golden items a rubber-stamper
    # drew; with unsure texts sent to more verifiers the golden record often does).
    evidence = ("verdicts do not follow the text", "golden accuracy")
    assert any(e in (blocked[w] or "") for w in rubber for e in evidence), {
        w: blocked[w] for w in rubber
    }


def test_writers_who_fail_the_checks_twice_for_certain_are_untrusted(
    sqlite_url: str, tmp_path: Path
) -> None:
    from crowdloop.models.tables import Prompt
    from crowdloop.stages.demonstrations import NEAR_COPY_CONFIDENCE

    name = "writers"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    failures = {
        "lazy": [("too short: 3 characters, at least 12", 1.0)] * 2,
        "paster": [("too few words: 2, at least 4", 1.0), ("duplicate: the same as p2", 1.0)],
        # The same words as someone else's text: honest writers can collide on a template.
        "template": [("duplicate: the same as p0", 1.0)] * 2,
        # Near copies are not held against a writer, nor is one slip.
        "near": [("duplicate: near copy (74% alike) of p-0", NEAR_COPY_CONFIDENCE)] * 3,
        "once": [("too short: 3 characters, at least 12", 1.0)],
    }
    with session_scope() as s:
        spec = load_campaign(path)
        register_campaign(s, spec)
        n = 0
        for author, rows in failures.items():
            for failure, confidence in rows:
                s.add(Prompt(id=f"p{n}", campaign_id=name, text=f"t{n}", source="crowd",
                             author=author, verdict="reject", confidence=confidence,
                             check_failure=failure))  # fmt: skip
                n += 1
        s.flush()
        untrusted = demonstrations.untrusted_on_demonstrations(s, spec)
        assert set(untrusted) == {"lazy", "paster"}
        assert "2 texts rejected by the checks" in untrusted["lazy"]
        never = spec.model_copy(
            update={
                "demonstrations": spec.demonstrations.model_copy(  # type: ignore[union-attr]
                    update={"block_after_check_failures": None}
                )
            }
        )
        assert demonstrations.untrusted_on_demonstrations(s, never) == {}


def test_a_golden_item_for_the_uncleared_is_open_to_one_cleared_verifier_only(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Cleared verifiers are kept off the golden items meant for the uncleared but one
    (`SPARE_CLEARED`): with three left open, fast honest verifiers answered them instead."""
    from crowdloop.db import insert_ignore
    from crowdloop.models.spec import GoldenVerificationRow, load_jsonl
    from crowdloop.stages.plan import golden_verify_items, verify_item

    name = "spare"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    spec = load_campaign(path)
    demo = spec.demonstrations
    assert demo is not None and demo.golden_file is not None
    rows = load_jsonl(demo.golden_file, GoldenVerificationRow)
    good = next(r for r in rows if r.verdict == "accept")
    bad = next(r for r in rows if r.verdict == "reject")
    cleared = [f"c{i}" for i in range(5)]
    with session_scope() as s:
        register_campaign(s, spec)
        items = [verify_item(spec, "prompt", "p-real", "", "List the top 5 rivers.", "author")]
        answers: list[tuple[str, str, str]] = [(items[0]["id"], "uncleared", "accept")]
        for n, worker in enumerate(cleared):
            # A right answer on a known-good and on a known-bad text: cleared.
            for k, row in enumerate((good, bad)):
                item = golden_verify_items(spec, [row], 2 * n + k, 1, overlap=1)[0]
                item["state"] = ItemState.DONE  # answered: not waiting for anyone
                items.append(item)
                answers.append((str(item["id"]), worker, row.verdict))
        insert_ignore(s, Item, items, ["id"])
        for k, (item_id, worker, label) in enumerate(answers):
            s.add(Judgment(connector="simulator", external_id=f"e{k}", campaign_id=name,
                           item_id=item_id, worker_id=worker, label=label))  # fmt: skip
        s.flush()
        planned = demonstrations._golden_for_verifiers(s, spec, rows, 100, [])
    assert planned, "the uncleared verifier got no golden item"
    for item in planned:
        excluded = set(item["exclude_also"] or ())
        assert "uncleared" not in excluded
        assert len(set(cleared) - excluded) == 1  # three before: see SPARE_CLEARED


def test_agreeing_with_a_sure_verdict_on_a_real_text_counts_like_a_golden_item(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A verifier who accepted a real text accepted at `verify_target_confidence` and got a
    known-bad golden item right is cleared without a known-good one; a rubber-stamper who
    accepted the same text lacks only a right reject, and gets known-bad items only. An
    accept of a text accepted less surely does not count."""
    from crowdloop.db import insert_ignore
    from crowdloop.models.spec import GoldenVerificationRow, load_jsonl
    from crowdloop.models.tables import Prompt
    from crowdloop.stages.plan import golden_verify_items, verify_item

    name = "sure"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    spec = load_campaign(path)
    demo = spec.demonstrations
    assert demo is not None and demo.golden_file is not None
    rows = load_jsonl(demo.golden_file, GoldenVerificationRow)
    bad = next(r for r in rows if r.verdict == "reject")
    with session_scope() as s:
        register_campaign(s, spec)
        for pid, confidence in (("p-sure", 0.99), ("p-unsure", 0.9)):
            s.add(Prompt(id=pid, campaign_id=name, text=f"List the top 5 rivers ({pid}).",
                         source="crowd", author="a", verdict="accept",
                         confidence=confidence))  # fmt: skip
        s.flush()
        sure = verify_item(spec, "prompt", "p-sure", "", "x", "a")
        unsure = verify_item(spec, "prompt", "p-unsure", "", "y", "a")
        still_open = verify_item(spec, "prompt", "p-open", "", "z", "a")
        sure["state"] = unsure["state"] = ItemState.DONE
        golden = golden_verify_items(spec, [bad], 0, 1, overlap=1)[0]
        golden["state"] = ItemState.DONE
        insert_ignore(s, Item, [sure, unsure, still_open, golden], ["id"])
        answers = [(sure["id"], "careful", "accept"), (golden["id"], "careful", "reject"),
                   (sure["id"], "rubber", "accept"), (unsure["id"], "late", "accept"),
                   (golden["id"], "late", "reject")]  # fmt: skip
        for k, (item_id, worker, label) in enumerate(answers):
            s.add(Judgment(connector="simulator", external_id=f"e{k}", campaign_id=name,
                           item_id=item_id, worker_id=worker, label=label))  # fmt: skip
        s.flush()
        planned = demonstrations._golden_for_verifiers(s, spec, rows, 100, [])
    # "rubber" lacks a reject, "late" an accept (its accept was of an unsure verdict).
    assert sorted(str(i["golden_answer"]) for i in planned) == ["accept", "reject"]
    for item in planned:
        excluded = set(item["exclude_also"] or ())
        if item["golden_answer"] == "reject":
            assert "rubber" not in excluded
        else:
            assert "late" not in excluded


class _NoBlocking:
    """A connector that cannot block workers: check_workers only records its verdicts."""

    name = "fake"
    capabilities: frozenset[object] = frozenset()


def test_golden_verification_slips_of_a_verifier_who_follows_the_text_do_not_block(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A careful verifier who missed three of four golden verifications but whose other
    answers follow the text is warned, not blocked (the Beta rule alone blocks at 1 of 4
    right); a rubber-stamper with the same golden record is still blocked."""
    from crowdloop.stages.quality_check import check_workers

    name = "slips"
    path = campaign_dir(tmp_path, name, SMALL, {"preferences": None, "retraining": None})
    rng = random.Random(3)
    careful = [f"c{i}" for i in range(10)]
    rows: list[tuple[str, str, str, str | None]] = []  # item, worker, label, golden verdict
    for t in range(14):
        truth = "reject" if t % 4 == 0 else "accept"
        for w in rng.sample(careful, 3):
            rows.append((f"t{t}", w, truth, None))
        rows.append((f"t{t}", "slip", truth, None))
        rows.append((f"t{t}", "rubber", "accept", None))
    for i, w in enumerate(careful):
        rows += [(f"g{i}a", w, "accept", "accept"), (f"g{i}r", w, "reject", "reject")]
    golden = ["accept", "reject", "reject", "reject"]
    for j, verdict in enumerate(golden):
        # The slip gets the known-good one wrong and one known-bad one right; the
        # rubber-stamper the reverse: one right of four each.
        slip = ("reject" if verdict == "accept" else "accept") if j != 1 else verdict
        rows += [(f"s{j}", "slip", slip, verdict), (f"r{j}", "rubber", "accept", verdict)]
    with session_scope() as s:
        register_campaign(s, load_campaign(path))
        for n, (item, worker, label, known) in enumerate(rows):
            if s.get(Item, item) is None:
                s.add(Item(id=item, campaign_id=name, stage="verify", kind="verify",
                           payload={"target": "prompt"}, state=ItemState.DONE, group="g",
                           is_golden=known is not None, golden_answer=known))  # fmt: skip
                s.flush()
            s.add(Judgment(connector="fake", external_id=f"j{n}", campaign_id=name,
                           item_id=item, worker_id=worker, label=label))  # fmt: skip
    check_workers(name, _NoBlocking())  # type: ignore[arg-type]
    with session_scope() as s:
        records = {
            r.worker_id: r
            for r in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == name))
        }
    assert (records["slip"].golden_correct, records["slip"].golden_total) == (1, 4)
    assert records["slip"].status == WorkerStatus.WARNED, records["slip"].block_reason
    assert records["rubber"].status == WorkerStatus.BLOCKED
    assert not {w for w in careful if records[w].status == WorkerStatus.BLOCKED}


def test_golden_verifications_are_judged_against_the_crowds_pooled_accuracy() -> None:
    """At a pooled accuracy of 0.8 one right of four is a slip (the campaign's Beta(2, 1)
    prior blocks it), none of four still blocks."""
    from crowdloop.quality import GoldenPolicy, assess_worker
    from crowdloop.stages.quality_check import pooled_golden_policy

    campaign = GoldenPolicy(min_golden=4, min_accuracy=0.7, block_confidence=0.8)
    pooled = pooled_golden_policy(campaign, iter([(8, 10)] * 30))
    assert pooled.prior_correct + pooled.prior_incorrect == pytest.approx(8.0)
    assert pooled.prior_correct / 8.0 == pytest.approx(0.8, abs=0.01)
    assert assess_worker(1, 4, campaign).status == "blocked"
    assert assess_worker(1, 4, pooled).status != "blocked"
    assert assess_worker(0, 4, pooled).status == "blocked"
    assert assess_worker(1, 6, pooled).status == "blocked"
