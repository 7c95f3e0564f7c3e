"""Toloka credentials, as a Prefect block or from the environment.

Toloka authenticates every request with an `Authorization` header: `ApiKey <key>` for the
API keys generated under Profile -> Integrations (toloka.ai/docs/guide/api-token), or the
older `OAuth <token>` form (toloka.ai/docs/api/access). Production and sandbox are separate
accounts with separate keys; the campaign option `sandbox: true` picks the sandbox root.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from crowdloop.connectors.credentials import TIMEOUT_S, ConnectorCredentials
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


class TolokaCredentials(ConnectorCredentials[TolokaClient]):
    """A Toloka API key (or legacy OAuth token).

    Save once, then name the block in a campaign's `connector.credentials_block`:

        TolokaCredentials(api_key="...").save("toloka-prod")
        credentials = TolokaCredentials.load("toloka-prod")
        client = credentials.get_client(base_url=credentials.root_url(sandbox=False))
    """

    _block_type_name = "Crowdloop Toloka Credentials"
    _description = "API key (or legacy OAuth token) for the Toloka requester API."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {
        "api_key": ENV_KEY,
        "auth_scheme": ENV_SCHEME,
        "base_url": ENV_URL,
        "timeout_s": ENV_TIMEOUT,
    }
    client_class = TolokaClient
    rate_limit_wait = quota_wait

    api_key: SecretStr = Field(description="Toloka API key or OAuth token")
    auth_scheme: AuthScheme = Field(
        default="ApiKey", description="'ApiKey' for API keys, 'OAuth' for legacy OAuth tokens"
    )
    base_url: str | None = Field(
        default=None, description="API root override; default toloka.dev or sandbox.toloka.dev"
    )
    timeout_s: float = TIMEOUT_S

    def root_url(self, *, sandbox: bool = False) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return SANDBOX_URL if sandbox else PRODUCTION_URL

    def api_root(self) -> str:
        return self.root_url()

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"{self.auth_scheme} {self.api_key.get_secret_value()}"}
