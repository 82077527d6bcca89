"""Exceptions of the edge agent."""

from __future__ import annotations


class EdgeError(Exception):
    """Base class of edge agent errors."""


class GatewayConfigError(EdgeError):
    """The gateway file (gateway.toml) is missing or invalid; the message is one readable line."""


class OutboxError(EdgeError):
    """The on-disk outbox cannot be opened or written."""


class DriverError(EdgeError):
    """A driver is unknown or its options are invalid."""
