"""Credentials of an OpenAI-compatible endpoint, as a Prefect block or from the environment."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from crowdloop.connectors._http import HttpSeam, RetryPolicy
from crowdloop.connectors.aijudge.client import AIJudgeClient
from crowdloop.connectors.aijudge.options import CONNECTOR_NAME

ENV_URL = "CROWDLOOP_AIJUDGE_BASE_URL"
ENV_KEY = "CROWDLOOP_AIJUDGE_API_KEY"
ENV_MODEL = "CROWDLOOP_AIJUDGE_MODEL"
OPENAI_URL = "https://api.openai.com/v1"


class AIJudgeCredentials(CredentialsBlock):
    """Where the judge model is served, which model, and the key (if the server wants one).

    Save once, then name the block in a campaign's `connector.credentials_block` (or in
    `routing.ai.credentials_block`):

        AIJudgeCredentials(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct",
                           api_key="...").save("judge")
        client = AIJudgeCredentials.load("judge").get_client()

    vLLM (`vllm serve --api-key`) and OpenAI take the key as a bearer token; a local Ollama
    (http://127.0.0.1:11434/v1) takes none, so the key may be empty.
    """

    _block_type_name = "Crowdloop AI Judge Credentials"
    _description = "Base URL, model and API key of an OpenAI-compatible chat-completions API."

    base_url: str = Field(default=OPENAI_URL, description="API root ending in /v1")
    model: str = Field(description="The model to ask, as the server names it")
    api_key: SecretStr = Field(default=SecretStr(""), description="Bearer key; empty: none")
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout in seconds")

    @classmethod
    def from_env(cls) -> AIJudgeCredentials:
        if not os.environ.get(ENV_MODEL):
            raise RuntimeError(
                f"aijudge credentials: no credentials block named and {ENV_MODEL} not set "
                f"in the environment ({ENV_URL} defaults to {OPENAI_URL}, {ENV_KEY} to none)"
            )
        return cls(
            base_url=os.environ.get(ENV_URL) or OPENAI_URL,
            model=os.environ[ENV_MODEL],
            api_key=SecretStr(os.environ.get(ENV_KEY, "")),
        )

    def get_client(
        self,
        *,
        timeout_s: float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> AIJudgeClient:
        """A client on this endpoint; the keyword overrides exist for tests and tuning."""
        key = self.api_key.get_secret_value()
        seam = HttpSeam(
            connector=CONNECTOR_NAME,
            base_url=self.base_url.rstrip("/"),
            auth_headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout_s=timeout_s if timeout_s is not None else self.timeout_s,
            retry=retry or RetryPolicy(),
            transport=transport,
        )
        if sleep is not None:
            seam.sleep = sleep
        return AIJudgeClient(seam)
