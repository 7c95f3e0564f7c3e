"""Run a campaign file with the flows' round loop and plain calls (no Prefect).

`python -m tests.budget_runner CAMPAIGN.yaml` is the child process the budget end-to-end
tests kill at a crash point and run again; `run_bare` is the same in-process. A budget
pause exits with PAUSED_EXIT_CODE.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from crowdloop.models.spec import load_campaign
from crowdloop.stages import rounds
from crowdloop.stages.budget import BudgetPause

PAUSED_EXIT_CODE = 75


def run_bare(campaign_file: Path) -> Decimal:
    """Register (or find) the campaign and run it to the end; returns the recorded spend."""
    return rounds.run_bare(load_campaign(campaign_file))


def main() -> None:
    try:
        print(run_bare(Path(sys.argv[1])))
    except BudgetPause as pause:
        print(pause, file=sys.stderr)
        sys.exit(PAUSED_EXIT_CODE)


if __name__ == "__main__":
    main()
