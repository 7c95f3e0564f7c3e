"""Turn the LLMFAO crowd study into crowdloop campaign inputs replayed by the `replay` connector.

LLMFAO (github.com/dustalov/llmfao, CC BY 4.0, by Dmitry Ustalov): 13 prompts, 59 models,
2,139 pairs shown to a crowd, 8,931 judgments (left / right / tie) by 124 workers.

What is written to `out_dir`:

- `candidates.jsonl`: one row per (prompt, model) response: `prompt_id` (the LLMFAO prompt
  id), `prompt`, `response_id` = ``f"{prompt}:{model}"`` (`replay.models.response_id`),
  `response`, `model` (the model's name from models.jsonl);
- `pairs.jsonl`: the recorded pairs, for `pairing.design: listed`. The crowd judged about
  168 of the 1,711 possible pairs per prompt, so `design: all` would ask for ten times the
  pairs the recording can answer, and `sampled` a different set;
- `campaign.yaml`: connector `replay` on the study's files, overlap 5 (the study's
  maximum), no golden pairs (the 7 training pairs were never in the crowd's pool), and
  `max_requeue_rounds: 0` (a pair with fewer than 5 recorded judgments has no more to give),
  `blind_confidence: null` (the crowd posterior is reported, never acted on: a replay
  must not exclude what the study recorded);
- `llmfao-inputs.json`: what was kept and what was left out, and why.

Sixteen responses are the empty string; they stay in as candidates (a model that answers
nothing is a real, bad candidate), so every recorded pair and judgment is replayed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from crowdloop.connectors.replay import load_recording, response_id

COMPARISONS = "crowd-comparisons.csv"
PAIRS = "pairs-crowd.jsonl"
MODELS = "models.jsonl"
INSTRUCTION = (
    "Which AI is better? Compare the outputs of System A and System B for the prompt "
    "(relevance, coherence, grammar, completeness) and choose A, B, or tie."
)


def model_names(data_dir: Path) -> dict[str, str]:
    """LLMFAO model id -> name (ids stay as names when models.jsonl is absent)."""
    path = data_dir / MODELS
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {str(r["id"]): str(r["name"]) for r in rows}


def write_llmfao_inputs(
    data_dir: Path,
    out_dir: Path,
    *,
    name: str = "llmfao-replay",
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write candidates, listed pairs and a replay campaign file; returns the campaign path."""
    data_dir = data_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = load_recording(data_dir / COMPARISONS, data_dir / PAIRS)
    names = model_names(data_dir)

    responses: dict[tuple[str, str], str] = {}
    prompt_text: dict[str, str] = {}
    for pair in recording.pairs.values():
        prompt_text[pair.prompt] = pair.prompt_text
        for model, text in ((pair.model_x, pair.text_x), (pair.model_y, pair.text_y)):
            previous = responses.setdefault((pair.prompt, model), text)
            if previous != text:
                raise ValueError(f"model {model} has two answers to prompt {pair.prompt}")
    candidates = [
        {
            "prompt_id": prompt,
            "prompt": prompt_text[prompt],
            "response_id": response_id(prompt, model),
            "response": text,
            "model": names.get(model, model),
        }
        for (prompt, model), text in sorted(
            responses.items(), key=lambda kv: (int(kv[0][0]), int(kv[0][1]))
        )
    ]
    listed = [
        {
            "prompt_id": pair.prompt,
            "a": response_id(pair.prompt, pair.model_x),
            "b": response_id(pair.prompt, pair.model_y),
        }
        for pair in recording.pairs.values()
    ]
    _write_jsonl(out_dir / "candidates.jsonl", candidates)
    _write_jsonl(out_dir / "pairs.jsonl", listed)
    summary = {
        "source": str(data_dir),
        "prompts": len(prompt_text),
        "candidates": len(candidates),
        "empty_responses": sum(1 for text in responses.values() if text == ""),
        "pairs_recorded": len(recording.pairs),
        "pairs_listed": len(listed),
        "judgments_recorded": recording.n_judgments,
        "judgments_on_listed_pairs": recording.n_judgments,
    }
    (out_dir / "llmfao-inputs.json").write_text(json.dumps(summary, indent=2) + "\n")

    campaign: dict[str, Any] = {
        "name": name,
        "connector": {
            "name": "replay",
            "options": {
                "comparisons": str(data_dir / COMPARISONS),
                "pairs": str(data_dir / PAIRS),
            },
        },
        "batch_size": 500,
        "poll_interval_s": 0.05,
        "stage_timeout_s": 600,
        "seed": 0,
        "output_dir": ".",
        # A replay reproduces the study: nobody is blocked (no golden pairs, and the crowd
        # posterior is reported, not acted on: on by default it excluded recorded judgments
        # here); a short pair is not asked again.
        "quality": {"max_requeue_rounds": 0, "blind_confidence": None},
        "preferences": {
            "candidates_file": "candidates.jsonl",
            "pairing": {"design": "listed", "pairs_file": "pairs.jsonl"},
            "golden_share": 0.0,
            "overlap": 5,
            # Replay answers exactly the recorded judgments: ask for all of them at once.
            "dynamic_overlap": None,
            "instruction": INSTRUCTION,
            "min_confidence": 0.6,
            "export": {"path": "preferences.jsonl"},
        },
    }
    campaign = _merge(campaign, overrides or {})
    path = out_dir / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False), encoding="utf-8")
    return path


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
