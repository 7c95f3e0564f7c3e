"""Every class of bad input fails `crowdloop run` before anything starts: one line naming
file, line and field, exit code 2, nothing on the marketplace, no database written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crowdloop.cli import app
from tests.e2e_helpers import campaign_dir, simulator

Mutate = Callable[[Path], None]


def _yaml_edit(edit: Callable[[dict[str, object]], None]) -> Mutate:
    def mutate(folder: Path) -> None:
        path = folder / "campaign.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    return mutate


def _jsonl_line(name: str, line: int, edit: Callable[[dict[str, object]], object]) -> Mutate:
    """Replace line `line` (1-based) of a JSONL input with `edit(row)` (bytes are raw)."""

    def mutate(folder: Path) -> None:
        path = folder / name
        lines = path.read_bytes().splitlines(keepends=True)
        new = edit(json.loads(lines[line - 1]))
        lines[line - 1] = new if isinstance(new, bytes) else (json.dumps(new) + "\n").encode()
        path.write_bytes(b"".join(lines))

    return mutate


def _raw_utf8_break(name: str, line: int, field: str) -> Mutate:
    def edit(row: dict[str, object]) -> bytes:
        row[field] = "MARKER"
        return json.dumps(row).encode().replace(b"MARKER", b"caf\xe9") + b"\n"

    return _jsonl_line(name, line, edit)


def _set(field: str, value: object) -> Callable[[dict[str, object]], dict[str, object]]:
    return lambda row: {**row, field: value}


def _connector(options: dict[str, object], name: str = "simulator") -> Mutate:
    def edit(data: dict[str, object]) -> None:
        data["connector"] = {"name": name, "options": options}

    return _yaml_edit(edit)


def _campaign_bytes(folder: Path) -> None:
    path = folder / "campaign.yaml"
    path.write_bytes(path.read_bytes().replace(b"seed: 0", b"seed: 0\nnote: \xff\xfe"))


def _campaign_nul(folder: Path) -> None:
    def edit(data: dict[str, object]) -> None:
        prefs = data["preferences"]
        assert isinstance(prefs, dict)
        prefs["instruction"] = "Which is better?\x00"

    _yaml_edit(edit)(folder)


def _duplicate_line_two(folder: Path) -> None:
    path = folder / "candidates.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, lines[1])  # line 3 repeats line 2's response_id
    path.write_bytes(b"".join(lines))


# (case, mutation, file name, field named in the message)
CASES: list[tuple[str, Mutate, str, str]] = [
    ("yaml field", _yaml_edit(lambda d: d.update(batch_size=-1)), "campaign.yaml", "batch_size"),
    ("yaml unknown field", _yaml_edit(lambda d: d.update(bach_size=5)), "campaign.yaml",
     "bach_size"),
    ("yaml encoding", _campaign_bytes, "campaign.yaml", "note"),
    ("yaml NUL", _campaign_nul, "campaign.yaml", "preferences.instruction"),
    ("unknown connector", _connector({}, name="mturk"), "campaign.yaml", "connector.name"),
    ("connector option value", _connector({"timeout_s": -5}), "campaign.yaml",
     "connector.options.timeout_s"),
    ("connector option typo", _connector({"page_limt": 10}), "campaign.yaml",
     "connector.options.page_limt"),
    ("toloka options", _connector({"sandbox": True}, name="toloka"), "campaign.yaml",
     "connector.options"),
    ("prolific option", _connector({"devices": ["phone"]}, name="prolific"), "campaign.yaml",
     "connector.options.devices.0"),
    ("labelstudio option", _connector({"settle_s": "soon"}, name="labelstudio"),
     "campaign.yaml", "connector.options.settle_s"),
    ("candidates field", _jsonl_line("candidates.jsonl", 3, _set("prompt", "")),
     "candidates.jsonl", "prompt"),
    ("candidates encoding", _raw_utf8_break("candidates.jsonl", 4, "response"),
     "candidates.jsonl", "response"),
    ("candidates NUL", _jsonl_line("candidates.jsonl", 2, _set("response", "a\u0000b")),
     "candidates.jsonl", "response"),
    ("candidates control character", _jsonl_line("candidates.jsonl", 2, _set("model", "x\x1b[31m")),
     "candidates.jsonl", "model"),
    ("candidates duplicate id", _duplicate_line_two, "candidates.jsonl", "response_id"),
    ("golden pairs field", _jsonl_line("golden-pairs.jsonl", 2, _set("answer", "both")),
     "golden-pairs.jsonl", "answer"),
    ("golden pairs encoding", _raw_utf8_break("golden-pairs.jsonl", 1, "left"),
     "golden-pairs.jsonl", "left"),
    ("golden verifications field",
     _jsonl_line("golden-verifications.jsonl", 3, _set("verdict", "maybe")),
     "golden-verifications.jsonl", "verdict"),
    ("golden verifications NUL",
     _jsonl_line("golden-verifications.jsonl", 1, _set("text", "\u0000")),
     "golden-verifications.jsonl", "text"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "file_name", "field"),
    [pytest.param(m, f, fld, id=case) for case, m, f, fld in CASES],
)
def test_bad_input_fails_in_one_line_before_anything_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mutate: Mutate,
    file_name: str,
    field: str,
) -> None:
    folder = tmp_path / "c"
    campaign = campaign_dir(folder, "bad-input")
    mutate(folder)
    db = tmp_path / "db" / "crowdloop.db"
    monkeypatch.delenv("CROWDLOOP_DATABASE_URL", raising=False)
    with simulator(monkeypatch) as sim:
        result = CliRunner().invoke(app, ["--db", str(db), "run", str(campaign)])
        stats = sim.state.snapshot_stats()
    monkeypatch.delenv("CROWDLOOP_DATABASE_URL", raising=False)  # --db set it
    out = " ".join(result.output.split())  # the console may wrap a long line
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3, result.output  # one (wrapped) line
    assert re.search(rf"{re.escape(file_name)}:\d+: field '{re.escape(field)}", out), out
    assert stats["pools_created"] == 0 and stats["tasks_created"] == 0
    assert stats["requests"] == {}  # the marketplace was not even asked
    assert not db.exists()  # nothing registered


def test_estimate_refuses_bad_input_the_same_way(tmp_path: Path) -> None:
    campaign = campaign_dir(tmp_path, "bad-estimate")
    _jsonl_line("candidates.jsonl", 5, _set("response", "x\u0000"))(tmp_path)
    result = CliRunner().invoke(app, ["estimate", str(campaign)])
    assert result.exit_code == 2
    assert re.search(r"candidates.jsonl:5: field 'response'", " ".join(result.output.split()))


def test_every_connector_declares_an_options_model() -> None:
    from crowdloop.connectors.registry import discover

    found = discover()
    assert {"simulator", "replay", "toloka", "prolific", "scale", "labelstudio"} <= set(found)
    for name, info in found.items():
        assert info.cls is not None, info.error
        model = info.cls.options_model
        assert model is not None, name
        assert model.model_config.get("extra") == "forbid", name
