"""The sync's cheaper paths give what the step-by-step ones give (sync11h).

- The simulator connector reads a clean assignment in one validation call
  (`_read_readable`); anything wrong in a record sends it to the step-by-step read, which
  names the reason. Both must give the same submission for a clean record.
- `db._processed` runs a bind processor once per run of the same object (a page's one
  receipt time), with the same values as processing every row.
- `counts.answer_tallies` is `answer_counts` of all and of trusted answers, in one query.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crowdloop.connectors.simulator import connector as sim
from crowdloop.db import _processed, insert_ignore, session_scope
from crowdloop.models.domain import Quarantined, Submission
from crowdloop.models.tables import Campaign, Judgment, JudgmentStatus
from crowdloop.stages.counts import answer_counts, answer_tallies
from tests.test_connector_simulator import _assignment


def _record(n: int, answer: Any, **overrides: Any) -> dict[str, Any]:
    """The simulator tests' wire assignment, its time with an offset and microseconds (the
    one-call read must convert both as the step-by-step read does)."""
    return _assignment(
        n, answer, **{"submitted_at": "2025-01-01T00:05:00.250000+02:00", **overrides}
    )


CLEAN = [
    _record(1, {"choice": "left"}),
    _record(2, {"choice": "right", "level": 2, "rationale": "fewer errors"}),
    _record(3, {"choice": "tie", "kind": "verdict"}),  # the task's kind wins, as before
    _record(4, {"verdict": "reject", "rationale": "off topic"}, task_kind="verify"),
    _record(5, {"text": "A prompt."}, task_kind="write_prompt"),
    _record(6, {"ranks": [2, 1, 3]}, task_kind="rank"),
    _record(7, {"scores": {"clarity": 3}}, task_kind="rate"),
    _record(8, {"choice": "left"}, extra_field="ignored, as the wire model ignores it"),
]

GARBLED = [
    _record(11, {"choice": "maybe"}),
    _record(12, {}),
    _record(13, {"verdict": "accept"}),
    _record(14, "left"),
    _record(15, {"choice": "left"}, task_kind="sort"),
    _record(16, {"choice": "left"}, task_kind=["compare"]),
    _record(17, {"choice": "tie", "level": 2}),
    _record(18, {"choice": "left"}, submitted_at="yesterday"),
    _record(19, {"choice": "left"}, id=19),
    _record(20, {"choice": "left"}, worker_id=None),
    {k: v for k, v in _record(21, {"choice": "left"}).items() if k != "task_id"},
    {k: v for k, v in _record(22, {"choice": "left"}).items() if k != "task_key"},
    {k: v for k, v in _record(23, {"choice": "left"}).items() if k != "answer"},
]


def _step_by_step(raw: dict[str, Any]) -> Submission | Quarantined:
    """`_read_assignment` with its one-call path switched off."""
    saved = sim._read_readable
    sim._read_readable = lambda _raw: None  # type: ignore[assignment]
    try:
        return sim._read_assignment(raw)
    finally:
        sim._read_readable = saved  # type: ignore[assignment]


@pytest.mark.parametrize("raw", CLEAN, ids=lambda r: r["id"])
def test_a_clean_record_reads_the_same_in_one_call(raw: dict[str, Any]) -> None:
    one_call = sim._read_readable(raw)
    step_by_step = _step_by_step(raw)
    assert isinstance(step_by_step, Submission)
    assert one_call == step_by_step
    assert one_call.model_fields_set == step_by_step.model_fields_set
    assert type(one_call.answer) is type(step_by_step.answer)
    assert one_call.submitted_at.utcoffset() == step_by_step.submitted_at.utcoffset()


@pytest.mark.parametrize("raw", GARBLED, ids=lambda r: str(r.get("id")))
def test_anything_wrong_goes_to_the_step_by_step_read(raw: dict[str, Any]) -> None:
    assert sim._read_readable(raw) is None
    read = sim._read_assignment(raw)
    assert isinstance(read, Quarantined)
    assert read == _step_by_step(raw)


def test_a_run_of_one_object_is_processed_once() -> None:
    calls: list[Any] = []

    def process(value: Any) -> Any:
        calls.append(value)
        return None if value is None else f"<{value}>"

    at = datetime(2026, 1, 1, tzinfo=UTC)
    same_but_another = datetime(2026, 1, 1, tzinfo=UTC)
    values: list[Any] = [at, at, at, None, None, same_but_another, at, "x"]
    assert _processed(process, values) == [process(v) for v in values]
    calls.clear()
    _processed(process, values)
    # Runs of one object: at, None, same_but_another, at, "x" (an equal value that is
    # another object is processed again: identity, not equality, decides).
    assert calls == [at, None, same_but_another, at, "x"]


def test_answer_tallies_are_the_two_answer_counts(db_url: str) -> None:
    with session_scope(db_url) as s:
        s.add(Campaign(id="c1", spec={}, spec_hash="x", connector="simulator"))
        s.add(Campaign(id="c2", spec={}, spec_hash="x", connector="simulator"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    # Per item: valid, excluded, quarantined answers in a mix; one item has only
    # untrusted ones, one judgment has no item, and another campaign's are left out.
    kinds = {
        "i1": ["valid", "valid", "valid"],
        "i2": ["valid", "excluded", "quarantined"],
        "i3": ["excluded", "quarantined"],
        None: ["quarantined"],
    }
    rows = []
    for item, statuses in kinds.items():
        for n, status in enumerate(statuses):
            rows.append(
                {
                    "connector": "simulator",
                    "external_id": f"{item}-{n}",
                    "campaign_id": "c1",
                    "item_id": item,
                    "status": (
                        JudgmentStatus.QUARANTINED
                        if status == "quarantined"
                        else JudgmentStatus.VALID
                    ),
                    "excluded": status == "excluded",
                    "received_at": now,
                }
            )
    rows.append({**rows[0], "external_id": "other", "campaign_id": "c2"})
    with session_scope(db_url) as s:
        insert_ignore(s, Judgment, rows, ["connector", "external_id"])
    with session_scope(db_url) as s:
        answered, trusted = answer_tallies(s, "c1")
        assert answered == answer_counts(s, "c1", trusted_only=False)
        assert trusted == answer_counts(s, "c1", trusted_only=True)
    assert answered == {"i1": 3, "i2": 3, "i3": 2}
    assert trusted == {"i1": 3, "i2": 1}
