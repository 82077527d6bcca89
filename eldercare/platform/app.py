"""The FastAPI application: routers under /api/v1, error answers, the pool and background work.

``create_app(settings)`` builds the app; its lifespan opens an ``AsyncConnectionPool`` (failing fast
when the database is unreachable) and keeps it with the settings in one typed
:class:`~eldercare.platform.state.AppState` (read with ``app_state(app)``), then starts this
replica's push hub (:func:`~eldercare.platform.engine.service.start_pushes`, a pool of its own) and,
unless the engine runs as a process of its own (``eldercare serve`` starts ``eldercare engine``),
the alert engine on a thread (:func:`~eldercare.platform.engine.service.start`). Tasks started on
this loop go to ``state.background``, cancelled on shutdown after ``state.stops`` were awaited.
``/metrics`` (Prometheus text) shows the engine's queue, the items it set aside and failed
deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from eldercare import __version__, i18n
from eldercare.config import Settings, get_settings
from eldercare.i18n import negotiate
from eldercare.platform.engine import service
from eldercare.platform.errors import ApiError, message, problem, validation_body
from eldercare.platform.head import HeadAsGet
from eldercare.platform.headers import SecurityHeaders
from eldercare.platform.limits import RequestLimits
from eldercare.platform.openapi import allowed_methods, document_common_errors
from eldercare.platform.routes import (
    JsonRoute,
    alerts,
    audit,
    auth,
    engine,
    gateways,
    limits,
    policies,
    providers,
    reports,
    residents,
    sim,
    sites,
    timelines,
    users,
    ws,
)
from eldercare.platform.state import AppState, app_state

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
# Routers of this package; alerts and ws belong to the alert engine and are included when present.
ROUTERS = (
    auth.router,
    users.router,
    providers.router,
    sites.router,
    residents.router,
    limits.router,
    gateways.router,
    policies.router,
    timelines.router,
    reports.router,
    audit.router,
    sim.router,
    alerts.router,
    ws.router,
    engine.router,
)
TAGS = [
    {"name": "auth", "description": "Sign in (OAuth2 password flow), refresh, own account"},
    {"name": "users", "description": "Accounts: care workers, family members, testers, admins"},
    {
        "name": "providers",
        "description": "Organisations of the care chain, their members and on-call rosters",
    },
    {"name": "sites", "description": "Homes, community stations and institutions"},
    {"name": "residents", "description": "Older people cared for; family links with consent; care team"},
    {"name": "gateways", "description": "Edge gateways, their MQTT credentials, config and sensors"},
    {"name": "policies", "description": "Escalation policies: tiers, targets, acknowledgement deadlines"},
    {"name": "timelines", "description": "Hourly activity per room and daily summaries"},
    {"name": "reports", "description": "Care-quality report"},
    {"name": "audit", "description": "Who read which resident's data"},
    {"name": "sim", "description": "Tester endpoints driving simulated sites"},
    {"name": "alerts", "description": "Alerts: list, detail with trail, acknowledge, resolve, notes"},
    {"name": "engine", "description": "Work the alert engine set aside after failing on it (admins)"},
]


def _locale(request: Request) -> str:
    return getattr(request.state, "locale", None) or negotiate(request.headers.get("accept-language"))


AUDITED_REFUSALS = {403, 404}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    body = exc.body(_locale(request))
    await _audit_refusal(request, exc)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _audit_refusal(request: Request, exc: ApiError) -> None:
    """A signed-in user refused (role, consent, field, scope): written to the audit log.

    On its own connection, since the request's own may be inside a transaction being rolled back.
    A failure to write is logged, never turned into a second error.
    """
    user = getattr(request.state, "user", None)
    if user is None or exc.status not in AUDITED_REFUSALS:
        return
    from eldercare.platform.repo import audit

    fields = {k: str(v) for k, v in exc.fields.items()}
    try:
        async with app_state(request.app).pool.connection() as conn:
            await audit.write(
                conn,
                user_id=user.id,
                username=user.username,
                action=f"refused:{exc.status}",
                route=f"{request.method} {request.url.path}",
                detail={"reason": exc.key, **fields},
            )
    except Exception:  # the refusal itself must still be answered
        log.exception("could not audit a refused request")


def _requires_sign_in(request: Request) -> bool:
    """Whether the matched route depends on the signed-in user (anywhere in its dependencies)."""
    from eldercare.platform.deps import get_current_user

    route = request.scope.get("route")
    stack = [getattr(route, "dependant", None)]
    while stack:
        dep = stack.pop()
        if dep is None:
            continue
        if dep.call is get_current_user:
            return True
        stack.extend(dep.dependencies)
    return False


async def _unauthenticated(request: Request) -> ApiError | None:
    """For a body FastAPI could not parse (refused before any dependency ran): the 401 a caller
    without a valid token would have had, so strangers learn nothing about the body format."""
    if not _requires_sign_in(request):
        return None
    from eldercare.platform.security import authenticate

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return ApiError(401, "auth.not_authenticated", headers={"WWW-Authenticate": "Bearer"})
    try:
        state = app_state(request.app)
        async with state.pool.connection() as conn:
            user, _ = await authenticate(conn, state.settings, token)
    except ApiError as exc:
        return exc
    request.state.locale = user["locale"]  # answered in the caller's language, as after sign-in
    return None


async def _reader_locale(request: Request) -> None:
    """For an answer given before any route ran (no such path or method): the signed-in caller's
    language when the request carries a valid token, else the Accept-Language's."""
    from eldercare.platform.security import authenticate

    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or getattr(request.state, "locale", None):
        return
    try:
        state = app_state(request.app)
        async with state.pool.connection() as conn:
            user, _ = await authenticate(conn, state.settings, token)
    except ApiError:
        return
    request.state.locale = user["locale"]


