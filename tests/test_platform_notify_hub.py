"""The hub across replicas: an alert made by one engine reaches sockets held by other replicas'
hubs through LISTEN/NOTIFY, each socket only if its user may see the alert; a dead socket is
dropped without stopping the others."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.platform.engine import service
from eldercare.platform.notify.hub import Hub
from eldercare.platform.repo.connections import open_pool

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


class Console:
    """The server side of one connected socket, as the hub sees it."""

    def __init__(self, broken: bool = False) -> None:
        self.got: list[dict[str, Any]] = []
        self.broken = broken
        self.arrived = asyncio.Event()

    async def send_text(self, data: str) -> None:
        if self.broken:
            raise ConnectionResetError("client went away")
        self.got.append(json.loads(data))
        self.arrived.set()


def queue(db_url: str, gateway: str, site: str, sensor: str, kind: str) -> None:
    payload = {
        "v": 1, "epoch": "e", "seq": 1, "t": NOW_MS, "sensor": sensor, "kind": kind, "confidence": 0.9,
        "resident": None, "evidence": {}, "gateway": gateway, "site": site,
    }  # fmt: skip
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            (gateway, site, json.dumps(payload)),
        )


def test_an_alert_made_on_one_replica_reaches_sockets_on_the_others(db_url: str, world: World) -> None:
    queue(db_url, "gw-home-1", "home-1", "wearable-res-1", "fall")
    worker, family1, family2, dead, tester = Console(), Console(), Console(), Console(broken=True), Console()

    async def main() -> None:
        pools = [open_pool(db_url, min_size=1, max_size=3) for _ in range(3)]
        for p in pools:
            await p.open()
        try:
            engine_pool, pool_a, pool_b = pools
            hub_a, hub_b = Hub(pool_a, db_url), Hub(pool_b, db_url)
            hub_a.register(world.user_id("worker1"), worker)
            hub_a.register(world.user_id("family1"), dead)  # a second socket of family1, broken
            hub_b.register(world.user_id("family1"), family1)
            hub_b.register(world.user_id("family2"), family2)
            hub_b.register(world.user_id("tester"), tester)
            tasks = [asyncio.create_task(h.run()) for h in (hub_a, hub_b)]
            await asyncio.wait_for(asyncio.gather(hub_a.listening.wait(), hub_b.listening.wait()), 10)
            assert await service.process_work(engine_pool) == 1  # the engine of a third replica
            await asyncio.wait_for(asyncio.gather(worker.arrived.wait(), family1.arrived.wait()), 10)
            # Proof that the first alert had every chance to reach the wrong sockets: later alerts
            # for family2's relative and a simulated home reach them, after anything sent before.
            queue(db_url, "gw-home-2", "home-2", "sos-1", "sos")
            queue(db_url, "gw-sim-1", "sim-home-1", "sos-1", "sos")
            assert await service.process_work(engine_pool) == 2
            await asyncio.wait_for(asyncio.gather(family2.arrived.wait(), tester.arrived.wait()), 10)
            assert hub_a.connected_users == [world.user_id("worker1")]  # the dead socket is gone
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for p in pools:
                await p.close()

    asyncio.run(main())
    assert [m["event"] for m in family1.got] == ["notified"] and family1.got[0]["alert"][
        "resident_id"
    ] == "res-1"
    assert worker.got[0]["event"] == "notified" and worker.got[0]["alert"]["resident_id"] == "res-1"
    # another family's alert never reaches family2; a tester sees simulated sites only
    assert [m["alert"]["resident_id"] for m in family2.got] == ["res-2"]
    assert [m["alert"]["site_id"] for m in tester.got] == ["sim-home-1"]


class DeadConsole:
    """A socket whose peer vanished: sends fail, and a close is never answered."""

    def __init__(self, never: asyncio.Event) -> None:
        self.never = never

    async def send_text(self, data: str) -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError("client went away")

    async def close(self, code: int = 1000) -> None:
        # waits on a future only the vanished transport held: nothing else refers to this task
        await asyncio.get_running_loop().create_future()


class SlowConsole:
    """A socket still sending when its console disconnects."""

    def __init__(self, never: asyncio.Event) -> None:
        self.never = never

    async def send_text(self, data: str) -> None:
        await self.never.wait()


def test_a_thousand_sockets_closing_at_once_leave_no_task_pending(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from eldercare.platform.notify import hub as hub_module

    monkeypatch.setattr(hub_module, "CLOSE_TIMEOUT_S", 0.2, raising=False)
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        never = asyncio.Event()
        hub = Hub(None, "")  # type: ignore[arg-type]  # no database: sockets only
        dead = [DeadConsole(never) for _ in range(500)]
        slow = [SlowConsole(never) for _ in range(500)]
        for i, sock in enumerate([*dead, *slow]):
            hub.register(i, sock)
            assert hub._sockets[i][sock].put('{"type": "alert"}')
        while len(hub.connected_users) > 500:  # the dead ones fail their send and are dropped
            await asyncio.sleep(0.01)
        for i, sock in enumerate(slow, start=500):
            hub.unregister(i, sock)  # their consoles disconnect (the ws route's finally)
        dead.clear()
        slow.clear()
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
        assert hub.connected_users == []
        await asyncio.gather(*list(getattr(hub, "_tasks", ())), return_exceptions=True)  # closes time out
        gc.collect()
        assert not getattr(hub, "_tasks", ())  # every push and close task ended and was let go
        if hasattr(hub, "close"):
            await hub.close()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert errors == []
    assert "Task was destroyed but it is pending" not in caplog.text


def test_a_threaded_hub_routes_on_its_own_thread_and_sends_on_the_sockets_loop(
    db_url: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``serve`` runs it: the NOTIFY and the routing queries never wait for a turn of the API's
    loop (they run on the hub's thread); only the send runs where the socket lives."""
    import threading

    from eldercare.platform.repo import alerts as alerts_repo

    routed_on: list[str] = []
    summaries = alerts_repo.push_summaries

    async def recording(conn: Any, **kw: Any) -> Any:
        routed_on.append(threading.current_thread().name)
        return await summaries(conn, **kw)

    monkeypatch.setattr(alerts_repo, "push_summaries", recording)
    sent_on: list[str] = []

    class ThreadConsole(Console):
        async def send_text(self, data: str) -> None:
            sent_on.append(threading.current_thread().name)
            await super().send_text(data)

    queue(db_url, "gw-home-1", "home-1", "wearable-res-1", "fall")
    queue(db_url, "gw-home-2", "home-2", "sos-1", "sos")
    worker, family2 = ThreadConsole(), ThreadConsole()

    async def main() -> None:
        engine_pool = open_pool(db_url, min_size=1, max_size=2)
        await engine_pool.open()
        hub = Hub(None, db_url)
        hub.register(world.user_id("worker1"), worker)
        hub.register(world.user_id("family2"), family2)
        pushes = asyncio.create_task(hub.run_threaded())
        try:
            await asyncio.wait_for(hub.listening.wait(), 10)
            assert await service.process_work(engine_pool) == 2
            await asyncio.wait_for(asyncio.gather(worker.arrived.wait(), family2.arrived.wait()), 10)
        finally:
            pushes.cancel()
            await asyncio.gather(pushes, return_exceptions=True)
            await hub.close()
            await engine_pool.close()

    asyncio.run(main())
    assert routed_on and set(routed_on) == {"alert-push-hub"}
    assert sent_on and set(sent_on) == {threading.main_thread().name}
    assert [m["alert"]["resident_id"] for m in worker.got] == ["res-1"]  # worker1 cares for res-1 only
    assert [m["alert"]["resident_id"] for m in family2.got] == ["res-2"]
