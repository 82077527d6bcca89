"""What the OpenAPI document and a 405 tell a caller beyond each route's own answers.

An outside client (a generated one, a fuzzer, a reviewer) trusts the schema: every status it can
get must be listed there, and a 405 must name every method the path has (RFC 9110 15.5.6), not
only those of the first route Starlette matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
_WRITES = {"post", "put", "patch", "delete"}


def _common(method: str, op: dict[str, Any]) -> dict[str, str]:
    """The answers any operation of this kind can give, whatever its route says."""
    extra = {"503": "The database is unreachable or busy; try again after Retry-After"}
    if method in _WRITES:
        extra["409"] = "Duplicate id, still referenced elsewhere, or a stale expected_revision"
    if "requestBody" in op:
        extra["413"] = "Request body larger than ELDERCARE_HTTP_MAX_BODY_BYTES"
    return extra


def document_common_errors(app: FastAPI) -> None:
    """Add the answers every route can give (conflicts, oversize bodies, database down) to the schema."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for ops in schema.get("paths", {}).values():
                for method, op in ops.items():
                    responses = op.setdefault("responses", {})
                    for code, text in _common(method, op).items():
                        responses.setdefault(code, {"description": text, "content": _ERROR})
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _template(path: str) -> re.Pattern[str]:
    """``/gateways/{gateway_id}`` as a pattern matching one segment where each parameter is."""
    return re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$")


def allowed_methods(request: Request) -> str:
    """The methods the schema lists for this request's path, for a 405's Allow header.

    Read from the OpenAPI document (what a client is promised), since FastAPI's router nests
    included routers and Starlette names only the first matching route's methods. Where a fixed
    path and a template both match (``/gateways/health``, ``/gateways/{gateway_id}``), the one
    with fewer parameters is the resource meant.
    """
    app = request.app
    paths: list[tuple[int, re.Pattern[str], set[str]]] | None = getattr(app.state, "allow_by_path", None)
    if paths is None:
        paths = sorted(
            (
                (path.count("{"), _template(path), {m.upper() for m in ops})
                for path, ops in app.openapi()["paths"].items()
            ),
            key=lambda entry: entry[0],
        )
        app.state.allow_by_path = paths
    found: set[str] = set()
    fewest = None
    for params, pattern, methods in paths:
        if (fewest is None or params == fewest) and pattern.match(request.url.path):
            fewest = params
            found |= methods
    return ", ".join(sorted(found))
