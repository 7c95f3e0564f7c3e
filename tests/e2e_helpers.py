"""Helpers for end-to-end campaign tests: inputs, a simulator, and the run's outputs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crowdloop.demo import top5
from crowdloop.demo.run import DemoSize, write_demo_inputs
from crowdloop.models.spec import CampaignSpec
from crowdloop.simulator import world
from crowdloop.simulator.config import SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer

SMALL = DemoSize(
    topics=3,
    demo_prompts_per_topic=1,
    candidate_prompts_per_topic=2,
    golden_pairs=12,
    golden_verifications=8,
)


@contextmanager
def simulator(
    monkeypatch: pytest.MonkeyPatch, config: SimulatorConfig | None = None
) -> Iterator[SimulatorServer]:
    with SimulatorServer(config or SimulatorConfig(seed=0)) as sim:
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_URL", sim.url)
        monkeypatch.setenv("CROWDLOOP_SIMULATOR_TOKEN", sim.token)
        yield sim


@contextmanager
def judged(monkeypatch: pytest.MonkeyPatch, config: SimulatorConfig) -> Iterator[SimulatorServer]:
    """The simulator with its AI judge (`config.ai_judge`), and the aijudge connector's
    variables aimed at it."""
    assert config.ai_judge is not None, "judged() needs a simulator config with an AI judge"
    with simulator(monkeypatch, config) as sim:
        monkeypatch.setenv("CROWDLOOP_AIJUDGE_BASE_URL", f"{sim.url}/openai/v1")
        monkeypatch.setenv("CROWDLOOP_AIJUDGE_API_KEY", sim.token)
        monkeypatch.setenv("CROWDLOOP_AIJUDGE_MODEL", config.ai_judge.model)
        yield sim


def campaign_dir(
    root: Path,
    name: str,
    size: DemoSize = SMALL,
    overrides: dict[str, Any] | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return write_demo_inputs(root, name, size, seed=0, overrides=overrides)


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ("sft.jsonl", "preferences.jsonl")}


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


TOPICS = list(world.CATALOG)[:2]


def spec_for(tmp_path: Path, name: str, extra: dict[str, Any]) -> CampaignSpec:
    """A comparison campaign on two of the simulator's topics (12 real pairs, 4 golden),
    overlap 3, no dynamic overlap; ``extra`` goes into its preferences."""
    top5.write_jsonl(tmp_path / "candidates.jsonl", top5.generate_candidates(TOPICS, 0))
    top5.write_jsonl(tmp_path / "golden.jsonl", top5.generate_golden_pairs(TOPICS, 0, 6))
    return CampaignSpec.model_validate(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "preferences": {
                "candidates_file": str(tmp_path / "candidates.jsonl"),
                "golden_file": str(tmp_path / "golden.jsonl"),
                "golden_share": 0.25,
                "overlap": 3,
                "dynamic_overlap": None,
                "export": {"path": str(tmp_path / "preferences.jsonl")},
                **extra,
            },
        }
    )


def record_add_items(monkeypatch: pytest.MonkeyPatch, connector: Any) -> list[list[Any]]:
    """The tasks of every `add_items` call ``connector`` makes from now on, a list per call
    (the calls still go through)."""
    calls: list[list[Any]] = []
    add_items = connector.add_items

    def spy(batch: Any, items: Any, **kw: Any) -> Any:
        calls.append(list(items))
        return add_items(batch, items, **kw)

    monkeypatch.setattr(connector, "add_items", spy)
    return calls
