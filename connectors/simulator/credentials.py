"""Credentials for the simulated marketplace, as a Prefect block or from the environment."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from crowdloop.connectors.credentials import TIMEOUT_S, ConnectorCredentials
from crowdloop.connectors.simulator.client import SimulatorClient
from crowdloop.connectors.simulator.options import CONNECTOR_NAME

ENV_URL = "CROWDLOOP_SIMULATOR_URL"
ENV_TOKEN = "CROWDLOOP_SIMULATOR_TOKEN"
ENV_TIMEOUT = "CROWDLOOP_SIMULATOR_TIMEOUT_S"  # optional


class SimulatorCredentials(ConnectorCredentials[SimulatorClient]):
    """Where the simulated marketplace runs and the bearer token it expects.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        SimulatorCredentials(base_url="http://127.0.0.1:8765", api_token="...").save("sim")
        creds = SimulatorCredentials.load("sim")
        client = creds.get_client()
    """

    _block_type_name = "Crowdloop Simulator Credentials"
    _description = "Base URL and API token of crowdloop's simulated marketplace."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {"base_url": ENV_URL, "api_token": ENV_TOKEN, "timeout_s": ENV_TIMEOUT}
    client_class = SimulatorClient

    base_url: str = Field(description="Root URL of the simulator, e.g. http://127.0.0.1:8765")
    api_token: SecretStr = Field(description="Bearer token the simulator was started with")
    timeout_s: float = TIMEOUT_S

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token.get_secret_value()}"}
