"""Live pushes: the sockets connected to this replica, fed from PostgreSQL ``LISTEN alerts``.

Every replica runs one :class:`Hub`. The engine (on any replica) writes an alert change and
``NOTIFY alerts`` in the same transaction; each hub gets the payload at commit and sends the alert
to those of *its* sockets whose user must hear of it: the people the payload names (newly notified)
and everyone connected who may see that alert (computed in the database with the same scope rules
as the alerts API). Request handlers never push; a socket is only registered and unregistered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol

from psycopg import AsyncConnection

from eldercare import i18n
from eldercare.platform.decisions import titles
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo.connections import Pool, open_pool

log = logging.getLogger(__name__)

CHANNEL = "alerts"
SEND_TIMEOUT_S = 5.0  # a socket that cannot take a message this fast is dropped
# ... and so is one with this many pushes waiting: a storm of 1,000 alerts reaches an admin's or a
# station's console as 1,000 messages at once (at 100 every such console was dropped mid-storm)
QUEUE_MAX = 2000
CLOSE_TIMEOUT_S = 5.0  # closing a dropped socket is given up after this
RECONNECT_S = 1.0
ROUTE_BATCH = 500  # notifications routed together (two queries for all of them)


class Socket(Protocol):
    """What the hub needs of a socket (Starlette's ``WebSocket`` has it)."""

    async def send_text(self, data: str) -> None: ...


def message(alert: dict[str, Any], event: str) -> dict[str, Any]:
    """The JSON a console receives: the alert's title and summary in every language and what happened."""
    title = (
        titles(alert["kind"])
        if i18n.has(f"title.{alert['kind']}")
        else dict.fromkeys(i18n.LOCALES, alert["title"])
    )
    summary = alert.get("summary") or {}

    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "type": "alert",
        "event": event,
        "alert": {
            "id": alert["id"],
            "kind": alert["kind"],
            "severity": alert["severity"],
            "state": alert["state"],
            "tier": alert["tier"],
            "resident_id": alert["resident_id"],
            "resident_name": alert.get("resident_name"),
            "site_id": alert["site_id"],
            "title": title,
            # an alert stored before a language was added is shown in English there
            "summary": {loc: summary.get(loc) or summary.get("en", "") for loc in i18n.LOCALES},
            "detected_at": iso(alert["detected_at"]),
            "opened_at": iso(alert["opened_at"]),
            "outcome": alert.get("outcome"),
        },
    }


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Outbox:
    """One socket's queue and writer: a slow console delays only itself, and keeps its order."""

    def __init__(self, hub: Hub, user_id: int, socket: Socket) -> None:
        self.hub, self.user_id, self.socket = hub, user_id, socket
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.dropped = False
        self.task = hub.spawn(self._drain(), name=f"ws-push-{user_id}")

    def put(self, text: str) -> bool:
        if self.dropped:  # the rest of a batch routed before it was dropped
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(f"more than {QUEUE_MAX} pushes waiting")
            return False
        return True

    async def _drain(self) -> None:
        """Send whatever is queued in one go, each message within :data:`SEND_TIMEOUT_S`.

        One ``wait_for`` per message (a task each) cost every message two or three turns of the
        API's loop: under 50 polling clients an admin's console took 1,000 storm alerts in ~30 s.
        A send that need not wait (the socket's buffer has room) now takes no turn at all.
        """
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                async with asyncio.timeout_at(loop.time() + SEND_TIMEOUT_S) as deadline:
                    for text in batch:
                        await self.socket.send_text(text)
                        self.hub.delivered += 1
                        deadline.reschedule(loop.time() + SEND_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # gone, or too slow: the console reconnects and reloads
                self._drop(f"{type(exc).__name__}: {exc}")
                return

    def _drop(self, why: str) -> None:
        if self.dropped:
            return
        self.dropped = True
        log.info("dropping socket of user %s: %s", self.user_id, why)
        self.hub.unregister(self.user_id, self.socket, cancel=False)
        close = getattr(self.socket, "close", None)
        if close is not None:  # bounded: a peer that is gone may never answer the close
            self.hub.spawn(
                asyncio.wait_for(close(code=1011), CLOSE_TIMEOUT_S), name=f"ws-close-{self.user_id}"
            )
        if asyncio.current_task() is not self.task:
            self.task.cancel()


class Hub:
    """Owns the sockets connected to this replica, by user id, and the replica's alert listener."""

    def __init__(self, pool: Pool | None, conninfo: str) -> None:
        """``pool``: for the routing queries; None with :meth:`run_threaded`, which opens its own."""
        self.pool: Pool = pool  # type: ignore[assignment]  # set before any routing
        self.conninfo = conninfo
        self._sockets: dict[int, dict[Socket, _Outbox]] = {}
        self.listening = asyncio.Event()  # set once LISTEN is in place (tests and benches wait on it)
        self.delivered = 0
        # Every task the hub starts, held until done: the event loop keeps only weak references, so
        # a cancelled push task dropped with its socket was collected while still pending ("Task
        # was destroyed but it is pending!" when 1,000 sockets closed at once).
        self._tasks: set[asyncio.Task[Any]] = set()
        # the sockets' loop, when listening and routing run on a thread of their own (run_threaded)
        self._owner: asyncio.AbstractEventLoop | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved: never "never retrieved"
            log.debug("hub task %s ended: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        """Stop every push and wait for the tasks to finish (the replica is shutting down)."""
        for sockets in list(self._sockets.values()):
            for outbox in sockets.values():
                outbox.task.cancel()
        self._sockets.clear()
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # sockets ------------------------------------------------------------------------------------

    def register(self, user_id: int, socket: Socket) -> None:
        self._sockets.setdefault(user_id, {})[socket] = _Outbox(self, user_id, socket)
        log.debug("socket of user %s registered (%s users connected)", user_id, len(self._sockets))

    def unregister(self, user_id: int, socket: Socket, *, cancel: bool = True) -> None:
        sockets = self._sockets.get(user_id)
        if sockets is None:
            return
        outbox = sockets.pop(socket, None)
        if outbox is not None and cancel:
            outbox.task.cancel()
        if not sockets:
            del self._sockets[user_id]

    @property
    def connected_users(self) -> list[int]:
        return list(self._sockets)

    # routing ------------------------------------------------------------------------------------

    async def route(self, payload: dict[str, Any]) -> int:
        """Queue one ``NOTIFY alerts`` payload for the right sockets; returns how many."""
        return await self.route_many([payload])

    async def route_many(self, payloads: list[dict[str, Any]]) -> int:
        """Queue many payloads, in their order, with two queries for all of them; returns how many.

        In a storm a thousand alerts commit within a second or two: looked up one by one (two
        round trips each, on one listener) the last console heard of its alert seconds late.
        Routing on the hub's own thread (:meth:`run_threaded`), the messages are handed to the
        sockets' loop in one callback; the count is then of the users they are for.
        """
        users = self.connected_users  # a copy: taken at once under the GIL, whichever thread reads
        if not users or not payloads:
            return 0
        ids = sorted({int(p["alert"]) for p in payloads})
        async with self.pool.connection() as conn:
            alerts = await alerts_repo.push_summaries(conn, alert_ids=ids)
            audience = await alerts_repo.audiences(conn, alert_ids=ids, users=users)
        plan: list[tuple[str, set[int]]] = []
        for payload in payloads:
            alert = alerts.get(int(payload["alert"]))
            if alert is None:
                continue
            text = json.dumps(message(alert, str(payload.get("event", ""))), ensure_ascii=False)
            named = {int(u) for u in payload.get("users") or []}
            plan.append((text, (named | audience.get(alert["id"], set())) & set(users)))
        owner = self._owner
        if owner is not None and owner is not asyncio.get_running_loop():
            owner.call_soon_threadsafe(self._queue, plan)
            return sum(len(to) for _, to in plan)
        return self._queue(plan)

    def _queue(self, plan: list[tuple[str, set[int]]]) -> int:
        """Put each message in the outboxes of its users' sockets (on the sockets' loop)."""
        queued = 0
        for text, to in plan:
            for user in to:
                for outbox in list(self._sockets.get(user, {}).values()):
                    queued += outbox.put(text)
        return queued

    async def run_threaded(self, pool_size: int = 3) -> None:
        """Listen and route on a thread of the hub's own, with its own loop and connections, for as
        long as this task runs; only the sends stay on this loop, where the sockets live.

        So a push never waits for the API's requests: on the API's loop a NOTIFY, the two routing
        queries and the hand-over each waited a turn behind every ready request (under 200 polling
        clients p99 0.85 s from the commit to the console); here the API's loop gives it one turn
        (the hand-over) and the sends. The hub's pool (``self.pool``) is opened on that thread.
        """
        owner = self._owner = asyncio.get_running_loop()
        ended: asyncio.Future[None] = owner.create_future()
        started = threading.Event()
        holder: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

        async def inner() -> None:
            halt = asyncio.Event()
            holder.append((asyncio.get_running_loop(), halt))
            started.set()
            self.pool = open_pool(self.conninfo, min_size=1, max_size=pool_size, name="eldercare-push")
            await self.pool.open()  # connections come as the database allows; run() retries meanwhile
            task = asyncio.create_task(self.run())
            try:
                await halt.wait()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await self.pool.close()

        def main() -> None:
            try:
                asyncio.run(inner())
            except Exception:
                log.exception("the push hub's thread stopped")
            finally:
                started.set()
                with contextlib.suppress(RuntimeError):  # the sockets' loop is closed already
                    owner.call_soon_threadsafe(_settle, ended)

        thread = threading.Thread(target=main, name="alert-push-hub", daemon=True)
        thread.start()
        try:
            await ended  # until cancelled (shutdown) or the thread ends
        finally:
            await asyncio.to_thread(started.wait, 30)
            if holder:
                loop, halt = holder[0]
                with contextlib.suppress(RuntimeError):  # its loop already ended
                    loop.call_soon_threadsafe(halt.set)
            await asyncio.to_thread(thread.join, 30)

    def _set_listening(self, on: bool) -> None:
        """``listening`` belongs to the sockets' loop (tests and benches wait on it there)."""
        flip = self.listening.set if on else self.listening.clear
        owner = self._owner
        if owner is not None and owner is not asyncio.get_running_loop():
            with contextlib.suppress(RuntimeError):  # the sockets' loop is closing
                owner.call_soon_threadsafe(flip)
        else:
            flip()

    async def run(self, on_payload: Callable[[dict[str, Any]], Awaitable[Any]] | None = None) -> None:
        """Listen on ``alerts`` with a dedicated connection for as long as the replica runs.

        The listener only parses and queues; a router task takes whatever has arrived (up to
        :data:`ROUTE_BATCH`) and routes it in one go, so notifications never wait behind queries.
        """
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # held here, not in _tasks: on a hub thread this loop is not the sockets' loop
        router = asyncio.create_task(self._route_loop(inbox, on_payload), name="alert-push-router")
        try:
            await self._listen(inbox)
        finally:
            router.cancel()
            await asyncio.gather(router, return_exceptions=True)

    async def _route_loop(
        self,
        inbox: asyncio.Queue[dict[str, Any]],
        on_payload: Callable[[dict[str, Any]], Awaitable[Any]] | None,
    ) -> None:
        while True:
            batch = [await inbox.get()]
            while len(batch) < ROUTE_BATCH and not inbox.empty():
                batch.append(inbox.get_nowait())
            try:
                if on_payload is None:
                    await self.route_many(batch)
                else:
                    for payload in batch:
                        await on_payload(payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad push must not stop the others
                log.exception("pushing alerts %s failed", [p.get("alert") for p in batch])

    async def _listen(self, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute("LISTEN alerts")
                    self._set_listening(True)
                    async for note in conn.notifies():
                        try:
                            payload = json.loads(note.payload)
                            int(payload["alert"])
                        except (ValueError, TypeError, KeyError):
                            log.warning("ignoring a malformed alerts notification: %r", note.payload)
                            continue
                        inbox.put_nowait(payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerts listener lost its connection; reconnecting")
            self._set_listening(False)
            await asyncio.sleep(RECONNECT_S)
