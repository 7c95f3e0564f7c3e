"""Peak RSS and CPU of a quality round's crowd assessment read from the database
(`assess_campaign_crowd`: `comparison_evidence`, then `assess_crowd`), code versions
(``new``: this tree; ``ref:<commit>``: both modules as of the commit)
interleaved in fresh processes on one SQLite database.

The database: a registered demo campaign (its compare pairs) and ``--answers`` judgments
inserted directly (random pairs, 1 worker per ~400 answers, 8% ties), so the read and the
assessment see campaign-shaped evidence without running a campaign.

    nice -n 10 .venv/bin/python bench/bench_evidence.py --answers 100000 --repeats 2 \\
        --variants ref:4a6ded7 new
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from variants import load_at, rss_mib, run_interleaved

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "evidence-bench"


def build_db(answers: int, workdir: Path) -> str:
    from sqlalchemy import insert
    from sqlmodel import col, select

    from crowdloop.db import session_scope
    from crowdloop.demo import top5
    from crowdloop.models.spec import CampaignSpec
    from crowdloop.models.tables import Item, Judgment
    from crowdloop.simulator import world
    from crowdloop.stages.plan import register_campaign

    topics = list(world.CATALOG)
    top5.write_jsonl(
        workdir / "candidates.jsonl", top5.generate_candidates(topics, 0, prompts_per_topic=40)
    )
    top5.write_jsonl(workdir / "golden.jsonl", top5.generate_golden_pairs(topics, 0, 200))
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "output_dir": str(workdir),
            "preferences": {
                "candidates_file": str(workdir / "candidates.jsonl"),
                "golden_file": str(workdir / "golden.jsonl"),
                "golden_share": 0.3,
                "overlap": 5,
                "export": {"path": str(workdir / "preferences.jsonl")},
            },
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
        pairs = list(s.exec(select(Item.id).where(col(Item.kind) == "compare")).all())
    rng = np.random.default_rng(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    labels = np.array(["left", "right", "tie"])
    for at in range(0, answers, 20_000):
        n = min(20_000, answers - at)
        item = rng.integers(0, len(pairs), n)
        worker = rng.integers(0, max(answers // 400, 10), n)
        label = labels[rng.choice(3, n, p=[0.46, 0.46, 0.08])]
        rows = [
            {
                "connector": "bench",
                "external_id": f"j{at + i}",
                "campaign_id": CAMPAIGN,
                "item_id": pairs[item[i]],
                "worker_id": f"w{worker[i]:05d}",
                "label": str(label[i]),
                "submitted_at": start + timedelta(seconds=int(at + i)),
                "received_at": start + timedelta(seconds=int(at + i) + 5),
            }
            for i in range(n)
        ]
        with session_scope() as s:
            s.execute(insert(Judgment), rows)
    return CAMPAIGN


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str) -> dict[str, Any]:
    from crowdloop.db import session_scope

    if variant.startswith("ref:"):
        commit = variant[4:]
        quality = load_at(commit, "crowdloop/quality.py", "crowdloop.quality")
        stage = load_at(commit, "crowdloop/stages/quality_check.py", "ref_quality_check")
        assert stage.assess_crowd is quality.assess_crowd
    else:
        from crowdloop import quality
        from crowdloop.stages import quality_check as stage
    before = rss_mib()
    with session_scope() as s:
        cpu = time.process_time()
        frame = stage.comparison_evidence(s, CAMPAIGN)
        read_cpu = time.process_time() - cpu
        read_peak = _peak_mib()
        frame_mib = frame.memory_usage(deep=True).sum() / 2**20
        cpu = time.process_time()
        # The policy of the code that assesses: another commit's fields may differ.
        workers, _ = stage.assess_crowd(frame, quality.CrowdPolicy())
        assess_cpu = time.process_time() - cpu
    fingerprint_s = float("nan")
    if hasattr(stage, "evidence_fingerprint"):  # what the report pays to reuse the round's
        with session_scope() as s:
            wall = time.perf_counter()
            stage.evidence_fingerprint(s, CAMPAIGN)
            fingerprint_s = time.perf_counter() - wall
    return {
        "fingerprint_wall_s": round(fingerprint_s, 3),
        "answers": len(frame),
        "rss_before_mib": round(before, 1),
        "frame_mib": round(frame_mib, 1),
        "peak_after_read_mib": round(read_peak, 1),
        "peak_mib": round(_peak_mib(), 1),
        "read_cpu_s": round(read_cpu, 2),
        "assess_cpu_s": round(assess_cpu, 2),
        "p_blind": workers["p_blind"].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["ref:4a6ded7", "new"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="crowdloop-bench-evidence-") as tmp:
        os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'crowdloop.db'}"
        build_db(args.answers, Path(tmp))
        results = run_interleaved(
            __file__,
            args.variants,
            args.repeats,
            [],
            lambda row: (
                f"{row['answers']:,} answers, frame "
                f"{row['frame_mib']} MiB, RSS before {row['rss_before_mib']} MiB, peak "
                f"after the read {row['peak_after_read_mib']} MiB, after the assessment "
                f"{row['peak_mib']} MiB; CPU read {row['read_cpu_s']} s, assess "
                f"{row['assess_cpu_s']} s; evidence fingerprint {row['fingerprint_wall_s']} s"
            ),
        )
    first = np.asarray(results[args.variants[0]][0]["p_blind"])
    gap = max(
        float(np.max(np.abs(np.asarray(row["p_blind"]) - first)))
        for rows in results.values()
        for row in rows
    )
    print(f"\nlargest p_blind difference across variants: {gap:.1e}")
    print("| variant | frame | peak after the read | peak | CPU read | CPU assess |")
    print("|---|---|---|---|---|---|")
    for variant, rows in results.items():

        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(statistics.median(r[key] for r in rows))

        print(
            f"| {variant} | {med('frame_mib'):.1f} MiB | {med('peak_after_read_mib'):.1f} MiB "
            f"| {med('peak_mib'):.1f} MiB | {med('read_cpu_s'):.2f} s "
            f"| {med('assess_cpu_s'):.2f} s |"
        )


if __name__ == "__main__":
    main()
