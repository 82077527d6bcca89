"""The application's state, typed: what the lifespan opens and requests and background work read.

One :class:`AppState` lives on ``app.state.platform`` (Starlette's ``app.state`` takes any attribute,
so the type checker sees nothing there); everything else reads it through :func:`app_state`, and
FastAPI dependencies through ``deps.StateDep``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from eldercare.config import Settings
from eldercare.platform.repo.connections import Pool

if TYPE_CHECKING:
    from eldercare.platform.notify.hub import Hub


@dataclass
class AppState:
    """The settings, the API's pool, the push hub and (on a thread) an engine this process runs."""

    settings: Settings
    pool: Pool
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Tasks on the API's event loop (the pushes), cancelled at shutdown."""
    hub: Hub | None = None
    """This replica's WebSocket hub; None when live pushes are not started here."""
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """What the lifespan awaits at shutdown, last started first: the engine's thread, the hub."""
    clock: Callable[[], float] = time.time
    """The wall clock (epoch s) of what expires while a request is open: a WebSocket's token.
    Tests inject one instead of waiting for a token to run out."""


def app_state(app: Starlette) -> AppState:
    """The state the lifespan put on ``app`` (only valid while the app is running)."""
    state = app.state.platform
    assert isinstance(state, AppState), "the application's lifespan has not run"
    return state
