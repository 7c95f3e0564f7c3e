"""Scale API credentials, as a Prefect block or from the environment.

Scale authenticates with HTTP Basic auth: the API key is the username and the password
is empty (https://scale.com/docs/api-reference/authentication). Keys come in a test and
a live flavour; test-mode tasks are not done by people and are not charged.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.scale.client import ScaleClient
from crowdloop.connectors.scale.options import CONNECTOR_NAME

DEFAULT_BASE_URL = "https://api.scale.com"
ENV_API_KEY = "CROWDLOOP_SCALE_API_KEY"
ENV_BASE_URL = "CROWDLOOP_SCALE_BASE_URL"  # optional
ENV_TIMEOUT = "CROWDLOOP_SCALE_TIMEOUT_S"  # optional


def basic_auth_value(api_key: str) -> str:
    """The Authorization header value: Basic base64("<api key>:")."""
    token = base64.b64encode(f"{api_key}:".encode()).decode("ascii")
    return f"Basic {token}"


class ScaleCredentials(CredentialsBlock):
    """The Scale API key crowdloop uses.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        ScaleCredentials(api_key="live_...").save("scale")
    """

    _block_type_name = "Crowdloop Scale Credentials"
    _description = "API key (and optionally base URL) for the Scale AI v1 REST API."

    api_key: SecretStr = Field(description="Scale API key (test_... or live_...)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API root, without /v1")
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds")

    @property
    def test_mode(self) -> bool:
        return self.api_key.get_secret_value().startswith("test_")

    @classmethod
    def from_env(cls) -> ScaleCredentials:
        key = os.environ.get(ENV_API_KEY)
        if not key:
            raise RuntimeError(
                f"scale credentials: no credentials block named and {ENV_API_KEY} "
                "not set in the environment"
            )
        timeout = os.environ.get(ENV_TIMEOUT)
        return cls(
            api_key=SecretStr(key),
            base_url=os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL,
            timeout_s=float(timeout) if timeout else 30.0,
        )

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> ScaleClient:
        """A client on this endpoint; the keyword overrides exist for tests and tuning."""
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.base_url.rstrip("/"),
            auth_headers={"Authorization": basic_auth_value(self.api_key.get_secret_value())},
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
        )
        if sleep is not None:
            seam.sleep = sleep
        return ScaleClient(seam)
