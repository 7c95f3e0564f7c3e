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
- `release_free_memory()`: the heap's free pages back to the OS between stages.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import suppress
from functools import cache

# Fixed (mallopt turns the dynamic adjustment off) at 1 MiB. At 10^6 judgments glibc's
# default of 128 KiB took the peaks as low (the check 512-523 MiB against 542 dynamic) but
# mapped afresh every boolean mask and per-pair array the check makes (+12 s of CPU, and
# at 10^5 the quality estimation's share of the campaign's CPU 20.5 -> 26.7%, two runs
# each); 4 MiB left the check's peak where it was (536.5). At 10^5 judgments no
# per-answer array reaches 1 MiB: the estimation's CPU did not move there.
MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


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
    return bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(threshold)))


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
