"""Wire models of the OpenAI chat-completions API, as far as the AI judge uses it.

Sources (openai/openai-python, generated from OpenAI's OpenAPI spec):
- `src/openai/types/chat/chat_completion.py`: ChatCompletion {id, object "chat.completion",
  created, model, choices[{index, message, finish_reason, logprobs}], usage,
  system_fingerprint}; finish_reason in stop | length | tool_calls | content_filter |
  function_call.
- `src/openai/types/model.py`: Model {id, created, object "model", owned_by}
  (GET /models/{model}).
- `tests/lib/chat/test_completions.py`: recorded live responses to structured-output
  requests: `message.content` is the JSON text of the schema's object, `message.refusal`
  is null (or the refusal text, with content null), finish_reason "length" when the cap
  cut the JSON short; usage {prompt_tokens, completion_tokens, total_tokens}.

Servers that speak the same API (vLLM, Ollama) may omit fields OpenAI sends, so only
what the judge reads is required; unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from crowdloop.connectors.aijudge.prompt import UNSURE


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Wire):
    role: str
    content: str | None = None


class JsonSchemaFormat(_Wire):
    # `schema` is a BaseModel attribute, hence the alias (sent as "schema").
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    strict: bool = True
    schema_: dict[str, Any] = Field(alias="schema")


class ResponseFormat(_Wire):
    type: Literal["json_schema"] = "json_schema"
    json_schema: JsonSchemaFormat


class ChatCompletionRequest(_Wire):
    model: str
    messages: list[ChatMessage]
    temperature: float
    response_format: ResponseFormat
    max_tokens: int | None = None
    n: int = 1

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ResponseMessage(_Wire):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None


class Choice(_Wire):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None


class Usage(_Wire):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int | None = None


class ChatCompletion(_Wire):
    id: str
    object: str = "chat.completion"
    created: int | None = None
    model: str
    choices: list[Choice] = Field(min_length=1)
    usage: Usage | None = None


class WireModel(_Wire):
    id: str
    object: str = "model"
    created: int | None = None
    owned_by: str | None = None


class Verdict(BaseModel):
    """The judge's structured output (the json_schema we send, read back strictly)."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=20_000)
    winner: Literal["A", "B", "tie"]
    confidence: float = Field(ge=0, le=1)


VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string", "description": "One or two sentences: why."},
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "confidence": {
            "type": "number",
            "description": "Probability (0 to 1) that your verdict is the right one.",
        },
    },
    # Strict structured output wants every property required and no others.
    "required": ["rationale", "winner", "confidence"],
    "additionalProperties": False,
}


class RankingVerdict(BaseModel):
    """A ranking's structured output, read back strictly. `ranking` is the shown answers'
    letters best first (a flat list), or with ties allowed a list of groups of letters;
    that it is a permutation of the letters shown is checked by the reader (kinds.py),
    since strict structured output has no keyword for it that every server accepts."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=20_000)
    ranking: list[str] | list[list[str]] = Field(max_length=9)
    confidence: float = Field(ge=0, le=1)


def ranking_schema(letters: list[str], ties: bool) -> dict[str, Any]:
    """The json_schema of a ranking of answers shown under `letters`: the letters are an
    enum, so a strict server can only name answers that were shown."""
    letter: dict[str, Any] = {"type": "string", "enum": letters}
    item = {"type": "array", "items": letter} if ties else letter
    described = (
        "Groups of answer letters, best first; equally good answers share a group."
        if ties
        else "Every answer letter exactly once, best first."
    )
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "description": "One or two sentences: why."},
            "ranking": {"type": "array", "items": item, "description": described},
            "confidence": {
                "type": "number",
                "description": "Probability (0 to 1) that you ordered a pair of answers right.",
            },
        },
        "required": ["rationale", "ranking", "confidence"],
        "additionalProperties": False,
    }


class RatingVerdict(BaseModel):
    """A rating's structured output, read back strictly: one integer per aspect by name
    (StrictInt: "3" or 3.0 is not an integer score) and a confidence, null when the model
    states none. That the names are exactly the aspects asked and each score is on its
    scale is checked by the reader (kinds.py), which can name the aspect that is wrong."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=20_000)
    scores: dict[str, StrictInt] = Field(max_length=12)
    confidence: float | None = Field(ge=0, le=1)


def rating_schema(aspects: list[tuple[str, int, int, str]]) -> dict[str, Any]:
    """The json_schema of a rating on `aspects` (name, low, high, description), in the order
    given: each score is an integer enum of its scale's points (an enum, not minimum /
    maximum, which strict structured output did not accept on every server), every aspect
    required and no other; confidence is a number or null ("optional", in the only way
    strict mode allows: every property is required)."""
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "description": "One or two sentences: why."},
            "scores": {
                "type": "object",
                "properties": {
                    name: {
                        "type": "integer",
                        "enum": list(range(low, high + 1)),
                        **({"description": description} if description else {}),
                    }
                    for name, low, high, description in aspects
                },
                "required": [name for name, _, _, _ in aspects],
                "additionalProperties": False,
            },
            "confidence": {
                "type": ["number", "null"],
                "description": (
                    "Probability (0 to 1) that each of your scores is within one point of "
                    "an expert's, or null if you cannot tell."
                ),
            },
        },
        "required": ["rationale", "scores", "confidence"],
        "additionalProperties": False,
    }


class GradedVerdict(BaseModel):
    """A graded comparison's structured output, read back strictly: the winner and how much
    better it is (a label of the task's scale, or "unsure" with a tie). That the level is on
    the scale and goes with the winner is checked by the reader (kinds.py), which can name
    what is wrong."""

    model_config = ConfigDict(extra="forbid")

    rationale: str = Field(max_length=20_000)
    winner: Literal["A", "B", "tie"]
    level: str = Field(max_length=200)
    confidence: float = Field(ge=0, le=1)


def graded_verdict_schema(levels: list[str], unsure: bool) -> dict[str, Any]:
    """The json_schema of a graded comparison on `levels` (weakest first): the winner A or B
    (or tie, when the scale offers "unsure") and the level as an enum of the scale's labels
    (plus "unsure"), so a strict server can only name a level that was offered."""
    return {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "description": "One or two sentences: why."},
            "winner": {"type": "string", "enum": ["A", "B", "tie"] if unsure else ["A", "B"]},
            "level": {
                "type": "string",
                "enum": [*levels, UNSURE] if unsure else list(levels),
                "description": (
                    "How much better the winner is"
                    + (f'; "{UNSURE}" with a tie.' if unsure else ".")
                ),
            },
            "confidence": {
                "type": "number",
                "description": "Probability (0 to 1) that your verdict is the right one.",
            },
        },
        "required": ["rationale", "winner", "level", "confidence"],
        "additionalProperties": False,
    }
