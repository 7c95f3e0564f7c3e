"""The ops surface: CLI, the scheduled sync, artifacts, secrets, retraining by deployment."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter
from sqlalchemy import func, update
from sqlmodel import col, select
from typer.testing import CliRunner

from crowdloop.cli import app
from crowdloop.connectors.registry import build_connector
from crowdloop.db import session_scope
from crowdloop.flows.campaign import register, run_campaign
from crowdloop.flows.retrain import train_reward_model_flow
from crowdloop.flows.sync_open import sync_open_campaigns
from crowdloop.flows.trigger import trigger_retraining
from crowdloop.models.domain import Stage
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import Judgment, TriggerRecord
from crowdloop.stages.ledger import push_pending
from tests.e2e_helpers import campaign_dir, simulator

runner = CliRunner()


def test_run_reports_a_malformed_campaign_file_with_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "campaign.yaml"
    bad.write_text("name: broken\npreferences:\n  candidates_file: c.jsonl\n  overlap: many\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert f"{bad}:4" in out and "preferences.overlap" in out


def test_connectors_lists_the_simulator_with_capabilities() -> None:
    result = runner.invoke(app, ["connectors"])
    assert result.exit_code == 0
    assert "simulator" in result.output and "pairwise" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_scheduled_sync_collects_for_a_campaign_whose_flow_is_not_running(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch):
        path = campaign_dir(tmp_path, "pushed-only")
        campaign_id = register(load_campaign(path))
        with build_connector("simulator") as c:
            pushed = push_pending(campaign_id, Stage.COMPARE, c)
        assert pushed.assignments > 0
        out = sync_open_campaigns()
    assert out["synced"][campaign_id]["stored"] > 0 and not out["failed"]
    with session_scope() as s:
        stored = s.exec(select(func.count()).select_from(Judgment)).one()
    assert stored == out["synced"][campaign_id]["stored"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_artifacts_status_export_and_no_secret_anywhere(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulator(monkeypatch) as sim:
        path = campaign_dir(tmp_path, "ops-view")
        run_campaign(str(path))
        token = sim.token
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_latest_artifacts()}
    assert {"ops-view-summary", "ops-view-workers", "ops-view-progress"} <= keys

    status = runner.invoke(app, ["status", "ops-view"])
    assert status.exit_code == 0 and "Cost" in status.output
    missing = runner.invoke(app, ["status", "nope"])
    assert missing.exit_code == 2 and "no campaign named 'nope'" in missing.output

    before = (tmp_path / "preferences.jsonl").read_bytes()
    again = runner.invoke(app, ["export", "ops-view", "--out", str(tmp_path / "again.jsonl")])
    assert again.exit_code == 0
    assert (tmp_path / "again.jsonl").read_bytes() == before

    # The marketplace token must not reach the database, datasets, reports or artifacts.
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert token.encode() not in file.read_bytes(), f"secret leaked into {file}"
    with get_client(sync_client=True) as client:
        for artifact in client.read_artifacts():
            assert token not in str(artifact.data)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_retraining_by_deployment_runs_once_per_key(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment_id = train_reward_model_flow.to_deployment(name="reference").apply()
    assert isinstance(deployment_id, UUID)
    with simulator(monkeypatch):
        path = campaign_dir(
            tmp_path,
            "by-deployment",
            overrides={
                "retraining": {
                    "threshold_pairs": 5,
                    "target": {"kind": "deployment", "deployment": "train-reward-model/reference"},
                }
            },
        )
        first = run_campaign(str(path))["preferences"]["retraining"]
    # A crash after run_deployment but before the trigger was recorded as done: retry it.
    with session_scope() as s:
        s.execute(update(TriggerRecord).values(state="intent", flow_run_id=None))
    again = trigger_retraining("by-deployment")
    assert again is not None and again["flow_run_id"] == first["flow_run_id"]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["reference"])),
            flow_run_filter=FlowRunFilter(),
        )
    assert [str(r.id) for r in runs] == [first["flow_run_id"]]
    assert runs[0].parameters["dataset_path"].endswith("preferences.jsonl")
    with session_scope() as s:
        records = list(s.exec(select(TriggerRecord).where(col(TriggerRecord.state) == "done")))
    assert len(records) == 1
