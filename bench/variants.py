"""What the benchmarks comparing variants share: running them side by side (each
repetition runs every variant once, in turn, A B A B ..., each in a fresh child process of
the benchmark's own script, so that the machine's load falls on all of them alike and no
variant inherits another's heap), loading a module as it was at another commit, and the
process's resident memory."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_interleaved(
    script: str,
    variants: Sequence[str],
    repeats: int,
    child_args: Sequence[str],
    describe: Callable[[dict[str, Any]], str],
) -> dict[str, list[dict[str, Any]]]:
    """Run `script --child VARIANT *child_args` for every variant, `repeats` times over,
    interleaved; a child prints its result as JSON on its last line. Prints one line per
    run (`describe(row)`) as it comes; returns the rows per variant, in run order."""
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    width = max(len(v) for v in variants)
    for r in range(repeats):
        for variant in variants:
            out = subprocess.run(
                [sys.executable, script, "--child", variant, *child_args],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results[variant].append(row)
            print(f"run {r + 1} {variant:>{width}}: {describe(row)}", flush=True)
    return results


def load_at(commit: str, path: str, name: str) -> Any:
    """The module at `path` (from the repository root) as of `commit`, registered as
    `name` in sys.modules (dataclasses look their module up there)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(name)
    module.__file__ = f"<{commit}:{path}>"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def release_free_memory() -> None:
    """The tree's own `release_free_memory`, wherever that tree keeps it
    (crowdloop/allocator.py; crowdloop/runtime.py before it), so a benchmark compares
    trees from both sides of the move. Imported at the call: the parent process, which
    imports this module too, never loads crowdloop."""
    try:
        from crowdloop.allocator import release_free_memory as release
    except ImportError:  # a tree from before crowdloop/allocator.py
        from crowdloop.runtime import release_free_memory as release  # type: ignore[attr-defined,no-redef]
    release()


def rss_mib(field: str = "VmRSS") -> float:
    """A field of /proc/self/status in MiB (VmRSS: the resident set now); NaN where /proc
    is missing."""
    status = Path("/proc/self/status")
    if not status.exists():
        return float("nan")
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hwm_mib() -> float:
    """The peak resident set (VmHWM) since the process started or since it was reset by
    writing 5 to /proc/self/clear_refs, in MiB."""
    return rss_mib("VmHWM")


def crowdloop_stack(thread: int | None) -> list[str]:
    """The thread's frames in crowdloop's code, outermost first (file:line function), the
    innermost six: where a sampled memory peak was."""
    frame = sys._current_frames().get(thread or 0)
    out = []
    while frame is not None:
        code = frame.f_code
        if "crowdloop" in code.co_filename:
            name = code.co_filename.rsplit("crowdloop/", 1)[-1]
            out.append(f"{name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return out[::-1][-6:]
