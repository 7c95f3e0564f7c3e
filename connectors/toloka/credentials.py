"""Toloka credentials, as a Prefect block or from the environment.

Toloka authenticates every request with an `Authorization` header: `ApiKey <key>` for the
API keys generated under Profile -> Integrations (toloka.ai/docs/guide/api-token), or the
older `OAuth <token>` form (toloka.ai/docs/api/access). Production and sandbox are separate
accounts with separate keys; the campaign option `sandbox: true` picks the sandbox root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.toloka.client import TolokaClient, quota_wait
from crowdloop.connectors.toloka.options import CONNECTOR_NAME

# API roots since the move off toloka.yandex.com (Toloka/docs en/api/api-migration.md);
# toloka-kit 1.2.3 `TolokaClient.Environment` uses the same hosts.
PRODUCTION_URL = "https://toloka.dev/api"
SANDBOX_URL = "https://sandbox.toloka.dev/api"

ENV_KEY = "CROWDLOOP_TOLOKA_API_KEY"
ENV_SCHEME = "CROWDLOOP_TOLOKA_AUTH_SCHEME"  # optional: ApiKey (default) or OAuth
ENV_URL = "CROWDLOOP_TOLOKA_BASE_URL"  # optional: overrides the production/sandbox root
ENV_TIMEOUT = "CROWDLOOP_TOLOKA_TIMEOUT_S"  # optional

AuthScheme = Literal["ApiKey", "OAuth"]


class TolokaCredentials(CredentialsBlock):
    """A Toloka API key (or legacy OAuth token).

    Save once, then name the block in a campaign's `connector.credentials_block`:

        TolokaCredentials(api_key="...").save("toloka-prod")
        client = TolokaCredentials.load("toloka-prod").get_client(sandbox=False)
    """

    _block_type_name = "Crowdloop Toloka Credentials"
    _description = "API key (or legacy OAuth token) for the Toloka requester API."

    api_key: SecretStr = Field(description="Toloka API key or OAuth token")
    auth_scheme: AuthScheme = Field(
        default="ApiKey", description="'ApiKey' for API keys, 'OAuth' for legacy OAuth tokens"
    )
    base_url: str | None = Field(
        default=None, description="API root override; default toloka.dev or sandbox.toloka.dev"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds")

    @classmethod
    def from_env(cls) -> TolokaCredentials:
        key = os.environ.get(ENV_KEY)
        if not key:
            raise RuntimeError(
                f"toloka credentials: no credentials block named and {ENV_KEY} not set "
                "in the environment"
            )
        scheme = os.environ.get(ENV_SCHEME) or "ApiKey"
        if scheme not in ("ApiKey", "OAuth"):
            raise RuntimeError(f"{ENV_SCHEME} must be ApiKey or OAuth, not {scheme!r}")
        timeout = os.environ.get(ENV_TIMEOUT)
        return cls(
            api_key=SecretStr(key),
            auth_scheme="OAuth" if scheme == "OAuth" else "ApiKey",
            base_url=os.environ.get(ENV_URL) or None,
            timeout_s=float(timeout) if timeout else 30.0,
        )

    def root_url(self, *, sandbox: bool = False) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return SANDBOX_URL if sandbox else PRODUCTION_URL

    def get_client(
        self,
        *,
        sandbox: bool = False,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> TolokaClient:
        """A client on the production (or sandbox) API; the keywords exist for tests and tuning."""
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.root_url(sandbox=sandbox),
            auth_headers={"Authorization": f"{self.auth_scheme} {self.api_key.get_secret_value()}"},
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
            rate_limit_wait=quota_wait,
        )
        if sleep is not None:
            seam.sleep = sleep
        return TolokaClient(seam)
