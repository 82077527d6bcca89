"""``/api/v1/ws``: the console's live alert feed.

The socket is only registered with the replica's :class:`~eldercare.platform.notify.hub.Hub`;
pushes come from the database notification listener, never from here.

The access token never goes into the URL (where access logs and proxies keep it). A client sends
it either as a WebSocket subprotocol, ``new WebSocket(url, ["eldercare.v1", "bearer." + token])``
(the server answers with ``eldercare.v1``), or as the first message, ``{"type": "auth", "token":
...}`` within :data:`AUTH_TIMEOUT_S`. The socket closes with 4401 when that token expires, unless
the client sent a fresh one the same way (``{"type": "auth", ...}``) before, or when it is revoked
(checked every :data:`RECHECK_S`). ``?token=`` still
works for old clients but is deprecated (logged). Close codes: 4401 bad, expired or revoked
token, 1013 live pushes not running on this replica (try another).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from eldercare.platform.errors import ApiError
from eldercare.platform.routes import ApiRoute
from eldercare.platform.security import authenticate
from eldercare.platform.state import app_state

log = logging.getLogger(__name__)
router = APIRouter(route_class=ApiRoute, tags=["alerts"])

BAD_TOKEN = 4401
UNAVAILABLE = 1013
SUBPROTOCOL = "eldercare.v1"
BEARER = "bearer."
AUTH_TIMEOUT_S = 10.0
RECHECK_S = 60.0  # how often an open socket's token is checked again (logout, password change)
MAX_AUTH_MESSAGE = 16_384  # an access token is a few hundred characters


async def _check(websocket: WebSocket, token: str) -> tuple[dict[str, Any], int] | None:
    state = app_state(websocket.app)
    try:
        async with state.pool.connection() as conn:
            return await authenticate(conn, state.settings, token)
    except ApiError:
        return None


def _auth_message(text: str) -> str | None:
    """The token of an ``{"type": "auth", "token": ...}`` message, else None (also for anything
    too long to be one, or nested too deep for the parser: ``[[[[...`` raised RecursionError)."""
    if len(text) > MAX_AUTH_MESSAGE:
        return None
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(msg, dict) and msg.get("type") == "auth" and isinstance(msg.get("token"), str):
        return str(msg["token"])
    return None


async def _first_message_token(websocket: WebSocket) -> str:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), timeout=AUTH_TIMEOUT_S)
    except (TimeoutError, WebSocketDisconnect, KeyError):
        return ""
    return _auth_message(text) or ""


@router.websocket("/ws")
async def live_alerts(
    websocket: WebSocket,
    token: Annotated[str, Query(description="Deprecated: send the token as a subprotocol")] = "",
) -> None:
    """Alerts as JSON messages ``{"type": "alert", "event": ..., "alert": {...}}``."""
    offered = websocket.scope.get("subprotocols") or []
    from_protocol = next((p.removeprefix(BEARER) for p in offered if p.startswith(BEARER)), "")
    # accept first so the client sees why it is refused (close code)
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    if token and not from_protocol:
        log.warning("a WebSocket client sent its token in the URL (deprecated: it lands in access logs)")
    secret = from_protocol or token or await _first_message_token(websocket)
    found = await _check(websocket, secret) if secret else None
    if found is None:
        await websocket.close(code=BAD_TOKEN, reason="bad, expired or revoked access token")
        return
    user, expires = found
    hub = app_state(websocket.app).hub
    if hub is None:
        await websocket.close(code=UNAVAILABLE, reason="live pushes are not running on this server")
        return
    await websocket.send_json({"type": "hello", "user": user["username"], "role": user["role"]})
    hub.register(user["id"], websocket)
    try:
        await _serve(websocket, user["id"], expires, secret)
    except WebSocketDisconnect:
        pass
    finally:
        hub.unregister(user["id"], websocket)


async def _serve(websocket: WebSocket, user_id: int, expires: int, token: str) -> None:
    """Answer pings and fresh tokens until the socket goes; close it when its token expires or,
    checked every :data:`RECHECK_S`, is revoked (logout, password change, account disabled).
    Time is the application's clock (``AppState.clock``)."""
    clock = app_state(websocket.app).clock
    recheck_at = clock() + RECHECK_S
    while True:
        now = clock()
        if expires <= now:
            await websocket.close(code=BAD_TOKEN, reason="access token expired: send a new one or reconnect")
            return
        if recheck_at <= now:
            if await _check(websocket, token) is None:
                await websocket.close(code=BAD_TOKEN, reason="access token revoked")
                return
            recheck_at = now + RECHECK_S
        try:
            text = await asyncio.wait_for(websocket.receive_text(), timeout=min(expires, recheck_at) - now)
        except TimeoutError:
            continue
        except KeyError:  # a binary frame: not a token, answered as any other message
            text = ""
        fresh = _auth_message(text)
        if fresh is None:
            await websocket.send_json({"type": "pong"})
            continue
        found = await _check(websocket, fresh)
        if found is None or found[0]["id"] != user_id:
            await websocket.close(code=BAD_TOKEN, reason="bad, expired or revoked access token")
            return
        token, expires = fresh, found[1]
        await websocket.send_json({"type": "auth_ok", "expires_at": expires})
