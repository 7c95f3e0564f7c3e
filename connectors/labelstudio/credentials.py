"""Credentials for Label Studio, as a Prefect block or from the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.labelstudio.client import AccessTokens, LabelStudioClient, looks_like_jwt
from crowdloop.connectors.labelstudio.options import CONNECTOR_NAME

ENV_URL = "CROWDLOOP_LS_URL"
ENV_TOKEN = "CROWDLOOP_LS_TOKEN"
ENV_SCHEME = "CROWDLOOP_LS_AUTH_SCHEME"  # optional: auto | personal_access_token | legacy_token
ENV_TIMEOUT = "CROWDLOOP_LS_TIMEOUT_S"  # optional

AuthScheme = Literal["auto", "personal_access_token", "legacy_token"]


class LabelStudioCredentials(CredentialsBlock):
    """Where Label Studio runs and the API token of the user crowdloop acts as.

    The token is a personal access token (a JWT, the current scheme) or a legacy token;
    `auto` tells them apart by shape. Save once, then name the block in a campaign's
    `connector.credentials_block`:

        LabelStudioCredentials(base_url="http://127.0.0.1:8080", api_key="...").save("ls")
    """

    _block_type_name = "Crowdloop Label Studio Credentials"
    _description = "Base URL and API token (personal access token or legacy) of Label Studio."

    base_url: str = Field(description="Root URL of Label Studio, e.g. http://127.0.0.1:8080")
    api_key: SecretStr = Field(description="Personal access token or legacy token")
    auth_scheme: AuthScheme = Field(
        default="auto", description="auto, personal_access_token or legacy_token"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request timeout in seconds")

    @classmethod
    def from_env(cls) -> LabelStudioCredentials:
        missing = [name for name in (ENV_URL, ENV_TOKEN) if not os.environ.get(name)]
        if missing:
            raise RuntimeError(
                f"labelstudio credentials: no credentials block named and "
                f"{' and '.join(missing)} not set in the environment"
            )
        scheme = os.environ.get(ENV_SCHEME) or "auto"
        if scheme not in ("auto", "personal_access_token", "legacy_token"):
            raise RuntimeError(f"{ENV_SCHEME} must be auto, personal_access_token or legacy_token")
        timeout = os.environ.get(ENV_TIMEOUT)
        return cls(
            base_url=os.environ[ENV_URL],
            api_key=SecretStr(os.environ[ENV_TOKEN]),
            auth_scheme=scheme,  # checked just above
            timeout_s=float(timeout) if timeout else 30.0,
        )

    def scheme(self) -> Literal["personal_access_token", "legacy_token"]:
        if self.auth_scheme != "auto":
            return self.auth_scheme
        key = self.api_key.get_secret_value()
        return "personal_access_token" if looks_like_jwt(key) else "legacy_token"

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> LabelStudioClient:
        """A client on this endpoint; the keyword overrides exist for tests and tuning."""
        legacy = self.scheme() == "legacy_token"
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.base_url.rstrip("/"),
            auth_headers=(
                {"Authorization": f"Token {self.api_key.get_secret_value()}"} if legacy else {}
            ),
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
        )
        if sleep is not None:
            seam.sleep = sleep
        if legacy:
            return LabelStudioClient(seam)
        tokens = (
            AccessTokens(seam, self.api_key, clock=clock)
            if clock is not None
            else AccessTokens(seam, self.api_key)
        )
        return LabelStudioClient(seam, tokens)