def _field(err: Any) -> str:
    """The field a validation error names; a JSON error's loc ends in a character offset, not a field."""
    if err.get("type") == "json_invalid":
        return "body"
    return ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"


_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _sent_as(request: Request, err: Any) -> str:
    """The error's type; for a JSON body sent under another Content-Type (text/plain, a form, none),
    which FastAPI hands on unread and pydantic calls "not an object", ``content_type``."""
    kind = str(err.get("type", ""))
    if kind in _NOT_AN_OBJECT and tuple(err.get("loc", ())) == ("body",):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return "content_type"
    return kind


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        refused = await _unauthenticated(request)
        if refused is not None:
            return await _api_error(request, refused)
    locale = _locale(request)
    problems = (
        problem(
            _field(err),
            _sent_as(request, err),
            locale,
            err.get("ctx"),
            err.get("msg", ""),
        )
        for err in exc.errors()
    )
    return JSONResponse(validation_body(problems, locale), status_code=422)


# FastAPI's answer to a body it could not even decode (bytes that are not UTF-8, say): a plain 400
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        # the same answer as any other body that is not JSON: 401 before sign-in, else 422 named
        unparsable = RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error", "input": None}]
        )
        return await _validation_error(request, unparsable)
    headers = dict(getattr(exc, "headers", None) or {})
    detail = str(exc.detail)
    if exc.status_code in (404, 405):
        await _reader_locale(request)
    if exc.status_code == 405:  # Starlette names only the first matching route's methods
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        detail = message("request.method", _locale(request), method=request.method, allow=headers["Allow"])
    elif exc.status_code == 404 and detail == "Not Found":  # Starlette's English, for a path no route has
        detail = message("request.no_path", _locale(request), path=request.url.path)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers or None)


_FK_DETAIL = re.compile(r"Key \((?P<field>[^)]+)\)=\((?P<value>[^)]*)\) is not present")
_REF_DETAIL = re.compile(
    r"Key \((?P<field>[^)]+)\)=\((?P<value>[^)]*)\) is still referenced from table \"(?P<ref>[^\"]+)\""
)
_UNIQUE_DETAIL = re.compile(r"Key \((?P<field>[^)]+)\)=\((?P<value>[^)]*)\) already exists")
# the thing a table (or a path's collection) holds, as a catalogue word (word.<thing>): a conflict
# spoke of "A sites with id ..." and, in Chinese, of "的sites"
_RECORDS = {
    "sites": "site", "users": "user", "sensors": "sensor", "gateways": "gateway",
    "providers": "provider", "residents": "resident", "escalation_policies": "policy",
    "escalation_tiers": "policy", "policies": "policy", "oncall_shifts": "shift", "shifts": "shift",
    "family_links": "family_link", "family": "family_link", "care_assignments": "care_team",
    "care-team": "care_team", "alerts": "alert",
}  # fmt: skip


