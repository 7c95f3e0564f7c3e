"""Benchmark: a ~100,000-judgment preference campaign on the simulator, with and without Prefect.

    .venv/bin/python bench/bench_campaign.py              # full size (~100k judgments)
    .venv/bin/python bench/bench_campaign.py --scale 0.05 # smoke run (~5k judgments)

The parent process writes the inputs (crowdloop.demo.top5 candidates and golden pairs) and
one campaign file per variant, then runs each variant in its own child process so peak RSS
is measured per variant:

- `prefect`: `crowdloop.flows.campaign.run_campaign` inside `prefect_test_harness()` (a
  temporary local Prefect API server in a subprocess).
- `bare`: the same crowdloop.stages.* calls in the same order, in a plain Python loop with no
  flow or task runs (the connector module still imports parts of Prefect for its
  credentials block).

Each child gets a fresh SQLite database and a fresh in-process `SimulatorServer` with the same
seed, and prints one `BENCH_RESULT {json}` line the parent parses. The parent prints a table,
the ratios (prefect / bare) and one JSON line. This is a benchmark, not a test: it asserts
nothing about timings.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
VARIANTS = ("prefect", "bare")
# 12 topics x 400 prompts x 6 pairs (4 models) = 28,800 pairs, + 15 % golden -> ~33.9k items,
# x overlap 3 -> ~101.6k judgments at --scale 1.
FULL_PROMPTS_PER_TOPIC = 400
GOLDEN_SHARE = 0.15
OVERLAP = 3


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- inputs (parent) --------------------------------------------------------------------------


def prompts_per_topic(scale: float) -> int:
    return max(1, round(FULL_PROMPTS_PER_TOPIC * scale))


def write_inputs(out: Path, scale: float, seed: int) -> dict[str, Any]:
    """Candidates and golden pairs shared by both variants; returns the planned sizes."""
    from crowdloop.demo import top5
    from crowdloop.simulator import world
    from crowdloop.stages.plan import golden_count

    inputs = out / "inputs"
    topics = list(world.CATALOG)
    per_topic = prompts_per_topic(scale)
    candidates = top5.generate_candidates(topics, seed, prompts_per_topic=per_topic)
    models = len(top5.MODELS)
    pairs = len(topics) * per_topic * models * (models - 1) // 2
    golden_items = golden_count(pairs, GOLDEN_SHARE)
    # One distinct golden pair per golden item: the simulator gives a worker at most one
    # task of a group (a golden pair's id), so reusing a few pairs many times would run out
    # of eligible workers.
    golden = top5.generate_golden_pairs(topics, seed, max(1, golden_items))
    top5.write_jsonl(inputs / "candidates.jsonl", candidates)
    top5.write_jsonl(inputs / "golden-pairs.jsonl", golden)
    return {
        "topics": len(topics),
        "prompts_per_topic": per_topic,
        "prompts": len(topics) * per_topic,
        "candidates": len(candidates),
        "pairs": pairs,
        "golden_items": golden_items,
        "items": pairs + golden_items,
        "planned_judgments": (pairs + golden_items) * OVERLAP,
    }


def write_campaign(out: Path, variant: str, name: str, seed: int) -> Path:
    folder = out / variant
    folder.mkdir(parents=True, exist_ok=True)
    inputs = (out / "inputs").resolve()
    campaign = {
        "name": name,
        "connector": {"name": "simulator"},
        "batch_size": 500,
        "poll_interval_s": 0.5,
        "stage_timeout_s": 3600,
        "seed": seed,
        "output_dir": ".",
        "quality": {"min_golden": 4, "min_accuracy": 0.7, "block_confidence": 0.8},
        "preferences": {
            "candidates_file": str(inputs / "candidates.jsonl"),
            "pairing": {"design": "all"},
            "golden_file": str(inputs / "golden-pairs.jsonl"),
            "golden_share": GOLDEN_SHARE,
            "overlap": OVERLAP,
            # A fixed overlap keeps the campaign at the ~100k judgments the benchmark is
            # about; dynamic overlap (the default) would ask about 30% fewer.
            "dynamic_overlap": None,
            "min_confidence": 0.6,
            "export": {"path": "preferences.jsonl"},
        },
    }
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign, sort_keys=False), encoding="utf-8")
    return path


# --- measurements shared by both children -------------------------------------------------------


class PhaseTimer:
    """Wall time and call count per named phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            k: {"s": round(v, 3), "calls": self.calls[k]}
            for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }


