"""Benchmark: several Prefect process workers running campaigns at once on one PostgreSQL.

    .venv/bin/python bench/bench_workers.py                        # 4 campaigns x 144 pairs
    .venv/bin/python bench/bench_workers.py --prompts-per-topic 2  # smoke run (the test's size)
    .venv/bin/python bench/bench_workers.py --campaigns 8 --workers 2 --limit 5

The stack of `tests/live/test_workers_pg.py` (`tests/live/workers.py`): a Prefect server on
a fresh PostgreSQL database, `crowdloop simulator serve`, the `campaign` and `sync`
deployments with a fresh crowdloop PostgreSQL database, `--workers` process workers of at
most `--limit` runs each. It runs `--campaigns` preference campaigns at once, with the
sync deployment back to back beside them (the marketplace's clock stands still until a
sync has met every campaign mid-run), then checks what the test checks (every campaign
complete, the marketplace holds exactly the tasks recorded, every submitted answer stored
once) and prints:

- per stage, from the Prefect API's task runs: runs, their summed run time, and the
  throughput per second of that time (tasks published per second of `push`, judgments
  stored per second of `wait-and-sync` once the marketplace's clock moves; that includes
  polling the marketplace and waiting for the crowd);
- for the whole system: tasks published and judgments stored per second of wall time over
  the span the database recorded them in (push ledger rows; judgments' `received_at`);
- the CPU seconds of every process: the Prefect server, the simulator, each worker and the
  flow runs it started, and the PostgreSQL backends serving each of the two databases,
  sampled from /proc every 0.5 s (a process that ends loses at most its last half second).

It needs the test extra, PostgreSQL on 127.0.0.1:5432 (trust, user postgres) and runs
from the repository root. It asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_campaign import _proc_stat, environment  # noqa: E402

from tests.live.conftest import Service  # noqa: E402
from tests.live.workers import (  # noqa: E402
    Size,
    WorkersStack,
    ledger_of,
    run_concurrently,
    workers_stack,
    write_campaigns,
)

TICK = os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """CPU seconds per process, by role: each service's process and its descendants, and
    the PostgreSQL backends of the two databases (by pg_stat_activity)."""

    def __init__(self, services: dict[str, Service], databases: dict[str, str]) -> None:
        self.services = services
        self.databases = databases  # role -> database name
        self.last: dict[int, tuple[str, float]] = {}  # pid -> (role, CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def _backends(self) -> dict[int, str]:
        import psycopg

        from tests.conftest import PG_ADMIN

        with psycopg.connect(PG_ADMIN) as conn:
            rows = conn.execute("SELECT pid, datname FROM pg_stat_activity").fetchall()
        by_name = {name: role for role, name in self.databases.items()}
        return {int(pid): by_name[db] for pid, db in rows if db in by_name}

    def sample(self) -> None:
        parent_of: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := _proc_stat(entry.name)) is not None:
                parent_of[int(entry.name)] = int(fields[1])
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
        roles: dict[int, str] = {}
        for role, service in self.services.items():
            roles[service.proc.pid] = role
        for pid in cpu:
            chain, up = [], pid
            while up in parent_of and up not in roles and up > 1:
                chain.append(up)
                up = parent_of[up]
            if up in roles:
                # A worker's children are its flow runs; a server's, its helpers.
                role = roles[up] if not chain else f"{roles[up]}: children"
                for p in chain:
                    roles[p] = role
        roles.update(self._backends())
        for pid, role in roles.items():
            if pid in cpu:
                self.last[pid] = (role, cpu[pid])

    def by_role(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(lambda: {"processes": 0, "cpu_s": 0.0})
        for role, seconds in self.last.values():
            out[role]["processes"] += 1
            out[role]["cpu_s"] = round(out[role]["cpu_s"] + seconds, 2)
        return dict(sorted(out.items()))


def task_runs(stack: WorkersStack, since: datetime | None) -> dict[str, dict[str, float]]:
    """Task runs of every flow run, by task name: how many, their summed run time, and the
    part of it after `since` (the marketplace's clock started: before, a wait-and-sync
    waits for a clock that stands still)."""
    runs: list[Any] = []
    with stack.live.client() as c:
        while page := c.read_task_runs(limit=200, offset=len(runs)):
            runs += page
    out: dict[str, dict[str, float]] = defaultdict(
        lambda: {"runs": 0, "s": 0.0, "s_clock_moving": 0.0}
    )
    for r in runs:
        name = r.name.rsplit("-", 1)[0]
        out[name]["runs"] += 1
        out[name]["s"] = round(out[name]["s"] + r.total_run_time.total_seconds(), 3)
        if r.start_time and r.end_time:
            start = max(r.start_time, since) if since else r.start_time
            moving = max(0.0, (r.end_time - start).total_seconds())
            out[name]["s_clock_moving"] = round(out[name]["s_clock_moving"] + moving, 3)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["s"]))


def spans(stack: WorkersStack) -> dict[str, Any]:
    """Totals over every campaign, and the wall-time spans the database recorded them in."""
    from sqlalchemy import func
    from sqlmodel import select

    from crowdloop.db import session_scope
    from crowdloop.models.tables import Judgment, PushLedger, TaskRecord

    with session_scope(stack.db_url) as s:
        tasks = int(s.exec(select(func.count()).select_from(TaskRecord)).one())
        pushed = s.exec(
            select(func.min(PushLedger.created_at), func.max(PushLedger.updated_at)).where(
                PushLedger.action == "add_items"
            )
        ).one()
        judged = s.exec(
            select(func.count(), func.min(Judgment.received_at), func.max(Judgment.received_at))
        ).one()

    def seconds(first: datetime | None, last: datetime | None) -> float | None:
        return (last - first).total_seconds() if first and last else None

    return {
        "tasks_published": tasks,
        "push_span_s": seconds(*pushed),
        "judgments": int(judged[0]),
        "judgment_span_s": seconds(judged[1], judged[2]),
    }


def per_s(n: float, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--campaigns", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=3, help="runs at a time per worker")
    ap.add_argument("--topics", type=int, default=4)
    ap.add_argument("--prompts-per-topic", type=int, default=6)
    ap.add_argument("--fixed-overlap", action="store_true", help="overlap 3, no dynamic overlap")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = ap.parse_args(argv)
    size = Size(
        campaigns=args.campaigns,
        topics=args.topics,
        prompts_per_topic=args.prompts_per_topic,
        dynamic_overlap=not args.fixed_overlap,
    )
    env = environment()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        base = Path(tmp)
        files = write_campaigns(base / "campaigns", size)
        t0 = time.monotonic()
        with workers_stack(base, workers=args.workers, limit=args.limit) as stack:
            setup_s = time.monotonic() - t0
            services = {s.name: s for s in stack.live.services}
            databases = {
                "postgres: crowdloop database": stack.db_url.rsplit("/", 1)[1],
                "postgres: Prefect database": stack.prefect_db_url.rsplit("/", 1)[1],
            }
            with CpuSampler(services, databases) as cpu:
                outcome = run_concurrently(stack, files, args.timeout)
            runs = outcome.campaign_runs
            failed = {n: str(r.state) for n, r in runs.items() if not r.state.is_completed()}
            ledgers = {path.parent.name: ledger_of(stack, path.parent.name) for path in files}
            lost_or_twice = {
                n: (lg.pool_tasks, lg.task_records, lg.pool_submitted, lg.judgments)
                for n, lg in ledgers.items()
                if lg.pool_tasks != lg.task_records
                or lg.pool_submitted != lg.judgments
                or lg.duplicate_judgments
                or lg.open_intents
            }
            stages = task_runs(stack, outcome.clock_started_at)
            totals = spans(stack)
    push_s = stages.get("push", {}).get("s")
    sync_s = stages.get("wait-and-sync", {}).get("s_clock_moving")
    figures = {
        "env": env,
        "size": {**size.__dict__, "workers": args.workers, "limit": args.limit},
        "setup_s": round(setup_s, 1),
        "wall_s": round(outcome.wall_s, 1),
        "clock_started_s": round(outcome.clock_started_s, 1),
        "sync_runs": len(outcome.sync_runs),
        "failed_campaigns": failed,
        "lost_or_duplicated": lost_or_twice,
        "totals": totals,
        "stages": stages,
        "tasks_per_push_s": per_s(totals["tasks_published"], push_s),
        "judgments_per_sync_s": per_s(totals["judgments"], sync_s),
        "tasks_per_wall_s": per_s(totals["tasks_published"], totals["push_span_s"]),
        "judgments_per_wall_s": per_s(totals["judgments"], totals["judgment_span_s"]),
        "cpu": cpu.by_role(),
    }
    print_figures(figures)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def print_figures(f: dict[str, Any]) -> None:
    env, size, totals = f["env"], f["size"], f["totals"]
    print()
    print(
        f"crowdloop workers benchmark — commit {env['git_commit']}, {env['cpu_count']} cores, "
        f"load average at start {env['load_average']}, Prefect {env['prefect']}"
    )
    print(
        f"{size['campaigns']} campaigns x {size['topics'] * size['prompts_per_topic'] * 6} pairs "
        f"(+{size['golden_share']:.0%} golden, dynamic overlap {size['dynamic_overlap']}) on "
        f"{size['workers']} workers (<= {size['limit']} runs each), one PostgreSQL"
    )
    print(
        f"stack up in {f['setup_s']} s; campaigns done in {f['wall_s']} s (clock moving from "
        f"{f['clock_started_s']} s, after a sync met every campaign); {f['sync_runs']} sync runs"
    )
    print(f"failed campaigns: {f['failed_campaigns'] or 'none'}; "
          f"lost or duplicated work: {f['lost_or_duplicated'] or 'none'}")  # fmt: skip
    print()
    print(f"{'stage (Prefect task runs, all campaigns)':42} {'runs':>6} {'run time s':>11} "
          f"{'of which clock moving':>22}")  # fmt: skip
    for name, st in f["stages"].items():
        print(f"{name:42} {int(st['runs']):>6} {st['s']:>11.1f} {st['s_clock_moving']:>22.1f}")
    print()
    print(
        f"pushed: {totals['tasks_published']} tasks, {f['tasks_per_push_s']}/s of push time, "
        f"{f['tasks_per_wall_s']}/s of wall time over {totals['push_span_s']} s"
    )
    print(
        f"synced: {totals['judgments']} judgments, {f['judgments_per_sync_s']}/s of "
        f"wait-and-sync time with the clock moving, {f['judgments_per_wall_s']}/s of wall "
        "time over "
        f"{totals['judgment_span_s']} s"
    )
    print()
    print(f"{'process (role)':42} {'processes':>9} {'CPU s':>9}")
    for role, c in f["cpu"].items():
        print(f"{role:42} {int(c['processes']):>9} {c['cpu_s']:>9.1f}")
    print()


if __name__ == "__main__":
    main()
