"""A real uvicorn server around the app, for tests that need sockets (WebSocket, browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from eldercare.platform.state import app_state


@contextmanager
def serving(app: Any, timeout: float = 20.0) -> Iterator[int]:
    """The whole app under a real uvicorn on a port the kernel picks (port 0: no race with another
    process for a port chosen beforehand; engine and hub started by its lifespan); yields the port
    once the server and, when the engine runs, the hub's listener are up."""
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, ws="websockets-sansio", log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    port = int(srv.servers[0].sockets[0].getsockname()[1])
    hub = app_state(app).hub
    while hub is not None and not hub.listening.is_set():
        assert time.monotonic() < deadline, "hub did not start listening"
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(timeout)


class Inbox:
    """What an SMTP server in the test process (aiosmtpd) received: (recipients, raw message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[bytes]:
        return [raw for rcpt, raw in list(self.messages) if address in rcpt]


@contextmanager
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on a free local port; yields its inbox and the port."""
    from aiosmtpd.controller import Controller

    from eldercare.embedded import free_port

    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
