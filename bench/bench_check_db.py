"""CPU, sampled peak RSS and outputs of a quality check's crowd assessment
(`assess_campaign_crowd`: the evidence read, then `assess_crowd`) or of the whole
`check_workers`, on a copy of a finished campaign's SQLite database, code trees
interleaved in fresh processes.

Each variant is a source tree (``name=path``; the child runs with ``PYTHONPATH=path``, so
main's code is a ``git archive`` of main unpacked somewhere). ``--op assess`` reads one
copy of the database for every run (nothing is written); ``--op check`` copies the
database afresh for each run (the check writes worker records and exclusions). A thread
samples VmRSS every 10 ms; the kernel's high-water mark is reset (``/proc/self/clear_refs``)
just before the call, so ``VmHWM`` is the call's own peak. The child writes the crowd and
audit frames (and, for ``check``, the worker records and exclusion counts) to a pickle so
the variants' outputs can be compared.

    nice -n 5 .venv/bin/python bench/bench_check_db.py --db /path/crowdloop.db \\
        --op assess --repeats 2 --variants main=/work/ref-x new=.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from variants import crowdloop_stack, release_free_memory, rss_mib

HERE = Path(__file__).resolve()


class _Sampler(threading.Thread):
    """The highest VmRSS seen per phase (the phase is set by the wrapped calls), and where
    the main thread was at the highest one of all (its innermost crowdloop frames)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.phase = "setup"
        self.peaks: dict[str, float] = {}
        self.stop = False
        self.main = threading.main_thread().ident
        self.top = 0.0
        self.where: list[str] = []

    def run(self) -> None:
        while not self.stop:
            rss = rss_mib()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            if rss > self.top and self.phase != "setup":
                self.top, self.where = rss, crowdloop_stack(self.main)
            time.sleep(0.01)


def child(op: str, url: str, out: Path) -> dict[str, Any]:
    os.environ["CROWDLOOP_DATABASE_URL"] = url
    from sqlalchemy import text

    import crowdloop
    from crowdloop.db import session_scope
    from crowdloop.stages import quality_check as qc

    cpu: dict[str, float] = {}
    sampler = _Sampler()

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            before, sampler.phase = sampler.phase, name
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - t
                sampler.phase = before

        return wrapper

    qc.comparison_evidence = timed("read", qc.comparison_evidence)
    qc.assess_crowd = timed("assess", qc.assess_crowd)
    qc.evidence_fingerprint = timed("fingerprint", qc.evidence_fingerprint)
    if hasattr(qc, "review_submissions"):
        qc.review_submissions = timed("review", qc.review_submissions)
    with session_scope() as s:
        campaign = s.execute(text("SELECT id FROM campaign")).scalar_one()
        s.execute(text("SELECT count(*) FROM judgment")).scalar_one()  # engine and schema
    release_free_memory()
    sampler.start()
    rss_before = rss_mib()
    Path("/proc/self/clear_refs").write_text("5")
    sampler.phase = op
    wall = time.perf_counter()
    t0 = time.process_time()
    result: dict[str, Any] = {}
    if op == "assess":
        from crowdloop.stages.plan import load_spec

        with session_scope() as s:
            policy = qc.crowd_policy_from(load_spec(s, campaign).quality)
            crowd, audit = qc.assess_campaign_crowd(s, campaign, policy)
        result = {"crowd": crowd, "audit": audit}
    else:
        from crowdloop.models.domain import Capability

        class _Quiet:  # no marketplace: blocks are recorded on our side only
            name = "bench"
            capabilities: frozenset[Capability] = frozenset()

        res = qc.check_workers(campaign, _Quiet())  # type: ignore[arg-type]
        with session_scope() as s:
            records = s.execute(
                text(
                    "SELECT worker_id, status, block_reason, excluded_from, accuracy, p_below,"
                    " golden_correct, golden_total, judgments FROM workerrecord"
                    " ORDER BY worker_id"
                )
            ).all()
            excluded = s.execute(
                text("SELECT count(*), sum(id) FROM judgment WHERE excluded")
            ).one()
        result = {
            "newly_blocked": sorted(res.newly_blocked),
            "excluded_judgments": res.excluded_judgments,
            "reopened": res.reopened,
            "records": [tuple(r) for r in records],
            "excluded": tuple(excluded),
        }
    total_cpu = time.process_time() - t0
    wall = time.perf_counter() - wall
    sampler.stop = True
    sampler.join()
    with out.open("wb") as f:
        pickle.dump(result, f)
    return {
        "tree": str(Path(crowdloop.__file__).resolve().parent.parent),
        "cpu_s": round(total_cpu, 2),
        "wall_s": round(wall, 2),
        "cpu": {k: round(v, 2) for k, v in cpu.items()},
        "rss_before_mib": round(rss_before, 1),
        "hwm_mib": round(rss_mib("VmHWM"), 1),
        "peaks_mib": {k: round(v, 1) for k, v in sampler.peaks.items()},
        "peak_at": sampler.where,
        "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True, help="a finished campaign's crowdloop.db")
    ap.add_argument("--op", choices=("assess", "check"), default="assess")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", nargs="+", required=True, help="name=tree ...")
    ap.add_argument("--work", type=Path, help="folder for the copies (default: a temp dir)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # url, output pickle
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.op, args.child[0], Path(args.child[1]))))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-check-db-", dir=args.work))
    variants = dict(v.split("=", 1) for v in args.variants)

    def copy(to: Path) -> Path:
        to.mkdir(parents=True, exist_ok=True)
        # The database and its WAL (a finished run may leave pages there).
        for suffix in ("", "-wal"):
            src = Path(str(args.db) + suffix)
            if src.exists():
                shutil.copyfile(src, to / ("crowdloop.db" + suffix))
        return to / "crowdloop.db"

    shared = copy(work / "shared") if args.op == "assess" else None
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for r in range(args.repeats):
        for name, tree in variants.items():
            db = shared or copy(work / f"{name}-{r}")
            out = work / f"{name}-{r}.pkl"
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
            started = time.strftime("%H:%M:%S", time.gmtime())
            load = os.getloadavg()[0]
            proc = subprocess.run(
                [sys.executable, str(HERE), "--op", args.op, "--db", str(args.db),
                 "--variants", "x=y", "--child", f"sqlite:///{db}", str(out)],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                print(proc.stderr[-3000:])
                raise SystemExit(f"{name} failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(started=started, load=round(load, 1), pickle=str(out))
            rows[name].append(row)
            print(f"run {r + 1} {name}: {json.dumps(row)}", flush=True)
            if shared is None:
                shutil.rmtree(db.parent)
    print("\nmedians:")
    for name, runs in rows.items():
        print(
            f"{name}: cpu {statistics.median(x['cpu_s'] for x in runs)} s, "
            f"hwm {statistics.median(x['hwm_mib'] for x in runs)} MiB, rise "
            f"{statistics.median(x['hwm_mib'] - x['rss_before_mib'] for x in runs):.1f} MiB"
        )
    print(f"outputs in {work}")


if __name__ == "__main__":
    main()
