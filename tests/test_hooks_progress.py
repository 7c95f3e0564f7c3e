"""The flow hooks' effect on a campaign, and the live progress view (no Prefect server)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.states import Crashed, Failed

from crowdloop.flows import hooks
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import lifecycle
from crowdloop.stages.progress import live_progress, progress_markdown
from crowdloop.text import md_escape
from tests.test_ledger import CAMPAIGN, make_campaign

S = CampaignStatus


@pytest.fixture
def campaign(sqlite_url: str, tmp_path: Path) -> None:
    make_campaign(tmp_path)


def run_of(**parameters: Any) -> Any:
    return SimpleNamespace(id="0b5e", name="brave-otter", parameters=parameters)


def test_a_failed_run_fails_its_running_campaign(campaign: None) -> None:
    hooks.mark_failed(None, run_of(campaign_id=CAMPAIGN), Failed(message="boom"))  # type: ignore[arg-type]
    assert lifecycle.status_of(CAMPAIGN) == S.FAILED
    (event,) = lifecycle.events(CAMPAIGN)
    assert event.reason == "flow run 'brave-otter' failed: boom"


def test_a_crash_of_a_paused_campaign_leaves_it_paused(campaign: None) -> None:
    lifecycle.transition(CAMPAIGN, S.PAUSED, reason="ops", actor="x")
    hooks.mark_failed(None, run_of(campaign_id=CAMPAIGN), Crashed(message="killed"))  # type: ignore[arg-type]
    assert lifecycle.status_of(CAMPAIGN) == S.PAUSED


def test_the_campaign_of_a_run_comes_from_its_parameters(tmp_path: Path) -> None:
    assert hooks.campaign_of({"campaign_id": "c1"}) == "c1"
    assert hooks.campaign_of({"campaign_file": str(tmp_path / "missing.yaml")}) is None
    assert hooks.campaign_of({}) is None


def test_progress_counts_and_escapes(campaign: None) -> None:
    progress = live_progress(CAMPAIGN)
    assert progress.status == "running" and progress.stages
    assert all(st.done == 0 and st.total > 0 for st in progress.stages)
    assert progress.stages[0].batch == "not published"
    progress.reason = "<script>alert(1)</script> | pipes"
    md = progress_markdown(progress)
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\| pipes" in md
    assert "0%" in md and "Budget:" in md


def test_md_escape_keeps_text_on_one_line() -> None:
    assert md_escape("a\nb  *c*") == "a b \\*c\\*"


def test_the_operator_notice_reads_as_a_line() -> None:
    from crowdloop.flows.notify import _message

    line = _message("crowdloop.budget.exhausted", "camp|1", {"cap": "3.24", "needed": "2.16"})
    assert line == "crowdloop: budget exhausted — campaign camp\\|1 (cap: 3.24, needed: 2.16)"
