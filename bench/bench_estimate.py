"""Benchmark: does the cost estimate bracket what the campaign really cost?

Runs, on the simulator and without Prefect (`crowdloop.stages.rounds.bare_ops`):

- the demo campaign (`crowdloop demo`: demonstrations + preferences, default size);
- the campaigns of bench/bench_quality.py (every method, every crowd, `--seeds` seeds).

For each it prints the estimate made before anything was created (expected and worst
case, `crowdloop.stages.estimate`) beside the actual cost (what the simulated marketplace
charged, `record_spend`) and checks the issue's criterion: expected within 15% of actual,
worst case never below it. Each campaign runs with a budget whose cap is its own worst
case, so every push goes through the reservation gate as in production.

The only crowd-specific input is the number of workers who can take an exam
(`budget.assume.exam_takers` = the simulated crowd's size); every other assumption is the
spec default.

    .venv/bin/python bench/bench_estimate.py               # 1 seed, demo + 2 crowds x 4 methods
    .venv/bin/python bench/bench_estimate.py --seeds 0 1 2
    .venv/bin/python bench/bench_estimate.py --only demo
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import col, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import CONFIGS, CROWDS, SIZE

from crowdloop.db import session_scope
from crowdloop.demo.run import DemoSize, write_demo_inputs
from crowdloop.models.spec import load_campaign
from crowdloop.models.tables import Batch, SpendRecord
from crowdloop.simulator.config import CrowdConfig, SimulatorConfig
from crowdloop.simulator.runner import SimulatorServer
from crowdloop.stages.budget import budget_status
from crowdloop.stages.estimate import estimate_spec
from crowdloop.stages.rounds import run_bare

TOLERANCE = 0.15


def crowd_size(crowd: CrowdConfig) -> int:
    return crowd.honest + crowd.noisy + crowd.spammer + crowd.left_bias


def with_budget(path: Path, crowd: CrowdConfig) -> None:
    """Give the campaign file a budget capped at its own worst case (the gate runs)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["budget"] = {"cap": 1_000_000, "assume": {"exam_takers": crowd_size(crowd)}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    worst = estimate_spec(load_campaign(path)).worst
    data["budget"]["cap"] = str(worst.quantize(worst.__class__("0.01")))
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def run_campaign_bare(path: Path, crowd: CrowdConfig, seed: int) -> dict[str, Any]:
    """Register and run a campaign file on a fresh simulator; estimate first, then spend."""
    spec = load_campaign(path)
    est = estimate_spec(spec)  # before anything is created
    started = time.perf_counter()
    with SimulatorServer(SimulatorConfig(seed=seed, crowd=crowd)) as sim:
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        actual = run_bare(spec)
        status = budget_status(spec.name)
        with session_scope() as s:
            by_stage = {
                stage: float(amount)
                for stage, amount in s.exec(
                    select(Batch.stage, SpendRecord.amount).join(
                        SpendRecord, col(SpendRecord.batch_id) == col(Batch.id)
                    )
                ).all()
            }
    estimated = {}
    for line in est.lines:
        estimated[line.stage] = estimated.get(line.stage, 0.0) + float(line.expected)
    return {
        "expected": float(est.expected),
        "worst": float(est.worst),
        "actual": float(actual),
        "committed_max_ok": bool(status.cap is None or status.committed <= status.cap),
        "cap": float(status.cap) if status.cap is not None else None,
        "seconds": round(time.perf_counter() - started, 1),
        "actual_by_stage": by_stage,
        "expected_by_stage": {k: round(v, 2) for k, v in estimated.items()},
    }


def demo_case(root: Path, seed: int, size: DemoSize) -> dict[str, Any]:
    folder = root / f"demo-{seed}"
    folder.mkdir(parents=True)
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    path = write_demo_inputs(folder, f"demo-{seed}", size, seed, {"poll_interval_s": 0.05})
    crowd = CrowdConfig()
    with_budget(path, crowd)
    return run_campaign_bare(path, crowd, seed)


def quality_case(
    root: Path,
    crowd: CrowdConfig,
    seed: int,
    prefs: dict[str, Any],
    quality: dict[str, Any],
    name: str,
) -> dict[str, Any]:
    folder = root / name
    folder.mkdir(parents=True)
    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    overrides: dict[str, Any] = {
        "demonstrations": None,
        "retraining": None,
        "poll_interval_s": 0.05,
        "preferences": {**prefs, "golden_file": "golden-pairs.jsonl"},
    }
    if quality:
        overrides["quality"] = quality
    path = write_demo_inputs(folder, name, SIZE, seed, overrides)
    with_budget(path, crowd)
    return run_campaign_bare(path, crowd, seed)


def verdict(r: dict[str, Any]) -> str:
    off = (r["expected"] - r["actual"]) / r["actual"] if r["actual"] else 0.0
    r["expected_off"] = off
    ok = abs(off) <= TOLERANCE and r["worst"] >= r["actual"] and r["committed_max_ok"]
    r["ok"] = ok
    return "ok" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", choices=["demo", "quality"], default=None)
    parser.add_argument("--quick-demo", action="store_true", help="the demo at --quick size")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-estimate-") as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            if args.only in (None, "demo"):
                from crowdloop.demo.run import QUICK

                size = QUICK if args.quick_demo else DemoSize()
                r = demo_case(root, seed, size)
                rows.append({"campaign": "demo", "crowd": "default", "seed": seed, **r})
                print(f"demo seed {seed}: {r} {verdict(rows[-1])}", flush=True)
            if args.only in (None, "quality"):
                # The two crowds the estimate was measured on (bench_quality has more).
                for crowd_name, crowd in (CROWDS["typical"], CROWDS["spammy"]):
                    for key, (_, prefs, quality) in CONFIGS.items():
                        name = f"{key}-{len(rows)}"
                        r = quality_case(root, crowd, seed, prefs, quality, name)
                        rows.append(
                            {"campaign": key, "crowd": crowd_name.split(" ")[0], "seed": seed, **r}
                        )
                        print(
                            f"{crowd_name} {key} seed {seed}: {r} {verdict(rows[-1])}", flush=True
                        )
    print()
    print("| campaign | crowd | seed | expected | actual | worst case | expected vs actual | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['campaign']} | {r['crowd']} | {r['seed']} | {r['expected']:.2f} "
            f"| {r['actual']:.2f} | {r['worst']:.2f} | {r['expected_off']:+.1%} "
            f"| {'yes' if r['ok'] else '**no**'} |"
        )
    print()
    print(json.dumps(rows))
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
