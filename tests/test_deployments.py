"""Every deployment in deployments/prefect.yaml loads and its parameters fit the flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
DEPLOYMENTS: list[dict[str, Any]] = SPEC["deployments"]


def test_names_unique_and_pool_set() -> None:
    names = [d["name"] for d in DEPLOYMENTS]
    assert len(names) == len(set(names))
    assert all(d["work_pool"]["name"] == "crowdloop" for d in DEPLOYMENTS)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_and_parameters(
    deployment: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
    schema = parameter_schema(flow).model_dump()
    known = set(schema["properties"])
    given = set(deployment.get("parameters") or {})
    assert given <= known, f"unknown parameters {given - known} for {flow.name}"
    missing = set(schema.get("required") or []) - given
    assert not missing, f"{deployment['name']}: required parameters not set: {missing}"


def test_sync_is_scheduled_and_serialised() -> None:
    sync = next(d for d in DEPLOYMENTS if d["name"] == "sync")
    assert sync["schedules"][0]["interval"] > 0
    assert sync["concurrency_limit"] == 1
