"""Scale API credentials, as a Prefect block or from the environment.

Scale authenticates with HTTP Basic auth: the API key is the username and the password
is empty (https://scale.com/docs/api-reference/authentication). Keys come in a test and
a live flavour; test-mode tasks are not done by people and are not charged.
"""

from __future__ import annotations

import base64
from typing import ClassVar

from pydantic import Field, SecretStr

from crowdloop.connectors.credentials import TIMEOUT_S, ConnectorCredentials
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


class ScaleCredentials(ConnectorCredentials[ScaleClient]):
    """The Scale API key crowdloop uses.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        ScaleCredentials(api_key="live_...").save("scale")
    """

    _block_type_name = "Crowdloop Scale Credentials"
    _description = "API key (and optionally base URL) for the Scale AI v1 REST API."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {
        "api_key": ENV_API_KEY,
        "base_url": ENV_BASE_URL,
        "timeout_s": ENV_TIMEOUT,
    }
    client_class = ScaleClient

    api_key: SecretStr = Field(description="Scale API key (test_... or live_...)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API root, without /v1")
    timeout_s: float = TIMEOUT_S

    @property
    def test_mode(self) -> bool:
        return self.api_key.get_secret_value().startswith("test_")

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": basic_auth_value(self.api_key.get_secret_value())}