def db_figures(campaign_id: str) -> dict[str, Any]:
    from sqlalchemy import func
    from sqlmodel import col, select

    from crowdloop.db import session_scope
    from crowdloop.models.tables import (
        Item,
        Judgment,
        JudgmentStatus,
        PairOutcome,
        WorkerRecord,
        WorkerStatus,
    )

    with session_scope() as s:
        judgments = s.exec(
            select(Judgment.status, Judgment.excluded, func.count())
            .where(Judgment.campaign_id == campaign_id)
            .group_by(col(Judgment.status), col(Judgment.excluded))
        ).all()
        items = s.exec(
            select(Item.state, func.count())
            .where(Item.campaign_id == campaign_id)
            .group_by(col(Item.state))
        ).all()
        pairs = s.exec(
            select(func.count())
            .select_from(PairOutcome)
            .where(PairOutcome.campaign_id == campaign_id)
        ).one()
        blocked = s.exec(
            select(func.count())
            .select_from(WorkerRecord)
            .where(
                WorkerRecord.campaign_id == campaign_id,
                WorkerRecord.status == WorkerStatus.BLOCKED,
            )
        ).one()
    valid = sum(int(n) for st, _, n in judgments if st == JudgmentStatus.VALID)
    quarantined = sum(int(n) for st, _, n in judgments if st == JudgmentStatus.QUARANTINED)
    excluded = sum(int(n) for st, ex, n in judgments if st == JudgmentStatus.VALID and ex)
    return {
        "judgments": valid + quarantined,
        "judgments_valid": valid,
        "judgments_quarantined": quarantined,
        "judgments_excluded": excluded,
        "items_by_state": {str(getattr(st, "value", st)): int(n) for st, n in items},
        "pair_outcomes": int(pairs),
        "workers_blocked": int(blocked),
    }


def sim_requests(sim_url: str) -> dict[str, int]:
    """Requests per marketplace endpoint, as the simulator counted them (/sim/* excluded)."""
    import httpx

    stats = httpx.get(f"{sim_url}/sim/stats", timeout=30).json()
    return {
        str(k): int(v)
        for k, v in sorted(stats["requests"].items())
        if " /sim/" not in str(k) and not str(k).startswith("/sim/")
    }


def peak_rss_mib(who: int) -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(resource.getrusage(who).ru_maxrss / scale, 1)


