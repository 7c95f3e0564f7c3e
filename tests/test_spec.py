"""Campaign files and JSONL inputs: bad input fails early, naming file, line and field; and
registering a campaign is idempotent."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func
from sqlmodel import select

from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.spec import (
    CampaignSpec,
    CandidateRow,
    GoldenPairRow,
    SpecError,
    load_campaign,
    load_jsonl,
)
from crowdloop.models.tables import Campaign, Item, Prompt, Response
from crowdloop.simulator import world
from crowdloop.stages.plan import (
    CampaignConflict,
    golden_count,
    register_campaign,
    spec_hash,
)

TOPICS = list(world.CATALOG)[:2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def candidate(n: int, prompt_id: str = "p1", **extra: Any) -> dict[str, Any]:
    row = {
        "prompt_id": prompt_id,
        "prompt": f"Name the top 5 things ({prompt_id})",
        "response_id": f"r{n}",
        "response": f"1. thing {n}",
        "model": "m",
    }
    row.update(extra)
    return row


def spec_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_campaign(path)
    return str(info.value)


# --- the campaign file -------------------------------------------------------------------------


def test_wrong_type_deep_inside_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        batch_size: 10
        preferences:
          candidates_file: candidates.jsonl
          pairing:
            design: sampled
          overlap: "three"
          export:
            path: preferences.jsonl
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:7: ")
    assert "'preferences.overlap'" in message
    assert "valid integer" in message
    assert message.count("\n") == 0  # one problem, one line


def test_wrong_type_in_a_nested_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
          pairing:
            design: sampled
            pairs_per_candidate: 0
          export:
            path: preferences.jsonl
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:6: ")
    assert "'preferences.pairing.pairs_per_candidate'" in message


def test_several_problems_are_each_reported_on_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        batch_size: -1
        preferences:
          candidates_file: candidates.jsonl
          overlap: 99
          export:
            path: preferences.jsonl
        """,
    )
    lines = spec_error(path).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:2: field 'batch_size'")
    assert lines[1].startswith(f"{path}:5: field 'preferences.overlap'")


def test_unknown_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
          export:
            path: preferences.jsonl
          overlapp: 3
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:6: ")
    assert "'preferences.overlapp'" in message
    assert "Extra inputs are not permitted" in message


def test_invalid_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
           overlap: 3
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:4: not valid YAML")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "campaign.yaml", "- name: demo\n")
    assert spec_error(path) == f"{path}: expected a mapping at the top level"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert spec_error(path) == f"{path}: campaign file not found"


