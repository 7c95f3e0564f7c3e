"""AI-first routing: the campaign file's policy, the per-pair decision, and a campaign on the
simulator whose AI judge (the simulated one behind /openai/v1) answers first."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.models.domain import CompareTask, PreferenceAnswer
from crowdloop.models.spec import RoutingSpec, SpecError, load_campaign
from crowdloop.models.tables import (
    AIRoute,
    AIRouteState,
    Item,
    ItemState,
    Judgment,
    PairOutcome,
    TaskRecord,
)
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.simulator.crowd import truth_of
from crowdloop.stages import routing as routing_stage
from crowdloop.stages.budget import estimate_for_campaign
from crowdloop.stages.estimate import estimate_spec
from crowdloop.stages.plan import golden_count, register_campaign
from crowdloop.stages.preferences import aggregate_preferences, evidence_frame
from crowdloop.stages.report import write_report
from crowdloop.stages.rounds import run_bare
from crowdloop.stages.routing import audited, decide
from tests.e2e_helpers import campaign_dir, judged

# --- the policy in the campaign file ----------------------------------------------------------


def _campaign(tmp_path: Path, routing: object) -> Path:
    path = campaign_dir(tmp_path / "c", "routed", overrides={"demonstrations": None})
    data = yaml.safe_load(path.read_text())
    data["routing"] = routing
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_routing_is_typed_and_checked_at_load_with_file_line_field(tmp_path: Path) -> None:
    ok = _campaign(tmp_path, {"ai": {"name": "aijudge"}, "confidence_threshold": 0.75})
    spec = load_campaign(ok)
    assert spec.routing is not None and spec.routing.confidence_threshold == 0.75
    bad_option = _campaign(tmp_path, {"ai": {"name": "aijudge", "options": {"temperature": 9}}})
    with pytest.raises(
        SpecError, match=r"campaign\.yaml:\d+: field 'routing\.ai\.options\.temperature'"
    ):
        load_campaign(bad_option)
    unknown = _campaign(tmp_path, {"ai": {"name": "no-such-judge"}})
    with pytest.raises(SpecError, match=r":\d+: field 'routing\.ai\.name': no connector named"):
        load_campaign(unknown)
    threshold = _campaign(tmp_path, {"confidence_threshold": 1.5})
    with pytest.raises(SpecError, match=r"field 'routing\.confidence_threshold'"):
        load_campaign(threshold)


# --- one pair's decision --------------------------------------------------------------------------


def test_each_rule_sends_a_pair_where_the_policy_says() -> None:
    policy = RoutingSpec(confidence_threshold=0.8, audit_rate=0.0)
    sure = PreferenceAnswer(choice="left", confidence=0.9, position_consistent=True)
    assert decide(None, policy, 0, "p") == (AIRouteState.HUMAN, "unreadable")
    flipped = sure.model_copy(update={"position_consistent": False})
    assert decide(flipped, policy, 0, "p") == (AIRouteState.HUMAN, "swap_disagrees")
    lenient = policy.model_copy(update={"human_on_swap_disagreement": False})
    assert decide(flipped, lenient, 0, "p") == (AIRouteState.AI, None)
    unsure = sure.model_copy(update={"confidence": 0.79})
    assert decide(unsure, policy, 0, "p") == (AIRouteState.HUMAN, "low_confidence")
    assert decide(sure, policy, 0, "p") == (AIRouteState.AI, None)
    always = policy.model_copy(update={"audit_rate": 1.0})
    assert decide(sure, always, 0, "p") == (AIRouteState.AUDIT, "audit")


def test_no_golden_pair_is_retired_before_every_pair_is_routed(
    tmp_path: Path, sqlite_url: str
) -> None:
    path = _campaign(tmp_path, {"ai": {"name": "aijudge"}})
    spec = load_campaign(path)
    with session_scope() as s:
        register_campaign(s, spec)
    work = routing_stage.routed(spec)
    assert work is not None
    # Nothing routed yet: how much of the work humans will see is unknown.
    assert routing_stage.retire_surplus_golden(spec.name, work) == 0
    with session_scope() as s:
        golden = s.exec(select(Item).where(Item.is_golden == True, Item.kind == "compare")).all()  # noqa: E712
    assert golden and all(g.state == ItemState.PENDING for g in golden)


def test_the_audit_draw_is_seeded_and_near_its_rate() -> None:
    ids = [f"pair-{i}" for i in range(4000)]
    drawn = [audited(7, i, 0.1) for i in ids]
    assert drawn == [audited(7, i, 0.1) for i in ids]  # the same on a rerun
    assert 0.08 < sum(drawn) / len(ids) < 0.12
    assert drawn != [audited(8, i, 0.1) for i in ids]


# --- a campaign on the simulator, AI first --------------------------------------------------------


def test_ai_first_campaign_routes_every_pair_once_and_reruns_without_paying_twice(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
    path = _campaign(
        tmp_path,
        {
            "ai": {"name": "aijudge", "options": {"store": str(tmp_path / "answers.sqlite")}},
            "confidence_threshold": 0.8,
            "audit_rate": 0.2,
            "sent_back_vote": True,
        },
    )
    with judged(monkeypatch, SimulatorConfig(seed=0, ai_judge=judge)) as sim:
        spec = load_campaign(path)
        run_bare(spec)
        asked = sim.stats()["requests"].get("POST /openai/v1/chat/completions", 0)
        human_tasks = sim.stats()["tasks_created"]
        aggregate_preferences(spec.name, spec.preferences.aggregation)  # type: ignore[union-attr]
        data, markdown = write_report(spec.name)
        # A rerun of the finished campaign asks the judge nothing and publishes nothing.
        run_bare(spec)
        assert sim.stats()["requests"].get("POST /openai/v1/chat/completions", 0) == asked
        assert sim.stats()["tasks_created"] == human_tasks
    with session_scope() as s:
        real = s.exec(
            select(Item).where(Item.kind == "compare", Item.is_golden == False)  # noqa: E712
        ).all()
        routes = {r.item_id: r for r in s.exec(select(AIRoute)).all()}
        published = set(s.exec(select(TaskRecord.item_id)).all())
        judgments = s.exec(select(Judgment).where(Judgment.connector == "aijudge")).all()
        outcomes = {o.item_id: o.winner for o in s.exec(select(PairOutcome)).all()}
        golden = s.exec(
            select(Item).where(Item.kind == "compare", Item.is_golden == True)  # noqa: E712
        ).all()
    assert {i.id for i in real} == set(routes), "a real pair was not routed"
    assert asked == 2 * len(real), "each pair is asked once in each order"
    assert all(r.route != AIRouteState.ASKED for r in routes.values())
    decided = {i for i, r in routes.items() if r.route == AIRouteState.AI}
    assert decided and len(decided) < len(real)
    # Decided pairs never reach the crowd; the others all do.
    assert not decided & published
    assert {i.id for i in real} - decided <= published
    # The judge's verdict is the decided pair's judgment and its exported verdict.
    assert {j.item_id for j in judgments} == decided
    assert all(j.worker_id == f"ai:{judge.model}" for j in judgments)
    assert all(outcomes[i] == routes[i].choice for i in decided)
    # Humans got a pair for the reason recorded: confidence, a flipped order, or the audit.
    for r in routes.values():
        if r.route == AIRouteState.HUMAN:
            assert r.reason in ("low_confidence", "swap_disagrees", "unreadable")
            if r.reason == "low_confidence":
                assert r.confidence is not None and r.confidence < 0.8
        if r.route == AIRouteState.AI:
            assert r.confidence >= 0.8 and r.position_consistent  # type: ignore[operator]
    # The judge's decided verdicts are mostly right against the simulator's truth.
    truth = {i.id: truth_of(CompareTask.model_validate(i.payload)) for i in real}
    right = sum(routes[i].choice == truth[i] for i in decided)
    assert right / len(decided) > 0.85
    # Golden pairs are kept at golden_share of the pairs humans see; the ones planned for
    # the judge's pairs were retired before any was published, and humans saw the rest.
    retired = {g.id for g in golden if g.state == ItemState.EXHAUSTED}
    kept = {g.id for g in golden} - retired
    share = spec.preferences.golden_share  # type: ignore[union-attr]
    assert len(kept) == golden_count(len(real) - len(decided), share)
    assert (
        retired
        and not retired & published
        and all(g.pushes == 0 for g in golden if g.id in retired)
    )
    assert kept <= published
    # The judge's verdicts on pairs it sent back for low confidence (both orders agreeing)
    # are votes of a worker of its own in the fit; audited and flipped pairs get none.
    frame = evidence_frame(spec.name)
    votes = frame[frame["worker"] == "aijudge" + routing_stage.SENT_BACK_WORKER]
    sent_back = {
        i
        for i, r in routes.items()
        if r.reason == "low_confidence" and r.position_consistent is not False
    } & set(frame["pair"])  # collected pairs only, as the judgments
    assert set(votes["pair"]) == sent_back and sent_back
    assert all(
        routes[p].choice == label for p, label in zip(votes["pair"], votes["label"], strict=True)
    )
    assert len(frame[frame["pair"].isin(list(sent_back))]) > len(votes), "humans answered too"
    # The report shows the routing and the AI-human agreement on audited pairs.
    summary = data["routing"]
    assert summary["by_route"].get("audit", 0) == summary["audited"] > 0
    assert "AI–human agreement on" in markdown
    assert summary["golden_retired"] == len(retired)
    assert (
        "Golden pairs retired unpublished (kept at the golden share of what humans see): "
        f"{len(retired)}." in markdown
    )


def test_the_estimate_prices_the_judge_on_every_real_pair_from_files_and_database(
    tmp_path: Path, sqlite_url: str
) -> None:
    priced = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01", "max_tokens": 300}
    spec = load_campaign(_campaign(tmp_path, {"ai": {"name": "aijudge", "options": priced}}))
    humans_only = estimate_spec(spec.model_copy(update={"routing": None}))
    est = estimate_spec(spec)
    assert est.ai is not None and 0 < est.ai_expected < est.ai_worst
    assert est.worst == humans_only.worst + est.ai_worst
    assert est.expected == humans_only.expected + est.ai_expected
    assert "AI judge, every real pair" in est.markdown()
    assert est.to_json()["ai_judge"]["worst_case"] == str(est.ai_worst.quantize(Decimal("0.01")))
    # Registered, the campaign's budget prices the same pairs from its database.
    with session_scope() as s:
        register_campaign(s, spec)
    assert estimate_for_campaign(spec.name).ai == est.ai
    # A judge whose answers have no bound is left out, and the estimate says why.
    unbounded = {"price_per_1k_output": "0.01"}
    open_ended = load_campaign(
        _campaign(tmp_path / "u", {"ai": {"name": "aijudge", "options": unbounded}})
    )
    est = estimate_spec(open_ended)
    assert est.ai is None and est.worst == humans_only.worst
    assert any("max_tokens is not set" in note for note in est.notes)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_campaign_flow_routes_ai_first_and_reports_agreement(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crowdloop.flows.campaign import run_campaign

    judge = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
    path = _campaign(
        tmp_path,
        {
            "ai": {"name": "aijudge", "options": {"store": str(tmp_path / "answers.sqlite")}},
            "audit_rate": 0.3,
        },
    )
    with judged(monkeypatch, SimulatorConfig(seed=2, ai_judge=judge)):
        result = run_campaign(str(path))
    report = result["report"]
    assert report["status"] == "complete"
    routing = report["routing"]
    assert routing["by_route"].get("ai", 0) > 0 and routing["audited"] > 0
    assert 0 <= routing["audit_agree"] <= routing["audited"]
    with session_scope() as s:
        left = s.exec(select(AIRoute).where(AIRoute.route == AIRouteState.ASKED)).all()
    assert left == []
