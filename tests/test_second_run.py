"""A second run of a campaign that another run drives fails without touching the
campaign: it never took the lease, so its failure hook leaves the campaign running for
the run that drives it (before, the hook marked the campaign failed, and the driving run
halted at its next poll). With several workers, two runs of one campaign can land on two
of them; so can a run and the scheduled sync's pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdloop.flows.campaign import collect_preferences
from crowdloop.models.tables import CampaignStatus
from crowdloop.stages import lease, lifecycle
from tests.test_ledger import CAMPAIGN, make_campaign

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.mark.parametrize(
    "holder",
    ["flow run 'brave-otter' (another worker)", "the scheduled sync (a run on host pid 1)"],
)
def test_a_refused_second_run_leaves_the_campaign_to_its_driver(
    db_url: str, tmp_path: Path, holder: str
) -> None:
    make_campaign(tmp_path)
    flow_run_id = None if "sync" in holder else "2b1c9c1e-0000-4000-8000-000000000001"
    with lease.held(CAMPAIGN, description=holder, flow_run_id=flow_run_id):
        with pytest.raises(lease.CampaignBusy, match="being driven by"):
            collect_preferences(CAMPAIGN)
        assert lifecycle.status_of(CAMPAIGN) == CampaignStatus.RUNNING
        lifecycle.check_running(CAMPAIGN)  # the driver goes on


def test_a_failed_driver_still_marks_its_campaign_failed(sqlite_url: str, tmp_path: Path) -> None:
    """The hook still records the failure of the run that held the lease (released by
    then) — here a run that fails on its first step, its connector."""
    spec = make_campaign(tmp_path)
    assert spec.connector.name == "simulator"
    # No simulator settings: the run's connector fails to open once it holds the lease.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CROWDLOOP_SIMULATOR_URL", raising=False)
        mp.delenv("CROWDLOOP_SIMULATOR_TOKEN", raising=False)
        with pytest.raises(Exception):  # noqa: B017 - whatever the connector raises
            collect_preferences(CAMPAIGN)
    assert lifecycle.status_of(CAMPAIGN) == CampaignStatus.FAILED
    assert lease.current(CAMPAIGN) is None
