"""`crowdloop demo`: a complete RLHF data round on the built-in simulated marketplace.

It writes the demo's inputs (candidate model answers, golden pairs, golden verification
items) and a campaign file into the output folder, starts the simulator on loopback, runs
the `run-campaign` flow, and scores the result against the simulator's hidden truth.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlmodel import col, select

from crowdloop.db import session_scope
from crowdloop.demo import top5
from crowdloop.models.tables import Item, Judgment, JudgmentStatus, PairOutcome
from crowdloop.simulator.config import FaultConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer


@dataclass(frozen=True)
class DemoSize:
    topics: int = 12
    demo_prompts_per_topic: int = 2
    candidate_prompts_per_topic: int = 8
    golden_pairs: int = 60
    golden_verifications: int = 40


QUICK = DemoSize(topics=6, demo_prompts_per_topic=1, candidate_prompts_per_topic=6,
                 golden_pairs=40, golden_verifications=24)  # fmt: skip


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def write_demo_inputs(
    out: Path,
    name: str,
    size: DemoSize,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """The demo's input files and campaign YAML; returns the campaign file path.

    `overrides` is merged into the campaign mapping (tests and benchmarks resize with it).
    """
    topics = list(top5.CATALOG)[: size.topics]
    top5.write_jsonl(
        out / "candidates.jsonl",
        top5.generate_candidates(topics, seed, prompts_per_topic=size.candidate_prompts_per_topic),
    )
    top5.write_jsonl(
        out / "golden-pairs.jsonl", top5.generate_golden_pairs(topics, seed, size.golden_pairs)
    )
    top5.write_jsonl(
        out / "golden-verifications.jsonl",
        top5.generate_golden_verifications(topics, seed, size.golden_verifications),
    )
    campaign = {
        "name": name,
        "connector": {"name": "simulator"},
        "poll_interval_s": 0.2,
        "stage_timeout_s": 600,
        "seed": seed,
        "output_dir": ".",
        "quality": {"min_golden": 4, "min_accuracy": 0.7, "block_confidence": 0.8},
        "demonstrations": {
            "topics": topics,
            "prompts_per_topic": size.demo_prompts_per_topic,
            "verification_overlap": 3,
            "max_attempts": 3,
            "golden_file": "golden-verifications.jsonl",
            "golden_share": 0.2,
            "aggregation": "dawid_skene",
            "export": {"path": "sft.jsonl"},
        },
        "preferences": {
            "candidates_file": "candidates.jsonl",
            "pairing": {"design": "all"},
            "golden_file": "golden-pairs.jsonl",
            "golden_share": 0.2,
            "overlap": 3,
            "min_confidence": 0.6,
            "export": {"path": "preferences.jsonl"},
        },
        "retraining": {"threshold_pairs": 50, "target": {"kind": "inline", "emit_event": True}},
    }
    campaign = _merge(campaign, overrides or {})
    path = out / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class TruthScore:
    pairs: int = 0
    accuracy: float = 0.0
    baseline_accuracy: float = 0.0  # majority vote over every answer, no golden filtering


def score_against_truth(campaign_id: str, sim_url: str) -> TruthScore:
    """Pairwise accuracy of the aggregated winners vs the simulator's hidden truth."""
    with session_scope() as s:
        outcomes = {
            o.item_id: o.winner
            for o in s.exec(select(PairOutcome).where(PairOutcome.campaign_id == campaign_id))
        }
        votes = s.exec(
            select(Judgment.item_id, Judgment.label)
            .join(Item, col(Item.id) == col(Judgment.item_id))
            .where(
                Judgment.campaign_id == campaign_id,
                Item.kind == "compare",
                col(Item.is_golden).is_(False),
                Judgment.status == JudgmentStatus.VALID,
            )
        ).all()
    if not outcomes:
        return TruthScore()
    keys = {f"{item_id}.0": item_id for item_id in outcomes}
    truth_by_key = httpx.post(f"{sim_url}/sim/truth", json={"keys": list(keys)}, timeout=30).json()
    truth = {keys[k]: v for k, v in truth_by_key.items() if v in ("left", "right")}
    tallies: dict[str, Counter[str]] = {}
    for item_id, label in votes:
        tallies.setdefault(str(item_id), Counter())[str(label)] += 1
    ours = [outcomes[i] == t for i, t in truth.items()]
    # Ties in the vote count go to "tie", the honest answer of a plain majority.
    mv = []
    for i, t in truth.items():
        top = tallies.get(i, Counter()).most_common()
        winner = "tie" if not top or (len(top) > 1 and top[0][1] == top[1][1]) else top[0][0]
        mv.append(winner == t)
    return TruthScore(
        pairs=len(ours),
        accuracy=sum(ours) / len(ours) if ours else 0.0,
        baseline_accuracy=sum(mv) / len(mv) if mv else 0.0,
    )


@dataclass
class CrowdCatch:
    spammers: int = 0
    spammers_blocked: int = 0
    honest: int = 0
    honest_blocked: int = 0
    blocked_by_archetype: dict[str, int] = field(default_factory=dict)


def crowd_catch(sim_url: str) -> CrowdCatch:
    workers = httpx.get(f"{sim_url}/sim/workers", timeout=30).json()
    out = CrowdCatch()
    for w in workers:
        if w["blocked"]:
            out.blocked_by_archetype[w["archetype"]] = (
                out.blocked_by_archetype.get(w["archetype"], 0) + 1
            )
        if w["archetype"] == "spammer":
            out.spammers += 1
            out.spammers_blocked += int(w["blocked"])
        elif w["archetype"] == "honest":
            out.honest += 1
            out.honest_blocked += int(w["blocked"])
    return out


@dataclass
class DemoResult:
    campaign_id: str
    output_dir: Path
    flow_result: dict[str, Any]
    truth: TruthScore
    catch: CrowdCatch


def simulator_config(seed: int = 0, faults: bool = False) -> SimulatorConfig:
    fault = (
        FaultConfig(
            rate_limit=0.05,
            server_error=0.05,
            false_500=0.03,
            timeout=0.01,
            timeout_sleep_s=1.5,
            garble=0.01,
        )
        if faults
        else FaultConfig()
    )
    return SimulatorConfig(seed=seed, faults=fault)


def run_demo(
    output_dir: Path, *, quick: bool = False, faults: bool = False, seed: int = 0
) -> DemoResult:
    from crowdloop.flows.campaign import run_campaign

    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CROWDLOOP_DATABASE_URL", f"sqlite:///{output_dir / 'crowdloop.db'}")
    # A fresh simulator has none of an earlier demo's pools, so each demo is its own campaign.
    existing = sorted(output_dir.glob("top5-demo-*-report.json"))
    name = f"top5-demo-{len(existing) + 1}"
    # Under fault injection the client must give up on a hung call before the simulator
    # answers it, as it would against a real stalled server.
    overrides = {"connector": {"options": {"timeout_s": 1.0}}} if faults else None
    campaign_file = write_demo_inputs(
        output_dir, name, QUICK if quick else DemoSize(), seed, overrides
    )
    with SimulatorServer(simulator_config(seed, faults)) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        result = run_campaign(str(campaign_file))
        if not isinstance(result, dict) or "report" not in result:
            raise RuntimeError(f"the demo campaign {name} did not complete: {result!r}")
        truth = score_against_truth(name, sim.url)
        catch = crowd_catch(sim.url)
    return DemoResult(name, output_dir, result, truth, catch)
