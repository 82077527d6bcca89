"""FastAPI dependencies as ``Annotated`` aliases: settings, database connection, current user, scope.

Authorization runs in dependencies, before request bodies are validated, so a caller without the
right gets 403/404 whatever they send (and learns nothing from validation messages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from eldercare.config import Settings, get_settings
from eldercare.platform import access
from eldercare.platform.access import Principal, ResidentAccess, Stream
from eldercare.platform.errors import ApiError, role_denied
from eldercare.platform.repo.connections import Conn
from eldercare.platform.state import AppState, app_state

SettingsDep = Annotated[Settings, Depends(get_settings)]
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_state(connection: HTTPConnection) -> AppState:
    """The application's state (settings, pool, hub), for requests and WebSockets alike."""
    return app_state(connection.app)


StateDep = Annotated[AppState, Depends(get_state)]


async def get_conn(state: StateDep) -> AsyncIterator[Conn]:
    """One pooled connection per request (autocommit: each statement or transaction block commits)."""
    async with state.pool.connection() as conn:
        yield conn


ConnDep = Annotated[Conn, Depends(get_conn)]


async def get_current_user(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    conn: ConnDep,
    settings: SettingsDep,
) -> Principal:
    if not token:
        raise ApiError(401, "auth.not_authenticated", headers={"WWW-Authenticate": "Bearer"})
    from eldercare.platform.security import authenticate

    row, _ = await authenticate(conn, settings, token)
    user = Principal(
        row["id"], row["username"], row["display_name"], row["role"], row["provider_id"], row["locale"]
    )
    request.state.user = user
    request.state.locale = user.locale
    return user


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def _route(request: Request) -> str:
    return f"{request.method} {request.url.path}"


RouteDep = Annotated[str, Depends(_route)]  # "PATCH /api/v1/residents/res-1", for the audit log


def roles(*allowed: str, action: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only ``allowed`` roles (403 otherwise)."""

    async def dependency(user: CurrentUser) -> Principal:
        if user.role not in allowed:
            raise role_denied(user.role, action)
        return user

    return dependency


AdminUser = Annotated[Principal, Depends(roles("admin", action="manage the registry"))]
StaffUser = Annotated[Principal, Depends(roles("admin", "care_worker", action="view the registry"))]
RegistryReader = Annotated[
    Principal, Depends(roles("admin", "care_worker", "tester", action="view sites and devices"))
]
TesterUser = Annotated[Principal, Depends(roles("admin", "tester", action="drive simulations"))]


def resident_access(
    stream: Stream, action: str = "read"
) -> Callable[..., Coroutine[Any, Any, ResidentAccess]]:
    """A dependency granting access to ``stream`` of the path's ``resident_id`` (404/403, audited)."""

    async def dependency(
        request: Request,
        resident_id: Annotated[str, Path(description="Resident id")],
        user: CurrentUser,
        conn: ConnDep,
    ) -> ResidentAccess:
        return await access.require_resident_access(
            conn, user, resident_id, stream, route=f"{request.method} {request.url.path}", action=action
        )

    return dependency


def resident_admin(action: str) -> Callable[..., Coroutine[Any, Any, ResidentAccess]]:
    """Changing a resident's record: admin anywhere, care workers within scope; others 403.

    ``action`` is a code (``read_limits``): audited as ``read_limits:profile``, said in words by a
    refusal (``word.read_limits`` in the catalogue) and by the audit log page."""
    inner = resident_access("profile", action)

    async def dependency(
        request: Request,
        resident_id: Annotated[str, Path(description="Resident id")],
        user: CurrentUser,
        conn: ConnDep,
    ) -> ResidentAccess:
        if user.role not in ("admin", "care_worker"):
            raise role_denied(user.role, action)
        return await inner(request, resident_id, user, conn)

    return dependency
