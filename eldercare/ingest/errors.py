"""The ingest component's exceptions."""

from __future__ import annotations


class IngestError(Exception):
    """Base class of ingest failures."""


class StoreUnavailable(IngestError):
    """The database cannot be reached or the connection broke; retry later, ack nothing."""


class BrokerError(IngestError):
    """The MQTT broker refused the connection or the configuration is unusable."""
