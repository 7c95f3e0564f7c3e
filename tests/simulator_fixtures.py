"""Shared helpers for the simulator and simulator-connector tests (import, not conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from crowdloop.simulator import world
from crowdloop.simulator.config import CrowdConfig, FaultConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer

API = "/api/v1"
REWARD = {"amount": "0.05", "currency": "USD"}


def config(
    *, seed: int = 1, time_scale: float = 1e6, faults: FaultConfig | None = None
) -> SimulatorConfig:
    return SimulatorConfig(
        seed=seed, time_scale=time_scale, crowd=CrowdConfig(), faults=faults or FaultConfig()
    )


def api_client(sim: SimulatorServer) -> httpx.Client:
    return httpx.Client(
        base_url=f"{sim.url}{API}",
        headers={"Authorization": f"Bearer {sim.token}"},
        timeout=10,
    )


def pool_body(key: str = "pool-key-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "compare top-5 lists",
        "stage": "compare",
        "instruction": "Pick the better list.",
        "reward": REWARD,
        "campaign_id": "camp-1",
        "idempotency_key": key,
    }
    body.update(overrides)
    return body


def compare_payload(i: int) -> dict[str, Any]:
    """A compare task over two demo candidates; which side is better varies with i."""
    topic = list(world.CATALOG)[i % len(world.CATALOG)]
    prompt = world.make_prompt(topic, i)
    good = world.render_list(world.CATALOG[topic][:5])
    weak = world.render_list([*world.CATALOG[topic][:2], "lorem", "ipsum", "asdf"])
    left, right = (good, weak) if i % 2 == 0 else (weak, good)
    return {
        "kind": "compare",
        "instruction": "Which list answers the prompt better?",
        "prompt": prompt,
        "left": left,
        "right": right,
    }


def compare_tasks(
    n: int, *, prefix: str = "t", overlap: int = 3, start: int = 0, **extra: Any
) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{prefix}{i}",
            "group": extra.get("group", f"{prefix}{i}"),
            "payload": compare_payload(i),
            "overlap": overlap,
            "exclude_workers": extra.get("exclude_workers", []),
        }
        for i in range(start, start + n)
    ]


def open_pool_with_tasks(
    client: httpx.Client, tasks: list[dict[str, Any]], *, key: str = "pool-key-1"
) -> str:
    pool_id: str = client.post("/pools", json=pool_body(key)).json()["id"]
    for chunk_start in range(0, len(tasks), 500):
        response = client.post(
            f"/pools/{pool_id}/tasks",
            json={"idempotency_key": f"add-{chunk_start}", "tasks": tasks[chunk_start:][:500]},
        )
        assert response.status_code == 200, response.text
    assert client.post(f"/pools/{pool_id}/open").status_code == 200
    return pool_id


def read_pages(
    client: httpx.Client, pool_id: str, *, cursor: str | None = None, limit: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every page after `cursor` until has_more is false."""
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/pools/{pool_id}/assignments", params=params)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        yield page
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return


def read_all(
    client: httpx.Client, pool_id: str, *, cursor: str | None = None, limit: int = 1000
) -> tuple[list[dict[str, Any]], str | None]:
    items: list[dict[str, Any]] = []
    for page in read_pages(client, pool_id, cursor=cursor, limit=limit):
        items.extend(page["items"])
        cursor = page["next_cursor"]
    return items, cursor
