"""The example campaign deployed on a real Prefect server exactly as the README says, run by
a process worker against `crowdloop simulator serve`, checked in the database, the datasets
and the Prefect UI (headless Chromium). Fixtures and helpers: conftest.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from tests.live.conftest import LiveStack, require
from tests.live.readme import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.live,
    pytest.mark.timeout(1500),
    # one live stack per session: every live test on the same xdist worker
    pytest.mark.xdist_group("live"),
]

CAMPAIGN = "example"
CHROMIUM = Path(os.environ.get("CROWDLOOP_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "build"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_example_campaign_runs_from_the_deployment(live: LiveStack, example_run: Any) -> None:
    from crowdloop.db import session_scope
    from crowdloop.models.tables import (
        Campaign,
        CampaignStatus,
        Item,
        Judgment,
        JudgmentStatus,
        PairOutcome,
    )

    # The deployment carries the checkout and the settings, captured at deploy time.
    deployment = live.deployment("run-campaign/campaign")
    db_url = f"sqlite:///{live.root}/crowdloop-output/crowdloop.db"
    assert deployment.job_variables["env"] == {
        "CROWDLOOP_DATABASE_URL": db_url,
        "CROWDLOOP_SIMULATOR_URL": live.simulator.url,
        "CROWDLOOP_SIMULATOR_TOKEN": live.simulator.token,
    }
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(live.root)}}
    ]
    assert example_run.parameters == {"campaign_file": "campaigns/example.yaml"}

    # The runs wrote to that database, and nothing fell back to ~/.crowdloop.
    assert not (live.home / ".crowdloop").exists()
    with session_scope(db_url) as s:
        campaign = s.get(Campaign, CAMPAIGN)
        assert campaign is not None and campaign.status == CampaignStatus.COMPLETE
        by_stage = dict(
            s.exec(
                select(Item.stage, func.count())
                .where(Item.campaign_id == CAMPAIGN)
                .group_by(col(Item.stage))
            ).all()
        )
        valid = s.exec(
            select(func.count()).where(
                Judgment.campaign_id == CAMPAIGN, Judgment.status == JudgmentStatus.VALID
            )
        ).one()
        outcomes = s.exec(select(func.count()).where(PairOutcome.campaign_id == CAMPAIGN)).one()
    assert {"prompts", "responses", "verify", "compare"} <= set(by_stage), by_stage
    assert by_stage["compare"] >= 48  # 8 prompts x 6 pairs, golden pairs on top
    assert valid > 100 and outcomes >= 48

    # The datasets, where the example campaign puts them (and `reference` reads them).
    out = live.root / "crowdloop-output"
    prefs = _rows(out / "preferences.jsonl")
    assert prefs and {"prompt", "chosen", "rejected"} <= set(prefs[0])
    sft = _rows(out / "sft.jsonl")
    assert sft and {"prompt", "completion"} <= set(sft[0])
    report = json.loads((out / f"{CAMPAIGN}-report.json").read_text())
    assert report["campaign"] == CAMPAIGN

    # The simulator served it: the campaign's pools are in its state file too.
    stats = live.simulator.stats()
    assert stats["pools_created"] >= 4 and stats["tasks_created"] >= by_stage["compare"]
    assert (out / "simulator.json").exists()

    # The README's look at it from the command line.
    for argv in live.commands.after_worker[1:]:
        assert CAMPAIGN in live.cli(argv)


def test_rerun_resumes_from_the_database(live: LiveStack, example_run: Any) -> None:
    """A run of `preferences` for the finished campaign pushes nothing and exports the same."""
    before = live.simulator.stats()
    dataset = live.root / "crowdloop-output" / "preferences.jsonl"
    rows = _rows(dataset)
    run = live.run_deployment_and_wait(
        "collect-preferences/preferences", {"campaign_id": CAMPAIGN}, timeout=600
    )
    assert run.state.is_completed(), live.flow_run_logs(run.id)
    after = live.simulator.stats()
    for counter in ("pools_created", "tasks_created", "assignments_created"):
        assert after[counter] == before[counter], counter
    assert _rows(dataset) == rows


def test_ui_shows_the_campaign_artifacts(live: LiveStack, example_run: Any) -> None:
    """The Prefect UI that `prefect server start` serves shows the summary and progress."""
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
        raise
    artifacts = live.artifacts()
    summary = f"{CAMPAIGN}-summary"
    progress = f"{CAMPAIGN}-progress"
    assert {summary, progress, f"{CAMPAIGN}-workers", f"{CAMPAIGN}-estimate"} <= set(artifacts)
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            # The artifacts list: the summary and both progress artifacts, by key.
            page.goto(f"{live.url}/artifacts")
            for key in (summary, progress):
                page.get_by_text(key, exact=True).first.wait_for()
            page.screenshot(path=SHOTS / "live-ui-artifacts.png", full_page=True)
            # The summary itself, rendered from its markdown.
            page.goto(f"{live.url}/artifacts/artifact/{artifacts[summary]}")
            page.get_by_role("heading", name=f"Campaign {CAMPAIGN} — complete").wait_for()
            page.get_by_text("preferences.jsonl").first.wait_for()
            page.screenshot(path=SHOTS / "live-ui-summary.png", full_page=True)
            # The live progress, updated every round: at 100% once the campaign is done.
            page.goto(f"{live.url}/artifacts/artifact/{artifacts[progress]}")
            page.get_by_role("heading", name=f"Campaign {CAMPAIGN}: complete").wait_for()
            page.get_by_text("100%").first.wait_for()
            page.get_by_text("Budget:").first.wait_for()
            page.screenshot(path=SHOTS / "live-ui-progress.png")
        finally:
            browser.close()
