"""The AI judge connector's name and its typed `connector.options` (non-secret settings).

Kept apart from the connector module so a campaign file is validated without importing
the HTTP client or Prefect's credentials blocks.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CONNECTOR_NAME = "aijudge"
PAGE_LIMIT = 500


class AIJudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The served model's name; null: the credentials block's `model`.
    model: str | None = Field(default=None, min_length=1, max_length=200)
    temperature: float = Field(default=0.0, ge=0, le=2)
    # Prices per 1,000 tokens as the provider bills them (usage.prompt_tokens and
    # usage.completion_tokens); 0 for a self-hosted model.
    price_per_1k_input: Decimal = Field(default=Decimal(0), ge=0)
    price_per_1k_output: Decimal = Field(default=Decimal(0), ge=0)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    # Requests in flight at once (a rate-limited key wants few; a local vLLM many).
    max_concurrent: int = Field(default=4, ge=1, le=64)
    # Ask each pair twice, the second time with the responses swapped: an answer that
    # flips with the order is position bias, not a preference.
    position_swap: bool = True
    # Cap on generated tokens (sent as max_tokens); null: the server's default.
    max_tokens: int | None = Field(default=None, ge=16)
    # The answer ledger: one answer per task key, kept across runs, so a rerun reads what
    # was paid for instead of asking again (store.py). Null: in crowdloop's own database,
    # which every worker of a deployment shares; a path: a SQLite file of its own.
    store: Path | None = None
    page_limit: int = Field(default=PAGE_LIMIT, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0)
    retry_attempts: int | None = Field(default=None, ge=1)
