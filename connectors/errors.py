"""One error tree for every connector; flows catch these, never httpx's own exceptions."""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base error: names the connector and, where the platform sent one, its request id."""

    def __init__(self, connector: str, message: str, *, request_id: str | None = None) -> None:
        self.connector = connector
        self.message = message
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"[{connector}] {message}{suffix}")


class TransientError(ConnectorError):
    """A 408/5xx or a transport failure: safe to retry a keyed or read-only call."""


class RateLimited(TransientError):
    def __init__(
        self,
        connector: str,
        message: str,
        *,
        retry_after: float | None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(connector, message, request_id=request_id)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """401/403: wrong or missing credentials. Never retried."""


class NotFound(ConnectorError):
    pass


class AlreadyExists(ConnectorError):
    """A create was refused because an object with the same key exists."""

    def __init__(
        self, connector: str, message: str, *, existing: Any = None, request_id: str | None = None
    ) -> None:
        super().__init__(connector, message, request_id=request_id)
        self.existing = existing


class InvalidRequest(ConnectorError):
    def __init__(
        self,
        connector: str,
        message: str,
        *,
        details: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(connector, message, request_id=request_id)
        self.details = details


class NotSupported(ConnectorError):
    """The platform lacks a capability a flow asked for."""

    def __init__(self, connector: str, capability: str) -> None:
        super().__init__(connector, f"does not support {capability}")
        self.capability = capability


class GarbledResponse(ConnectorError):
    """The platform answered 2xx with a body we cannot read."""