def _record(name: str | None) -> str:
    return _RECORDS.get(name or "", "record")


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    """Constraint violations the request caused, answered with the field to fix.

    Only the field and the value the caller sent are repeated; the database's own text (constraint
    names, other rows' keys) never reaches the answer.
    """
    assert isinstance(exc, psycopg.errors.IntegrityError)
    loc = _locale(request)
    detail = exc.diag.message_detail or ""
    table = _record(exc.diag.table_name)
    if isinstance(exc, psycopg.errors.UniqueViolation):
        m = _UNIQUE_DETAIL.search(detail)
        value = m["value"] if m else "?"
        return JSONResponse(
            {"detail": message("conflict.exists", loc, kind=table, id=value)}, status_code=409
        )
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        m = _FK_DETAIL.search(detail)
        if m:
            refused = ApiError(422, "invalid.reference", field=m["field"], value=m["value"])
            return JSONResponse(refused.body(loc), status_code=422)
        # the table named is the one still pointing at the record; what was deleted is the path's
        ref = _REF_DETAIL.search(detail)
        ident, by = (ref["value"], _record(ref["ref"])) if ref else ("?", "record")
        deleted = _record(request.url.path.rstrip("/").split("/")[-2])
        msg = message("conflict.in_use", loc, kind=deleted, id=ident, detail=i18n.word(by, loc))
        return JSONResponse({"detail": msg}, status_code=409)
    field = exc.diag.column_name or "body"
    return JSONResponse(ApiError(422, "invalid.constraint", field=field).body(loc), status_code=422)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (out of range, NUL, bad encoding): the caller's to fix."""
    log.info("request refused by the database: %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(ApiError(422, "invalid.data").body(_locale(request)), status_code=422)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": message("service.unavailable", _locale(request))},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The last resort: still JSON in the documented shape (the traceback goes to the log only)."""
    return JSONResponse({"detail": message("internal", _locale(request))}, status_code=500)


async def _sync_broker(state: AppState) -> None:
    """Write the broker's password and ACL files at start, so a fresh volume gets them at once."""
    from eldercare.platform import broker_sync

    if broker_sync.enabled(state.settings):
        async with state.pool.connection() as conn:
            await broker_sync.sync_quietly(conn, state.settings)


SERVE_CONFIG_ENV = "EC_SERVE_CONFIG_FILE"  # not ELDERCARE_*: settings refuse unknown variables


def app_for_worker() -> FastAPI:
    """The app of one ``eldercare serve --workers N`` process (a uvicorn factory).

    The settings are loaded as the parent loaded them. A worker serves the API and the live
    pushes; the engine runs in a process of its own (``eldercare engine``, which ``serve`` starts).
    """
    import os

    from eldercare.config import load_settings

    settings = load_settings(os.environ.get(SERVE_CONFIG_ENV) or None)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(settings, start_engine=False, pushes=True)


def _warn_if_insecure(settings: Settings) -> None:
    """Outside production a weak secret is allowed, but never silently (production refuses it)."""
    weakness = settings.weak_secret
    if weakness:
        log.warning(
            "INSECURE: %s: anyone can sign an admin token for this server (environment=%s). "
            "Set ELDERCARE_SECRET_KEY to a random value (`openssl rand -hex 32`) before real use.",
            weakness,
            settings.environment,
        )


def create_app(
    settings: Settings | None = None, *, start_engine: bool = True, pushes: bool | None = None
) -> FastAPI:
    """Build the application.

    ``start_engine``: run the alert engine on a thread of this process (tests, benches, one-process
    embedding); ``eldercare serve`` runs it as a process of its own instead. ``pushes``: run this
    replica's WebSocket hub (default: with the engine; ``serve`` always runs it).
    """
    pushes = start_engine if pushes is None else pushes
    settings = settings or get_settings()
    _warn_if_insecure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from eldercare.db import resolve_url
        from eldercare.platform.repo.connections import open_pool

        pool = open_pool(
            resolve_url(settings),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            name="eldercare-api",
        )
        await pool.open(wait=True, timeout=15)
        state = app.state.platform = AppState(settings=settings, pool=pool)
        try:
            await _sync_broker(state)
            if pushes:
                state.background.extend(await service.start_pushes(state))
            if start_engine:
                await service.start(state)
                log.info("alert engine started on a thread of this process")
            yield
        finally:
            for stop in reversed(state.stops):
                await stop()
            for task in state.background:
                task.cancel()
            await asyncio.gather(*state.background, return_exceptions=True)
            await pool.close()

    app = FastAPI(
        title="eldercare API",
        version=__version__,
        description="Smart eldercare monitoring: registry, access, alerts, timelines, reports. "
        'Errors are JSON {"detail": "..."} in the caller\'s language (zh-CN or en).',
        openapi_tags=TAGS,
        lifespan=lifespan,
        # no 307 from "/path/" to "/path": Starlette writes it absolute from the request's Host and
        # scheme, i.e. to any host a client names and, behind the TLS proxy, to plain http://
        redirect_slashes=False,
    )
    app.router.route_class = JsonRoute  # the app's own routes too (/healthz, /web): JSON read strictly
    app.dependency_overrides[get_settings] = lambda: settings
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(psycopg.errors.IntegrityError, _integrity_error)
    app.add_exception_handler(psycopg.errors.DataError, _data_error)
    app.add_exception_handler(psycopg.OperationalError, _unavailable)
    app.add_exception_handler(PoolTimeout, _unavailable)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.http_max_body_bytes,
        max_json_depth=settings.http_max_json_depth,
    )
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)  # added last, so outermost: on every answer, refusals included
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    document_common_errors(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> PlainTextResponse:
        from eldercare.platform.engine import metrics as engine_metrics

        return PlainTextResponse(
            await engine_metrics.render(app_state(request.app).pool), media_type=engine_metrics.CONTENT_TYPE
        )

    from eldercare.platform import web

    web.mount(app)  # the consoles: /web/ (and / redirects there)
    return app
