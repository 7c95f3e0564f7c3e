"""The Toloka connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated (`crowdloop run`,
`crowdloop estimate`) without importing Prefect's credentials blocks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crowdloop.connectors.errors import InvalidRequest
from crowdloop.models.domain import Stage

CONNECTOR_NAME = "toloka"


class TolokaOptions(BaseModel):
    """The campaign's `connector.options` for Toloka (non-secret settings only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_id: str | None = None
    project_ids: dict[Stage, str] = Field(default_factory=dict)
    sandbox: bool = False
    tasks_per_suite: int = Field(default=1, ge=1, le=100)
    assignment_max_duration_s: int = Field(default=600, ge=30)
    pool_lifetime_days: int = Field(default=30, ge=1, le=365)
    auto_accept_period_days: int = Field(default=7, ge=1, le=21)
    may_contain_adult_content: bool = False
    # Extra POST /v1/pools fields (filter, quality_control, speed_quality_balance, ...);
    # they never override a field crowdloop sets.
    pool_extra: dict[str, Any] = Field(default_factory=dict)
    check_project: bool = True
    page_limit: int = Field(default=1000, ge=1, le=100_000)
    task_page_limit: int = Field(default=10_000, ge=1, le=100_000)
    operation_timeout_s: float = Field(default=600.0, gt=0)
    operation_poll_s: float = Field(default=1.0, gt=0)
    retry_attempts: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _has_project(self) -> TolokaOptions:
        if self.project_id is None and not self.project_ids:
            raise ValueError("toloka: set `project_id` (or `project_ids` per stage)")
        return self

    def project_for(self, stage: Stage) -> str:
        project = self.project_ids.get(stage, self.project_id)
        if project is None:
            raise InvalidRequest(
                CONNECTOR_NAME, f"no Toloka project configured for stage {stage.value!r}"
            )
        return project

    def projects(self) -> list[str]:
        ordered = [*self.project_ids.values(), *([self.project_id] if self.project_id else [])]
        return list(dict.fromkeys(ordered))
