"""Stable identifiers derived from campaign data, never from a run id.

A rerun derives the same ids and so the same idempotency keys, which is what lets the
push ledger and the marketplace recognise work that was already done.
"""

from __future__ import annotations

import hashlib
import random


def digest(*parts: object, length: int = 16) -> str:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8"))
    return h.hexdigest()[:length]


def stable_id(prefix: str, *parts: object) -> str:
    return f"{prefix}-{digest(*parts)}"


def coin(*parts: object) -> bool:
    """A deterministic fair coin (left/right randomisation that a rerun reproduces)."""
    return int(digest(*parts, length=2), 16) % 2 == 1


def compare_item_id(campaign_id: str, prompt_id: str, a: str, b: str) -> str:
    """The item id of the comparison of candidates `a` and `b` (ids of the candidates file).

    Order-free, so a replay of a recorded study can find the item a pair became.
    """
    return stable_id("cmp", campaign_id, prompt_id, *sorted((a, b)))


def seeded_rng(*parts: object) -> random.Random:
    """A random generator that depends only on its parts: the simulator draws every answer,
    delay and fault from one, so a run is a pure function of its seeds."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))
