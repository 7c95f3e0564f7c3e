"""crowdloop/allocator.py: importing the package fixes glibc's mmap threshold, so a block
of a few MiB freed after a larger one is given back to the OS instead of staying in the
heap (the dynamic threshold's behaviour, which raised the peaks of the final stages at
10^6 judgments); an operator's own setting stands."""

from __future__ import annotations

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
