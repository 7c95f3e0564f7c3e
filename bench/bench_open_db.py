"""Benchmark: what opening a fresh campaign database costs, by the way its schema is made.

The test suite opens a fresh database in most tests, so this is the suite's price for
migrations. Variants, each opening `--n` new databases in its own child process:

- **create_all**: `SQLModel.metadata.create_all`, what crowdloop did before migrations;
- **ensure_schema**: what crowdloop does now for an empty database (`create_all`, then
  stamp the head revision, under the migration lock);
- **alembic**: every revision from empty (`alembic upgrade head`), the alternative.

Repetitions interleave the variants (A B C A B C ...). Per variant it prints the median
wall and CPU time per database and the child's peak RSS, and the ratios to create_all.

    .venv/bin/python bench/bench_open_db.py                  # SQLite, 5 x 20 databases
    .venv/bin/python bench/bench_open_db.py --backend postgres --n 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

VARIANTS = ("create_all", "ensure_schema", "alembic")
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"

CHILD = r"""
import json, resource, sys, time
variant, backend, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
from sqlmodel import SQLModel
from crowdloop.db import unmigrated_engine
from crowdloop.migrations import alembic_config, ensure_schema, locked
from alembic import command  # imported before timing: every variant pays imports once

def open_one(url):
    engine = unmigrated_engine(url)
    if variant == "create_all":
        SQLModel.metadata.create_all(engine)
    elif variant == "ensure_schema":
        assert ensure_schema(engine) == "created"
    else:
        with locked(engine) as conn:
            command.upgrade(alembic_config(conn), "head")
    engine.dispose()

urls = [line for line in sys.stdin.read().split()]
# one warm-up database (first-use costs: dialect, compiled caches, the revision scripts)
open_one(urls[0])
wall0, cpu0 = time.perf_counter(), time.process_time()
for url in urls[1:]:
    open_one(url)
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall / n, "cpu": cpu / n, "rss_mib": rss / 1024}))
"""


def make_urls(backend: str, n: int, workdir: Path) -> list[str]:
    if backend == "sqlite":
        return [f"sqlite:///{workdir / f'{uuid.uuid4().hex}.db'}" for _ in range(n + 1)]
    import psycopg

    names = [f"crowdloop_bench_{uuid.uuid4().hex[:10]}" for _ in range(n + 1)]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
        for name in names:
            c.execute(f'CREATE DATABASE "{name}"')
    return [f"{PG}/{name}" for name in names]


def drop_urls(backend: str, urls: list[str]) -> None:
    if backend != "postgres":
        return
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as c:
        for url in urls:
            c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--n", type=int, default=20, help="databases per repetition")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for variant in VARIANTS:
                urls = make_urls(args.backend, args.n, Path(tmp))
                try:
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, variant, args.backend, str(args.n)],
                        input="\n".join(urls),
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                finally:
                    drop_urls(args.backend, urls)
                results[variant].append(json.loads(out.stdout))
                print(f"rep {rep + 1} {variant}: {out.stdout.strip()}", file=sys.stderr)
    base = {k: statistics.median(r[k] for r in results["create_all"]) for k in ("wall", "cpu")}
    print(f"{args.backend}, {args.n} databases x {args.reps} repetitions, medians:")
    print("| variant | wall / db | CPU / db | peak RSS | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|---|")
    for variant in VARIANTS:
        med = {k: statistics.median(r[k] for r in results[variant]) for k in results[variant][0]}
        print(
            f"| {variant} | {med['wall'] * 1000:.1f} ms | {med['cpu'] * 1000:.1f} ms | "
            f"{med['rss_mib']:.0f} MiB | {med['wall'] / base['wall']:.2f} | "
            f"{med['cpu'] / base['cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
