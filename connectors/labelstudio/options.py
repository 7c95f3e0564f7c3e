"""The Label Studio connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing the HTTP client or Prefect's credentials blocks.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

CONNECTOR_NAME = "labelstudio"
PAGE_SIZE = 100  # submissions per SubmissionPage
TASK_PAGE_SIZE = 100  # tasks per GET /api/tasks/ (the server's default page size)
SETTLE_S = 5.0


class LabelStudioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    page_size: int = Field(default=PAGE_SIZE, ge=1)
    task_page_size: int = Field(default=TASK_PAGE_SIZE, ge=1)
    settle_s: float = Field(default=SETTLE_S, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=1)
