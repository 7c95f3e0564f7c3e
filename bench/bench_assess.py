"""Peak memory and CPU of the crowd assessment (`crowdloop.quality.assess_crowd`) on a
synthetic campaign-shaped comparison frame, before/after variants interleaved.

Each run is a fresh child process (so its peak RSS is its own): it builds the frame, then
assesses it, and prints the RSS before the call, the peak RSS after, the call's CPU and wall
time and a checksum of the posteriors. Variants:

- ``object``: the frame with object (string) columns, as the evidence was read before;
- ``coded``: the same frame with categorical columns, as `comparison_evidence` reads it now;
- ``ref:<commit>``: the coded frame assessed by `assess_crowd` as of ``<commit>`` (the
  module read with ``git show``), to compare code versions on the same input;
  ``ref:<commit>/object``: the object frame so (the code and input before this change).

    nice -n 10 .venv/bin/python bench/bench_assess.py --answers 200000 --repeats 2 \\
        --variants ref:3f53c28 coded
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from variants import hwm_mib, load_at, release_free_memory, rss_mib, run_interleaved

ROOT = Path(__file__).resolve().parent.parent


def synthetic_frame(answers: int, seed: int = 0, coded: bool = True) -> pd.DataFrame:
    """Campaign-shaped comparisons: 4-response prompts (6 pairs each), ~5 answers a pair,
    a 30% golden share, 1 worker per ~400 answers of whom 10% answer at random."""
    rng = np.random.default_rng(seed)
    pairs = max(answers // 5, 6)
    prompts = pairs // 6 + 1
    quality = rng.normal(size=(prompts, 4))
    which = np.array([(a, b) for a in range(4) for b in range(a + 1, 4)])
    pair_prompt = np.arange(pairs) // 6
    pair_sides = which[np.arange(pairs) % 6]
    n_workers = max(answers // 400, 10)
    blind = rng.random(n_workers) < 0.1
    pair = rng.integers(0, pairs, answers)
    worker = rng.integers(0, n_workers, answers)
    a, b = pair_sides[pair, 0], pair_sides[pair, 1]
    diff = quality[pair_prompt[pair], a] - quality[pair_prompt[pair], b]
    p_left = 1 / (1 + np.exp(-2 * diff))
    said_left = rng.random(answers) < np.where(blind[worker], 0.5, p_left)
    tie = rng.random(answers) < 0.08
    label = np.where(tie, "tie", np.where(said_left, "left", "right"))
    is_golden = pair % 10 < 3
    golden = np.where(is_golden, np.where(diff > 0, "left", "right"), None)
    frame = pd.DataFrame(
        {
            "worker": np.array([f"w{w:06d}" for w in range(n_workers)], dtype=object)[worker],
            "item": np.array([f"pair-{p:08d}" for p in range(pairs)], dtype=object)[pair],
            "left": np.array(
                [f"r{p:08d}-{s}" for p in range(prompts) for s in range(4)], dtype=object
            )[pair_prompt[pair] * 4 + a],
            "right": np.array(
                [f"r{p:08d}-{s}" for p in range(prompts) for s in range(4)], dtype=object
            )[pair_prompt[pair] * 4 + b],
            "label": label.astype(object),
            "golden": golden.astype(object),
            "time": np.sort(rng.random(answers)) * 86_400.0,
            "seq": np.arange(answers, dtype=np.int64),
        }
    )
    if coded:  # as comparison_evidence codes them: one codebook for labels and answers
        answers_dtype = pd.CategoricalDtype(["left", "right", "tie"])
        sides = pd.CategoricalDtype(sorted(set(frame["left"]) | set(frame["right"])))
        for c, dtype in (("label", answers_dtype), ("golden", answers_dtype),
                         ("left", sides), ("right", sides)):  # fmt: skip
            frame[c] = frame[c].astype(dtype)
        for c in ("worker", "item"):
            frame[c] = frame[c].astype(pd.CategoricalDtype(sorted(frame[c].unique())))
    else:
        for c in ("worker", "item", "left", "right", "label", "golden"):
            frame[c] = frame[c].astype(object)
    return frame


def child(variant: str, answers: int) -> dict[str, Any]:
    code, _, shape = variant.partition("/")
    if code.startswith("ref:"):
        quality = load_at(code[4:], "crowdloop/quality.py", f"quality_{code[4:]}")
    else:
        from crowdloop import quality
    frame = synthetic_frame(answers, coded=code != "object" and shape != "object")
    # The call's own peak: the frame's build peaks higher than the call at 10^6 answers (its
    # object arrays), so the process's peak (ru_maxrss) hid any change in the call. What
    # the build freed goes back to the OS, then the kernel's high-water mark is reset.
    release_free_memory()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    before = rss_mib()
    cpu, wall = time.process_time(), time.perf_counter()
    workers, audit = quality.assess_crowd(frame, quality.CrowdPolicy())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = hwm_mib()
    return {
        "variant": variant,
        "answers": len(frame),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        # Same inputs give the same posteriors whatever the variant (checked by the caller).
        "p_blind_sum": float(workers["p_blind"].sum()),
        "p_blind": workers["p_blind"].round(12).tolist(),
        "retired": int(audit["retired"].sum()),
        # Every output, to compare code versions column by column (`largest_differences`).
        "workers": json.loads(workers.to_json(orient="columns", double_precision=15)),
        "audit": json.loads(audit.to_json(orient="columns", double_precision=15)),
        "dtypes": [str(t) for t in (*workers.dtypes, *audit.dtypes)],
    }


def largest_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | str]:
    """Per column of the two runs' outputs (``workers.*``, ``audit.*``): the largest
    absolute difference of a numeric column, or "same"/"differ" for the others."""
    out: dict[str, float | str] = {"dtypes": "same" if a["dtypes"] == b["dtypes"] else "differ"}
    for frame in ("workers", "audit"):
        for column, values in a[frame].items():
            left, right = values, b[frame].get(column)
            if right is None or left.keys() != right.keys():
                out[f"{frame}.{column}"] = "differ"
                continue
            pairs = [(left[k], right[k]) for k in left]
            if all(isinstance(x, int | float) and isinstance(y, int | float) for x, y in pairs):
                out[f"{frame}.{column}"] = max((abs(x - y) for x, y in pairs), default=0.0)
            else:
                out[f"{frame}.{column}"] = "same" if all(x == y for x, y in pairs) else "differ"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["object", "coded"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.answers)))
        return
    results = run_interleaved(
        __file__,
        args.variants,
        args.repeats,
        ["--answers", str(args.answers)],
        lambda row: (
            f"peak RSS {row['peak_rss_mib']:7.1f} MiB "
            f"(before the call {row['rss_before_mib']:6.1f}), CPU {row['cpu_s']:6.2f} s, "
            f"wall {row['wall_s']:6.2f} s, retired {row['retired']}"
        ),
    )
    first = results[args.variants[0]][0]["p_blind"]
    gap = max(
        float(np.max(np.abs(np.asarray(row["p_blind"]) - np.asarray(first))))
        for rows in results.values()
        for row in rows
    )
    print(f"\n{args.answers:,} answers; largest p_blind difference across variants: {gap:.1e}")
    reference = results[args.variants[0]][0]
    for variant, rows in results.items():
        if variant != args.variants[0]:
            diffs = largest_differences(reference, rows[0])
            print(f"{variant} against {args.variants[0]}, every output column: {diffs}")
    print("| variant | peak RSS (median) | rise in the call | CPU | wall |")
    print("|---|---|---|---|---|")
    for variant, rows in results.items():
        peak = statistics.median(r["peak_rss_mib"] for r in rows)
        rise = statistics.median(r["peak_rss_mib"] - r["rss_before_mib"] for r in rows)
        cpu = statistics.median(r["cpu_s"] for r in rows)
        wall = statistics.median(r["wall_s"] for r in rows)
        print(f"| {variant} | {peak:.1f} MiB | +{rise:.1f} MiB | {cpu:.2f} s | {wall:.2f} s |")


if __name__ == "__main__":
    main()
