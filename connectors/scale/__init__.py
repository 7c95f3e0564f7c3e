"""Scale AI (https://scale.com) as a crowdloop marketplace, through Scale's v1 REST API.

See `connector.py` for the endpoints used, authentication, pagination, rate limits,
idempotency and where each is documented.
"""

from crowdloop.connectors.scale.connector import ScaleConnector, ScaleOptions
from crowdloop.connectors.scale.credentials import ScaleCredentials

__all__ = ["ScaleConnector", "ScaleCredentials", "ScaleOptions"]
