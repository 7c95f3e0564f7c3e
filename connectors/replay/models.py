"""The recording a replay marketplace serves: the pairs a crowd saw and its judgments.

The format is LLMFAO's (github.com/dustalov/llmfao, CC BY 4.0):

- pairs JSONL, one shown pair a line: ``id``, ``prompt`` (prompt id), ``text`` (prompt
  text), ``model_x`` / ``result_x`` (shown on the left), ``model_y`` / ``result_y`` (right);
- comparisons CSV, one judgment a row: ``id`` (pair id), ``prompt``, ``model_x``,
  ``model_y``, ``worker``, ``winner`` in left / right / tie (sides as recorded).

Loading validates that every judgment names a recorded pair with the same prompt and
models, so a mismatched pair of files fails before anything is served.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

Side = Literal["left", "right", "tie"]
SIDES: Final[frozenset[str]] = frozenset({"left", "right", "tie"})
FLIP: Final[dict[Side, Side]] = {"left": "right", "right": "left", "tie": "tie"}

# A content key: (prompt text, left response text, right response text) as shown.
ContentKey = tuple[str, str, str]


class RecordingError(ValueError):
    """The recorded files are malformed or do not belong together; names file and line."""


def response_id(prompt: str, model: str) -> str:
    """The candidate response id crowdloop campaigns use for one model's answer to a prompt.

    `crowdloop.demo.llmfao` writes candidates with these ids; the replay connector uses
    the same convention to tell apart recorded pairs whose texts are identical.
    """
    return f"{prompt}:{model}"


@dataclass(frozen=True)
class RecordedPair:
    id: str
    prompt: str  # prompt id
    prompt_text: str
    model_x: str  # recorded left
    text_x: str
    model_y: str  # recorded right
    text_y: str

    def content(self, *, flipped: bool = False) -> ContentKey:
        if flipped:
            return (self.prompt_text, self.text_y, self.text_x)
        return (self.prompt_text, self.text_x, self.text_y)


@dataclass(frozen=True)
class RecordedJudgment:
    pair: str
    worker: str
    winner: Side  # relative to the recorded orientation (left = model_x)
    row: int  # 1-based data row of the comparisons file: the recorded order


@dataclass(frozen=True)
class Recording:
    pairs: dict[str, RecordedPair]  # in file order
    judgments: dict[str, tuple[RecordedJudgment, ...]]  # per pair id, in recorded order
    # content key -> (pair id, flipped) for both orientations of every pair, file order
    by_content: dict[ContentKey, tuple[tuple[str, bool], ...]]

    @property
    def n_judgments(self) -> int:
        return sum(len(js) for js in self.judgments.values())


def load_recording(comparisons: Path, pairs: Path) -> Recording:
    recorded = _load_pairs(pairs)
    judgments: dict[str, list[RecordedJudgment]] = defaultdict(list)
    with comparisons.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "prompt", "model_x", "model_y", "worker", "winner"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise RecordingError(f"{comparisons}: missing columns {sorted(missing)}")
        for row_no, row in enumerate(reader, start=1):
            where = f"{comparisons}:{row_no + 1}"  # +1: the header line
            pair = recorded.get(row["id"])
            if pair is None:
                raise RecordingError(f"{where}: pair id {row['id']!r} is not in {pairs}")
            if (row["prompt"], row["model_x"], row["model_y"]) != (
                pair.prompt,
                pair.model_x,
                pair.model_y,
            ):
                raise RecordingError(
                    f"{where}: prompt/models differ from pair {pair.id} in {pairs}"
                )
            if row["winner"] not in SIDES:
                raise RecordingError(f"{where}: winner {row['winner']!r} is not left/right/tie")
            if not row["worker"]:
                raise RecordingError(f"{where}: empty worker id")
            judgments[pair.id].append(
                RecordedJudgment(
                    pair=pair.id, worker=row["worker"], winner=cast(Side, row["winner"]), row=row_no
                )
            )
    by_content: dict[ContentKey, list[tuple[str, bool]]] = defaultdict(list)
    for pair in recorded.values():
        for flipped in (False, True):
            entry = (pair.id, flipped)
            bucket = by_content[pair.content(flipped=flipped)]
            # A pair with identical texts on both sides matches either way; list it once.
            if not any(p == pair.id for p, _ in bucket):
                bucket.append(entry)
    return Recording(
        pairs=recorded,
        judgments={pid: tuple(js) for pid, js in judgments.items()},
        by_content={k: tuple(v) for k, v in by_content.items()},
    )


def _load_pairs(path: Path) -> dict[str, RecordedPair]:
    out: dict[str, RecordedPair] = {}
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                pair = RecordedPair(
                    id=str(raw["id"]),
                    prompt=str(raw["prompt"]),
                    prompt_text=_text(raw["text"]),
                    model_x=str(raw["model_x"]),
                    text_x=_text(raw["result_x"]),
                    model_y=str(raw["model_y"]),
                    text_y=_text(raw["result_y"]),
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise RecordingError(f"{path}:{line_no}: not a recorded pair ({exc!r})") from exc
            if pair.id in out:
                raise RecordingError(f"{path}:{line_no}: pair id {pair.id!r} appears twice")
            out[pair.id] = pair
    if not out:
        raise RecordingError(f"{path}: no pairs")
    return out


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
