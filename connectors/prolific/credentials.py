"""Prolific API credentials, as a Prefect block or from the environment.

Prolific authenticates every call with a workspace API token sent as
`Authorization: Token <token>` (docs.prolific.com/documentation/get-started/api-fundamentals;
the same header Prolific's CLI sets in `client/client.go`). Tokens do not expire and carry
full permission, so the value lives in a `SecretStr` and `HttpSeam` redacts it from logs.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from crowdloop.connectors.credentials import TIMEOUT_S, ConnectorCredentials
from crowdloop.connectors.prolific.client import ProlificClient
from crowdloop.connectors.prolific.options import CONNECTOR_NAME

DEFAULT_BASE_URL = "https://api.prolific.com"
ENV_TOKEN = "CROWDLOOP_PROLIFIC_TOKEN"
ENV_URL = "CROWDLOOP_PROLIFIC_URL"  # optional
ENV_TIMEOUT = "CROWDLOOP_PROLIFIC_TIMEOUT_S"  # optional


class ProlificCredentials(ConnectorCredentials[ProlificClient]):
    """A Prolific workspace API token.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        ProlificCredentials(api_token="...").save("prolific")
        client = ProlificCredentials.load("prolific").get_client()
    """

    _block_type_name = "Crowdloop Prolific Credentials"
    _description = "API token (and base URL) for Prolific's researcher API."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {"api_token": ENV_TOKEN, "base_url": ENV_URL, "timeout_s": ENV_TIMEOUT}
    client_class = ProlificClient

    api_token: SecretStr = Field(description="Prolific API token (Settings > API tokens)")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Root URL of the API")
    timeout_s: float = TIMEOUT_S

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.api_token.get_secret_value()}"}
