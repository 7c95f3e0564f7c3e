"""The campaign spec as stored in the database, and how older stored shapes are read.

`Campaign.spec` keeps the spec as it was when the campaign was registered (or last
updated in place); `Campaign.spec_version` says which shape that is. Reading goes through
`read_stored_spec`, which upgrades an older shape one version at a time (one function per
step in `UPGRADES`) and refuses a newer one, naming the campaign and both versions.

When the spec model changes so that a stored spec would no longer validate or would change
meaning (a field renamed, removed, or a default changed for existing campaigns): bump
`SPEC_VERSION`, add the step from the previous version to `UPGRADES`, and test it with a
spec stored in the old shape. Adding an optional field whose default keeps old campaigns
as they were needs no new version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from crowdloop.models.spec import CampaignSpec, SpecError

# The shape `register_campaign` stores today.
SPEC_VERSION = 2

StoredSpec = dict[str, Any]


class StoredSpecError(SpecError):
    """A stored spec this code cannot read; the message is one line naming the campaign."""


def _v1_to_v2(spec: StoredSpec) -> StoredSpec:
    """Version 1 is every spec stored before versions were recorded. The earliest of them
    (before quality.on_fail, commit b0f05ac) carry `quality.block_on_marketplace` and
    `quality.reject_blocked_work`, which the model now refuses. `block_on_marketplace:
    false` excluded a failed worker's answers without blocking them on the marketplace,
    which is `on_fail: exclude`; `reject_blocked_work` is `reject_untrusted_work`."""
    quality = dict(spec.get("quality") or {})
    if "block_on_marketplace" in quality:
        block = quality.pop("block_on_marketplace")
        quality.setdefault("on_fail", "block" if block else "exclude")
    if "reject_blocked_work" in quality:
        quality.setdefault("reject_untrusted_work", quality.pop("reject_blocked_work"))
    return {**spec, "quality": quality}


# UPGRADES[n] turns a version-n spec into a version n+1 spec.
UPGRADES: dict[int, Callable[[StoredSpec], StoredSpec]] = {
    1: _v1_to_v2,
}


def upgrade_stored_spec(campaign_id: str, spec: StoredSpec, version: int) -> StoredSpec:
    """The stored spec in today's shape (version `SPEC_VERSION`)."""
    if version > SPEC_VERSION:
        raise StoredSpecError(
            f"campaign {campaign_id!r} was stored with spec version {version} by a newer "
            f"crowdloop; this one reads spec versions 1 to {SPEC_VERSION}: upgrade crowdloop"
        )
    if version < 1:
        raise StoredSpecError(
            f"campaign {campaign_id!r} has spec version {version}; versions start at 1"
        )
    for step in range(version, SPEC_VERSION):
        spec = UPGRADES[step](spec)
    return spec


def read_stored_spec(campaign_id: str, spec: StoredSpec, version: int) -> CampaignSpec:
    """The campaign's spec, whatever version of crowdloop stored it (see the module doc)."""
    data = upgrade_stored_spec(campaign_id, spec, version)
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise StoredSpecError(
            f"campaign {campaign_id!r}: its stored spec (version {version}) does not "
            f"validate after upgrading to version {SPEC_VERSION}: field {where!r}: "
            f"{err['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from None