@contextlib.contextmanager
def maybe_profile(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        prof.dump_stats(str(path))
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
        (path.with_suffix(".txt")).write_text(buf.getvalue(), encoding="utf-8")
        log(f"profile written to {path} (+ .txt, top 40 by cumulative time)")


# --- the bare loop (child) --------------------------------------------------------------------


def run_bare(campaign_file: Path, timer: PhaseTimer) -> dict[str, Any]:
    """What `run_campaign` does for a preferences-only campaign, without flows or tasks."""
    from crowdloop.connectors.registry import build_connector
    from crowdloop.db import session_scope
    from crowdloop.models.domain import Stage
    from crowdloop.models.spec import load_campaign
    from crowdloop.models.tables import Campaign, CampaignStatus
    from crowdloop.stages import export, plan, preferences, preflight, report
    from crowdloop.stages.rounds import RoundOps, bare_ops, run_rounds

    stages = [Stage.COMPARE]

    with timer("register"):
        campaign_spec = load_campaign(campaign_file)
        with session_scope() as s:
            campaign_id = plan.register_campaign(s, campaign_spec).id
        with session_scope() as s:
            spec_obj = plan.load_spec(s, campaign_id)

    def connector() -> Any:
        # flows/stages.py opens a fresh connector (a new HTTP client) in every task; so do we.
        return build_connector(
            spec_obj.connector.name,
            spec_obj.connector.options,
            spec_obj.connector.credentials_block,
        )

    with timer("check_capabilities"), connector() as c:
        preflight.check_capabilities(spec_obj, c)
    prefs = spec_obj.preferences

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            with timer(name):
                return fn(*args)

        return call

    # The flows' own round loop, with plain calls instead of Prefect tasks.
    with connector() as c:
        ops = bare_ops(c)
        timed_ops = RoundOps(
            **{f.name: timed(f.name, getattr(ops, f.name)) for f in dataclasses.fields(RoundOps)}
        )
        rounds = run_rounds(
            campaign_id,
            stages,
            timed_ops,
            advance=False,
            on_round=lambda n: log(f"bare round {n} done"),
        )
    assert prefs is not None
    with timer("aggregate_preferences"):
        preferences.aggregate_preferences(campaign_id, prefs.aggregation)
    with timer("export_preferences"):
        export.export_preferences(campaign_id, prefs.export.path, prefs.min_confidence)
    with timer("record_spend"), connector() as c:
        report.record_spend(campaign_id, c)
    with timer("set_status"), session_scope() as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.status = CampaignStatus.COMPLETE
        s.add(campaign)
    with timer("campaign_report"):
        # publish-report minus the Prefect artifacts: the same report and its two files.
        report.write_report(campaign_id)
    return {
        "campaign": campaign_id,
        "rounds": rounds,
    }


# --- the Prefect variant (child) ----------------------------------------------------------------


def prefect_counts(wait_s: float = 30.0) -> dict[str, Any]:
    """Flow and task runs the API recorded; task runs arrive through events, so wait until
    the count is stable and every run is in a final state."""
    from prefect import get_client

    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    deadline = time.monotonic() + wait_s
    last = -1
    with get_client(sync_client=True) as client:
        while True:
            runs: list[Any] = []
            while True:
                page = client.read_task_runs(limit=200, offset=len(runs))
                runs += page
                if len(page) < 200:
                    break
            settled = all(str(getattr(r.state_type, "value", "")) in final for r in runs)
            if (len(runs) == last and settled) or time.monotonic() > deadline:
                break
            last = len(runs)
            time.sleep(1.0)
        flow_runs = client.count_flow_runs()
    by_task: dict[str, dict[str, float]] = {}
    for r in runs:
        name = r.name.rsplit("-", 1)[0]
        entry = by_task.setdefault(name, {"runs": 0, "s": 0.0})
        entry["runs"] += 1
        entry["s"] = round(entry["s"] + r.total_run_time.total_seconds(), 3)
    return {
        "task_runs": len(runs),
        "flow_runs": int(flow_runs),
        "task_runs_by_name": dict(sorted(by_task.items(), key=lambda kv: -kv[1]["s"])),
    }


# --- child entry point --------------------------------------------------------------------------


def child(variant: str, campaign_file: Path, profile: bool) -> dict[str, Any]:
    from crowdloop.simulator.config import SimulatorConfig
    from crowdloop.simulator.runner import SimulatorServer

    seed = int(yaml.safe_load(campaign_file.read_text(encoding="utf-8"))["seed"])
    # Relative paths in the spec (output_dir, export path) resolve against the campaign file.
    os.chdir(campaign_file.parent)
    timer = PhaseTimer()
    profile_path = campaign_file.parent / "profile.pstats" if profile else None
    figures: dict[str, Any] = {"variant": variant}
    stack = contextlib.ExitStack()
    with stack:
        if variant == "prefect":
            from prefect.testing.utilities import prefect_test_harness

            t0 = time.perf_counter()
            stack.enter_context(prefect_test_harness(server_startup_timeout=180))
            figures["prefect_api_startup_s"] = round(time.perf_counter() - t0, 2)
        sim = stack.enter_context(SimulatorServer(SimulatorConfig(seed=seed)))
        os.environ["CROWDLOOP_SIMULATOR_URL"] = sim.url
        os.environ["CROWDLOOP_SIMULATOR_TOKEN"] = sim.token
        # Import everything the run needs before the clock starts (flows, stages, pandas,
        # scipy, the connector plugin): wall time is the campaign, not module loading.
        # The flow modules are imported by the Prefect child only (RSS, module count).
        import crowdloop.stages.demonstrations  # crowd-kit (nltk, scikit-learn)
        import crowdloop.stages.export
        import crowdloop.stages.preferences  # pandas, scipy
        import crowdloop.stages.quality_check
        import crowdloop.stages.report
        import crowdloop.stages.sync
        from crowdloop.connectors.registry import get_connector_class

        get_connector_class("simulator")
        if variant == "prefect":
            import crowdloop.flows.campaign  # noqa: F401
        t0 = time.perf_counter()
        with maybe_profile(profile_path):
            if variant == "prefect":
                from crowdloop.flows.campaign import run_campaign

                result = run_campaign(str(campaign_file))
                campaign_id = str(result["campaign"])
                figures["rounds"] = result["preferences"]["rounds"]
            else:
                bare = run_bare(campaign_file, timer)
                campaign_id = bare.pop("campaign")
                figures.update(bare)
        figures["wall_s"] = round(time.perf_counter() - t0, 3)
        figures["campaign"] = campaign_id
        figures.update(db_figures(campaign_id))
        requests = sim_requests(sim.url)
        figures["http_requests"] = sum(requests.values())
        figures["http_requests_by_endpoint"] = requests
        if variant == "prefect":
            figures.update(prefect_counts())
        else:
            figures["phases"] = timer.as_dict()
        # Before the harness stops its server: the child process alone (the simulator included).
        figures["peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_SELF)
    if variant == "prefect":
        # The harness's API server subprocess has exited and been reaped by now.
        figures["prefect_server_peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)
    figures["prefect_modules_loaded"] = sum(1 for m in sys.modules if m.startswith("prefect"))
    judgments = max(1, int(figures["judgments"]))
    figures["judgments_per_s"] = round(judgments / figures["wall_s"], 1)
    figures["http_requests_per_1k_judgments"] = round(
        1000 * figures["http_requests"] / judgments, 2
    )
    return figures


# --- parent -----------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import prefect

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit + ("+dirty" if dirty not in ("", "unknown") else ""),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_child(variant: str, campaign_file: Path, db: Path, profile: bool) -> dict[str, Any]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {
        **os.environ,
        "CROWDLOOP_DATABASE_URL": f"sqlite:///{db}",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        # No telemetry heartbeat from the temporary API server (it also raced the harness's
        # fresh SQLite database at startup: "database is locked").
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--variant",
        variant,
        "--campaign-file",
        str(campaign_file),
    ]
    if profile:
        cmd.append("--profile")
    log(f"{variant}: starting child process")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    found: dict[str, Any] | None = None
    for line in proc.stdout:
        if line.startswith(RESULT_PREFIX):
            found = json.loads(line[len(RESULT_PREFIX) :])
        else:
            sys.stderr.write(line)
    code = proc.wait()
    if code != 0 or found is None:
        raise SystemExit(f"{variant} child failed (exit {code}); see its output above")
    found["child_process_s"] = round(time.perf_counter() - start, 1)
    return found


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def print_table(env: dict[str, Any], size: dict[str, Any], res: dict[str, dict[str, Any]]) -> None:
    p, b = res.get("prefect", {}), res.get("bare", {})
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("wall time (s)", lambda r: r.get("wall_s")),
        ("judgments (valid + quarantined)", lambda r: r.get("judgments")),
        ("  of which excluded (blocked workers)", lambda r: r.get("judgments_excluded")),
        ("judgments / s", lambda r: r.get("judgments_per_s")),
        ("rounds", lambda r: r.get("rounds")),
        ("Prefect flow runs", lambda r: r.get("flow_runs", 0)),
        ("Prefect task runs", lambda r: r.get("task_runs", 0)),
        ("HTTP requests to the marketplace", lambda r: r.get("http_requests")),
        ("HTTP requests / 1,000 judgments", lambda r: r.get("http_requests_per_1k_judgments")),
        ("peak RSS, bench process (MiB) *", lambda r: r.get("peak_rss_mib")),
        ("peak RSS, Prefect API server (MiB)", lambda r: r.get("prefect_server_peak_rss_mib", "-")),
        ("workers blocked", lambda r: r.get("workers_blocked")),
        ("pair outcomes", lambda r: r.get("pair_outcomes")),
    ]
    print()
    print(
        f"crowdloop campaign benchmark — commit {env['git_commit']}, {env['cpu_count']} cores "
        f"(affinity {env['cpu_affinity']}), Python {env['python']}, Prefect {env['prefect']}"
    )
    print(
        f"scale {size['scale']}: {size['prompts']} prompts x 6 pairs = {size['pairs']} pairs + "
        f"{size['golden_items']} golden = {size['items']} items x overlap {OVERLAP} "
        f"= {size['planned_judgments']} planned judgments"
    )
    print()
    print(f"{'':40} {'prefect':>12} {'bare loop':>12}")
    for label, get in rows:
        print(f"{label:40} {get(p)!s:>12} {get(b)!s:>12}")
    if p and b:
        print()
        print(f"prefect / bare wall time: {ratio(p['wall_s'], b['wall_s'])}")
        print(f"prefect / bare peak RSS : {ratio(p['peak_rss_mib'], b['peak_rss_mib'])}")
    print()
    print(
        "* peak RSS of the child process running the variant; it includes the simulated "
        "marketplace (in-process, uvicorn thread). The Prefect API server of the test harness "
        "runs in its own subprocess and is listed separately."
    )
    if p.get("prefect_api_startup_s") is not None:
        print(
            f"  Prefect test-harness API startup (not in wall time): {p['prefect_api_startup_s']} s"
        )
    if b.get("phases"):
        print()
        print("bare loop time per stage call (wait_and_sync includes poll sleep):")
        for name, ph in b["phases"].items():
            print(f"  {name:28} {ph['s']:>9.2f} s  in {ph['calls']:>3} call(s)")
    if p.get("task_runs_by_name"):
        print()
        print("Prefect task runs (total run time per task name):")
        for name, tr in p["task_runs_by_name"].items():
            print(f"  {name:28} {tr['s']:>9.2f} s  in {int(tr['runs']):>3} run(s)")
    print()


def parent(args: argparse.Namespace) -> None:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    size = {"scale": args.scale, **write_inputs(out, args.scale, args.seed)}
    log(f"inputs: {size}")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    results: dict[str, dict[str, Any]] = {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        name = f"bench-{variant}-{stamp}"
        campaign_file = write_campaign(out, variant, name, args.seed)
        results[variant] = run_child(
            variant, campaign_file, out / variant / "crowdloop.db", args.profile
        )
    print_table(env, size, results)
    summary: dict[str, Any] = {"env": env, "size": size, "results": results}
    if "prefect" in results and "bare" in results:
        p, b = results["prefect"], results["bare"]
        summary["ratios"] = {
            "wall_time_prefect_over_bare": ratio(p["wall_s"], b["wall_s"]),
            "peak_rss_prefect_over_bare": ratio(p["peak_rss_mib"], b["peak_rss_mib"]),
        }
    line = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    (out / f"results-{stamp}.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = ~100k judgments")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="prefect,bare", help="comma-separated, run in this order")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile each variant (profile.pstats/.txt)"
    )
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--campaign-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        if args.campaign_file is None:
            ap.error("--variant needs --campaign-file")
        figures = child(args.variant, args.campaign_file.resolve(), args.profile)
        print(RESULT_PREFIX + json.dumps(figures, sort_keys=True), flush=True)
        return
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    parent(args)


if __name__ == "__main__":
    main()
