"""Credentials for the simulated marketplace, as a Prefect block or from the environment."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.simulator.client import SimulatorClient
from crowdloop.connectors.simulator.options import CONNECTOR_NAME

ENV_URL = "CROWDLOOP_SIMULATOR_URL"
ENV_TOKEN = "CROWDLOOP_SIMULATOR_TOKEN"
ENV_TIMEOUT = "CROWDLOOP_SIMULATOR_TIMEOUT_S"  # optional


class SimulatorCredentials(CredentialsBlock):
    """Where the simulated marketplace runs and the bearer token it expects.

    Save once, then name the block in a campaign's `connector.credentials_block`:

        SimulatorCredentials(base_url="http://127.0.0.1:8765", api_token="...").save("sim")
        creds = SimulatorCredentials.load("sim")
        client = creds.get_client()
    """

    _block_type_name = "Crowdloop Simulator Credentials"
    _description = "Base URL and API token of crowdloop's simulated marketplace."

    base_url: str = Field(description="Root URL of the simulator, e.g. http://127.0.0.1:8765")
    api_token: SecretStr = Field(description="Bearer token the simulator was started with")
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds")

    @classmethod
    def from_env(cls) -> SimulatorCredentials:
        missing = [name for name in (ENV_URL, ENV_TOKEN) if not os.environ.get(name)]
        if missing:
            raise RuntimeError(
                f"simulator credentials: no credentials block named and {' and '.join(missing)} "
                "not set in the environment"
            )
        timeout = os.environ.get(ENV_TIMEOUT)
        return cls(
            base_url=os.environ[ENV_URL],
            api_token=SecretStr(os.environ[ENV_TOKEN]),
            timeout_s=float(timeout) if timeout else 30.0,
        )

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> SimulatorClient:
        """A client on this endpoint; the keyword overrides exist for tests and tuning."""
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.base_url.rstrip("/"),
            auth_headers={"Authorization": f"Bearer {self.api_token.get_secret_value()}"},
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
        )
        if sleep is not None:
            seam.sleep = sleep
        return SimulatorClient(seam)
