"""HTTP routes under /api/v1, one router per resource (alerts and ws belong to the alert engine)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from eldercare.platform.schemas import ErrorOut, ValidationErrorOut

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not signed in, or the token expired"},
    403: {"model": ErrorOut, "description": "Your role may not do this, or consent does not cover it"},
    404: {"model": ErrorOut, "description": "Not found, or outside what you may see"},
    422: {"model": ValidationErrorOut, "description": "Invalid request; each invalid field is named"},
}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def strict_json(body: bytes) -> Any:
    """A JSON body as RFC 8259 writes it, or :class:`json.JSONDecodeError`: Python's parser takes
    ``NaN`` and ``Infinity``, which JSON has not, and lets the last of two equal keys win, so one
    body read two ways (a proxy's check reads the first ``"role"``, the API the last) is refused."""
    text = body.decode("utf-8")  # not UTF-8: FastAPI's "error parsing the body", answered as JSON
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """Every route of the API: its JSON body is read by :func:`strict_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
