"""Reading a platform's answers: what every connector does with one it cannot read.

An answer that does not parse is never dropped and never guessed at: it becomes a
`Quarantined` record carrying the reason and the vendor's raw JSON (kept inside the
store's quarantine, never in a dataset), so an operator can see what the platform sent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from crowdloop.models.domain import Quarantined


def first_error(exc: ValidationError, *, tagged_union: bool = False) -> str:
    """`field.path: message` of the first validation error, for a quarantine reason.

    A tagged union puts the tag first in the location ("preference.choice"): pass
    `tagged_union=True` to drop it."""
    error = exc.errors()[0]
    loc = error["loc"][1:] if tagged_union else error["loc"]
    where = ".".join(str(part) for part in loc) or "value"
    return f"{where}: {error['msg']}"


def quarantined(
    external_id: str, reason: str, raw: Any, *, task_key: object = None, worker_id: object = None
) -> Quarantined:
    """A record of an unreadable answer. `task_key` and `worker_id` are whatever the raw
    record held there: kept when they are strings, else None (the record is not trusted)."""
    return Quarantined(
        external_id=external_id,
        task_key=task_key if isinstance(task_key, str) else None,
        worker_id=worker_id if isinstance(worker_id, str) else None,
        reason=reason,
        raw=json.dumps(raw, sort_keys=True, default=str),
    )


def quarantine_for(
    external_id: str, raw: Any, *, task_key: object = None, worker_id: object = None
) -> Callable[[str], Quarantined]:
    """`reason -> Quarantined` for one raw record, so each way a reader can fail is one line."""
    return functools.partial(
        quarantined, external_id, raw=raw, task_key=task_key, worker_id=worker_id
    )
