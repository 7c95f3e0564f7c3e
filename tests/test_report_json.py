"""The report's JSON text (`report.indented_json`) is `json.dump`'s with indent=2,
sort_keys and default=str, byte for byte."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from crowdloop.stages.report import indented_json

CASES: list[Any] = [
    {},
    [],
    1,
    "x",
    None,
    1.5,
    float("nan"),
    Decimal("1.20"),
    {"b": [], "a": {}, "c": [1, 2.5, "é", None, True], "d": {"z": 1, "y": [{"q": 1}, {}, []]}},
    {"k": {1: "a", 2: [1, {"x": 2}]}, "j": {3: 1, True: 2, 1.5: [3]}, "n": {None: {"a": 1}}},
    {"t": (1, 2, (3, 4)), "f": [float("inf"), -float("inf"), 1e-7, 123456789012345678.0]},
    {"dt": datetime(2026, 1, 2, 3, 4, 5), "dec": [Decimal("0.1"), {"d": Decimal("2")}], "s": {1}},
    [[[]], [{}], [[1]], {"a": [[{"b": "c\nd", "e": '{"f": [1]}'}]]}],
    {"unicode": 'ünï\u2028"quote"\\', "nested": {"deep": {"deeper": {"x": [1, [2, [3]]]}}}},
    {
        "rankings": {
            f"p{i}": [
                {"response": f"r{i}{j}", "score": j / 3, "low": -1.0, "high": 2.0, "model": None}
                for j in range(4)
            ]
            for i in range(3)
        },
        "workers": [{"worker": "w", "status": "trusted", "golden": "3/4"}],
    },
]


@pytest.mark.parametrize("value", CASES)
def test_the_same_text_as_json_dump(value: Any) -> None:
    expected = json.dumps(value, indent=2, sort_keys=True, default=str)
    assert "".join(indented_json(value)) == expected