def test_campaign_needs_a_section(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        batch_size: 5
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:1: field '(root)'")
    assert "'demonstrations', a 'preferences' or a 'ranking' section" in message


def test_deployment_target_needs_a_name(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
          export:
            path: preferences.jsonl
        retraining:
          threshold_pairs: 10
          target:
            kind: deployment
            emit_event: false
        """,
    )
    message = spec_error(path)
    assert message.startswith(f"{path}:9: field 'retraining.target'")
    assert "needs a 'deployment' name" in message


def test_deployment_target_with_a_name_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
          export:
            path: preferences.jsonl
        retraining:
          target:
            kind: deployment
            deployment: train-reward-model/reference
        """,
    )
    spec = load_campaign(path)
    assert spec.retraining is not None
    assert spec.retraining.target.deployment == "train-reward-model/reference"
    assert spec.retraining.threshold_pairs == 100


def test_relative_paths_resolve_against_the_campaign_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "campaigns" / "one"
    path = write(
        folder / "campaign.yaml",
        f"""
        name: demo
        output_dir: out
        demonstrations:
          topics: [fruits]
          golden_file: data/golden-verify.jsonl
          export:
            path: sft.jsonl
        preferences:
          candidates_file: data/candidates.jsonl
          golden_file: {tmp_path / "abs" / "golden.jsonl"}
          export:
            path: exports/preferences.jsonl
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_campaign(path)
    assert spec.preferences is not None and spec.demonstrations is not None
    assert spec.output_dir == folder / "out"
    assert spec.preferences.candidates_file == folder / "data" / "candidates.jsonl"
    assert spec.preferences.export.path == folder / "exports" / "preferences.jsonl"
    # An absolute path stays as written.
    assert spec.preferences.golden_file == tmp_path / "abs" / "golden.jsonl"
    assert spec.demonstrations.golden_file == folder / "data" / "golden-verify.jsonl"
    assert spec.demonstrations.export.path == folder / "sft.jsonl"


def test_the_same_file_gives_the_same_spec_however_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path / "campaign.yaml",
        """
        name: demo
        preferences:
          candidates_file: candidates.jsonl
          export:
            path: preferences.jsonl
        """,
    )
    monkeypatch.chdir(tmp_path)
    relative = load_campaign(Path("campaign.yaml"))
    absolute = load_campaign(path)
    assert relative.preferences is not None
    assert relative.preferences.candidates_file.is_absolute()
    assert spec_hash(relative) == spec_hash(absolute)


# --- JSONL inputs ----------------------------------------------------------------------------


def test_jsonl_bad_json_names_the_line(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "c.jsonl", [candidate(1), candidate(2), '{"prompt_id": "p1",'])
    with pytest.raises(SpecError) as info:
        load_jsonl(path, CandidateRow)
    message = str(info.value)
    assert message.startswith(f"{path}:3: not valid JSON")


def test_jsonl_missing_field_names_line_and_field(tmp_path: Path) -> None:
    bad = candidate(2)
    del bad["response"]
    path = write_rows(tmp_path / "c.jsonl", [candidate(1), bad])
    with pytest.raises(SpecError) as info:
        load_jsonl(path, CandidateRow)
    assert str(info.value) == f"{path}:2: field 'response': Field required"


def test_jsonl_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    good = {"id": "g1", "prompt": "p", "left": "a", "right": "b", "answer": "left"}
    bad = {**good, "id": "g2", "answer": "up"}
    path.write_text(f"{json.dumps(good)}\n\n{json.dumps(bad)}\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_jsonl(path, GoldenPairRow)
    message = str(info.value)
    assert message.startswith(f"{path}:3: field 'answer'")
    assert "'left', 'right' or 'tie'" in message


def test_jsonl_unknown_field_and_empty_file(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "c.jsonl", [candidate(1, colour="blue")])
    with pytest.raises(SpecError, match=r":1: field 'colour': Extra inputs are not permitted"):
        load_jsonl(path, CandidateRow)
    empty = write_rows(tmp_path / "empty.jsonl", [])
    with pytest.raises(SpecError) as info:
        load_jsonl(empty, CandidateRow)
    assert str(info.value) == f"{empty}: no rows"
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(SpecError) as info:
        load_jsonl(missing, CandidateRow)
    assert str(info.value) == f"{missing}: file not found"


def test_jsonl_valid_rows_load(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "c.jsonl", top5.generate_candidates(TOPICS, 0))
    rows = load_jsonl(path, CandidateRow)
    assert len(rows) == 8
    assert {r.model for r in rows} == set(top5.MODELS)


# --- registration --------------------------------------------------------------------------


def preferences_spec(tmp_path: Path, name: str = "reg", **prefs: Any) -> CampaignSpec:
    candidates = tmp_path / "candidates.jsonl"
    if not candidates.exists():
        write_rows(candidates, top5.generate_candidates(TOPICS, 0))
    golden = tmp_path / "golden.jsonl"
    if not golden.exists():
        write_rows(golden, top5.generate_golden_pairs(TOPICS, 0, 8))
    section = {
        "candidates_file": str(candidates),
        "golden_file": str(golden),
        "golden_share": 0.25,
        "overlap": 3,
        "dynamic_overlap": None,
        "export": {"path": str(tmp_path / "preferences.jsonl")},
    }
    section.update(prefs)
    return CampaignSpec.model_validate(
        {"name": name, "output_dir": str(tmp_path), "preferences": section}
    )


def row_counts() -> dict[str, int]:
    with session_scope() as s:
        return {
            m.__name__: int(s.exec(select(func.count()).select_from(m)).one())
            for m in (Campaign, Item, Prompt, Response)
        }


def test_register_same_spec_is_a_noop(sqlite_url: str, tmp_path: Path) -> None:
    spec = preferences_spec(tmp_path)
    with session_scope() as s:
        first = register_campaign(s, spec)
    # 2 prompts x 4 candidates: 12 pairs, and 12 * 0.25 / 0.75 = 4 golden pairs.
    counts = row_counts()
    assert counts == {"Campaign": 1, "Item": 16, "Prompt": 2, "Response": 8}
    with session_scope() as s:
        again = register_campaign(s, spec)
    assert again.id == first.id == "reg"
    assert again.spec_hash == first.spec_hash == spec_hash(spec)
    assert row_counts() == counts
    # A spec read back from YAML with the same content is the same spec.
    yaml_path = tmp_path / "campaign.yaml"
    yaml_path.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
    with session_scope() as s:
        register_campaign(s, load_campaign(yaml_path))
    assert row_counts() == counts


def test_register_changed_spec_under_same_name_conflicts(sqlite_url: str, tmp_path: Path) -> None:
    spec = preferences_spec(tmp_path)
    with session_scope() as s:
        register_campaign(s, spec)
    counts = row_counts()
    changed = preferences_spec(tmp_path, overlap=5)
    with (
        pytest.raises(CampaignConflict, match="'reg' already exists with a different spec"),
        session_scope() as s,
    ):
        register_campaign(s, changed)
    assert row_counts() == counts
    with session_scope() as s:
        stored = s.get(Campaign, "reg")
        assert stored is not None
        assert stored.spec_hash == spec_hash(spec) != spec_hash(changed)
        assert {i.overlap for i in s.exec(select(Item)).all()} == {3}
    # Under a new name the changed campaign registers beside the old one.
    renamed = changed.model_copy(update={"name": "reg-2"})
    with session_scope() as s:
        register_campaign(s, renamed)
    assert row_counts() == {"Campaign": 2, "Item": 32, "Prompt": 4, "Response": 16}


def test_register_with_bad_candidates_writes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    write_rows(tmp_path / "candidates.jsonl", [candidate(1), candidate(2), "{not json"])
    spec = preferences_spec(tmp_path)
    with (
        pytest.raises(SpecError, match=r"candidates\.jsonl:3: not valid JSON"),
        session_scope() as s,
    ):
        register_campaign(s, spec)
    assert row_counts() == {"Campaign": 0, "Item": 0, "Prompt": 0, "Response": 0}


def test_duplicate_response_id_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "candidates.jsonl", [candidate(1), candidate(2), candidate(3), candidate(2)]
    )
    spec = preferences_spec(tmp_path)
    with pytest.raises(SpecError) as info, session_scope() as s:
        register_campaign(s, spec)
    assert str(info.value) == f"{path}:4: field 'response_id': 'r2' already appears on line 2"
    # The campaign row had been flushed; the failure rolls it back with everything else.
    assert row_counts() == {"Campaign": 0, "Item": 0, "Prompt": 0, "Response": 0}


def test_duplicate_response_id_names_the_line(sqlite_url: str, tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "candidates.jsonl", [candidate(1), candidate(2), candidate(3), candidate(2)]
    )
    spec = preferences_spec(tmp_path)
    with pytest.raises(SpecError) as info, session_scope() as s:
        register_campaign(s, spec)
    assert str(info.value).startswith(f"{path}:4:")


def test_prompt_id_with_two_texts_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    write_rows(
        tmp_path / "candidates.jsonl",
        [candidate(1), candidate(2, prompt="something else")],
    )
    spec = preferences_spec(tmp_path)
    with (
        pytest.raises(SpecError, match="field 'prompt': prompt_id 'p1' has another text on line"),
        session_scope() as s,
    ):
        register_campaign(s, spec)
    assert row_counts()["Campaign"] == 0


def test_golden_count_matches_the_share_exactly() -> None:
    assert golden_count(12, 0.25) == 4
    assert golden_count(12, 0.2) == 3
    assert golden_count(7, 0.3) == 3
    assert golden_count(14, 0.3) == 6
