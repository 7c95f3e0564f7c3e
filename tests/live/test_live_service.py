"""The crowdloop service on a real Prefect server, set up exactly as the README says
(fixtures: conftest.py), in one module so that one live stack serves every test (pytest
runs a module on one worker).

First the example campaign: deployed, run by a process worker against
`crowdloop simulator serve`, checked in the database, the datasets and the Prefect UI
(headless Chromium). Then the campaign lifecycle and the budget as ops use them: a campaign
paused and resumed, one cancelled from Prefect mid-run and rerun, one that waits for budget
approval with its form in the UI, one that hits its pause point and its cap mid-run —
checked in the database, on the marketplace, and in Prefect's events and the shipped
automations.

The lifecycle campaigns run on a second simulated marketplace whose clock stands still
(`--time-scale 0`): nobody answers until the test moves the clock, so "mid-run" is a state
the test holds, not a race. Its credentials are a Prefect block the campaign files name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import yaml
from sqlalchemy import func
from sqlmodel import col, select

from tests.live.conftest import (
    LiveStack,
    Simulator,
    announced_simulator,
    require,
    start,
    wait_for,
)
from tests.live.readme import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.live, pytest.mark.timeout(1500)]

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
    """A run of `preferences` for the finished campaign publishes nothing and leaves its
    dataset as it was (re-exporting is `crowdloop export`)."""
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


# --- the lifecycle and the budget ------------------------------------------------------

BLOCK = "sim-frozen"


# The still-clock marketplace: its API, and the hand that moves its clock.
Frozen = Simulator


@pytest.fixture(scope="module")
def frozen(live: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frozen]:
    state = tmp_path_factory.mktemp("frozen") / "state.json"
    argv = ["crowdloop", "simulator", "serve", "--port", "0", "--time-scale", "0",
            "--seed", "3", "--id-prefix", "frozen.", "--state", str(state)]  # fmt: skip
    service = start("simulator-frozen", argv, live.env, live.root)
    live.services.append(service)
    sim = announced_simulator(service)
    live.cli(
        [
            "python",
            "-c",
            "import sys; from pydantic import SecretStr;"
            "from crowdloop.connectors.simulator.credentials import SimulatorCredentials as C;"
            "C(base_url=sys.argv[1], api_token=SecretStr(sys.argv[2]))"
            f".save({BLOCK!r}, overwrite=True)",
            sim.url,
            sim.token,
        ]
    )
    yield sim
    service.stop()
    live.services.remove(service)  # stopped on purpose: not a failure of later waits


def campaign_file(live: LiveStack, name: str, **extra: Any) -> str:
    """A preferences campaign on the frozen marketplace, from the example's inputs."""
    example = yaml.safe_load((live.root / "campaigns" / "example.yaml").read_text())
    spec = {
        "name": name,
        "connector": {"name": "simulator", "credentials_block": BLOCK},
        "poll_interval_s": 0.5,
        "stage_timeout_s": 600,
        "stall_after_s": 3,
        "seed": 5,
        "output_dir": f"../crowdloop-output/{name}",
        "quality": example["quality"],
        "preferences": {
            **example["preferences"],
            "dynamic_overlap": None,
            "export": {"path": f"../crowdloop-output/{name}/preferences.jsonl"},
        },
        **extra,
    }
    rel = f"campaigns/{name}.yaml"
    (live.root / rel).write_text(yaml.safe_dump(spec, sort_keys=False))
    return rel


def db_url(live: LiveStack) -> str:
    return f"sqlite:///{live.root}/crowdloop-output/crowdloop.db"


