"""Benchmark: one final stage of a finished campaign, alone, in this (fresh) process.

Runs ``aggregate``, ``export`` or ``report`` (or ``all``: the three in the campaign's
order) against an existing database (``CROWDLOOP_DATABASE_URL``, a *copy* of a finished
bench campaign's: the stages rewrite their own outputs) and prints one JSON line: CPU,
the RSS before, the highest RSS sampled inside (a thread reads VmRSS every 20 ms) and the
kernel's high-water mark (VmHWM, reset via /proc/self/clear_refs before the stage), and
the RSS after. With ``--dump FILE`` also writes the stage's outputs as text (PairOutcome
and CandidateScore rows with 17 significant digits, the export's sha256, the report
files' sha256) so two versions of the code can be compared on the same database.

    CROWDLOOP_DATABASE_URL=sqlite:////tmp/copy/crowdloop.db \\
        nice -n 5 .venv/bin/python bench/bench_stage.py aggregate --campaign-dir /tmp/copy
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from variants import crowdloop_stack, release_free_memory, rss_mib


class Sampler:
    """The highest VmRSS seen since ``reset`` (read every 20 ms by a thread), and where the
    main thread was then (its innermost crowdloop frames)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.where: list[str] = []
        self._main = threading.main_thread().ident or 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            rss = rss_mib("VmRSS")
            if rss > self.peak:
                self.peak, self.where = rss, crowdloop_stack(self._main)
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = rss_mib("VmRSS")
        self.where = []
        # Reset the kernel's high-water mark to the current RSS (Linux >= 4.0).
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump(campaign_id: str, out: Path, files: list[Path]) -> None:
    from sqlalchemy import text

    from crowdloop.db import session_scope

    with session_scope() as s, out.open("w", encoding="utf-8") as f:
        for table, key, cols in (
            (
                "pairoutcome",
                "item_id",
                "item_id, prompt_id, winner, n_left, n_right, n_tie, p_left_better, "
                "confidence, margin, level",
            ),
            ("candidatescore", "response_id", "response_id, prompt_id, score, method"),
        ):
            rows = s.execute(
                text(f"SELECT {cols} FROM {table} WHERE campaign_id = :c ORDER BY {key}"),
                {"c": campaign_id},
            )
            for row in rows:
                f.write(
                    table
                    + "\t"
                    + "\t".join(f"{v:.17g}" if isinstance(v, float) else str(v) for v in row)
                    + "\n"
                )
        for path in files:
            f.write(f"file\t{path.name}\t{sha256(path) if path.exists() else None}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["aggregate", "export", "report", "all"])
    parser.add_argument("--campaign-dir", type=Path, required=True, help="holds campaign.yaml")
    parser.add_argument("--dump", type=Path, help="write the stage's outputs here")
    args = parser.parse_args()

    campaign_file = (args.campaign_dir / "campaign.yaml").resolve()
    spec = yaml.safe_load(campaign_file.read_text(encoding="utf-8"))
    campaign_id = str(spec["name"])
    os.chdir(campaign_file.parent)  # relative paths resolve against the campaign file

    import crowdloop
    import crowdloop.stages.export as export
    import crowdloop.stages.preferences as preferences
    import crowdloop.stages.report as report

    prefs = spec["preferences"]
    # The report goes to the campaign's stored output folder, the original run's: point
    # it at this copy's folder instead (SQLite copies only).
    if os.environ.get("CROWDLOOP_DATABASE_URL", "").startswith("sqlite"):
        from sqlalchemy import text

        from crowdloop.db import session_scope

        with session_scope() as s:
            s.execute(
                text("UPDATE campaign SET spec = json_set(spec, '$.output_dir', :d) WHERE id = :c"),
                {"d": str(campaign_file.parent), "c": campaign_id},
            )
    sampler = Sampler()
    release_free_memory()
    figures: dict[str, Any] = {
        "stage": args.stage,
        "crowdloop": str(Path(crowdloop.__file__).parent),
        "rss_imports_mib": round(rss_mib("VmRSS"), 1),
    }
    stages = ["aggregate", "export", "report"] if args.stage == "all" else [args.stage]
    for stage in stages:
        sampler.reset()
        before = rss_mib("VmRSS")
        cpu = time.process_time()
        if stage == "aggregate":
            preferences.aggregate_preferences(campaign_id, prefs.get("aggregation", "worker_aware"))
        elif stage == "export":
            export.export_preferences(
                campaign_id, Path(prefs["export"]["path"]), float(prefs["min_confidence"])
            )
        else:
            report.write_report(campaign_id)
        figures[stage] = {
            "cpu_s": round(time.process_time() - cpu, 2),
            "rss_before_mib": round(before, 1),
            "peak_sampled_mib": round(max(sampler.peak, rss_mib("VmRSS")), 1),
            "peak_at": sampler.where,
            "vmhwm_mib": round(rss_mib("VmHWM"), 1),
            "rise_mib": round(rss_mib("VmHWM") - before, 1),
            "rss_after_mib": round(rss_mib("VmRSS"), 1),
        }
    if args.dump:
        files = [Path(prefs["export"]["path"]), *sorted(Path(".").glob("*report*"))]
        dump(campaign_id, args.dump, files)
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
