"""``/api/v1/ws?token=<access JWT>``: the console's live alert feed.

The socket is only registered with the replica's :class:`~eldercare.platform.notify.hub.Hub`;
pushes come from the database notification listener, never from here. A browser cannot set an
Authorization header on a WebSocket, hence the token in the query string. Close codes: 4401 bad or
expired token, 1013 live pushes not running on this replica (try another).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from eldercare.platform.errors import ApiError
from eldercare.platform.repo import users as users_repo
from eldercare.platform.security import decode_access_token

log = logging.getLogger(__name__)
router = APIRouter(tags=["alerts"])

BAD_TOKEN = 4401
UNAVAILABLE = 1013


@router.websocket("/ws")
async def live_alerts(websocket: WebSocket, token: Annotated[str, Query()] = "") -> None:
    """Alerts as JSON messages ``{"type": "alert", "event": ..., "alert": {...}}``."""
    state = websocket.app.state
    await websocket.accept()  # accept first so the client sees why it is refused (close code)
    try:
        claims = decode_access_token(state.settings, token)
    except ApiError:
        await websocket.close(code=BAD_TOKEN, reason="bad or expired access token")
        return
    async with state.pool.connection() as conn:
        user = await users_repo.get_user(conn, user_id=int(claims["sub"]))
    if user is None or not user["active"]:
        await websocket.close(code=BAD_TOKEN, reason="unknown or inactive user")
        return
    hub = getattr(state, "hub", None)
    if hub is None:
        await websocket.close(code=UNAVAILABLE, reason="live pushes are not running on this server")
        return
    await websocket.send_json({"type": "hello", "user": user["username"], "role": user["role"]})
    hub.register(user["id"], websocket)
    try:
        while True:  # the client may send pings; anything it sends is answered with a pong
            await websocket.receive_text()
            await websocket.send_json({"type": "pong"})
    except WebSocketDisconnect:
        pass
    finally:
        hub.unregister(user["id"], websocket)
