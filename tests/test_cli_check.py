"""`crowdloop connectors check NAME`: the first-contact dry run, against the Prolific fake
(the connector is built exactly as a campaign builds it; only its transport is the fake's)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from crowdloop.cli import app
from crowdloop.connectors.prolific.credentials import ProlificCredentials
from tests.contract.harness_prolific import BASE, PROJECT, TOKEN, WORKSPACE, FakeProlific

runner = CliRunner(env={"COLUMNS": "300"})  # one table row per line


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeProlific:
    fake = FakeProlific()
    original: Callable[..., Any] = ProlificCredentials.get_client

    def on_fake(self: ProlificCredentials, **kwargs: Any) -> Any:
        return original(self, **{**kwargs, "transport": fake.transport()})

    monkeypatch.setattr(ProlificCredentials, "get_client", on_fake)
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_URL", BASE)
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_TOKEN", TOKEN)
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_WORKSPACE_ID", raising=False)
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_PROJECT_ID", raising=False)
    return fake


OPTIONS = json.dumps({"workspace_id": WORKSPACE, "project_id": PROJECT})


def test_the_list_still_answers_to_the_bare_command() -> None:
    result = runner.invoke(app, ["connectors"])
    assert result.exit_code == 0, result.output
    assert "prolific" in result.output and "pause" in result.output


def test_check_passes_read_only_against_the_fake(fake: FakeProlific) -> None:
    result = runner.invoke(app, ["connectors", "check", "prolific", "--options", OPTIONS])
    assert result.exit_code == 0, result.output
    assert "workspace balance" in result.output and "available 500.00 USD" in result.output
    assert "not checked" in result.output  # what the check cannot prove is said
    writes = [c for c in fake.router.calls if c.request.method != "GET"]
    assert writes == [] and fake.batches == {} and fake.studies == {}


def test_check_reads_a_campaign_files_connector_section(fake: FakeProlific, tmp_path: Path) -> None:
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        yaml.safe_dump(
            {"name": "c", "connector": {"name": "prolific", "options": json.loads(OPTIONS)}}
        )
    )
    result = runner.invoke(app, ["connectors", "check", "prolific", "--options", str(campaign)])
    assert result.exit_code == 0, result.output


def test_a_wrong_token_fails_clearly(fake: FakeProlific, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_TOKEN", "not-the-token-42")
    result = runner.invoke(app, ["connectors", "check", "prolific", "--options", OPTIONS])
    assert result.exit_code == 1
    assert "credentials refused" in result.output and "FAILED" in result.output
    assert "[prolific]" in result.output  # the error names the connector
    assert "not-the-token-42" not in result.output


def test_an_empty_balance_and_a_foreign_project_fail(fake: FakeProlific) -> None:
    fake.balance = 0
    fake.projects["elsewhere"] = {"id": "elsewhere", "title": "x", "workspace": "other-ws"}
    options = json.dumps({"workspace_id": WORKSPACE, "project_id": "elsewhere"})
    result = runner.invoke(app, ["connectors", "check", "prolific", "--options", options])
    assert result.exit_code == 1
    assert "no available balance" in result.output
    assert "belongs to workspace other-ws" in result.output


def test_missing_options_and_unknown_connectors_are_refused(fake: FakeProlific) -> None:
    missing = runner.invoke(app, ["connectors", "check", "prolific"])
    assert missing.exit_code == 2 and "workspace_id" in missing.output
    unknown = runner.invoke(app, ["connectors", "check", "nope"])
    assert unknown.exit_code == 2 and "no connector named 'nope'" in unknown.output
