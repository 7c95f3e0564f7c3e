"""The simulator connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing the HTTP client or Prefect's credentials blocks.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

CONNECTOR_NAME = "simulator"
PAGE_LIMIT = 1000  # the server's maximum


class SimulatorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    page_limit: int = Field(default=PAGE_LIMIT, ge=1, le=PAGE_LIMIT)
    # Per-request timeout; null: the credentials' (30 s).
    timeout_s: float | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=1)
