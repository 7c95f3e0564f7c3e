"""The Prolific connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing the HTTP client or Prefect's credentials blocks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONNECTOR_NAME = "prolific"
PAGE_LIMIT = 200  # the CLI's default record limit for list calls


class ProlificOptions(BaseModel):
    """`workspace_id` and `project_id` may come from the environment instead
    (CROWDLOOP_PROLIFIC_WORKSPACE_ID, CROWDLOOP_PROLIFIC_PROJECT_ID)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace_id: str | None = Field(default=None, min_length=1)
    project_id: str | None = Field(default=None, min_length=1)
    currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    estimated_minutes: int = Field(default=5, ge=1)
    devices: tuple[Literal["desktop", "tablet", "mobile"], ...] = Field(
        default=("desktop", "tablet", "mobile"), min_length=1
    )
    block_group: str = Field(default="crowdloop blocklist", min_length=1)
    rejection_category: str = Field(default="LOW_EFFORT", min_length=1)
    tasks_per_group: int = Field(default=1, ge=1)
    max_submissions_per_participant: int | None = Field(default=None, ge=1)
    publish_on_add: bool = True
    page_limit: int = Field(default=PAGE_LIMIT, ge=1)
    poll_interval_s: float = Field(default=2.0, gt=0)
    poll_timeout_s: float = Field(default=600.0, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=1)
