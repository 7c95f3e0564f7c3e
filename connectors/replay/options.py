"""The replay connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing the HTTP client or Prefect's credentials blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CONNECTOR_NAME = "replay"
PAGE_LIMIT = 1000


class ReplayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    comparisons: Path  # the recorded judgments (CSV)
    pairs: Path  # the recorded pairs (JSONL)
    page_limit: int = Field(default=PAGE_LIMIT, ge=1)
    when_exhausted: Literal["quarantine", "leave_open"] = "quarantine"
    unmatched: Literal["error", "expire"] = "error"
