"""Benchmark: our aggregation code against the libraries it replaces, in one run.

    .venv/bin/python bench/bench_aggregation.py            # full size
    .venv/bin/python bench/bench_aggregation.py --quick    # 10x smaller smoke run

Bradley-Terry: ``crowdloop.aggregation.bradley_terry.bradley_terry`` against
``evalica.bradley_terry`` on 1,000,000 comparisons over 1,000 items and on 10,000,000 over
10,000 items (BT-distributed outcomes, 20 % ties). Ours runs with ``prior=0`` (the plain
maximum-likelihood estimate, the quantity evalica computes) and, as a second figure, with
the default ``prior=1``. Both solve at their default tolerances (ours: largest change of a
log-score < 1e-8; evalica: L2 norm of the change of geometric-mean-normalised strengths
< 1e-6) with the iteration caps raised; the script prints how far apart the two solutions
are (largest difference of mean-centred log-scores) and their Spearman rank correlation.

Dawid-Skene: ``crowdloop.aggregation.dawid_skene.NumpyDawidSkene`` against crowd-kit's
``DawidSkene`` (both ``n_iter=100, tol=1e-5``) on 100,000 tasks x 5 answers (500,000
labels), 3 classes (priors 0.5/0.3/0.2), 500 workers of whom 30 % answer uniformly at
random and the rest are right with probability 0.85. Both get the same frame and are
timed from frame in to labels out. Because the two stop by different rules (crowd-kit on
its ELBO, ours on the log-likelihood), ours is also timed with exactly crowd-kit's
iteration count (``tol=0``).

Every measurement runs in its own child process (``subprocess``) that generates the data
from a fixed seed, times one call with ``time.perf_counter`` and reports
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak RSS of the whole child: interpreter,
imports, data and the call) plus the peak before the call. The parent polls each child's
RSS and stops it past ``--max-gb`` (default 8) or ``--timeout`` seconds (default 300);
when evalica is stopped at a size, the figure is reported as such and a ratio is computed
at ``--fallback`` comparisons instead. Ratios are ours / library time (lower is better for
us). The script asserts nothing; it prints figures and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------


def bt_data(
    n_comparisons: int, n_items: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT comparisons (left, right, outcome in {1, 0, 0.5}), generated in 1M chunks so that
    generation temporaries do not set the peak RSS of the process."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, n_items)
    left = np.empty(n_comparisons, dtype=np.int64)
    right = np.empty(n_comparisons, dtype=np.int64)
    outcome = np.empty(n_comparisons, dtype=np.float64)
    chunk = 1_000_000
    for start in range(0, n_comparisons, chunk):
        stop = min(start + chunk, n_comparisons)
        size = stop - start
        a = rng.integers(0, n_items, size)
        b = (a + rng.integers(1, n_items, size)) % n_items
        won = rng.random(size) < expit(strength[a] - strength[b])
        share = won.astype(np.float64)
        share[rng.random(size) < 0.2] = 0.5
        left[start:stop], right[start:stop], outcome[start:stop] = a, b, share
    return left, right, outcome


def ds_data(n_tasks: int, n_workers: int, overlap: int, seed: int) -> tuple[Any, np.ndarray]:
    """Long frame task/worker/label (labels "c0".."c2") and the true label code per task."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    truth = rng.choice(3, n_tasks, p=[0.5, 0.3, 0.2])
    # `overlap` distinct workers per task: a random start and a stride over a permutation.
    stride = n_workers // overlap
    slots = rng.integers(0, n_workers, n_tasks)[:, None] + stride * np.arange(overlap)
    workers = rng.permutation(n_workers)[(slots % n_workers).ravel()]
    tasks = np.repeat(np.arange(n_tasks), overlap)
    true_label = truth[tasks]
    wrong = (true_label + rng.integers(1, 3, tasks.size)) % 3
    answer = np.where(rng.random(tasks.size) < 0.85, true_label, wrong)
    spammer = workers < round(0.3 * n_workers)
    answer[spammer] = rng.integers(0, 3, int(spammer.sum()))
    names = np.array([f"w{worker:04d}" for worker in range(n_workers)], dtype=object)
    labels = np.array(["c0", "c1", "c2"], dtype=object)
    frame = pd.DataFrame({"task": tasks, "worker": names[workers], "label": labels[answer]})
    return frame, truth


# --- children --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(call: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return result, best


