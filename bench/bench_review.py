"""Benchmark: the review of submissions (`review_submissions`) alone, on a copy of a finished
bench campaign's database, in this (fresh) process.

The marketplace is a stub (``review`` only counts the decisions, or with ``--digest``
hashes them in order), so the figures are the review's own database and Python work, not
the simulator's HTTP round trips. Reset the ``review`` column first (the review only
reads rows whose review is NULL), e.g.::

    sqlite3 /tmp/copy/crowdloop.db "UPDATE judgment SET review = NULL"
    CROWDLOOP_DATABASE_URL=sqlite:////tmp/copy/crowdloop.db \\
        nice -n 5 .venv/bin/python bench/bench_review.py --campaign-dir /tmp/copy --final

Prints one JSON line: CPU and wall of the call, the decisions sent, the peak RSS (VmHWM
after a reset before the call) and, with ``--digest``, the sha256 of the decisions sent
and of the ``review`` column (id order), to compare two versions of the code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from variants import rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign-dir", type=Path, required=True, help="holds campaign.yaml")
    parser.add_argument("--final", action="store_true", help="the after-last-round review")
    parser.add_argument("--digest", action="store_true", help="hash decisions and reviews")
    args = parser.parse_args()
    spec = yaml.safe_load((args.campaign_dir / "campaign.yaml").read_text(encoding="utf-8"))
    campaign_id = str(spec["name"])

    import crowdloop
    from crowdloop.models.domain import BatchRef, Capability, ReviewDecision, Stage
    from crowdloop.stages.quality_check import review_submissions

    class StubConnector:
        name = spec["connector"]["name"]
        capabilities = frozenset({Capability.REVIEW})

        def __init__(self) -> None:
            self.sent = 0
            self.calls = 0
            self.hash = hashlib.sha256()

        def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
            self.calls += 1
            self.sent += len(decisions)
            if args.digest:
                for d in decisions:
                    self.hash.update(f"{d.submission_id}\t{d.accept}\t{d.comment}\n".encode())

    connector = StubConnector()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # VmHWM := current RSS
    before = rss_mib("VmRSS")
    cpu, wall = time.process_time(), time.perf_counter()
    reviewed = review_submissions(campaign_id, list(Stage), connector, final=args.final)  # type: ignore[arg-type]
    figures = {
        "crowdloop": str(Path(crowdloop.__file__).parent),
        "final": args.final,
        "cpu_s": round(time.process_time() - cpu, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
        "reviewed": reviewed,
        "sent": connector.sent,
        "review_calls": connector.calls,
        "rss_before_mib": round(before, 1),
        "vmhwm_mib": round(rss_mib("VmHWM"), 1),
    }
    if args.digest:
        from sqlalchemy import text

        from crowdloop.db import session_scope

        h = hashlib.sha256()
        with session_scope() as s:
            for jid, review in s.execute(
                text("SELECT id, review FROM judgment WHERE campaign_id = :c ORDER BY id"),
                {"c": campaign_id},
            ):
                h.update(f"{jid}\t{review}\n".encode())
        figures["decisions_sha256"] = connector.hash.hexdigest()
        figures["review_sha256"] = h.hexdigest()
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
