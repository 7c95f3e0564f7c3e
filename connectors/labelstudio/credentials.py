"""Credentials for Label Studio, as a Prefect block or from the environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.credentials import TIMEOUT_S, ConnectorCredentials
from crowdloop.connectors.labelstudio.client import AccessTokens, LabelStudioClient, looks_like_jwt
from crowdloop.connectors.labelstudio.options import CONNECTOR_NAME

ENV_URL = "CROWDLOOP_LS_URL"
ENV_TOKEN = "CROWDLOOP_LS_TOKEN"
ENV_SCHEME = "CROWDLOOP_LS_AUTH_SCHEME"  # optional: auto | personal_access_token | legacy_token
ENV_TIMEOUT = "CROWDLOOP_LS_TIMEOUT_S"  # optional

AuthScheme = Literal["auto", "personal_access_token", "legacy_token"]


class LabelStudioCredentials(ConnectorCredentials[LabelStudioClient]):
    """Where Label Studio runs and the API token of the user crowdloop acts as.

    The token is a personal access token (a JWT, the current scheme) or a legacy token;
    `auto` tells them apart by shape. Save once, then name the block in a campaign's
    `connector.credentials_block`:

        LabelStudioCredentials(base_url="http://127.0.0.1:8080", api_key="...").save("ls")
    """

    _block_type_name = "Crowdloop Label Studio Credentials"
    _description = "Base URL and API token (personal access token or legacy) of Label Studio."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {
        "base_url": ENV_URL,
        "api_key": ENV_TOKEN,
        "auth_scheme": ENV_SCHEME,
        "timeout_s": ENV_TIMEOUT,
    }
    client_class = LabelStudioClient

    base_url: str = Field(description="Root URL of Label Studio, e.g. http://127.0.0.1:8080")
    api_key: SecretStr = Field(description="Personal access token or legacy token")
    auth_scheme: AuthScheme = Field(
        default="auto", description="auto, personal_access_token or legacy_token"
    )
    timeout_s: float = TIMEOUT_S

    def scheme(self) -> Literal["personal_access_token", "legacy_token"]:
        if self.auth_scheme != "auto":
            return self.auth_scheme
        key = self.api_key.get_secret_value()
        return "personal_access_token" if looks_like_jwt(key) else "legacy_token"

    def auth_headers(self) -> dict[str, str]:
        # A personal access token is never sent as such: AccessTokens trades it for
        # short-lived Bearer tokens (see client.py).
        if self.scheme() == "legacy_token":
            return {"Authorization": f"Token {self.api_key.get_secret_value()}"}
        return {}

    def make_client(
        self, seam: HttpSeam, *, clock: Callable[[], float] | None = None, **extra: Any
    ) -> LabelStudioClient:
        """`clock` (tests) is the access-token lifetime's clock."""
        if self.scheme() == "legacy_token":
            return LabelStudioClient(seam)
        tokens = (
            AccessTokens(seam, self.api_key, clock=clock)
            if clock is not None
            else AccessTokens(seam, self.api_key)
        )
        return LabelStudioClient(seam, tokens)
