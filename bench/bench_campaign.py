"""Benchmark: a preference campaign on the simulator, with and without Prefect, interleaved.

    .venv/bin/python bench/bench_campaign.py                      # ~100k judgments, 2 x 2 runs
    .venv/bin/python bench/bench_campaign.py --scale 0.05         # smoke run (~5k judgments)
    .venv/bin/python bench/bench_campaign.py --scale 10 --repeats 1   # ~10^6 judgments
    .venv/bin/python bench/bench_campaign.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test

The parent writes the inputs (crowdloop.demo.top5 candidates and golden pairs), then runs
the variants ``--repeats`` times, interleaved (prefect, bare, prefect, bare, ...; the order
flips every repetition so neither variant always runs first), each in its own child
process:

- ``prefect``: ``crowdloop.flows.campaign.run_campaign`` against the temporary Prefect API
  server that ``crowdloop run`` starts (``crowdloop.runtime.temporary_prefect_api``, a
  subprocess of the child with a fresh ``PREFECT_HOME``).
- ``bare``: the same crowdloop.stages.* calls in the same order, in a plain Python loop.
- ``bare-noquality``: ``bare`` without worker-quality estimation, to measure its share
  (issue 10: at most 20%). The campaign file cannot switch the estimation off (with
  ``blind_confidence: null`` the crowd assessment still runs; ``golden_share: 0`` buys 15%
  fewer judgments), so the loop does: each round's ``check_workers`` step only reviews the
  submissions (``review_submissions``, the marketplace's accept/reject, which a campaign
  without quality checks still does), and the report's distrust section is left empty
  (it re-reads and re-assesses the crowd when the rounds' assessment is not reused). Same
  campaign file, inputs and seed: the golden pairs are still bought and the aggregation is
  the same; what differs is that nobody is blocked, so no answer is excluded and no
  comparison is bought again for a blocked worker (a few hundred judgments at ~10^5).

Each run gets a fresh database (SQLite file, or with ``--db postgresql+psycopg://...`` a
fresh schema, dropped afterwards) and a fresh simulated marketplace with the same seed. The
marketplace runs in its own process started by the parent, so the child's CPU time and
peak RSS are crowdloop's alone.

Per run: wall time and CPU time (user + system) of the campaign, from its start to the
report written; the CPU of the child's descendants over the same span (the Prefect API
server) is read from /proc and added. Peak RSS of the child (``ru_maxrss``) and of the
Prefect server (``RUSAGE_CHILDREN`` once it is reaped). The parent prints the medians per
variant and the ratios prefect / bare of the medians, and one JSON line. Machine load falls
on both variants alike when they alternate; CPU time is what the ratio is about. This is
a benchmark, not a test: it asserts nothing about timings.
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
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "BENCH_RESULT "
VARIANTS = ("prefect", "bare", "bare-noquality")
# 12 topics x 400 prompts x 6 pairs (4 models) = 28,800 pairs, + 15 % golden -> ~33.9k items,
# x overlap 3 -> ~101.6k judgments at --scale 1 (~10^6 at --scale 10).
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


def _status_fields() -> dict[str, float]:
    """/proc/self/status's memory fields in MiB (VmRSS now, VmHWM the peak so far, RssAnon
    and RssFile the two parts of VmRSS: the heap against mapped files, mostly the shared
    libraries imports load); empty off Linux."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.startswith(("Vm", "Rss")) and rest.strip().endswith("kB"):
                    found[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return found


def _status_mib(field: str) -> float:
    """A field of /proc/self/status in MiB (VmRSS now, VmHWM the peak so far); 0 off Linux."""
    return _status_fields().get(field, 0.0)


class PhaseTimer:
    """Wall time, CPU time (this process), call count and memory per named phase: the RSS
    after the phase's last call, how far the process's peak RSS rose inside it (summed
    over calls), so a peak can be pinned on the stage that made it, and the highest RSS
    seen inside it (``sampled_peak``: VmRSS read every ``SAMPLE_S`` by a thread, so a
    stage that stays under an earlier stage's peak still shows its own; a peak shorter
    than the interval can be missed, the peak rise cannot miss it), with that sample's
    anonymous and file-backed parts (``peak_split``)."""

    SAMPLE_S = 0.05

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.rss_after: dict[str, float] = {}
        self.peak_rise: dict[str, float] = defaultdict(float)
        self.sampled_peak: dict[str, float] = defaultdict(float)
        self.peak_split: dict[str, tuple[float, float]] = {}
        self._active: list[str] = []
        self._sampler: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            now = _status_fields()
            rss = now.get("VmRSS", 0.0)
            for name in list(self._active):
                if rss > self.sampled_peak[name]:
                    self.sampled_peak[name] = rss
                    self.peak_split[name] = (now.get("RssAnon", 0.0), now.get("RssFile", 0.0))
            time.sleep(self.SAMPLE_S)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        start = time.perf_counter()
        cpu = time.process_time()
        peak = _status_mib("VmHWM")
        self.sampled_peak[name] = max(self.sampled_peak[name], _status_mib("VmRSS"))
        self._active.append(name)
        try:
            yield
        finally:
            self._active.remove(name)
            self.seconds[name] += time.perf_counter() - start
            self.cpu[name] += time.process_time() - cpu
            self.calls[name] += 1
            rise = _status_mib("VmHWM") - peak
            self.peak_rise[name] += rise
            if rise > 0:  # the kernel's high-water mark, exact where the samples missed it
                self.sampled_peak[name] = max(self.sampled_peak[name], _status_mib("VmHWM"))
            self.rss_after[name] = _status_mib("VmRSS")
            self.sampled_peak[name] = max(self.sampled_peak[name], self.rss_after[name])

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            k: {
                "s": round(v, 3),
                "cpu_s": round(self.cpu[k], 3),
                "calls": self.calls[k],
                "rss_after_mib": round(self.rss_after.get(k, 0.0), 1),
                "peak_rise_mib": round(self.peak_rise[k], 1),
                "peak_mib": round(self.sampled_peak[k], 1),
                "peak_anon_mib": round(self.peak_split.get(k, (0.0, 0.0))[0], 1),
                "peak_file_mib": round(self.peak_split.get(k, (0.0, 0.0))[1], 1),
            }
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
def maybe_memray(path: Path | None) -> Iterator[None]:
    """memray's record of every allocation over the campaign (pymalloc's arenas as whole
    arenas, blamed on the code that made each one); ``memray flamegraph --temporal`` or
    ``memray stats`` on it says what the heap held at its high-water mark, and how far
    RSS stood above it (pages freed but still resident)."""
    if path is None:
        yield
        return
    import memray  # not a dependency: `pip install memray` for this option

    path.unlink(missing_ok=True)
    with memray.Tracker(path):
        yield
    log(f"memray capture written to {path}")


@contextlib.contextmanager
def maybe_profile(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    # On the CPU clock: waits for the simulator and the disk are not what is being cut.
    prof = cProfile.Profile(time.process_time)
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


def run_bare(campaign_file: Path, timer: PhaseTimer, quality: bool = True) -> dict[str, Any]:
    """What `run_campaign` does for a preferences-only campaign, without flows or tasks;
    with ``quality`` False, without worker-quality estimation (``bare-noquality``)."""
    from crowdloop.connectors.registry import build_connector
    from crowdloop.db import session_scope
    from crowdloop.models.domain import Stage
    from crowdloop.models.spec import load_campaign
    from crowdloop.models.tables import Campaign, CampaignStatus
    from crowdloop.stages import (
        export,
        plan,
        preferences,
        preflight,
        quality_check,
        quality_report,
        report,
    )
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
        if quality:
            # The quality checks inside the check_workers step and the report's distrust
            # section timed apart ("quality:" phases, nested in their stages'), so one run
            # also gives the estimation's own CPU.
            quality_check.check_workers = timed(  # type: ignore[assignment]
                "quality: check_workers", quality_check.check_workers
            )
            quality_report.distrust_report = timed(  # type: ignore[assignment]
                "quality: distrust_report", quality_report.distrust_report
            )
        else:
            # The review alone: what check_workers_step does after the quality checks, without
            # hold_unjudged_work's wait (final=True), which would run the crowd assessment.
            ops = dataclasses.replace(
                ops,
                check_workers=lambda cid, st: quality_check.review_submissions(
                    cid, st, c, final=True
                ),
            )
            quality_report.distrust_report = lambda cid: {  # type: ignore[assignment]
                "workers": [],
                "prior_blind": None,
                "golden_items": 0,
                "retired_golden": [],
            }
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
        with timer("review_held"):  # the flow's review-held task
            quality_check.review_submissions(campaign_id, stages, c, final=True)
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


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants_cpu_s() -> float:
    """User + system CPU seconds of this process's live descendants (the Prefect API
    server and its helpers), from /proc: their rusage reaches us only once reaped."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(entry.name)) is not None:
            parent_of[int(entry.name)] = int(fields[1])
    family, total = {os.getpid()}, 0
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent_of.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    for pid in family - {os.getpid()}:
        if (fields := _proc_stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def time_prefect_tasks(timer: PhaseTimer) -> None:
    """Time the flow's task bodies as phases, named as the bare loop names its stages where
    they are the same call (``task:`` + the task's name otherwise), so the two variants'
    per-stage memory can be read side by side. The engine binds a task's parameters by
    its function's signature, which ``functools.wraps`` keeps."""
    import functools

    from prefect import Task

    import crowdloop.flows.stages as flow_stages

    same = {"check-workers": "check_workers", "wait-and-sync": "wait_and_sync",
            "push": "push", "settle-items": "settle", "publish-report": "campaign_report",
            "aggregate-preferences": "aggregate_preferences",
            "export-preferences": "export_preferences", "record-spend": "record_spend",
            "review-held": "review_held", "check-capabilities": "check_capabilities"}  # fmt: skip
    for value in vars(flow_stages).values():
        if isinstance(value, Task):
            name = same.get(value.name, f"task: {value.name}")

            def call(*args: Any, __fn: Any = value.fn, __name: str = name, **kwargs: Any) -> Any:
                with timer(__name):
                    return __fn(*args, **kwargs)

            value.fn = functools.wraps(value.fn)(call)

    # The flow registers its campaign in its own body, not in a task.
    import crowdloop.flows.campaign as flow_campaign

    register = flow_campaign.register

    def timed_register(*args: Any, **kwargs: Any) -> str:
        with timer("register"):
            return register(*args, **kwargs)

    flow_campaign.register = timed_register


def child(variant: str, campaign_file: Path, profile: bool, memray: bool) -> dict[str, Any]:
    seed = int(yaml.safe_load(campaign_file.read_text(encoding="utf-8"))["seed"])
    # Relative paths in the spec (output_dir, export path) resolve against the campaign file.
    os.chdir(campaign_file.parent)
    timer = PhaseTimer()
    profile_path = campaign_file.parent / "profile.pstats" if profile else None
    figures: dict[str, Any] = {"variant": variant, "seed": seed}
    stack = contextlib.ExitStack()
    with stack:
        if variant == "prefect":
            from crowdloop.runtime import temporary_prefect_api

            t0 = time.perf_counter()
            stack.enter_context(temporary_prefect_api())
            figures["prefect_api_startup_s"] = round(time.perf_counter() - t0, 2)
        sim_url = os.environ["CROWDLOOP_SIMULATOR_URL"]  # the parent's marketplace process
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

            time_prefect_tasks(timer)
        server_cpu0 = descendants_cpu_s()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        memray_path = campaign_file.parent / "memray.bin" if memray else None
        with maybe_profile(profile_path), maybe_memray(memray_path):
            if variant == "prefect":
                from crowdloop.flows.campaign import run_campaign

                result = run_campaign(str(campaign_file))
                campaign_id = str(result["campaign"])
                figures["rounds"] = result["preferences"]["rounds"]
            else:
                bare = run_bare(campaign_file, timer, quality=variant != "bare-noquality")
                campaign_id = bare.pop("campaign")
                figures.update(bare)
        figures["wall_s"] = round(time.perf_counter() - t0, 3)
        figures["cpu_self_s"] = round(time.process_time() - cpu0, 3)
        figures["cpu_server_s"] = round(descendants_cpu_s() - server_cpu0, 3)
        figures["cpu_s"] = round(figures["cpu_self_s"] + figures["cpu_server_s"], 3)
        figures["campaign"] = campaign_id
        figures.update(db_figures(campaign_id))
        requests = sim_requests(sim_url)
        figures["http_requests"] = sum(requests.values())
        figures["http_requests_by_endpoint"] = requests
        figures["phases"] = timer.as_dict()
        if variant == "prefect":
            figures.update(prefect_counts())
        else:
            if variant == "bare":
                # The quality checks' and the distrust section's own CPU (see run_bare).
                quality_cpu = sum(v for k, v in timer.cpu.items() if k.startswith("quality:"))
                figures["cpu_quality_s"] = round(quality_cpu, 3)
                figures["quality_share"] = round(
                    quality_cpu / max(figures["cpu_s"] - quality_cpu, 1e-9), 4
                )
        # Before the API server stops: this process alone.
        figures["peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_SELF)
    if variant == "prefect":
        # The API server subprocess has exited and been reaped by now.
        figures["prefect_server_peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)
    figures["prefect_modules_loaded"] = sum(1 for m in sys.modules if m.startswith("prefect"))
    judgments = max(1, int(figures["judgments"]))
    figures["judgments_per_s"] = round(judgments / figures["wall_s"], 1)
    figures["cpu_ms_per_judgment"] = round(1000 * figures["cpu_s"] / judgments, 3)
    figures["http_requests_per_1k_judgments"] = round(
        1000 * figures["http_requests"] / judgments, 2
    )
    return figures


def serve_simulator(seed: int) -> None:
    """Simulator mode: run the marketplace until stdin closes (the parent's signal)."""
    from crowdloop.simulator.config import SimulatorConfig
    from crowdloop.simulator.runner import SimulatorServer

    with SimulatorServer(SimulatorConfig(seed=seed)) as sim:
        print(f"SIMULATOR {sim.url} {sim.token}", flush=True)
        sys.stdin.read()


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
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def simulator_process(seed: int) -> Iterator[tuple[str, str]]:
    """A fresh marketplace in its own process; yields (url, token)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-simulator", str(seed)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline().split()
        if len(line) != 3 or line[0] != "SIMULATOR":
            raise SystemExit(f"the simulator did not start: {line}")
        yield line[1], line[2]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def fresh_database(db: str, folder: Path, tag: str) -> Iterator[str]:
    """A SQLite file in ``folder``, or a new schema of the PostgreSQL database ``db``
    (dropped afterwards); yields the URL the child uses."""
    if db == "sqlite":
        path = folder / "crowdloop.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{tag}"
    engine = create_engine(db)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in db else "?"
    try:
        yield f"{db}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def run_child(
    variant: str,
    campaign_file: Path,
    db_url: str,
    sim: tuple[str, str],
    profile: bool,
    memray: bool = False,
) -> dict[str, Any]:
    home = campaign_file.parent / "prefect-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        **os.environ,
        "CROWDLOOP_DATABASE_URL": db_url,
        "CROWDLOOP_SIMULATOR_URL": sim[0],
        "CROWDLOOP_SIMULATOR_TOKEN": sim[1],
        # A fresh Prefect home per run: the temporary API server's own database starts empty.
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
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
    if memray:
        cmd.append("--memray")
    log(f"{variant}: starting child process")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    found: dict[str, Any] | None = None
    for line in proc.stdout:
        if line.startswith(RESULT_PREFIX):
            found = json.loads(line[len(RESULT_PREFIX) :])
        else:
            sys.stderr.write(line)
    code = proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0 or found is None:
        raise SystemExit(f"{variant} child failed (exit {code}); see its output above")
    found["child_process_s"] = round(time.perf_counter() - start, 1)
    # The whole child with its reaped descendants: imports, server start-up and all.
    found["cpu_process_tree_s"] = round(
        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2
    )
    log(
        f"{variant}: wall {found['wall_s']} s, CPU {found['cpu_s']} s "
        f"(server {found['cpu_server_s']} s), peak RSS {found['peak_rss_mib']} MiB, "
        f"{found['judgments']} judgments"
    )
    return found


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


MEDIAN_KEYS = (
    "wall_s",
    "cpu_s",
    "cpu_self_s",
    "cpu_server_s",
    "cpu_process_tree_s",
    "cpu_ms_per_judgment",
    "judgments",
    "peak_rss_mib",
    "prefect_server_peak_rss_mib",
    "http_requests_per_1k_judgments",
    "cpu_quality_s",
    "quality_share",
)


def print_table(
    env: dict[str, Any], size: dict[str, Any], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, float | None]]:
    medians = {v: {k: median_of(rs, k) for k in MEDIAN_KEYS} for v, rs in runs.items()}
    p, b = medians.get("prefect", {}), medians.get("bare", {})
    rows: list[tuple[str, str]] = [
        ("wall time (s)", "wall_s"),
        ("CPU time, campaign + API server (s)", "cpu_s"),
        ("  of which the Prefect API server (s)", "cpu_server_s"),
        ("CPU time, whole child process tree (s)", "cpu_process_tree_s"),
        ("CPU ms per judgment", "cpu_ms_per_judgment"),
        ("judgments (valid + quarantined)", "judgments"),
        ("peak RSS, crowdloop process (MiB)", "peak_rss_mib"),
        ("peak RSS, Prefect API server (MiB)", "prefect_server_peak_rss_mib"),
        ("HTTP requests / 1,000 judgments", "http_requests_per_1k_judgments"),
    ]
    repeats = max((len(rs) for rs in runs.values()), default=0)
    print()
    print(
        f"crowdloop campaign benchmark — commit {env['git_commit']}, {env['cpu_count']} cores "
        f"(affinity {env['cpu_affinity']}), load average at start {env['load_average']}, "
        f"Python {env['python']}, Prefect {env['prefect']}, database {env['database']}"
    )
    print(
        f"scale {size['scale']}: {size['prompts']} prompts x 6 pairs = {size['pairs']} pairs + "
        f"{size['golden_items']} golden = {size['items']} items x overlap {OVERLAP} "
        f"= {size['planned_judgments']} planned judgments; {repeats} run(s) per variant, "
        "interleaved"
    )
    print()
    print(f"{'median over runs':42} {'prefect':>12} {'bare loop':>12} {'ratio':>8}")
    for label, key in rows:
        print(
            f"{label:42} {p.get(key)!s:>12} {b.get(key)!s:>12} {ratio(p.get(key), b.get(key))!s:>8}"
        )
    print()
    for variant, rs in runs.items():
        cells = ", ".join(f"{r['cpu_s']} s CPU / {r['wall_s']} s wall" for r in rs)
        print(f"{variant} runs in order: {cells}")
    q = medians.get("bare-noquality")
    if q is not None and b:
        print()
        print(f"{'median over runs':42} {'bare loop':>12} {'no quality':>12} {'ratio':>8}")
        for label, key in rows:
            if key in ("cpu_server_s", "prefect_server_peak_rss_mib"):
                continue
            print(
                f"{label:42} {b.get(key)!s:>12} {q.get(key)!s:>12} "
                f"{ratio(b.get(key), q.get(key))!s:>8}"
            )
        print(
            "worker-quality estimation in the bare loop's own phases (quality checks + the "
            f"report's distrust section): {b.get('cpu_quality_s')} s CPU, "
            f"+{100 * (b.get('quality_share') or 0.0):.1f}% on the rest of the campaign"
        )
        campaign = ratio(b.get("cpu_s"), q.get("cpu_s")) or 1.0
        per_judgment = ratio(b.get("cpu_ms_per_judgment"), q.get("cpu_ms_per_judgment")) or 1.0
        print(
            "worker-quality estimation's share against the no-quality loop: CPU "
            f"+{100 * (campaign - 1):.1f}% (campaign, with the answers bought again for "
            f"blocked workers), +{100 * (per_judgment - 1):.1f}% per judgment"
        )
    for variant in ("bare", "bare-noquality"):
        phases = [r["phases"] for r in runs.get(variant, []) if r.get("phases")]
        if not phases:
            continue
        print()
        print(f"{variant} per stage call, last run (wall includes wait_and_sync's poll sleep):")
        for name, ph in phases[-1].items():
            print(
                f"  {name:28} {ph['s']:>9.2f} s wall {ph.get('cpu_s', 0.0):>9.2f} s CPU"
                f"  in {ph['calls']:>3} call(s); RSS after {ph.get('rss_after_mib', 0.0):>7.1f}"
                f" MiB, peak rose {ph.get('peak_rise_mib', 0.0):>6.1f} MiB"
                f" (peak inside {ph.get('peak_mib', 0.0):>6.1f} MiB)"
            )
    print()
    return medians


def parent(args: argparse.Namespace) -> None:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    env["database"] = "sqlite" if args.db == "sqlite" else args.db.split("://", 1)[0]
    size = {"scale": args.scale, **write_inputs(out, args.scale, args.seed)}
    log(f"inputs: {size}")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    variants = args.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        # A B, then B A: neither variant always runs first.
        order = variants if repeat % 2 == 0 else variants[::-1]
        for variant in order:
            name = f"bench-{variant}-{stamp}-{repeat}"
            campaign_file = write_campaign(out, variant, name, args.seed)
            tag = f"{stamp}_{variant}_{repeat}"
            with (
                simulator_process(args.seed) as sim,
                fresh_database(args.db, campaign_file.parent, tag) as db_url,
            ):
                runs[variant].append(
                    run_child(variant, campaign_file, db_url, sim, args.profile, args.memray)
                )
    medians = print_table(env, size, runs)
    summary: dict[str, Any] = {"env": env, "size": size, "medians": medians, "runs": runs}
    if "prefect" in medians and "bare" in medians:
        p, b = medians["prefect"], medians["bare"]
        summary["ratios"] = {
            f"{key}_prefect_over_bare": ratio(p[key], b[key])
            for key in ("cpu_s", "wall_s", "peak_rss_mib")
        }
    if "bare-noquality" in medians and "bare" in medians:
        b, q = medians["bare"], medians["bare-noquality"]
        summary.setdefault("ratios", {}).update(
            {
                f"{key}_bare_over_noquality": ratio(b[key], q[key])
                for key in ("cpu_s", "cpu_ms_per_judgment", "wall_s", "peak_rss_mib")
            }
        )
    line = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    (out / f"results-{stamp}.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(line)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = ~100k judgments")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="prefect,bare", help="comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved")
    ap.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (a fresh file per run) or a PostgreSQL URL (a fresh schema per run)",
    )
    ap.add_argument("--serve-simulator", type=int, help=argparse.SUPPRESS)  # simulator mode
    ap.add_argument(
        "--profile", action="store_true", help="cProfile each variant (profile.pstats/.txt)"
    )
    ap.add_argument(
        "--memray",
        action="store_true",
        help="record each run's allocations with memray (memray.bin; pip install memray)",
    )
    ap.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--campaign-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_simulator is not None:
        serve_simulator(args.serve_simulator)
        return
    if args.variant:
        if args.campaign_file is None:
            ap.error("--variant needs --campaign-file")
        figures = child(args.variant, args.campaign_file.resolve(), args.profile, args.memray)
        print(RESULT_PREFIX + json.dumps(figures, sort_keys=True), flush=True)
        return
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    parent(args)


if __name__ == "__main__":
    main()
