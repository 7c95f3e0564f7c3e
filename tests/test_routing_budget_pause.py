"""The AI judge under a budget cap and an operator's pause, for every kind of item it decides.

Pairs, ranking sets and rating items go through the same `route_pending`: each asks the
judge in both orders, reserves the judge's worst-case bill before asking, and checks the
campaign between slices. One test per behaviour, run for each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from crowdloop.connectors.aijudge.connector import AIJudgeConnector
from crowdloop.db import session_scope
from crowdloop.models.domain import TaskItem
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import AIJudgeBatch, AIRoute, AIRouteState, CampaignStatus, Item
from crowdloop.simulator.config import AIJudgeConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages import routing as routing_stage
from crowdloop.stages.budget import BudgetPause, _committed, raise_cap
from crowdloop.stages.lifecycle import CampaignHalted, check_running, transition
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.routing import route_pending
from tests.e2e_helpers import campaign_dir, judged
from tests.test_routing_ranking import ranking_campaign
from tests.test_routing_rating import rating_campaign

CHAT = "POST /openai/v1/chat/completions"


def pairwise_campaign(tmp_path: Path, routing: dict[str, Any], **top: Any) -> Path:
    path = campaign_dir(tmp_path / "c", "routed", overrides={"demonstrations": None})
    data = yaml.safe_load(path.read_text())
    data.update(routing=routing, **top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass(frozen=True)
class Kind:
    item_kind: str  # Item.kind of what the judge decides
    campaign: Callable[..., Path]  # (tmp_path, routing, **top-level settings) -> campaign file
    judge: AIJudgeConfig

    def real(self, campaign: str) -> list[Item]:
        """The campaign's non-golden items of this kind, in id order (the routing order)."""
        with session_scope() as s:
            return list(
                s.exec(
                    select(Item)
                    .where(
                        Item.campaign_id == campaign,
                        Item.kind == self.item_kind,
                        Item.is_golden == False,  # noqa: E712
                    )
                    .order_by(col(Item.id))
                ).all()
            )


KINDS = {
    "pairwise": Kind("compare", pairwise_campaign, AIJudgeConfig(accuracy=0.8, position_bias=0.1)),
    "ranking": Kind("rank", ranking_campaign, AIJudgeConfig(accuracy=0.8, position_bias=0.1)),
    "rating": Kind("rate", rating_campaign, AIJudgeConfig(accuracy=0.8)),
}


def chats(sim: SimulatorServer) -> int:
    return int(sim.stats()["requests"].get(CHAT, 0))


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_a_budget_reserves_the_judges_worst_case_and_pauses_before_asking_past_the_cap(
    kind: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = KINDS[kind]
    options = {
        "store": str(tmp_path / "answers.sqlite"),
        "price_per_1k_input": "0.0025",
        "price_per_1k_output": "0.01",
        "max_tokens": 256,
    }
    path = k.campaign(
        tmp_path, {"ai": {"name": "aijudge", "options": options}}, budget={"cap": 100}
    )
    fits = 4  # the cap leaves room for four items' worst case and half of the fifth's
    with judged(monkeypatch, SimulatorConfig(seed=0, ai_judge=k.judge)) as sim:
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        items = k.real(spec.name)
        assert len(items) > fits
        tasks = [
            TaskItem(key=f"{i.id}:ai", group=i.id, payload=i.payload, overlap=1) for i in items
        ]
        worst = [AIJudgeConnector.quote(options, [t]).worst.amount for t in tasks]
        raise_cap(spec.name, sum(worst[:fits]) + worst[fits] / 2, by="test")
        with pytest.raises(BudgetPause) as paused:
            route_pending(spec.name)
        assert paused.value.reason == "cap" and paused.value.stage == "ai-judge"
        with session_scope() as s:
            routes = sorted(s.exec(select(AIRoute)).all(), key=lambda r: r.item_id)
            spent = Decimal(s.exec(select(AIJudgeBatch.spend)).one() or 0)
            committed = _committed(s, spec.name)
        # Only what fitted was asked, each in both orders; nothing went to humans yet.
        assert [r.item_id for r in routes] == [i.id for i in items[:fits]]
        assert chats(sim) == 2 * fits and sim.stats()["tasks_created"] == 0
        assert [Decimal(r.reserved or "0") for r in routes] == worst[:fits]
        assert all(r.route != AIRouteState.ASKED for r in routes)
        # The judge billed less than its worst case; once answered, only the bill counts.
        assert 0 < spent <= sum(worst[:fits]) and committed == spent
        # With the cap raised, the next round asks the rest and nothing twice.
        raise_cap(spec.name, 100, by="test")
        route_pending(spec.name)
        assert chats(sim) == 2 * len(items)
    with session_scope() as s:
        assert len(s.exec(select(AIRoute)).all()) == len(items)
        assert _committed(s, spec.name) == Decimal(s.exec(select(AIJudgeBatch.spend)).one())


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_a_pause_stops_the_judge_within_one_slice_and_resuming_asks_the_rest_once(
    kind: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = KINDS[kind]
    path = k.campaign(
        tmp_path, {"ai": {"name": "aijudge", "options": {"store": str(tmp_path / "a.sqlite")}}}
    )
    monkeypatch.setattr(routing_stage, "SLICE", 10)
    with judged(monkeypatch, SimulatorConfig(seed=0, ai_judge=k.judge)) as sim:
        spec = load_campaign(path)
        with session_scope() as s:
            register_campaign(s, spec)
        items = len(k.real(spec.name))
        assert items > 20
        slices = 0

        def operator_pauses_after_two_slices() -> None:
            nonlocal slices
            slices += 1
            if slices == 3:
                transition(spec.name, CampaignStatus.PAUSED, reason="ops", actor="test")
            check_running(spec.name)

        with pytest.raises(CampaignHalted):
            route_pending(spec.name, between=operator_pauses_after_two_slices)
        with session_scope() as s:
            routes = s.exec(select(AIRoute)).all()
        assert chats(sim) == 2 * 20 and len(routes) == 20  # two slices, each in both orders
        assert all(r.route != AIRouteState.ASKED for r in routes)  # asked means answered
        transition(spec.name, CampaignStatus.RUNNING, reason="ops", actor="test")
        route_pending(spec.name, between=partial(check_running, spec.name))
        assert chats(sim) == 2 * items
    with session_scope() as s:
        assert len(s.exec(select(AIRoute)).all()) == items