def child_bt(spec: dict[str, Any]) -> dict[str, Any]:
    left, right, outcome = bt_data(spec["n"], spec["items"], spec["seed"])
    n_items = spec["items"]
    before = peak_rss_mb()
    if spec["impl"] == "ours":
        from crowdloop.aggregation.bradley_terry import bradley_terry

        prior = float(spec["prior"])

        def run() -> Any:
            return bradley_terry(left, right, outcome, n_items, prior=prior, max_iter=100_000)

        result, seconds = timed(run, spec["repeat"])
        scores = result.scores
        iterations, converged = result.iterations, result.converged
    else:
        import evalica
        import pandas as pd

        # Input conversion to what evalica takes (ints for Winner) is not timed.
        winners = np.where(outcome == 1.0, 1, np.where(outcome == 0.0, 2, 0)).tolist()
        index = pd.RangeIndex(n_items)
        del outcome

        def run() -> Any:
            return evalica.bradley_terry(left, right, winners, index=index, limit=100_000)

        result, seconds = timed(run, spec["repeat"])
        strengths = result.scores.reindex(range(n_items)).to_numpy(dtype=np.float64)
        scores = np.log(strengths)
        iterations, converged = result.iterations, result.iterations < 100_000
    np.save(spec["out"], scores - scores.mean())
    return {
        "seconds": seconds,
        "iterations": int(iterations),
        "converged": bool(converged),
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_ds(spec: dict[str, Any]) -> dict[str, Any]:
    frame, truth = ds_data(spec["tasks"], spec["workers"], spec["overlap"], spec["seed"])
    before = peak_rss_mb()
    out: dict[str, Any] = {"rss_before_mb": before}
    if spec["impl"] == "ours":
        import pandas as pd

        from crowdloop.aggregation.dawid_skene import NumpyDawidSkene, dawid_skene

        model, seconds = timed(lambda: NumpyDawidSkene().fit(frame), spec["repeat"])
        out["peak_rss_mb"] = peak_rss_mb()  # before the extra runs below
        out.update(seconds=seconds, iterations=model.result_.n_iter)
        labels = model.labels_
        if spec.get("fixed_iter"):
            fixed = NumpyDawidSkene(n_iter=spec["fixed_iter"], tol=0.0)
            same, fixed_seconds = timed(lambda: fixed.fit(frame), spec["repeat"])
            out["fixed_iter_seconds"] = fixed_seconds
            out["fixed_iter_accuracy"] = accuracy(same.labels_, truth)
        # The numeric core alone, on codes (factorising the frame is not timed here).
        tasks = pd.factorize(frame["task"], sort=True)[0]
        workers, worker_ids = pd.factorize(frame["worker"], sort=True)
        codes = pd.factorize(frame["label"], sort=True)[0]
        core, core_seconds = timed(
            lambda: dawid_skene(tasks, workers, codes, len(truth), len(worker_ids), 3),
            spec["repeat"],
        )
        out["core_seconds"] = core_seconds
        out["core_iterations"] = core.n_iter
    else:
        from crowdkit.aggregation import DawidSkene

        with warnings.catch_warnings():  # crowd-kit 1.4.2 vs pandas 3 deprecation warnings
            warnings.simplefilter("ignore")
            model, seconds = timed(
                lambda: DawidSkene(n_iter=100, tol=1e-5).fit(frame), spec["repeat"]
            )
        out["peak_rss_mb"] = peak_rss_mb()
        out.update(seconds=seconds, iterations=len(model.loss_history_))
        labels = model.labels_
    out["accuracy"] = accuracy(labels, truth)
    codes_out = labels.sort_index().map({"c0": 0, "c1": 1, "c2": 2}).to_numpy(dtype=np.int8)
    np.save(spec["out"], codes_out)
    return out


def accuracy(labels: Any, truth: np.ndarray) -> float:
    predicted = labels.sort_index().map({"c0": 0, "c1": 1, "c2": 2}).to_numpy()
    return float((predicted == truth).mean())


def child_main(raw: str) -> None:
    spec = json.loads(raw)
    result = child_bt(spec) if spec["kind"] == "bt" else child_ds(spec)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --- parent ----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_child(spec: dict[str, Any], timeout: float, max_mb: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; stop it past timeout or max_mb RSS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    polled = 0.0
    stopped: str | None = None
    while process.poll() is None:
        polled = max(polled, rss_mb(process.pid))
        elapsed = time.perf_counter() - started
        if elapsed > timeout:
            stopped = f"stopped after {elapsed:.0f} s (> {timeout:.0f} s timeout)"
        elif polled > max_mb:
            stopped = f"stopped at {polled / 1024:.1f} GB RSS (> {max_mb / 1024:.1f} GB cap)"
        if stopped:
            process.kill()  # the child this function started, by its handle
            process.wait()
            return {"stopped": stopped, "polled_rss_mb": polled}
        time.sleep(0.1)
    stdout = process.stdout.read() if process.stdout else ""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            result["wall_s"] = time.perf_counter() - started
            return result
    return {"stopped": f"child failed with exit code {process.returncode}"}


def bt_case(
    n: int, items: int, args: argparse.Namespace, workdir: Path, *, try_fallback: bool
) -> dict[str, Any]:
    label = f"{n:,} comparisons / {items:,} items"
    case: dict[str, Any] = {"n": n, "items": items}
    runs: dict[str, dict[str, Any]] = {}
    for name, extra in (
        ("evalica", {"impl": "evalica"}),
        ("ours", {"impl": "ours", "prior": 0.0}),
        ("ours_prior1", {"impl": "ours", "prior": 1.0}),
    ):
        log(f"BT {label}: {name}")
        spec = {"kind": "bt", "n": n, "items": items, "seed": args.seed, "repeat": args.repeat}
        spec |= extra | {"out": str(workdir / f"bt-{n}-{name}.npy")}
        runs[name] = run_child(spec, args.timeout, args.max_gb * 1024)
        log(f"  -> {runs[name]}")
    case["runs"] = runs
    theirs, ours = runs["evalica"], runs["ours"]
    if "stopped" not in theirs and "stopped" not in ours:
        from scipy.stats import spearmanr

        a = np.load(workdir / f"bt-{n}-ours.npy")
        b = np.load(workdir / f"bt-{n}-evalica.npy")
        case["ratio"] = ours["seconds"] / theirs["seconds"]
        if "stopped" not in runs["ours_prior1"]:
            case["ratio_prior1"] = runs["ours_prior1"]["seconds"] / theirs["seconds"]
        case["spearman"] = float(spearmanr(a, b).statistic)
        case["max_abs_log_score_diff"] = float(np.max(np.abs(a - b)))
    elif "stopped" in theirs and try_fallback and args.fallback:
        fallback_items = max(2, round(items * args.fallback / n))
        log(f"evalica {theirs['stopped']}: ratio at {args.fallback:,} instead")
        case["fallback"] = bt_case(args.fallback, fallback_items, args, workdir, try_fallback=False)
    return case


def ds_case(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tasks, workers = (10_000, 50) if args.quick else (100_000, 500)
    base = {"kind": "ds", "tasks": tasks, "workers": workers, "overlap": 5}
    base |= {"seed": args.seed, "repeat": args.repeat}
    case: dict[str, Any] = {"tasks": tasks, "workers": workers, "labels": tasks * 5}
    log(f"DS {tasks * 5:,} labels: crowd-kit")
    theirs = run_child(
        base | {"impl": "crowdkit", "out": str(workdir / "ds-crowdkit.npy")},
        args.ds_timeout,
        args.max_gb * 1024,
    )
    log(f"  -> {theirs}")
    log(f"DS {tasks * 5:,} labels: ours")
    fixed = theirs.get("iterations", 0)
    ours = run_child(
        base | {"impl": "ours", "out": str(workdir / "ds-ours.npy"), "fixed_iter": fixed},
        args.ds_timeout,
        args.max_gb * 1024,
    )
    log(f"  -> {ours}")
    case["runs"] = {"crowdkit": theirs, "ours": ours}
    if "stopped" not in theirs and "stopped" not in ours:
        case["ratio"] = ours["seconds"] / theirs["seconds"]
        case["ratio_same_iterations"] = ours["fixed_iter_seconds"] / theirs["seconds"]
        case["ratio_core"] = ours["core_seconds"] / theirs["seconds"]
        a = np.load(workdir / "ds-ours.npy")
        b = np.load(workdir / "ds-crowdkit.npy")
        case["label_agreement"] = float((a == b).mean())
    return case


def print_report(report: dict[str, Any]) -> None:
    if report["bt"]:
        print()
        print("=== Bradley-Terry: crowdloop bradley_terry vs evalica.bradley_terry ===")
        for case in report["bt"]:
            print_bt_case(case, indent="")
    if report["ds"]:
        print_ds_case(report["ds"])
    env = report["environment"]
    print()
    print(
        f"environment: {env['cores']} cores, load average at start {env['load_start']}, "
        f"at end {env['load_end']}; OPENBLAS_CORETYPE={env['openblas_coretype']!r}; "
        f"python {env['python']}, numpy {env['numpy']}, evalica {env['evalica']}, "
        f"crowd-kit {env['crowdkit']}; repeat={env['repeat']} (best of)"
    )


def print_ds_case(ds: dict[str, Any]) -> None:
    print()
    print(f"=== Dawid-Skene: NumpyDawidSkene vs crowd-kit DawidSkene, {ds['labels']:,} labels ===")
    print(f"    ({ds['tasks']:,} tasks x 5 answers, {ds['workers']} workers, 30 % spammers)")
    runs = ds["runs"]
    for name in ("crowdkit", "ours"):
        run = runs[name]
        if "stopped" in run:
            print(f"  {name:9s} {run['stopped']}")
            continue
        print(
            f"  {name:9s} {run['seconds']:8.2f} s  {run['iterations']:3d} iterations  "
            f"accuracy {run['accuracy']:.4f}  peak RSS {run['peak_rss_mb']:6.0f} MB "
            f"(before the call {run['rss_before_mb']:.0f} MB)"
        )
    if "ratio" in ds:
        ours, theirs = runs["ours"], runs["crowdkit"]
        print(f"  ratio ours / crowd-kit: {ds['ratio']:.4f}  (speed-up {1 / ds['ratio']:.1f}x)")
        print(
            f"  same iteration count ({theirs['iterations']}, tol=0): "
            f"{ours['fixed_iter_seconds']:.2f} s, ratio {ds['ratio_same_iterations']:.4f} "
            f"(speed-up {1 / ds['ratio_same_iterations']:.1f}x), "
            f"accuracy {ours['fixed_iter_accuracy']:.4f}"
        )
        print(
            f"  numeric core on codes (dawid_skene, no frame handling): "
            f"{ours['core_seconds']:.3f} s, ratio {ds['ratio_core']:.4f} "
            f"(speed-up {1 / ds['ratio_core']:.1f}x)"
        )
        print(f"  predicted labels agree with crowd-kit's on {ds['label_agreement']:.2%} of tasks")


def print_bt_case(case: dict[str, Any], indent: str) -> None:
    print(f"{indent}{case['n']:,} comparisons over {case['items']:,} items")
    for name, run in case["runs"].items():
        if "stopped" in run:
            print(f"{indent}  {name:12s} {run['stopped']}")
            continue
        print(
            f"{indent}  {name:12s} {run['seconds']:8.2f} s  {run['iterations']:6d} iterations  "
            f"peak RSS {run['peak_rss_mb']:6.0f} MB (before the call {run['rss_before_mb']:.0f} MB)"
        )
    if "ratio" in case:
        print(
            f"{indent}  ratio ours / evalica: {case['ratio']:.3f} (prior=0)"
            + (f", {case['ratio_prior1']:.3f} (prior=1)" if "ratio_prior1" in case else "")
        )
        print(
            f"{indent}  Spearman(ours, evalica) = {case['spearman']:.6f}; largest difference of "
            f"centred log-scores {case['max_abs_log_score_diff']:.2e}"
        )
    if "fallback" in case:
        print(f"{indent}  evalica did not finish at this size; ratio at a smaller size:")
        print_bt_case(case["fallback"], indent + "    ")


def load_average() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="best of N timed calls")
    parser.add_argument("--timeout", type=float, default=300.0, help="per BT run, seconds")
    parser.add_argument("--ds-timeout", type=float, default=1800.0, help="per DS run, seconds")
    parser.add_argument("--max-gb", type=float, default=8.0, help="RSS cap per child")
    parser.add_argument(
        "--fallback", type=int, default=3_000_000, help="BT size for a ratio if evalica stops"
    )
    parser.add_argument("--only", choices=["bt", "ds"], help="run one half only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return

    import crowdkit
    import evalica

    sizes = [(1_000_000, 1_000), (10_000_000, 10_000)]
    if args.quick:
        sizes = [(n // 10, items // 10) for n, items in sizes]
        args.fallback //= 10
    environment = {
        "cores": os.cpu_count(),
        "load_start": load_average(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "evalica": evalica.__version__,
        "crowdkit": getattr(crowdkit, "__version__", "?"),
        "repeat": args.repeat,
    }
    report: dict[str, Any] = {"quick": args.quick, "bt": [], "ds": None}
    with tempfile.TemporaryDirectory(prefix="bench-aggregation-") as tmp:
        workdir = Path(tmp)
        if args.only != "ds":
            report["bt"] = [
                bt_case(n, items, args, workdir, try_fallback=True) for n, items in sizes
            ]
        if args.only != "bt":
            report["ds"] = ds_case(args, workdir)
    environment["load_end"] = load_average()
    report["environment"] = environment
    print_report(report)
    print()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
