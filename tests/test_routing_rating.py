"""AI-first routing of multi-aspect rating items: the per-item decision, the demo rating
campaign on the simulator with its simulated judge rating first (against the same campaign
all-human), and the judge under a budget cap."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.db import session_scope
from crowdloop.demo.rating import score_ratings_against_truth
from crowdloop.models.domain import RateTask, RatingAnswer, TaskItem
from crowdloop.models.spec import RoutingSpec, SpecError, load_campaign
from crowdloop.models.tables import AIRoute, AIRouteState, Item, Judgment, TaskRecord
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.simulator.rating import true_scores
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.estimate import estimate_spec
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.rating import aggregate_ratings, export_ratings
from crowdloop.stages.report import write_report
from crowdloop.stages.rounds import run_bare
from crowdloop.stages.routing import decide
from tests.e2e_helpers import judged

CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
JUDGE = AIJudgeConfig(accuracy=0.8)
CHAT = "POST /openai/v1/chat/completions"


def rating_campaign(
    tmp_path: Path, routing: dict[str, Any] | None, name: str = "rating-demo", **top: Any
) -> Path:
    """The demo rating campaign (campaigns/rating.yaml) in tmp_path, with `routing`."""
    shutil.copytree(CAMPAIGNS / "rating", tmp_path / "rating", dirs_exist_ok=True)
    data = yaml.safe_load((CAMPAIGNS / "rating.yaml").read_text())
    data.update(name=name, output_dir="out", poll_interval_s=0.05, **top)
    data["rating"]["export"] = {"path": f"out/{name}.jsonl"}
    if routing is not None:
        data["routing"] = routing
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def real_items(campaign: str) -> list[Item]:
    with session_scope() as s:
        return list(
            s.exec(
                select(Item)
                .where(Item.campaign_id == campaign, Item.kind == "rate", Item.is_golden == False)  # noqa: E712
                .order_by(col(Item.id))
            ).all()
        )


def chats(sim: SimulatorServer) -> int:
    return int(sim.stats()["requests"].get(CHAT, 0))


def human_judgments(campaign: str) -> int:
    """Every paid human rating of the campaign, golden items included."""
    with session_scope() as s:
        return len(
            s.exec(
                select(Judgment.id).where(
                    Judgment.campaign_id == campaign, Judgment.connector != "aijudge"
                )
            ).all()
        )


# --- the policy -----------------------------------------------------------------------------


def test_a_rating_campaign_takes_a_routing_section_with_a_score_difference(
    tmp_path: Path,
) -> None:
    spec = load_campaign(
        rating_campaign(tmp_path, {"ai": {"name": "aijudge"}, "max_score_difference": 0})
    )
    assert spec.routing is not None and spec.routing.max_score_difference == 0
    bad = rating_campaign(tmp_path, {"ai": {"name": "aijudge"}, "max_score_difference": -1})
    with pytest.raises(SpecError, match=r"\.yaml:\d+: field 'routing\.max_score_difference'"):
        load_campaign(bad)


def test_each_rule_sends_a_rating_item_where_the_policy_says() -> None:
    policy = RoutingSpec(confidence_threshold=0.8, audit_rate=0.0, max_score_difference=1)
    sure = RatingAnswer(scores={"helpfulness": 3}, confidence=0.9, order_difference=1)
    assert decide(sure, policy, 0, "r") == (AIRouteState.AI, None)
    apart = sure.model_copy(update={"order_difference": 2})
    assert decide(apart, policy, 0, "r") == (AIRouteState.HUMAN, "order_disagrees")
    strict = policy.model_copy(update={"max_score_difference": 0})
    assert decide(sure, strict, 0, "r") == (AIRouteState.HUMAN, "order_disagrees")
    once = sure.model_copy(update={"order_difference": None})  # asked once: nothing to compare
    assert decide(once, strict, 0, "r") == (AIRouteState.AI, None)
    unsure = sure.model_copy(update={"confidence": 0.79})
    assert decide(unsure, policy, 0, "r") == (AIRouteState.HUMAN, "low_confidence")
    unstated = sure.model_copy(update={"confidence": None})  # the model stated none
    assert decide(unstated, policy, 0, "r") == (AIRouteState.HUMAN, "low_confidence")
    assert decide(None, policy, 0, "r") == (AIRouteState.HUMAN, "unreadable")
    always = policy.model_copy(update={"audit_rate": 1.0})
    assert decide(sure, always, 0, "r") == (AIRouteState.AUDIT, "audit")


# --- a rating campaign on the simulator, AI first, against all-human ------------------------


def test_ai_first_rating_campaign_routes_each_item_once_and_stays_close_to_all_human(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"store": str(tmp_path / "answers.sqlite")}
    routing = {
        "ai": {"name": "aijudge", "options": options},
        "confidence_threshold": 0.7,
        "max_score_difference": 1,
        "audit_rate": 0.1,
    }
    with judged(monkeypatch, SimulatorConfig(seed=0, ai_judge=JUDGE)) as sim:
        human = load_campaign(rating_campaign(tmp_path, None, name="rating-human"))
        assert human.rating is not None
        run_bare(human)
        assert chats(sim) == 0
        spec = load_campaign(rating_campaign(tmp_path, routing, name="rating-ai"))
        assert spec.rating is not None
        run_bare(spec)
        asked = chats(sim)
        tasks = sim.stats()["tasks_created"]
        for campaign in (human, spec):
            assert campaign.rating is not None
            aggregate_ratings(campaign.name, campaign.rating)
            export_ratings(campaign.name, campaign.rating)
        data, markdown = write_report(spec.name)
        run_bare(spec)  # a rerun of the finished campaign asks and publishes nothing
        assert chats(sim) == asked and sim.stats()["tasks_created"] == tasks
    items = real_items(spec.name)
    with session_scope() as s:
        routes = {r.item_id: r for r in s.exec(select(AIRoute)).all()}
        published = set(s.exec(select(TaskRecord.item_id)).all())
        by_ai = s.exec(select(Judgment).where(Judgment.connector == "aijudge")).all()
    assert {i.id for i in items} == set(routes), "a real item was not routed"
    assert asked == 2 * len(items), "each item is asked with the aspects in order and reversed"
    decided = {i for i, r in routes.items() if r.route == AIRouteState.AI}
    assert decided and len(decided) < len(items)
    assert not decided & published, "an item the judge decided reached the crowd"
    assert {i.id for i in items} - decided <= published
    assert {j.item_id for j in by_ai} == decided
    assert all(j.label == "rating" and j.worker_id == f"ai:{JUDGE.model}" for j in by_ai)
    for r in routes.values():
        assert r.scores is not None and r.choice == "rating"
        if r.route == AIRouteState.AI:
            assert r.confidence is not None and r.confidence >= 0.7
        if r.reason == "low_confidence":
            assert r.confidence is not None and r.confidence < 0.7
    # The confidence is informative: what the judge decided is closer to the hidden truth
    # than what it was unsure of.
    payload = {i.id: RateTask.model_validate(i.payload) for i in items}

    def error(item_id: str) -> float:
        truth = true_scores(payload[item_id])
        got = routes[item_id].scores or {}
        return sum(abs(got[a] - t) for a, t in truth.items()) / len(truth)

    unsure = [i for i, r in routes.items() if r.reason == "low_confidence"]
    assert unsure
    assert sum(map(error, decided)) / len(decided) < sum(map(error, unsure)) / len(unsure)
    # The exported rows against the hidden truth, AI first against all-human.
    assert spec.rating is not None and human.rating is not None
    ai_first = score_ratings_against_truth(spec.name, tmp_path / "out/rating-ai.jsonl", spec.rating)
    all_human = score_ratings_against_truth(
        human.name, tmp_path / "out/rating-human.jsonl", human.rating
    )
    bought, baseline = human_judgments(spec.name), human_judgments(human.name)
    print(
        f"AI first: error {ai_first.mean_error:.3f} {ai_first.error}, {bought} human ratings; "
        f"all-human: error {all_human.mean_error:.3f} {all_human.error}, {baseline}; "
        f"decided {len(decided)} of {len(items)}"
    )
    assert ai_first.responses == all_human.responses == len(items)
    assert bought < 0.75 * baseline
    assert ai_first.mean_error < all_human.mean_error + 0.15
    summary = data["routing"]
    assert summary["unit"] == "rating items"
    assert summary["audited"] == summary["by_route"].get("audit", 0) > 0
    aspects = {a.name for a in spec.rating.aspects}
    assert set(summary["audit_aspects"]) == aspects
    assert all(0 <= d <= 4 for d in summary["audit_aspects"].values())
    assert "Rating items sent to the AI judge" in markdown
    assert "mean absolute difference" in markdown


def test_the_estimate_prices_the_judge_on_every_real_rating_item(
    tmp_path: Path, sqlite_url: str
) -> None:
    priced = {"price_per_1k_input": "0.0025", "price_per_1k_output": "0.01", "max_tokens": 300}
    spec = load_campaign(rating_campaign(tmp_path, {"ai": {"name": "aijudge", "options": priced}}))
    humans_only = estimate_spec(spec.model_copy(update={"routing": None}))
    est = estimate_spec(spec)
    assert est.ai is not None and 0 < est.ai_expected < est.ai_worst
    assert est.worst == humans_only.worst + est.ai_worst
    with session_scope() as s:
        register_campaign(s, spec)
    tasks = [
        TaskItem(key=f"{i.id}:ai", group=i.id, payload=i.payload, overlap=1)
        for i in real_items(spec.name)
    ]
    assert AIJudgeConnector.quote(priced, tasks).worst == est.ai.worst
    assert f"{2 * len(tasks)} request(s)" in est.ai.basis
