"""One driver per campaign: a lease row with an expiry, renewed by a heartbeat thread.

A row lock or an advisory lock would die with its connection, which a connection pool
and SQLite do not give us; a lease row works the same on both backends. Taking it is one
conditional write (insert if absent, else take over only if expired or already ours), so
two processes racing for it cannot both win. A holder that dies stops renewing, and the
lease is free again `ttl_s` later; a holder that loses it (the machine slept past the
expiry and someone took over) finds out at its next heartbeat and stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import col

from crowdloop.db import insert_ignore, session_scope
from crowdloop.models.tables import CampaignLease, utcnow

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 60.0

# Leases this process holds, so code deep in a run can ask whether it still drives.
_ACTIVE: dict[str, Lease] = {}


class CampaignBusy(RuntimeError):
    """Another live run drives the campaign."""

    def __init__(self, campaign_id: str, holder: str, expires_at: datetime) -> None:
        super().__init__(
            f"campaign {campaign_id!r} is being driven by {holder} (lease renewed until "
            f"{expires_at:%Y-%m-%d %H:%M:%S} UTC); wait for it, cancel it "
            f"(crowdloop cancel {campaign_id}), or run with --wait"
        )
        self.holder = holder


class LeaseLost(RuntimeError):
    pass


@dataclass
class Lease:
    campaign_id: str
    holder: str
    ttl_s: float
    lost: bool = False

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(
                f"campaign {self.campaign_id!r}: this run lost its lease (another run took "
                "over after it expired); stopping without further changes"
            )


def check_active(campaign_id: str) -> None:
    """Raise LeaseLost if this process held the campaign's lease and lost it."""
    lease = _ACTIVE.get(campaign_id)
    if lease is not None:
        lease.check()


def _dead_here(holder: str) -> bool:
    """True if `holder` names a process on this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def try_acquire(
    campaign_id: str,
    holder: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    description: str = "",
    flow_run_id: str | None = None,
) -> CampaignLease | None:
    """Take the lease if it is free, expired or already ours; else return the holder's row."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    values = {
        "campaign_id": campaign_id,
        "holder": holder,
        "description": description[:300],
        "flow_run_id": flow_run_id,
        "acquired_at": now,
        "expires_at": expires,
    }
    with session_scope() as s:
        if insert_ignore(s, CampaignLease, [values], ["campaign_id"]):
            return None
        taken = s.execute(
            update(CampaignLease)
            .where(
                col(CampaignLease.campaign_id) == campaign_id,
                (col(CampaignLease.expires_at) < now) | (col(CampaignLease.holder) == holder),
            )
            .values(**{k: v for k, v in values.items() if k != "campaign_id"})
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return None
        row = s.get(CampaignLease, campaign_id)
        if row is None:  # released between our two statements: try once more later
            return CampaignLease(campaign_id=campaign_id, holder="(released)", expires_at=now)
        if _dead_here(row.holder):
            # The holder ran on this machine and its process is gone (killed, crashed):
            # no need to wait out the expiry. Taken over only if it is still that holder.
            taken = s.execute(
                update(CampaignLease)
                .where(
                    col(CampaignLease.campaign_id) == campaign_id,
                    col(CampaignLease.holder) == row.holder,
                )
                .values(**{k: v for k, v in values.items() if k != "campaign_id"})
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                logger.warning(
                    "campaign %s: took over the lease of %s, whose process is gone",
                    campaign_id,
                    row.holder,
                )
                return None
        return row


def acquire(
    campaign_id: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    description: str = "",
    flow_run_id: str | None = None,
    wait_s: float = 0.0,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    holder: str | None = None,
) -> Lease:
    """The campaign's lease, or CampaignBusy at once (or after `wait_s` of polling)."""
    holder = holder or new_holder()
    deadline = time.monotonic() + wait_s
    while True:
        other = try_acquire(
            campaign_id, holder, ttl_s=ttl_s, description=description, flow_run_id=flow_run_id
        )
        if other is None:
            return Lease(campaign_id, holder, ttl_s)
        if time.monotonic() >= deadline:
            raise CampaignBusy(
                campaign_id, other.description or other.holder, _aware(other.expires_at)
            )
        sleep(min(poll_s, max(0.0, deadline - time.monotonic())) or poll_s)


def renew(lease: Lease) -> bool:
    """Push the expiry out; False if the lease is no longer ours."""
    with session_scope() as s:
        done = s.execute(
            update(CampaignLease)
            .where(
                col(CampaignLease.campaign_id) == lease.campaign_id,
                col(CampaignLease.holder) == lease.holder,
            )
            .values(expires_at=utcnow() + timedelta(seconds=lease.ttl_s))
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]


def release(lease: Lease) -> None:
    with session_scope() as s:
        s.execute(
            delete(CampaignLease).where(
                col(CampaignLease.campaign_id) == lease.campaign_id,
                col(CampaignLease.holder) == lease.holder,
            )
        )


def current(campaign_id: str) -> CampaignLease | None:
    """The live lease on the campaign, if any (an expired one is nobody's)."""
    with session_scope() as s:
        row = s.get(CampaignLease, campaign_id)
        if row is None or _aware(row.expires_at) < utcnow() or _dead_here(row.holder):
            return None
        return row


@contextmanager
def held(
    campaign_id: str,
    *,
    ttl_s: float = DEFAULT_TTL_S,
    description: str = "",
    flow_run_id: str | None = None,
    wait_s: float = 0.0,
) -> Iterator[Lease]:
    """Hold the lease for the body, renewed every ttl/3 by a daemon thread."""
    lease = acquire(
        campaign_id,
        ttl_s=ttl_s,
        description=description,
        flow_run_id=flow_run_id,
        wait_s=wait_s,
    )
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                if not renew(lease):
                    lease.lost = True
                    logger.error("campaign %s: lease lost", campaign_id)
                    return
            except Exception as exc:  # a database hiccup: try again at the next beat
                logger.warning("campaign %s: lease renewal failed: %s", campaign_id, exc)

    thread = threading.Thread(target=beat, name=f"lease-{campaign_id}", daemon=True)
    thread.start()
    _ACTIVE[campaign_id] = lease
    try:
        yield lease
    finally:
        _ACTIVE.pop(campaign_id, None)
        stop.set()
        thread.join(timeout=5)
        if not lease.lost:
            release(lease)
