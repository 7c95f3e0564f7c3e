"""Credentials of an OpenAI-compatible endpoint, as a Prefect block or from the environment.

Every such server (OpenAI, vLLM `vllm serve --api-key`, Ollama) takes the key as a bearer
token; a local Ollama (http://127.0.0.1:11434/v1) takes none, so the key may be empty.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from crowdloop.connectors.aijudge.client import AIJudgeClient
from crowdloop.connectors.aijudge.options import CONNECTOR_NAME
from crowdloop.connectors.credentials import ConnectorCredentials

ENV_URL = "CROWDLOOP_AIJUDGE_BASE_URL"  # optional: defaults to OpenAI
ENV_KEY = "CROWDLOOP_AIJUDGE_API_KEY"  # optional: empty sends no Authorization header
ENV_MODEL = "CROWDLOOP_AIJUDGE_MODEL"
ENV_TIMEOUT = "CROWDLOOP_AIJUDGE_TIMEOUT_S"  # optional
OPENAI_URL = "https://api.openai.com/v1"


class AIJudgeCredentials(ConnectorCredentials[AIJudgeClient]):
    """Where the judge model is served, which model, and the key (if the server wants one).

    Save once, then name the block in a campaign's `connector.credentials_block` (or in
    `routing.ai.credentials_block`):

        AIJudgeCredentials(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct",
                           api_key="...").save("judge")
        client = AIJudgeCredentials.load("judge").get_client()
    """

    _block_type_name = "Crowdloop AI Judge Credentials"
    _description = "Base URL, model and API key of an OpenAI-compatible chat-completions API."
    connector_name = CONNECTOR_NAME
    env_vars: ClassVar = {
        "base_url": ENV_URL,
        "model": ENV_MODEL,
        "api_key": ENV_KEY,
        "timeout_s": ENV_TIMEOUT,
    }
    client_class = AIJudgeClient

    base_url: str = Field(default=OPENAI_URL, description="API root ending in /v1")
    model: str = Field(description="The model to ask, as the server names it")
    api_key: SecretStr = Field(default=SecretStr(""), description="Bearer key; empty: none")
    # Longer than the kit's 30 s: the whole answer (a rationale, then the verdict) is
    # generated before the response is sent, which takes a local model far longer.
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout in seconds")

    def auth_headers(self) -> dict[str, str]:
        key = self.api_key.get_secret_value()
        return {"Authorization": f"Bearer {key}"} if key else {}
