"""Why a bad worker was or was not blocked: per worker, the evidence the crowd assessment
had and which threshold stood between it and a block.

Reads campaign folders kept by ``bench/bench_quality.py --keep DIR`` (each one's SQLite
database and ``sim.json``, the simulator's hidden archetypes and truth) and reruns
`crowdloop.quality.assess_crowd` on the campaign's comparison evidence, as
`stages.quality_check.check_workers` reads it. With ``--cutoffs`` it also reruns it on
the answers given up to several points in time (a share of the campaign's span each), so
a worker's evidence can be followed through the campaign.

Per worker (bad archetypes and honest ones blocked, or every worker with ``--all``):
answers, golden right/total, left/right/tie, sided-with-the-others rate, accuracy against
the hidden truth on real pairs, the log Bayes factors (blind from the start, and the
change point's), the posterior split into its two kinds, and the stopper:

- ``answers<N``: fewer answers than `CrowdPolicy.min_answers`;
- ``p<0.95``: the posterior under `CrowdPolicy.blind_confidence`;
- ``golden rule``: the golden answers fail the campaign's Beta rule and the posterior
  is at or above the crowd's base rate, so the golden rule blocks (``golden vetoed``:
  it fails, but the posterior is below the base rate, a warning only);
- ``db_status`` / ``sim_blocked``: what the run itself decided (with the reason's head).

    .venv/bin/python bench/bench_quality.py --seeds 0 --crowds sleepers colluders \\
        --configs baseline default --keep runs/
    .venv/bin/python bench/diagnose_blocking.py runs/default-0 runs/default-1
    .venv/bin/python bench/diagnose_blocking.py runs/default-* --summary   # counts only
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdloop import quality
from crowdloop.simulator.crowd import BAD_ARCHETYPES

_CAPTURED: dict[str, Any] = {}


def _capture_scan() -> None:
    """Wrap the change-point scan so the drift log Bayes factor per worker is kept."""
    original = quality._change_point_scan

    def scan(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        _CAPTURED["drift_bf"] = out[0]
        _CAPTURED["careful_start"] = out[2]
        return out

    quality._change_point_scan = scan  # type: ignore[assignment]


def _load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from sqlmodel import select

    from crowdloop.db import session_scope
    from crowdloop.models.tables import WorkerRecord
    from crowdloop.stages.quality_check import comparison_evidence

    os.environ["CROWDLOOP_DATABASE_URL"] = f"sqlite:///{folder / 'db.sqlite'}"
    name = folder.name
    with session_scope() as s:
        frame = comparison_evidence(s, name)
        records = pd.DataFrame(
            [
                {
                    "worker": r.worker_id,
                    "status": str(r.status.value if hasattr(r.status, "value") else r.status),
                    "reason": r.block_reason or "",
                    "blocked_at": r.blocked_at,
                }
                for r in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == name))
            ]
        )
    sim = json.loads((folder / "sim.json").read_text())
    return frame, records, sim


def _truth_accuracy(frame: pd.DataFrame, truth: dict[str, str]) -> pd.DataFrame:
    """Per worker, on real pairs with a hidden side: right, wrong side, tie."""
    real = frame[frame["golden"].isna()]
    t = real["item"].astype(str).map(truth)
    known = t.notna()
    lab = real["label"].astype(str)
    out = pd.DataFrame(
        {
            "worker": real["worker"].astype(str),
            "right": (lab == t) & known,
            "wrong": (lab != t) & (lab != "tie") & known,
            "tie_on_sided": (lab == "tie") & known,
            "equal_pair": ~known,
        }
    )
    return out.groupby("worker").sum()


def diagnose(folder: Path, policy: quality.CrowdPolicy, cutoffs: list[float]) -> pd.DataFrame:
    frame, records, sim = _load(folder)
    archetype = {w["id"]: w["archetype"] for w in sim["workers"]}
    sim_blocked = {w["id"] for w in sim["workers"] if w["blocked"]}
    graded = _truth_accuracy(frame, sim["truth"])
    rows = []
    times = frame["time"].to_numpy()
    points = [(f"{c:.2f}", times.min() + c * (times.max() - times.min())) for c in cutoffs]
    for label, until in [*points, ("final", np.inf)]:
        part = frame[times <= until]
        workers, _audit = quality.assess_crowd(part, policy)
        prior, prior_drift = (
            float(workers["prior_blind"].iloc[0]),
            float(workers["prior_drift"].iloc[0]),
        )
        drift_bf = _CAPTURED["drift_bf"]
        part_times = part["time"].to_numpy()
        part_worker = part["worker"].astype(str).to_numpy()
        for i, w in enumerate(workers.itertuples(index=False)):
            kind = archetype.get(str(w.worker), "?")
            # The posterior's two kinds, as assess_crowd's last pass computed them.
            joint = np.array(
                [
                    np.log(1 - prior),
                    np.log(prior - prior_drift) + w.log_bf,
                    np.log(prior_drift) + drift_bf[i],
                ]
            )
            post = np.exp(joint - np.logaddexp.reduce(joint))
            g = graded.loc[str(w.worker)] if str(w.worker) in graded.index else None
            rec = records[records["worker"] == str(w.worker)] if len(records) else records
            # The golden rule (the campaign's Beta policy on the golden answers not
            # retired), and whether the posterior lets it block (at or above the crowd's
            # base rate; below it, a failed golden record is only a warning).
            golden_fails = (
                quality.assess_worker(int(w.golden_correct), int(w.golden_total)).status
                == "blocked"
            )
            stopper = (
                "golden rule"
                if golden_fails and w.p_blind >= w.prior_blind
                else f"answers<{policy.min_answers}"
                if w.answers < policy.min_answers
                else ("p>=" if w.p_blind >= policy.blind_confidence else "p<")
                + f"{policy.blind_confidence}"
                + (" (golden vetoed)" if golden_fails else "")
            )
            rows.append(
                {
                    "run": folder.name,
                    "at": label,
                    "worker": str(w.worker),
                    "kind": kind,
                    "answers": int(w.answers),
                    "golden": f"{w.golden_correct}/{w.golden_total}",
                    "l/r/t": f"{w.n_left}/{w.n_right}/{w.n_tie}",
                    "sided": round(float(w.agreement), 2),
                    "sided_n": int(w.agreement_n),
                    "truth r/w/t/eq": (
                        "-"
                        if g is None
                        else f"{g['right']}/{g['wrong']}/{g['tie_on_sided']}/{g['equal_pair']}"
                    ),
                    "log_bf": round(float(w.log_bf), 1),
                    "drift_bf": round(float(drift_bf[i]), 1),
                    "p_start": round(float(post[1]), 3),
                    "p_drift": round(float(post[2]), 3),
                    "p_blind": round(float(w.p_blind), 3),
                    # The late change point (`CrowdPolicy.late_confidence`): its posterior,
                    # whether it is the known boundary, and the answers from it on.
                    "p_late": round(float(w.p_late), 3),
                    "late_boundary": bool(w.late_boundary),
                    "late_answers": (
                        0
                        if pd.isna(w.late_since)
                        else int(
                            ((part_worker == str(w.worker)) & (part_times >= w.late_since)).sum()
                        )
                    ),
                    "prior": f"{prior:.2f}/{prior_drift:.2f}",
                    "stopper": stopper,
                    "db_status": rec["status"].iloc[0] if len(rec) else "-",
                    "sim_blocked": str(w.worker) in sim_blocked,
                    "reason": (rec["reason"].iloc[0][:60] if len(rec) else ""),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--cutoffs", type=float, nargs="*", default=[])
    parser.add_argument("--all", action="store_true", help="every worker, not only bad ones")
    parser.add_argument("--summary", action="store_true", help="counts per archetype only")
    parser.add_argument("--csv", type=Path, help="write every row here")
    parser.add_argument(
        "--policy",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="CrowdPolicy fields to override (a Python literal each), e.g. min_answers=8",
    )
    args = parser.parse_args()
    _capture_scan()
    import ast

    policy = quality.CrowdPolicy(
        **{k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.policy)}
    )
    frames = []
    for folder in args.folders:
        table = diagnose(folder, policy, args.cutoffs)
        frames.append(table)
        shown = (
            table
            if args.all
            else table[
                table["kind"].isin(BAD_ARCHETYPES)
                | (table["sim_blocked"] & (table["kind"] == "honest"))
            ]
        )
        shown = shown[shown["answers"] >= 10] if not args.all else shown
        if not args.summary:
            with pd.option_context(
                "display.width", 250, "display.max_rows", 500, "display.max_columns", 30
            ):
                print(f"== {folder}")
                print(shown.drop(columns=["run"]).to_string(index=False))
    allrows = pd.concat(frames)
    final = allrows[allrows["at"] == "final"]
    judged = final[final["answers"] >= 10]
    print("\nfinal evidence, workers with 10+ answers: kind -> sim blocked / would block now / n")
    for kind, grp in judged.groupby("kind"):
        print(
            f"  {kind}: {int(grp['sim_blocked'].sum())} / "
            f"{int((grp['stopper'].str.startswith(('p>=', 'golden rule'))).sum())} / {len(grp)}; "
            f"stoppers of the unblocked: "
            f"{dict(Counter(grp.loc[~grp['sim_blocked'], 'stopper']))}"
        )
    if args.csv:
        allrows.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
