"""The platform's exceptions: each becomes a 4xx answer whose message says what to fix."""

from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    """Base of the platform's errors."""


class ApiError(PlatformError):
    """A request the API refuses: HTTP status, a message key of :mod:`eldercare.platform.i18n` and fields."""

    def __init__(self, status: int, key: str, *, headers: dict[str, str] | None = None, **fields: Any):
        super().__init__(key)
        self.status = status
        self.key = key
        self.fields = fields
        self.headers = headers


def not_found(kind: str, ident: object) -> ApiError:
    """Missing or outside the caller's scope: the same answer, so existence does not leak."""
    return ApiError(404, "scope.not_found", kind=kind, id=str(ident))


def role_denied(role: str, action: str) -> ApiError:
    return ApiError(403, "role.denied", role=role, action=action)


class ConfigPublishError(PlatformError):
    """The gateway config could not be published to the broker (logged; the database copy stands)."""