@contextmanager
def _live_db(live: LiveStack) -> Iterator[None]:
    """crowdloop's own functions, pointed at the live database for the block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CROWDLOOP_DATABASE_URL", db_url(live))
        yield


def start_campaign(live: LiveStack, rel: str) -> UUID:
    with live.client() as c:
        deployment = c.read_deployment_by_name("run-campaign/campaign")
        run = c.create_flow_run_from_deployment(deployment.id, parameters={"campaign_file": rel})
    return UUID(str(run.id))


def tasks_of(live: LiveStack, campaign: str) -> int:
    from crowdloop.db import session_scope
    from crowdloop.models.tables import Item, TaskRecord

    with session_scope(db_url(live)) as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(TaskRecord)
                .join(Item, col(Item.id) == col(TaskRecord.item_id))
                .where(Item.campaign_id == campaign)
            ).one()
        )


def all_tasks(live: LiveStack, campaigns: list[str]) -> int:
    return sum(tasks_of(live, c) for c in campaigns)


def status(live: LiveStack, campaign: str) -> str | None:
    from crowdloop.db import session_scope
    from crowdloop.models.tables import Campaign

    with session_scope(db_url(live)) as s:
        row = s.get(Campaign, campaign)
        return None if row is None else str(row.status.value)


def run_state(live: LiveStack, run_id: UUID) -> Any:
    return live.flow_run_state(run_id)


def suspended(live: LiveStack, run_id: UUID) -> bool:
    """True once the run waits for an operator; fails at once if it ended instead."""
    state = run_state(live, run_id)
    if state is not None and state.is_final():
        pytest.fail(f"run {run_id} ended {state} instead:\n{live.flow_run_logs(run_id)}")
    return bool(state is not None and state.is_paused())


def drive_to_end(live: LiveStack, frozen: Frozen, run_id: UUID, timeout: float = 600) -> Any:
    """Move the marketplace's clock until the run is over; the run, read back."""
    deadline = time.monotonic() + timeout
    while True:
        state = run_state(live, run_id)
        if state is not None and state.is_final():
            with live.client() as c:
                return c.read_flow_run(run_id)
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {state} after {timeout:.0f}s\n{live.logs()}")
        frozen.advance(900)
        time.sleep(0.3)


def events_named(live: LiveStack, prefix: str = "crowdloop.") -> list[dict[str, Any]]:
    body = {"filter": {"event": {"prefix": [prefix]}}, "limit": 50}  # the server's page max
    with httpx.Client(timeout=30) as c:
        answer = c.post(f"{live.api_url}/events/filter", json=body)
        answer.raise_for_status()
        page = answer.json()
        events = list(page["events"])
        while page.get("next_page"):
            page = c.get(page["next_page"]).json()
            events += page["events"]
    return events


def names_for(live: LiveStack, campaign: str) -> set[str]:
    return {
        e["event"]
        for e in events_named(live)
        if e["resource"].get("prefect.resource.id") == f"crowdloop.campaign.{campaign}"
    }


