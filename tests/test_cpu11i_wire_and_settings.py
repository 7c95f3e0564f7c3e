"""cpu11i: the simulator connector's add-tasks and review bodies are dumped by one
TypeAdapter with each payload serialised in place, and the configured database URL is
read from the settings again only when a CROWDLOOP_ variable changes.

The bodies must be what the model path sent before: every payload exactly as
`model_dump(mode="json")` gives it (opt-in fields left out while unset), so the marketplace
sees the same tasks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from crowdloop.connectors.simulator.connector import _task_wire
from crowdloop.connectors.simulator.models import REVIEW_REQUEST, TASKS_ADD
from crowdloop.db import configured_url
from crowdloop.models.domain import (
    CompareTask,
    RankTask,
    RatedAspect,
    RateTask,
    TaskItem,
    TaskPayload,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from crowdloop.settings import get_settings

PAYLOADS: list[Any] = [
    CompareTask(instruction="Which is better?", prompt='p \u00e9\n"q"', left="a", right="b"),
    CompareTask(
        instruction="i",
        prompt="p",
        left="a",
        right="b",
        scale=("slightly", "much"),
        unsure=False,
        rationale=True,
    ),
    VerifyTask(instruction="ok?", target="response", prompt="p", text="t", topic="cooking"),
    VerifyTask(instruction="ok?", target="prompt", prompt="p", text="t", rationale=True),
    WritePromptTask(instruction="write", topic="travel"),
    WriteResponseTask(instruction="answer", prompt="p"),
    RankTask(instruction="rank", prompt="p", responses=("a", "b", "c"), ties=True),
    RateTask(
        instruction="rate",
        prompt="p",
        response="r",
        aspects=(RatedAspect(name="helpful", low=1, high=5),),
        rationale=True,
    ),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.kind)
def test_a_task_body_carries_the_payload_as_its_json_dump(payload: Any) -> None:
    item = TaskItem(key="k.0", group="g", payload=payload, overlap=3, exclude_workers=("w1",))
    sent = json.loads(
        TASKS_ADD.dump_json({"idempotency_key": "push-1", "tasks": [_task_wire(item)]})
    )
    # What the connector sent before: the payload's dump, in a body built from dicts.
    assert sent == {
        "idempotency_key": "push-1",
        "tasks": [
            {
                "key": "k.0",
                "group": "g",
                "payload": payload.model_dump(mode="json"),
                "overlap": 3,
                "exclude_workers": ["w1"],
            }
        ],
    }
    # The stored payload (planning's dump) reads back to the same task.
    stored = json.dumps(payload.model_dump())
    assert TypeAdapter(TaskPayload).validate_json(stored) == payload


def test_unset_opt_ins_stay_out_of_the_task_body() -> None:
    item = TaskItem(key="k.0", group="g", payload=PAYLOADS[0], overlap=1)
    body = TASKS_ADD.dump_json({"idempotency_key": "k", "tasks": [_task_wire(item)]})
    payload = json.loads(body)["tasks"][0]["payload"]
    assert set(payload) == {"kind", "instruction", "prompt", "left", "right"}


def test_review_body_lists_each_decision() -> None:
    body = REVIEW_REQUEST.dump_json(
        {
            "decisions": [
                {"id": "asg-1", "status": "accepted", "comment": ""},
                {"id": "asg-2", "status": "rejected", "comment": "failed control tasks"},
            ]
        }
    )
    assert json.loads(body) == {
        "decisions": [
            {"id": "asg-1", "status": "accepted", "comment": ""},
            {"id": "asg-2", "status": "rejected", "comment": "failed control tasks"},
        ]
    }


def test_configured_url_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", "sqlite:////tmp/cpu11i-a.db")
    assert configured_url() == "sqlite:////tmp/cpu11i-a.db"
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", "sqlite:////tmp/cpu11i-b.db")
    assert configured_url() == "sqlite:////tmp/cpu11i-b.db"
    monkeypatch.delenv("CROWDLOOP_DATABASE_URL")
    # pydantic-settings matches the variable's name in any case.
    monkeypatch.setenv("crowdloop_database_url", "sqlite:////tmp/cpu11i-c.db")
    assert configured_url() == get_settings().database_url == "sqlite:////tmp/cpu11i-c.db"
    monkeypatch.delenv("crowdloop_database_url")
    assert configured_url() == get_settings().database_url
