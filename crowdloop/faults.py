"""Named crash points, for the tests that kill a campaign mid-flight and rerun it.

`CROWDLOOP_CRASH_AT=point` (or `point@N` for the N-th time it is reached) makes the
process exit at once, as a kill would: no exception handler, no cleanup, no commit.
Unset, a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
from collections import Counter

CRASH_EXIT_CODE = 86
_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get("CROWDLOOP_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os._exit(CRASH_EXIT_CODE)
