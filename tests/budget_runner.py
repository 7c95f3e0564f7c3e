"""Run a campaign file with the flows' round loop and plain calls (no Prefect).

`python -m tests.budget_runner CAMPAIGN.yaml` is the child process the budget end-to-end
tests kill at a crash point and run again; `run_bare` is the same in-process. A budget
pause exits with PAUSED_EXIT_CODE.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.spec import load_campaign
from crowdloop.stages import exam
from crowdloop.stages.budget import BudgetPause
from crowdloop.stages.demonstrations import DEMO_STAGES
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.report import record_spend
from crowdloop.stages.rounds import bare_ops, connector_for, run_rounds

PAUSED_EXIT_CODE = 75


def run_bare(campaign_file: Path) -> Decimal:
    """Register (or find) the campaign and run it to the end; returns the recorded spend."""
    spec = load_campaign(campaign_file)
    with session_scope() as s:
        register_campaign(s, spec)
    with connector_for(spec.name) as connector:
        ops = bare_ops(connector)
        if spec.demonstrations:
            run_rounds(spec.name, DEMO_STAGES, ops, advance=True)
        if spec.preferences:
            run_rounds(spec.name, [Stage.COMPARE], ops, advance=False)
            if spec.quality.exam:
                exam.close_exam(spec.name, connector)
        return record_spend(spec.name, connector)


def main() -> None:
    try:
        print(run_bare(Path(sys.argv[1])))
    except BudgetPause as pause:
        print(pause, file=sys.stderr)
        sys.exit(PAUSED_EXIT_CODE)


if __name__ == "__main__":
    main()
