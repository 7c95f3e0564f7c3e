"""The Scale connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing Prefect's credentials blocks.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from crowdloop.connectors.scale.client import MAX_PAGE
from crowdloop.connectors.scale.models import TaskType

CONNECTOR_NAME = "scale"
SETTLE_S = 120.0


class ScaleOptions(BaseModel):
    """The non-secret `connector:` options of a campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(min_length=1, description="project for compare batches")
    textcollection_project: str | None = Field(
        default=None, description="project for textcollection batches (default: project)"
    )
    create_projects: bool = False
    # textcollection is the task type Scale documents today [text]; the legacy
    # `comparison` endpoint's newest public trace is a 2019 test cassette [cmp], so it is
    # opt-in for accounts where Scale still serves it (see the README's Marketplaces notes).
    compare_task_type: TaskType = "textcollection"
    callback_url: str | None = None
    namespace: str = ""  # prefix of batch names, to share one Scale account safely
    page_limit: int = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE)
    settle_s: float = Field(default=SETTLE_S, ge=0)
    retry_attempts: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
