"""AI-first routing of k-wise ranking sets: the per-set decision, a ranking campaign on the
simulator whose simulated AI judge ranks first, the judge under a budget cap, and a pause
between slices."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from crowdloop.aggregation.rankings import kendall_tau
from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.db import session_scope
from crowdloop.models.domain import RankingAnswer, RankTask, TaskItem
from crowdloop.models.spec import RoutingSpec, SpecError, load_campaign
from crowdloop.models.tables import (
    AIRoute,
    AIRouteState,
    Item,
    Judgment,
    TaskRecord,
)
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.simulator.world import response_quality
from crowdloop.stages.estimate import estimate_spec
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.ranking import aggregate_rankings
from crowdloop.stages.report import write_report
from crowdloop.stages.rounds import run_bare
from crowdloop.stages.routing import decide
from tests.e2e_helpers import judged

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
JUDGE = AIJudgeConfig(accuracy=0.8, position_bias=0.1)
CHAT = "POST /openai/v1/chat/completions"


def ranking_campaign(tmp_path: Path, routing: dict[str, Any] | None, **top: Any) -> Path:
    """The demo ranking campaign (campaigns/ranking.yaml) in tmp_path, with `routing`."""
    shutil.copytree(CAMPAIGNS / "ranking", tmp_path / "ranking", dirs_exist_ok=True)
    data = yaml.safe_load((CAMPAIGNS / "ranking.yaml").read_text())
    data.update(output_dir="out", poll_interval_s=0.05, **top)
    data["ranking"]["export"] = {"pairs_path": "out/pairs.jsonl", "rankings_path": "out/r.jsonl"}
    if routing is not None:
        data["routing"] = routing
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def real_sets() -> list[Item]:
    with session_scope() as s:
        return list(
            s.exec(
                select(Item)
                .where(Item.kind == "rank", Item.is_golden == False)  # noqa: E712
                .order_by(col(Item.id))
            ).all()
        )


def chats(sim: SimulatorServer) -> int:
    return int(sim.stats()["requests"].get(CHAT, 0))


# --- the policy -----------------------------------------------------------------------------


def test_a_ranking_campaign_takes_a_routing_section_with_an_order_agreement(
    tmp_path: Path,
) -> None:
    spec = load_campaign(
        ranking_campaign(tmp_path, {"ai": {"name": "aijudge"}, "min_order_agreement": 0.6})
    )
    assert spec.routing is not None and spec.routing.min_order_agreement == 0.6
    bad = ranking_campaign(tmp_path, {"ai": {"name": "aijudge"}, "min_order_agreement": 2})
    with pytest.raises(
        SpecError, match=r"campaign\.yaml:\d+: field 'routing\.min_order_agreement'"
    ):
        load_campaign(bad)


def test_each_rule_sends_a_ranking_set_where_the_policy_says() -> None:
    policy = RoutingSpec(confidence_threshold=0.8, audit_rate=0.0, min_order_agreement=0.6)
    sure = RankingAnswer(ranks=(2, 1, 3, 4), confidence=0.9, order_agreement=1.0)
    assert decide(sure, policy, 0, "s") == (AIRouteState.AI, None)
    # For K = 4 one pair swapped between the orders is tau 2/3, two pairs 1/3.
    one_swap = sure.model_copy(update={"order_agreement": 2 / 3})
    assert decide(one_swap, policy, 0, "s") == (AIRouteState.AI, None)
    two_swaps = sure.model_copy(update={"order_agreement": 1 / 3})
    assert decide(two_swaps, policy, 0, "s") == (AIRouteState.HUMAN, "order_disagrees")
    strict = policy.model_copy(update={"min_order_agreement": 1.0})
    assert decide(one_swap, strict, 0, "s") == (AIRouteState.HUMAN, "order_disagrees")
    # Asked in one order only, there is nothing to disagree with.
    once = sure.model_copy(update={"order_agreement": None})
    assert decide(once, strict, 0, "s") == (AIRouteState.AI, None)
    unsure = sure.model_copy(update={"confidence": 0.79})
    assert decide(unsure, policy, 0, "s") == (AIRouteState.HUMAN, "low_confidence")
    assert decide(None, policy, 0, "s") == (AIRouteState.HUMAN, "unreadable")
    always = policy.model_copy(update={"audit_rate": 1.0})
    assert decide(sure, always, 0, "s") == (AIRouteState.AUDIT, "audit")


# --- a ranking campaign on the simulator, AI first ------------------------------------------


def test_ai_first_ranking_campaign_routes_every_set_once_and_reports_agreement(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"store": str(tmp_path / "answers.sqlite")}
    routing = {
        "ai": {"name": "aijudge", "options": options},
        "confidence_threshold": 0.7,
        "min_order_agreement": 1.0,
        "audit_rate": 0.25,
    }
    with judged(monkeypatch, SimulatorConfig(seed=0, ai_judge=JUDGE)) as sim:
        spec = load_campaign(ranking_campaign(tmp_path, routing))
        assert spec.ranking is not None
        run_bare(spec)
        asked = chats(sim)
        human_tasks = sim.stats()["tasks_created"]
        aggregate_rankings(spec.name, spec.ranking)
        data, markdown = write_report(spec.name)
        run_bare(spec)  # a rerun of the finished campaign asks and publishes nothing
        assert chats(sim) == asked and sim.stats()["tasks_created"] == human_tasks
    sets = real_sets()
    with session_scope() as s:
        routes = {r.item_id: r for r in s.exec(select(AIRoute)).all()}
        published = set(s.exec(select(TaskRecord.item_id)).all())
        judged_by_ai = s.exec(select(Judgment).where(Judgment.connector == "aijudge")).all()
        golden = s.exec(select(Item.id).where(Item.kind == "rank", Item.is_golden == True)).all()  # noqa: E712
    assert {i.id for i in sets} == set(routes), "a real set was not routed"
    assert not set(golden) & set(routes), "a golden set went to the judge"
    assert asked == 2 * len(sets), "each set is asked once shown in order, once reversed"
    decided = {i for i, r in routes.items() if r.route == AIRouteState.AI}
    assert decided and len(decided) < len(sets)
    assert not decided & published, "a set the judge decided reached the crowd"
    assert {i.id for i in sets} - decided <= published
    # The judge's ranking is the decided set's one judgment, kept as a raw ranking.
    assert {j.item_id for j in judged_by_ai} == decided
    assert all(j.label == "ranking" and j.worker_id == f"ai:{JUDGE.model}" for j in judged_by_ai)
    for r in routes.values():
        assert r.places is not None and sorted(r.places) == [1, 2, 3, 4]
        assert r.order_agreement is not None
        if r.route == AIRouteState.AI:
            assert r.order_agreement == 1.0 and r.confidence >= 0.7  # type: ignore[operator]
        if r.reason == "order_disagrees":
            assert r.order_agreement < 1.0
        if r.reason == "low_confidence":
            assert r.confidence < 0.7  # type: ignore[operator]
    # The rules keep the judge's better rankings: what it decided is closer to the true
    # order (tau-b against the hidden qualities) than what it was unsure of.
    payload = {i.id: RankTask.model_validate(i.payload) for i in sets}

    def tau(item_id: str) -> float:
        task = payload[item_id]
        truth = [-response_quality(task.prompt, t) for t in task.responses]
        return kendall_tau(routes[item_id].places or [], truth)

    unsure = [i for i, r in routes.items() if r.route == AIRouteState.HUMAN]
    assert unsure
    assert sum(map(tau, decided)) / len(decided) > sum(map(tau, unsure)) / len(unsure)
    summary = data["routing"]
    assert summary["unit"] == "ranking sets"
    assert summary["audited"] == summary["by_route"].get("audit", 0) > 0
    assert summary["audit_tau"] is not None and -1 <= summary["audit_tau"] <= 1
    assert "mean Kendall tau-b" in markdown and "Ranking sets sent to the AI judge" in markdown


def test_the_estimate_prices_the_judge_on_every_real_ranking_set(
    tmp_path: Path, sqlite_url: str
) -> None:
    priced = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01", "max_tokens": 300}
    spec = load_campaign(ranking_campaign(tmp_path, {"ai": {"name": "aijudge", "options": priced}}))
    humans_only = estimate_spec(spec.model_copy(update={"routing": None}))
    est = estimate_spec(spec)
    assert est.ai is not None and 0 < est.ai_expected < est.ai_worst
    assert est.worst == humans_only.worst + est.ai_worst
    with session_scope() as s:
        register_campaign(s, spec)
    tasks = [
        TaskItem(key=f"{i.id}:ai", group=i.id, payload=i.payload, overlap=1) for i in real_sets()
    ]
    # The sets registration planned are the ones the estimate priced, in both orders.
    assert AIJudgeConnector.quote(priced, tasks).worst == est.ai.worst
    assert "2 request(s)" not in est.ai.basis and f"{2 * len(tasks)} request(s)" in est.ai.basis
