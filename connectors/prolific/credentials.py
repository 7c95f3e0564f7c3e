"""Prolific API credentials, as a Prefect block or from the environment.

Prolific authenticates every call with a workspace API token sent as
`Authorization: Token <token>` (docs.prolific.com/documentation/get-started/api-fundamentals;
the same header Prolific's CLI sets in `client/client.go`). Tokens do not expire and carry
full permission, so the value lives in a `SecretStr` and `HttpSeam` redacts it from logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.prolific.client import ProlificClient
from crowdloop.connectors.prolific.options import CONNECTOR_NAME

DEFAULT_BASE_URL = "https://api.prolific.com"
ENV_TOKEN = "CROWDLOOP_PROLIFIC_TOKEN"
ENV_URL = "CROWDLOOP_PROLIFIC_URL"  # optional
ENV_TIMEOUT = "CROWDLOOP_PROLIFIC_TIMEOUT_S"  # optional


class ProlificCredentials(CredentialsBlock):
    """A Prolific workspace API token.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        ProlificCredentials(api_token="...").save("prolific")
        client = ProlificCredentials.load("prolific").get_client()
    """

    _block_type_name = "Crowdloop Prolific Credentials"
    _description = "API token (and base URL) for Prolific's researcher API."

    api_token: SecretStr = Field(description="Prolific API token (Settings > API tokens)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Root URL of the API")
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds")

    @classmethod
    def from_env(cls) -> ProlificCredentials:
        token = os.environ.get(ENV_TOKEN)
        if not token:
            raise RuntimeError(
                f"prolific credentials: no credentials block named and {ENV_TOKEN} is not set "
                "in the environment"
            )
        timeout = os.environ.get(ENV_TIMEOUT)
        return cls(
            api_token=SecretStr(token),
            base_url=os.environ.get(ENV_URL) or DEFAULT_BASE_URL,
            timeout_s=float(timeout) if timeout else 30.0,
        )

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> ProlificClient:
        """A client on this endpoint; the keyword overrides exist for tests and tuning."""
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.base_url.rstrip("/"),
            auth_headers={"Authorization": f"Token {self.api_token.get_secret_value()}"},
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
        )
        if sleep is not None:
            seam.sleep = sleep
        return ProlificClient(seam)
