"""Connector discovery through the `crowdloop.connectors` entry-point group.

A connector can live in another distribution: it registers
`[project.entry-points."crowdloop.connectors"] name = "pkg.module:Class"`.
One plugin that fails to import is reported and does not hide the others.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from crowdloop.connectors.base import Connector

logger = logging.getLogger(__name__)

GROUP = "crowdloop.connectors"


class UnknownConnector(LookupError):
    pass


@dataclass(frozen=True)
class ConnectorInfo:
    name: str
    target: str
    cls: type[Connector] | None
    error: str | None


def discover() -> dict[str, ConnectorInfo]:
    found: dict[str, ConnectorInfo] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Connector)):
                raise TypeError(f"{ep.value} is not a crowdloop Connector subclass")
            found[ep.name] = ConnectorInfo(ep.name, ep.value, cls, None)
        except Exception as exc:  # a broken plugin must not break the others
            message = f"connector plugin {ep.name!r} ({ep.value}) failed to load: {exc}"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            found[ep.name] = ConnectorInfo(ep.name, ep.value, None, str(exc))
    return found


def get_connector_class(name: str) -> type[Connector]:
    info = discover().get(name)
    if info is None:
        known = ", ".join(sorted(discover())) or "none"
        raise UnknownConnector(f"no connector named {name!r} is installed (installed: {known})")
    if info.cls is None:
        raise UnknownConnector(f"connector {name!r} is installed but failed to load: {info.error}")
    return info.cls


def validate_options(name: str, options: Mapping[str, Any]) -> None:
    """Check a campaign's `connector.options` against the connector's options model.

    Raises UnknownConnector, or pydantic's ValidationError (locations relative to
    `options`). A plugin without an options model accepts any options."""
    model = get_connector_class(name).options_model
    if model is not None:
        model.model_validate(dict(options))


def build_connector(
    name: str, options: Mapping[str, Any] | None = None, credentials_block: str | None = None
) -> Connector:
    return get_connector_class(name).from_config(options or {}, credentials_block)
