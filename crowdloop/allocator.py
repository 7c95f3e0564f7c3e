"""The C allocator's settings a campaign process needs, in one place.

- `fix_mmap_threshold()` (called when the package is imported): glibc serves a request at
  or above its mmap threshold with a mapping of its own, given back to the OS when freed,
  and smaller ones from its heap. The threshold starts at 128 KiB but rises to the size
  of the largest mapped block freed so far (up to 32 MiB), and the heap's trim threshold
  to twice that. A campaign frees arrays of several MiB in its first quality round
  (~1.2M answers at 10^6 judgments: 4.7 MiB per int32 column), so from then on its
  numpy arrays come from the heap, whose freed holes and top stay resident: the peaks
  of the check, the aggregation and the report were that much higher. Fixing the
  threshold (at 1 MiB, `MMAP_THRESHOLD`) keeps them mapped apart. Measured at ~1.23M
  judgments (bench/bench_campaign.py --scale 10): docs/at-scale.md, section mem15.
  Its cost is page faults on fresh mappings (CPU, mostly in the quality check). An
  operator's own ``MALLOC_MMAP_THRESHOLD_`` stands (glibc applied it at start-up; a value
  of 33554432 gives the heap back its large blocks).
  The cost is paid by arrays of item size too: at 10^6 judgments a campaign has ~192k
  responses, so every temporary of a Bradley-Terry iteration (1.5 MiB) was mapped,
  faulted in and unmapped afresh, where at 10^5 (150 KiB) it came from the heap; the
  cross-fit took 24x its CPU for 10x the judgments.
- `heap_temporaries()`: around a kernel that iterates over arrays of one size (a
  Bradley-Terry fit, the change-point scan), blocks up to 32 MiB come from the heap, so
  each iteration reuses the last one's memory; leaving the outermost such block puts the
  fixed threshold back and returns the heap's free pages. The arrays a kernel is given
  were mapped before it began and those it keeps are few, so the heap gains no lasting
  holes: measured on the 10^6 database (docs/at-scale.md, cpu16), the crowd assessment
  took 10.7-11.2 s of CPU against 19.5-21.2 with its peak unchanged (412-414 MiB).
- `release_free_memory()`: the heap's free pages back to the OS between stages.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache

# Fixed (mallopt turns the dynamic adjustment off) at 1 MiB. At 10^6 judgments glibc's
# default of 128 KiB took the peaks as low (the check 512-523 MiB against 542 dynamic) but
# mapped afresh every boolean mask and per-pair array the check makes (+12 s of CPU, and
# at 10^5 the quality estimation's share of the campaign's CPU 20.5 -> 26.7%, two runs
# each); 4 MiB left the check's peak where it was (536.5). At 10^5 judgments no
# per-answer array reaches 1 MiB: the estimation's CPU did not move there.
MMAP_THRESHOLD = 1024 * 1024
# Inside `heap_temporaries`: glibc's own ceiling for the dynamic threshold (64-bit).
KERNEL_MMAP_THRESHOLD = 32 * 1024 * 1024
# ... and the heap's top is kept up to this much (else a block freed at the top went back
# to the OS at once, to be faulted in again by the next iteration's).
KERNEL_TRIM_THRESHOLD = 64 * 1024 * 1024
# glibc's trim threshold with the mmap threshold fixed (its DEFAULT_TRIM_THRESHOLD).
TRIM_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, for `mallopt` and `malloc_trim` (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc's; musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (True when set; False off glibc or when the operator set
    ``MALLOC_MMAP_THRESHOLD_``)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = _libc()
    if libc is None:
        return False
    fixed = _mallopt(libc, _M_MMAP_THRESHOLD, threshold)
    _heap_scope.threshold = threshold if fixed else None
    return fixed


class _HeapScope:
    """How many `heap_temporaries` blocks are open (in any thread: the threshold is the
    process's), and the fixed threshold to put back when the last one closes (None: never
    fixed, so nothing to raise or put back)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.threshold: int | None = None


_heap_scope = _HeapScope()


@contextmanager
def heap_temporaries() -> Iterator[None]:
    """Serve blocks up to `KERNEL_MMAP_THRESHOLD` from the heap while the block runs
    (module docstring); also a decorator. Nested and concurrent blocks share one raise:
    the fixed threshold is back, and the heap trimmed, when the last of them ends.
    Nothing changes where the threshold was not fixed (off glibc, or the operator's)."""
    scope = _heap_scope
    libc = _libc()
    if scope.threshold is None or libc is None:
        yield
        return
    with scope.lock:
        scope.depth += 1
        if scope.depth == 1:
            _mallopt(libc, _M_TRIM_THRESHOLD, KERNEL_TRIM_THRESHOLD)
            _mallopt(libc, _M_MMAP_THRESHOLD, KERNEL_MMAP_THRESHOLD)
    try:
        yield
    finally:
        with scope.lock:
            scope.depth -= 1
            if scope.depth == 0:
                _mallopt(libc, _M_MMAP_THRESHOLD, scope.threshold)
                _mallopt(libc, _M_TRIM_THRESHOLD, _trim_threshold())
                libc.malloc_trim(0)


def _mallopt(libc: ctypes.CDLL, option: int, value: int) -> bool:
    """glibc's ``mallopt`` (True when it took the value)."""
    return bool(libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)))


def _trim_threshold() -> int:
    """The trim threshold to put back: the operator's ``MALLOC_TRIM_THRESHOLD_`` (glibc read
    it at start-up), else glibc's default."""
    with suppress(KeyError, ValueError):
        return int(os.environ["MALLOC_TRIM_THRESHOLD_"])
    return TRIM_THRESHOLD


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim``; nothing where
    there is none). A large read leaves its buffers freed but resident, and the arrays
    and objects made next are mostly not served from them (numpy's large ones are mapped
    apart, Python's small objects come from their own arenas): measured after the
    comparison evidence read at 10^6 answers, 90 of the process's 446 MiB were such pages.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
    # Arrow's own pool, when an operator chose one other than the system allocator
    # (`ARROW_DEFAULT_MEMORY_POOL`, crowdloop/__init__.py): mimalloc and jemalloc keep what
    # dropped string columns freed resident, out of malloc_trim's reach. Only when pyarrow
    # is loaded: importing it here would cost more than it frees.
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        with suppress(Exception):
            arrow.default_memory_pool().release_unused()
