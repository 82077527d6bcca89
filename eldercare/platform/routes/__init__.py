"""HTTP routes under /api/v1, one router per resource (alerts and ws belong to the alert engine)."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
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
    """Every route of the app: its JSON body is read by :func:`strict_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def _query_names(dependant: Dependant | None) -> frozenset[str]:
    """The query parameters a route and all of its dependencies take."""
    names: set[str] = set()
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        names.update(p.alias for p in current.query_params)
        stack.extend(current.dependencies)
    return frozenset(names)


async def _no_unknown_query(request: Request) -> None:
    taken = _query_names(getattr(request.scope.get("route"), "dependant", None))
    unknown = sorted({k for k in request.query_params if k not in taken})
    if unknown:
        raise RequestValidationError(
            [{"type": "extra_forbidden", "loc": ("query", k), "msg": "", "input": None} for k in unknown]
        )


_QUERY_CHECK = "_query_is_known"


def _checking_query(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with one more dependency, :func:`_no_unknown_query`, as its last parameter:
    FastAPI solves dependencies in parameter order, so it runs after sign-in, role and scope."""
    if not inspect.iscoroutinefunction(endpoint):
        return endpoint
    signature = inspect.signature(endpoint)
    check = inspect.Parameter(
        _QUERY_CHECK, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[None, Depends(_no_unknown_query)]
    )

    @functools.wraps(endpoint)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop(_QUERY_CHECK, None)
        return await endpoint(*args, **kwargs)

    checked.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), check]
    )
    return checked


class ApiRoute(JsonRoute):
    """A route of the API (/api/v1): also a query parameter it does not take is refused (422,
    ``extra_forbidden``, ``query.<name>``), as an unknown field of a body is: ``?status=open`` for
    ``?state=open`` answered every alert, resolved ones too. Checked after the route's own
    dependencies (sign-in, role, scope), so a caller without the right still gets 401/403/404."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _checking_query(endpoint), **kwargs)
