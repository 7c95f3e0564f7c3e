"""A thin client for an OpenAI-compatible API: one method per endpoint, over `HttpSeam`.

Endpoints (paths relative to the base URL, which ends in /v1):
- GET /models/{model}: the served model (read-only; the first-contact check and batch
  creation use it to fail early on a wrong model name or key).
- POST /chat/completions: one judgment. Retried on 408/429/5xx like every call through the
  seam; a completion that was generated behind a 5xx is paid again by the retry (the API
  has no idempotency key), which is the price of not losing the answer.
"""

from __future__ import annotations

from urllib.parse import quote

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.aijudge.models import ChatCompletion, ChatCompletionRequest, WireModel

CHAT = "/chat/completions"


class AIJudgeClient:
    def __init__(self, seam: HttpSeam) -> None:
        self.seam = seam

    def close(self) -> None:
        self.seam.close()

    def get_model(self, model: str) -> WireModel:
        response = self.seam.request("GET", f"/models/{quote(model, safe='')}")
        return self.seam.parse(WireModel, response)

    def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        response = self.seam.request("POST", CHAT, json=request.body())
        return self.seam.parse(ChatCompletion, response)
