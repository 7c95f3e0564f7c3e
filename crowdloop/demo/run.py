"""`crowdloop demo`: a complete RLHF data round on the built-in simulated marketplace.

It writes the demo's inputs (candidate model answers, golden pairs, golden verification
items) and a campaign file into the output folder, starts the simulator on loopback, runs
the `run-campaign` flow, and scores the result against the simulator's hidden truth.
"""

from __future__ import annotations

import contextlib
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
from crowdloop.simulator import world
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
    topics = list(world.CATALOG)[: size.topics]
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
            "aggregation": "weighted_vote",
            # Checked before any verifier is paid: a request of a few words at least; a
            # numbered list of five lines; no copy of an earlier text.
            "checks": {
                "prompt": {"min_chars": 12, "min_words": 4, "max_chars": 400},
                "response": {"min_lines": 5, "pattern": r"^\s*1[.)]", "max_chars": 2000},
                "near_duplicate": 0.7,
            },
            "export": {"path": "sft.jsonl", "min_confidence": 0.7, "blocked_authors": "reverify"},
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


def simulator_config(seed: int = 0, faults: bool = False, id_prefix: str = "") -> SimulatorConfig:
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
    return SimulatorConfig(seed=seed, faults=fault, id_prefix=id_prefix)


DEMO_PREFIX = "top5-demo-"


@dataclass
class DemoPlan:
    """What `crowdloop demo` is about to do in its folder."""

    name: str
    campaign_file: Path
    output_dir: Path
    database: Path
    # Earlier rounds in this folder that never finished (interrupted or failed): their
    # simulated marketplace lived in the process that ran them and is gone, so they cannot
    # resume; each is closed as cancelled and the demo runs a new round.
    unfinished: list[str] = field(default_factory=list)

    def announcement(self) -> str:
        if not self.unfinished:
            return f"round {self.name} (new)"
        return (
            f"round {self.name} (new): the earlier round {', '.join(self.unfinished)} did not "
            "finish and its simulated marketplace is gone with the process that ran it, so it "
            "is closed as cancelled (its data stays in the database)"
        )


def _rounds_in(database: Path) -> dict[str, str]:
    """Demo campaigns already in the folder's database, with their status (read-only)."""
    import sqlite3

    if not database.is_file():
        return {}
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT id, status FROM campaign WHERE id LIKE ?", (DEMO_PREFIX + "%",)
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        con.close()
    return {str(i): str(st).lower() for i, st in rows}


def _round_number(name: str) -> int:
    tail = name.removeprefix(DEMO_PREFIX)
    return int(tail) if tail.isdigit() else 0


class DemoBusy(RuntimeError):
    """Another live process is running a round in this folder."""


def plan_demo(
    output_dir: Path, *, quick: bool = False, faults: bool = False, seed: int = 0
) -> DemoPlan:
    """Write the demo's inputs for its next round; nothing runs yet."""
    output_dir = output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    database = output_dir / "crowdloop.db"
    os.environ.setdefault("CROWDLOOP_DATABASE_URL", f"sqlite:///{database}")
    rounds = _rounds_in(database)
    # A fresh simulator has none of an earlier demo's pools, so each demo is its own campaign.
    reports = [p.name for p in output_dir.glob(f"{DEMO_PREFIX}*-report.json")]
    last = max(
        [_round_number(n) for n in rounds]
        + [_round_number(n.removesuffix("-report.json")) for n in reports],
        default=0,
    )
    name = f"{DEMO_PREFIX}{last + 1}"
    unfinished = sorted(
        (n for n, st in rounds.items() if st not in ("complete", "cancelled")), key=_round_number
    )
    if unfinished:
        from crowdloop.stages import lease

        for round_name in unfinished:
            holder = lease.current(round_name)
            if holder is not None:
                raise DemoBusy(
                    f"round {round_name} in {output_dir} is running now "
                    f"({holder.description or holder.holder}); wait for it to finish or stop "
                    "it, or give this demo another --output folder"
                )
    # Under fault injection the client must give up on a hung call before the simulator
    # answers it, as it would against a real stalled server.
    overrides = {"connector": {"options": {"timeout_s": 1.0}}} if faults else None
    campaign_file = write_demo_inputs(
        output_dir, name, QUICK if quick else DemoSize(), seed, overrides
    )
    return DemoPlan(name, campaign_file, output_dir, database, unfinished)


def close_unfinished(plan: DemoPlan) -> None:
    """Record the earlier unfinished rounds as cancelled (their marketplace is gone)."""
    from crowdloop.models.tables import CampaignStatus
    from crowdloop.stages import lifecycle

    for name in plan.unfinished:
        with contextlib.suppress(lifecycle.IllegalTransition, lifecycle.UnknownCampaign):
            lifecycle.transition(
                name,
                CampaignStatus.CANCELLED,
                reason="the demo round was interrupted; its simulated marketplace is gone",
                actor=lifecycle.actor_cli(),
            )


def run_demo_plan(plan: DemoPlan, *, faults: bool = False, seed: int = 0) -> DemoResult:
    from crowdloop.flows.campaign import run_campaign

    close_unfinished(plan)
    # Each round has its own simulator in the folder's one database: distinct ids.
    with SimulatorServer(simulator_config(seed, faults, id_prefix=f"{plan.name}.")) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        result = run_campaign(str(plan.campaign_file))
        if not isinstance(result, dict) or "report" not in result:
            raise RuntimeError(f"the demo campaign {plan.name} did not complete: {result!r}")
        truth = score_against_truth(plan.name, sim.url)
        catch = crowd_catch(sim.url)
    return DemoResult(plan.name, plan.output_dir, result, truth, catch)


def run_demo(
    output_dir: Path, *, quick: bool = False, faults: bool = False, seed: int = 0
) -> DemoResult:
    plan = plan_demo(output_dir, quick=quick, faults=faults, seed=seed)
    return run_demo_plan(plan, faults=faults, seed=seed)
