"""HTTP routes under /api/v1, one router per resource (alerts and ws belong to the alert engine)."""

from __future__ import annotations

from typing import Any

from eldercare.platform.schemas import ErrorOut, ValidationErrorOut

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in, or the token expired"},
    403: {"model": ErrorOut, "description": "Your role may not do this, or consent does not cover it"},
    404: {"model": ErrorOut, "description": "Not found, or outside what you may see"},
    422: {"model": ValidationErrorOut, "description": "Invalid request; each invalid field is named"},
}