def expect_events(live: LiveStack, campaign: str, expected: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not expected <= (found := names_for(live, campaign)):
        if time.monotonic() > deadline:
            pytest.fail(f"{campaign}: events {sorted(expected - found)} never came; got {found}")
        time.sleep(0.5)


# --- the scenarios -------------------------------------------------------------------------------


def test_pause_and_resume_through_the_server(live: LiveStack, frozen: Frozen) -> None:
    rel = campaign_file(live, "pausable")
    run_id = start_campaign(live, rel)
    wait_for("its tasks on the marketplace", lambda: tasks_of(live, "pausable") > 0, 300,
             live.services)  # fmt: skip
    # Nobody answers on a stopped clock: after stall_after_s the run says it is stalled.
    expect_events(live, "pausable", {"crowdloop.campaign.stalled"}, timeout=120)
    out = live.cli(["crowdloop", "pause", "pausable", "--reason", "instructions unclear"])
    assert "now paused" in out and "compare: open -> paused" in out
    assert [p["status"] for p in frozen.pools("pausable")] == ["closed"]
    # The run sees the pause between two polls and suspends: its infrastructure is released.
    wait_for("the run to suspend", lambda: suspended(live, run_id), 120, live.services)
    out = live.cli(["crowdloop", "resume", "pausable"])
    assert "now running" in out and f"resumed suspended flow run {run_id}" in out
    assert [p["status"] for p in frozen.pools("pausable")] == ["open"]
    run = drive_to_end(live, frozen, run_id)
    assert run.state.is_completed(), live.flow_run_logs(run_id)
    assert status(live, "pausable") == "complete"
    assert [p["status"] for p in frozen.pools("pausable")] == ["closed"]  # completion closes
    expected = {
        "crowdloop.campaign.started",
        "crowdloop.campaign.paused",
        "crowdloop.campaign.resumed",
        "crowdloop.campaign.completed",
    }
    expect_events(live, "pausable", expected)


def test_cancel_from_prefect_mid_run_then_rerun(live: LiveStack, frozen: Frozen) -> None:
    from prefect.states import Cancelling

    rel = campaign_file(live, "cancellable")
    run_id = start_campaign(live, rel)
    wait_for("its tasks on the marketplace", lambda: tasks_of(live, "cancellable") > 0, 300,
             live.services)  # fmt: skip
    published = tasks_of(live, "cancellable")
    # What the Cancel button in the UI does: the worker stops the run, the hook records it.
    with live.client() as c:
        c.set_flow_run_state(run_id, Cancelling())
    wait_for("the run to be cancelled", lambda: (s := run_state(live, run_id)) and s.is_cancelled(),
             120, live.services)  # fmt: skip
    wait_for("the campaign to be cancelled", lambda: status(live, "cancellable") == "cancelled",
             60, live.services)  # fmt: skip
    assert [p["status"] for p in frozen.pools("cancellable")] == ["closed"]

    rerun = start_campaign(live, rel)
    run = drive_to_end(live, frozen, rerun)
    assert run.state.is_completed(), live.flow_run_logs(rerun)
    assert status(live, "cancellable") == "complete"
    assert tasks_of(live, "cancellable") >= published
    expect_events(live, "cancellable", {"crowdloop.campaign.cancelled"})


def test_budget_approval_form_in_the_ui_then_completion(live: LiveStack, frozen: Frozen) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    rel = campaign_file(live, "approval", budget={"cap": 500, "approval_threshold": 1})
    run_id = start_campaign(live, rel)
    wait_for("the run to wait for approval", lambda: suspended(live, run_id), 300,
             live.services)  # fmt: skip
    assert status(live, "approval") == "awaiting_approval"
    assert frozen.pools("approval") == []  # nothing created before the approval
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(f"{live.url}/runs/flow-run/{run_id}")
            page.get_by_role("button", name="Resume").first.click()
            # The form Prefect builds from the run's ApprovalInput, with its description.
            page.get_by_text("waits for budget approval").first.wait_for()
            page.screenshot(path=SHOTS / "live-ui-approval.png", full_page=True)
            for field in ("Decision", "New Cap", "Note"):
                page.get_by_text(f"{field} (Optional)", exact=True).first.wait_for()
            page.get_by_role("button", name="Submit").wait_for()
        finally:
            browser.close()
    with temporary_settings({PREFECT_API_URL: live.api_url}):
        resume_flow_run(run_id, run_input={"decision": "approve", "note": "ok by finance"})
    run = drive_to_end(live, frozen, run_id)
    assert run.state.is_completed(), live.flow_run_logs(run_id)
    assert status(live, "approval") == "complete"
    expect_events(
        live,
        "approval",
        {"crowdloop.budget.approval-requested", "crowdloop.campaign.awaiting-approval"},
    )


def test_cap_hit_mid_run_pauses_then_finishes_once_raised(live: LiveStack, frozen: Frozen) -> None:
    """First the pause point (half the cap), approved from the CLI; then the cap itself,
    raised from the CLI; each time the batches pause and the run suspends."""
    from crowdloop.models.spec import load_campaign
    from crowdloop.stages.budget import budget_status
    from crowdloop.stages.estimate import estimate_spec

    rel = campaign_file(live, "capped")
    expected = estimate_spec(load_campaign(live.root / rel)).expected
    cap = (expected * Decimal("0.6")).quantize(Decimal("0.01"))
    rel = campaign_file(live, "capped", budget={"cap": str(cap), "pause_at": 0.5})
    run_id = start_campaign(live, rel)
    for step, command in (
        ("the pause point", ["crowdloop", "approve", "capped"]),
        ("the cap", ["crowdloop", "approve", "capped", "--cap", str(cap * 10)]),
    ):
        wait_for(step, lambda: status(live, "capped") == "awaiting_approval", 300,
                 live.services)  # fmt: skip
        wait_for("the run to suspend", lambda: suspended(live, run_id), 120, live.services)
        assert [p["status"] for p in frozen.pools("capped")] == ["closed"]  # batches paused
        with _live_db(live):
            assert budget_status("capped", refresh=False).committed <= cap
        frozen.advance(900)  # work already out is still answered while it waits
        out = live.cli(command)
        assert "now running" in out and f"resumed suspended flow run {run_id}" in out
    run = drive_to_end(live, frozen, run_id)
    assert run.state.is_completed(), live.flow_run_logs(run_id)
    assert status(live, "capped") == "complete"
    expect_events(
        live,
        "capped",
        {
            "crowdloop.budget.threshold",
            "crowdloop.budget.exhausted",
            "crowdloop.budget.approval-requested",
        },
    )


def test_no_duplicate_task_across_every_scenario(live: LiveStack, frozen: Frozen) -> None:
    """After the scenarios above, the frozen marketplace holds exactly one task per task
    record: nothing was published twice through pauses, cancels, reruns and approvals."""
    campaigns = ["pausable", "cancellable", "approval", "capped"]
    done = [c for c in campaigns if status(live, c) is not None]
    assert done, "no scenario ran before this check"
    assert frozen.stats()["tasks_created"] == all_tasks(live, done)


def test_each_shipped_automation_fires(live: LiveStack) -> None:
    """`prefect deploy` installed the triggers of the `notify` deployment; every event they
    watch starts a notify-operators run that names it."""
    from crowdloop.events import campaign_resource

    with live.client() as c:
        automations = {a.name: a for a in c.read_automations()}
    watched: set[str] = set()
    for name in (
        "crowdloop campaign needs attention",
        "crowdloop budget",
        "crowdloop worker blocked",
        "crowdloop campaign completed",
    ):
        assert name in automations, sorted(automations)
        watched |= set(automations[name].trigger.expect)
    assert "crowdloop.campaign.stalled" in watched and "crowdloop.budget.exhausted" in watched
    body = [
        {
            "id": str(uuid4()),
            "occurred": datetime.now(UTC).isoformat(),
            "event": name,
            "resource": campaign_resource("automation-check"),
            "payload": {"check": True},
        }
        for name in sorted(watched)
    ]
    with httpx.Client(timeout=30) as c:
        c.post(f"{live.api_url}/events", json=body).raise_for_status()

    def notified() -> set[str]:
        return {
            str(run.parameters.get("event"))
            for run in live.flow_runs_of("notify-operators/notify")
            if run.parameters.get("campaign_id") == "automation-check"
        }

    deadline = time.monotonic() + 180
    while not watched <= (seen := notified()):
        if time.monotonic() > deadline:
            notify_runs = live.flow_runs_of("notify-operators/notify")
            runs = [(r.parameters, r.state_name) for r in notify_runs]
            pytest.fail(
                f"no notify run for {sorted(watched - seen)}; runs: {runs[:10]}\n"
                f"automations: {[(a.name, a.trigger) for a in automations.values()]}\n"
                f"{live.logs()}"
            )
        time.sleep(1)
