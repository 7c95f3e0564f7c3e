"""Registration streams its input files: it checks them a line at a time (keeping byte
offsets, not rows) before writing anything, then reads the rows back and inserts them a
chunk at a time. A bad line deep in a large file still fails in one line naming file,
line and field, with nothing created; what is planned is what the rows say."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.models.spec import CampaignSpec, SpecError
from crowdloop.models.tables import Campaign, Item, Prompt, Response
from crowdloop.stages import plan
from crowdloop.stages.plan import check_inputs, register_campaign

PROMPTS = 3_000  # x 4 candidates: a 12,000-line candidates file
MODELS = ("m-a", "m-b", "m-c", "m-d")


def candidates(prompts: int) -> list[dict[str, Any]]:
    """Prompt-major rows, but with the prompts' candidates interleaved (all first
    candidates, then all second ones...): the index must gather them from across the file."""
    return [
        {
            "prompt_id": f"p{p:05d}",
            "prompt": f"Name the top 5 things of kind {p}",
            "response_id": f"r{p:05d}-{m}",
            "response": f"1. thing {p} by {model}",
            "model": model,
        }
        for m, model in enumerate(MODELS)
        for p in range(prompts)
    ]


def golden(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"g{i}",
            "prompt": f"golden prompt {i}",
            "left": f"good answer {i}",
            "right": f"bad answer {i}",
            "answer": "left" if i % 2 else "right",
        }
        for i in range(n)
    ]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def spec_for(tmp_path: Path, prompts: int, golden_rows: int, share: float) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "streamed",
            "output_dir": str(tmp_path),
            "preferences": {
                "candidates_file": str(write_rows(tmp_path / "c.jsonl", candidates(prompts))),
                "golden_file": str(write_rows(tmp_path / "g.jsonl", golden(golden_rows))),
                "golden_share": share,
                "overlap": 3,
                "dynamic_overlap": None,
                "export": {"path": str(tmp_path / "preferences.jsonl")},
            },
        }
    )


def row_counts() -> dict[str, int]:
    with session_scope() as s:
        return {
            m.__name__: int(s.exec(select(func.count()).select_from(m)).one())
            for m in (Campaign, Item, Prompt, Response)
        }


def _replace_line(path: Path, line: int, edit: Callable[[dict[str, Any]], Any]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    new = edit(json.loads(lines[line - 1]))
    lines[line - 1] = new if isinstance(new, str) else json.dumps(new) + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def _empty_prompt(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "prompt": ""}


def _bad_answer(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "answer": "both"}


def _repeat_response_id(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "response_id": "r00004-0"}  # line 5's id


def _broken_json(row: dict[str, Any]) -> str:
    return json.dumps(row)[:-9] + "\n"


# (case, file, line, edit, message after "FILE:LINE: ")
CASES = [
    ("candidate field", "c.jsonl", 7_001, _empty_prompt, "field 'prompt': String should have"),
    ("candidate json", "c.jsonl", 9_999, _broken_json, "not valid JSON"),
    (
        "repeated response id",
        "c.jsonl",
        11_990,
        _repeat_response_id,
        "field 'response_id': 'r00004-0' already appears on line 5",
    ),
    ("golden field", "g.jsonl", 1_501, _bad_answer, "field 'answer': Input should be"),
]


@pytest.mark.parametrize(
    ("file_name", "line", "edit", "message"),
    [pytest.param(f, ln, e, m, id=case) for case, f, ln, e, m in CASES],
)
def test_a_bad_line_deep_in_a_large_file_fails_in_one_line_and_creates_nothing(
    sqlite_url: str,
    tmp_path: Path,
    file_name: str,
    line: int,
    edit: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    spec = spec_for(tmp_path, PROMPTS, 3_000, 0.15)
    path = tmp_path / file_name
    _replace_line(path, line, edit)
    for attempt in (lambda: check_inputs(spec), lambda: _register(spec)):
        with pytest.raises(SpecError) as info:
            attempt()
        text = str(info.value)
        assert text.startswith(f"{path}:{line}: {message}"), text
        assert "\n" not in text
    assert row_counts() == {"Campaign": 0, "Item": 0, "Prompt": 0, "Response": 0}


def _register(spec: CampaignSpec) -> None:
    with session_scope() as s:
        register_campaign(s, spec)


def test_streamed_registration_plans_what_the_rows_say(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks: every insert path crosses several chunk boundaries.
    monkeypatch.setattr(plan, "ITEM_CHUNK", 7)
    prompts = 25
    spec = spec_for(tmp_path, prompts, 4, 0.2)
    _register(spec)
    pairs = prompts * 6
    golden_items = plan.golden_count(pairs, 0.2)
    assert golden_items > 4  # the golden rows are cycled through
    assert row_counts() == {
        "Campaign": 1,
        "Item": pairs + golden_items,
        "Prompt": prompts,
        "Response": prompts * 4,
    }
    rows = {r["response_id"]: r for r in candidates(prompts)}
    with session_scope() as s:
        responses = {r.id: r for r in s.exec(select(Response)).all()}
        prompt_rows = {p.id: p for p in s.exec(select(Prompt)).all()}
        items = s.exec(select(Item).order_by(col(Item.id))).all()
    by_key = {plan._response_key("streamed", rid): row for rid, row in rows.items()}
    assert set(responses) == set(by_key)
    for key, resp in responses.items():
        row = by_key[key]
        assert (resp.text, resp.model) == (row["response"], row["model"])
        assert resp.prompt_id == plan._prompt_key("streamed", row["prompt_id"])
        assert prompt_rows[resp.prompt_id].text == row["prompt"]
    real = [i for i in items if not i.is_golden]
    assert len(real) == pairs
    for item in real:
        assert item.left_id is not None and item.right_id is not None
        left, right = by_key[item.left_id], by_key[item.right_id]
        assert left["prompt_id"] == right["prompt_id"]
        assert item.payload["prompt"] == left["prompt"]
        assert (item.payload["left"], item.payload["right"]) == (
            left["response"],
            right["response"],
        )
    # The n-th golden item asks the (n mod 4)-th golden row, in file order.
    golden_rows = golden(4)
    gold = [i for i in items if i.is_golden]
    assert len(gold) == golden_items
    for n in range(golden_items):
        g = golden_rows[n % 4]
        item = next(i for i in gold if i.id == plan.stable_id("gc", "streamed", g["id"], n))
        assert (item.payload["prompt"], item.payload["left"], item.payload["right"]) == (
            g["prompt"],
            g["left"],
            g["right"],
        )
        assert item.golden_answer == g["answer"]


def test_item_rows_are_stored_in_id_order_within_each_planning_chunk(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push publishes pending items in id order and moves each 500-item chunk in one
    statement; rows stored in id order within each insert put such a chunk on adjacent
    pages (SQLite's rowid order is the insert order). Every planned item is stored once."""
    monkeypatch.setattr(plan, "ITEM_CHUNK", 7)
    prompts = 25
    spec = spec_for(tmp_path, prompts, 4, 0.2)
    _register(spec)
    with session_scope() as s:
        stored = [row[0] for row in s.execute(text("SELECT id FROM item ORDER BY rowid"))]
    pairs = prompts * 6
    assert len(stored) == len(set(stored)) == pairs + plan.golden_count(pairs, 0.2)
    chunks = [stored[i : i + 7] for i in range(0, len(stored), 7)]
    assert all(chunk == sorted(chunk) for chunk in chunks)
    # Planning order is not id order (ids are hashes): without the sort some chunk would
    # be out of order, so the check above is not vacuous.
    assert stored != sorted(stored)


def test_the_control_character_precheck_never_skips_a_refused_line() -> None:
    """`_parse_line` walks a row for control characters only when its raw line holds one
    or an escape that may decode to one; every character, escaped or raw, as a value and
    as a key, that the walk refuses is caught by that check."""
    from crowdloop.models.spec import _CONTROL, _CONTROL_ESCAPE, _bad_text

    missed = []
    for cp in range(0x10000):
        ch = chr(cp)
        lines = [json.dumps({"k": ch}), json.dumps({ch: 1})]
        if not 0xD800 <= cp <= 0xDFFF:
            lines += [json.dumps({"k": ch}, ensure_ascii=False)]
        for line in lines:
            refused = _bad_text(json.loads(line)) is not None
            if refused and not (_CONTROL.search(line) or _CONTROL_ESCAPE.search(line)):
                missed.append(line)
    assert missed == []
    # Upper-case hex digits and the short escapes too.
    for line in ('{"k": "\\u001F"}', '{"k": "\\uDFFF"}', '{"k": "\\b"}', '{"k": "\\f"}'):
        assert _bad_text(json.loads(line)) is not None
        assert _CONTROL_ESCAPE.search(line)
