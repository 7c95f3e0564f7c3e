"""Every deployment in deployments/prefect.yaml loads and its parameters fit the flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema

from crowdloop.deploy_steps import DeployEnvironmentError, capture_environment
from crowdloop.models.spec import load_campaign

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


def test_runs_get_root_and_settings_captured_at_deploy_time() -> None:
    """The pull step and every deployment's env come from the `capture_environment` build
    step, so no run depends on a variable the worker happens to have (or lack)."""
    (step,) = SPEC["build"]
    assert list(step) == ["crowdloop.deploy_steps.capture_environment"]
    args = step["crowdloop.deploy_steps.capture_environment"]
    assert args["id"] == "crowdloop" and args["required"] == ["CROWDLOOP_DATABASE_URL"]
    assert SPEC["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ crowdloop.root }}"}}
    ]
    for d in DEPLOYMENTS:
        assert d["work_pool"]["job_variables"]["env"] == "{{ crowdloop.env }}", d["name"]


def test_default_campaign_file_exists_and_loads() -> None:
    campaign = next(d for d in DEPLOYMENTS if d["name"] == "campaign")
    path = ROOT / campaign["parameters"]["campaign_file"]
    spec = load_campaign(path)
    assert spec.connector.name == "simulator"
    assert all(
        d["parameters"]["campaign_id"] == spec.name
        for d in DEPLOYMENTS
        if "campaign_id" in (d.get("parameters") or {})
    )
    reference = next(d for d in DEPLOYMENTS if d["name"] == "reference")
    assert spec.preferences is not None
    assert spec.preferences.export.path.resolve() == (
        ROOT / reference["parameters"]["dataset_path"]
    )


def test_capture_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("CROWDLOOP_DATABASE_URL", raising=False)
    monkeypatch.delenv("CROWDLOOP_SIMULATOR_TOKEN", raising=False)
    monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", "http://127.0.0.1:8765")
    names = {"required": ["CROWDLOOP_DATABASE_URL"], "optional": OPTIONAL}
    with pytest.raises(DeployEnvironmentError, match="set CROWDLOOP_DATABASE_URL"):
        capture_environment(**names)
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", "sqlite:///crowdloop-output/crowdloop.db")
    out = capture_environment(**names)
    assert out["root"] == str(ROOT)
    # Relative SQLite paths are pinned to the root; unset optional names are left out.
    assert out["env"] == {
        "CROWDLOOP_DATABASE_URL": f"sqlite:///{ROOT}/crowdloop-output/crowdloop.db",
        "CROWDLOOP_SIMULATOR_URL": "http://127.0.0.1:8765",
    }
    pg = "postgresql+psycopg://crowdloop@db.internal:5432/crowdloop"
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", pg)
    assert capture_environment(**names)["env"]["CROWDLOOP_DATABASE_URL"] == pg
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployEnvironmentError, match="not the crowdloop repository root"):
        capture_environment(**names)


OPTIONAL = ["CROWDLOOP_SIMULATOR_URL", "CROWDLOOP_SIMULATOR_TOKEN"]
