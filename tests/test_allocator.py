"""crowdloop/allocator.py: importing the package fixes glibc's mmap threshold, so a block
of a few MiB freed after a larger one is given back to the OS instead of staying in the
heap (the dynamic threshold's behaviour, which raised the peaks of the final stages at
10^6 judgments); an operator's own setting stands. Inside `heap_temporaries` a kernel's
blocks of a few MiB are reused from the heap instead of mapped and faulted in afresh each
time; leaving it puts the fixed threshold back and returns what the kernel freed."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc only",
)

# Frees one 16 MiB block (glibc's dynamic threshold rises to its size, its trim threshold
# to twice that), then allocates, writes and frees 24 MiB in 4 MiB blocks (under that
# threshold, so from the heap unless the threshold is fixed) and prints how much of it is
# still resident, in MiB.
_PROBE = """
import sys
if sys.argv[1] == "crowdloop":
    import crowdloop  # noqa: F401
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
big = bytearray(16 << 20)
del big
before = resident()
blocks = []
for _ in range(6):
    block = bytearray(4 << 20)
    block[::4096] = b"x" * (1024)  # every page written: calloc's fresh pages are not
    blocks.append(block)
del blocks, block
print((resident() - before) / 2**20)
"""


def _resident_after_free(mode: str, **env: str) -> float:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout.strip())


def test_the_package_fixes_the_threshold_so_freed_blocks_leave() -> None:
    # Without crowdloop the 24 MiB stay resident (the heap's top, under a trim threshold
    # of twice the raised mmap threshold): the probe can tell the two apart.
    assert _resident_after_free("plain") >= 20
    assert _resident_after_free("crowdloop") < 4


def test_an_operators_threshold_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    from crowdloop.allocator import fix_mmap_threshold

    # The operator's values, as glibc read them at start-up: every block comes from the
    # heap, the 16 MiB one too, and the 8 MiB the blocks took beyond it stay resident.
    kept = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
    assert _resident_after_free("crowdloop", **kept) >= 6
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(32 << 20))
    assert fix_mmap_threshold() is False


# Allocates, writes and frees a 4 MiB block 16 times outside `heap_temporaries`, inside it
# (nested, as a Bradley-Terry fit inside the cross-fit), and outside again, and prints
# each pass's minor page faults; then how much of 24 MiB written and freed inside a block
# is still resident after it, in MiB.
_KERNEL_PROBE = """
import json, resource
from crowdloop.allocator import heap_temporaries
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
def churn():
    before = faults()
    for _ in range(16):
        block = bytearray(4 << 20)
        block[::4096] = b"x" * 1024
        del block
    return faults() - before
out = {"outside": churn()}
with heap_temporaries():
    with heap_temporaries():
        out["inside"] = churn()
    out["inside_outer"] = churn()
out["after"] = churn()
before = resident()
with heap_temporaries():
    blocks = [bytearray(4 << 20) for _ in range(6)]
    for block in blocks:
        block[::4096] = b"x" * 1024
    del blocks, block
out["kept_mib"] = (resident() - before) / 2**20
print(json.dumps(out))
"""


def _kernel_probe(**env: str) -> dict[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _KERNEL_PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout))


def test_a_kernels_blocks_are_reused_from_the_heap_and_returned_after() -> None:
    seen = _kernel_probe()
    # A 4 MiB block is 1,024 pages: mapped afresh, each pass faults them all in 16 times.
    assert seen["outside"] >= 16 * 1000
    # Inside, the first block's pages serve the rest (nested blocks share the raise).
    assert seen["inside"] < 2 * 1024
    assert seen["inside_outer"] < 2 * 1024
    # The fixed threshold is back once the outermost block ends.
    assert seen["after"] >= 16 * 1000
    # And the 24 MiB the block wrote and freed went back to the OS when it ended.
    assert seen["kept_mib"] < 4


def test_an_operators_threshold_is_left_alone_by_kernels() -> None:
    # Under the operator's values every block is from the heap already, outside the block
    # as inside, and leaving it puts no 1 MiB threshold in their place.
    kept = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
    seen = _kernel_probe(**kept)
    assert seen["outside"] < 2 * 1024
    assert seen["after"] < 2 * 1024
