"""Scale AI (https://scale.com) as a crowdloop marketplace, through Scale's v1 REST API.

See `connector.py` for the endpoints used, authentication, pagination, rate limits,
idempotency and where each is documented.
"""

from typing import Any

from crowdloop.connectors.scale.connector import ScaleConnector, ScaleOptions

__all__ = ["ScaleConnector", "ScaleCredentials", "ScaleOptions"]


def __getattr__(name: str) -> Any:
    # The credentials block imports Prefect: only when asked for.
    if name == "ScaleCredentials":
        from crowdloop.connectors.scale.credentials import ScaleCredentials

        return ScaleCredentials
    raise AttributeError(name)
