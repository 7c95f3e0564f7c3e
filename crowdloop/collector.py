"""Python's cyclic garbage collector around campaign work: `paused()` turns it off for a
bulk loop over database rows and back on after.

Why: every row tuple (and the dicts and models made from them) counts towards the next
collection, and objects alive across one (a page, a partition, a chunk) are promoted to
older generations, whose collections walk every object the process holds (a campaign
process: a few hundred thousand, Prefect's and SQLAlchemy's included). Measured at ~10^5
judgments: ~28 % of the sync's CPU was full collections (sync12); the review of 122,857
submissions 1.16 -> 0.85 s of CPU (check12). The loops make no reference cycles of their
own (row tuples, strings, numbers, dicts of them, arrays): they are freed by reference
counting, and what a callee leaves in a cycle waits for the next collection after the
block. The switch is process-wide: a pause that overlaps another (threads of a flow's task
runner) leaves the collector as the outer one found it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The cyclic collector off for a block; back on after only if it was on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
