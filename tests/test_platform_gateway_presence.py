"""Gateway presence on one clock: statuses go through ingest's real store (as delivered by the broker,
with their arrival times) and then the engine. Every disconnect opens device_offline dated when it
went offline, every recovery clears it and pipeline_stalled, the gateway's own clock is measured
and a far-off one raises clock_skew, and a status that arrived earlier never overrides a later one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.store import Store
from eldercare.platform.engine import service
from eldercare.platform.repo.connections import open_pool

ROOT = "eldercare/v1"
TOPIC = f"{ROOT}/home-1/gw-home-1/status"


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


@pytest.fixture
def store(db_url: str, world: World) -> Iterator[Store]:
    with psycopg.connect(db_url, autocommit=True) as conn:  # no status seen yet
        conn.execute("UPDATE gateways SET state = 'unknown', state_at = NULL")
    s = Store(db_url)
    yield s
    s.close()


def deliver(store: Store, t_ms: int, state: str, received: float, *, retained: bool = False) -> Any:
    """One status as ingest gets it from the broker at ``received`` (ingest's clock)."""
    reg = Registry(store.load_registry())
    payload = msgspec.json.encode({"v": 1, "t": t_ms, "state": state})
    batch = Batch()
    batch.add(Validator(ROOT, reg).check(Inbound(TOPIC, payload, received=received, retain=retained)))
    return store.write(batch, reg)


def engine(db_url: str) -> int:
    async def main() -> int:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            return await service.process_work(pool)

    return asyncio.run(main())


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_every_will_of_one_agent_process_opens_device_offline_dated_when_it_dropped(
    db_url: str, store: Store
) -> None:
    started = time.time() - 600  # the agent built its Will once, ten minutes ago
    will_t = int(started * 1000)
    drops = [time.time() - 300, time.time() - 200, time.time() - 100]
    for i, dropped in enumerate(drops):
        result = deliver(store, will_t, "offline", dropped)
        assert (result.statuses, result.duplicates) == (1, 0)  # the same Will, a new disconnect
        engine(db_url)
        assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("offline",)]
        deliver(store, int((dropped + 30) * 1000), "online", dropped + 30)
        engine(db_url)
        assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("online",)]
        assert len(rows(db_url, "SELECT id FROM alerts WHERE kind = 'device_offline'")) == i + 1
    got = rows(db_url, "SELECT detected_at, state FROM alerts WHERE kind = 'device_offline' ORDER BY id")
    for (detected, state), dropped in zip(got, drops, strict=True):
        assert abs((detected - at(dropped)).total_seconds()) < 0.01  # when it went offline, not started
        assert state == "resolved"
    # The broker replaying the retained Will to a restarted ingest: stored once, then a duplicate.
    assert deliver(store, will_t, "offline", time.time(), retained=True).statuses == 1
    assert deliver(store, will_t, "offline", time.time(), retained=True).duplicates == 1


def test_a_retained_offline_replayed_to_a_restarted_ingest_is_no_new_disconnect(
    db_url: str, store: Store
) -> None:
    """Protocol section 7: every offline that arrives *live* is a new disconnect. The broker's
    replay of a gateway's retained Will to a restarted ingest (a deploy) moved its offline time to
    the restart and opened a new device_offline, after the operator had resolved the real one:
    one alert per offline gateway of the fleet at every ingest restart."""
    dropped = time.time() - 3600
    will_t = int((dropped - 600) * 1000)
    deliver(store, will_t, "offline", dropped)
    engine(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the operator resolves it: known, put away
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now(), outcome = 'no_action_needed'"
        )
    assert deliver(store, will_t, "offline", time.time(), retained=True).statuses == 1
    engine(db_url)
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE state <> 'resolved'") == [(0,)]
    ((state, state_at),) = rows(db_url, "SELECT state, state_at FROM gateways WHERE id = 'gw-home-1'")
    assert state == "offline" and abs((state_at - at(dropped)).total_seconds()) < 0.01
    # A replay that is news (the platform had it online: it never heard the Will) still counts.
    deliver(store, int(time.time() * 1000) - 1000, "online", time.time() - 1)
    engine(db_url)
    deliver(store, will_t + 1, "offline", time.time(), retained=True)
    engine(db_url)
    assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("offline",)]
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE kind = 'device_offline' AND state = 'open'") == [
        (1,)
    ]


def test_an_online_status_with_the_same_t_as_before_a_drop_still_brings_the_gateway_back(
    db_url: str, store: Store
) -> None:
    """Protocol section 7: statuses are ordered by arrival and "the latest to arrive is the
    gateway's state". An online status was keyed by its ``t``: a gateway whose clock counts whole
    seconds (or is stuck at its last good time, clock_ok false) and reconnects within that second
    sends the same bytes again after its Will, which were dropped as a duplicate: it stayed offline,
    its device_offline open, until its next status minutes later."""
    now = time.time() - 60
    t = int(now) * 1000
    deliver(store, t, "online", now)
    deliver(store, t - 600_000, "offline", now + 0.3)  # the Will
    engine(db_url)
    assert deliver(store, t, "online", now + 0.6).statuses == 1  # back within the same second
    engine(db_url)
    assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("online",)]
    assert rows(db_url, "SELECT state FROM alerts WHERE kind = 'device_offline'") == [("resolved",)]
    # the broker replaying the retained online to a restarted ingest changes nothing: not the
    # time it came back, nor the detections of an open alert about one of its sensors
    lost = msgspec.json.encode(
        {"v": 1, "t": t + 1000, "state": "online", "sensors": {"sos-1": {"online": False}}}
    )
    reg = Registry(store.load_registry())
    for received, retain in ((now + 1, False), (time.time(), True), (time.time(), True)):
        batch = Batch()
        batch.add(Validator(ROOT, reg).check(Inbound(TOPIC, lost, received=received, retain=retain)))
        store.write(batch, reg)
        engine(db_url)
    assert rows(db_url, "SELECT detections FROM alerts WHERE state = 'open'") == [(1,)]
    ((state_at,),) = rows(db_url, "SELECT state_at FROM gateways WHERE id = 'gw-home-1'")
    assert abs((state_at - at(now + 1)).total_seconds()) < 0.01


def test_presence_follows_arrival_not_the_gateways_clock_and_the_skew_is_measured(
    db_url: str, store: Store
) -> None:
    now = time.time() - 60
    # A gateway whose clock is two hours fast says it is online, then crashes (its Will).
    deliver(store, int((now + 7200) * 1000), "online", now)
    deliver(store, int((now - 3600) * 1000), "offline", now + 1)
    engine(db_url)
    assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("offline",)]
    ((skew,),) = rows(db_url, "SELECT skew_ms FROM gateway_clocks WHERE gateway_id = 'gw-home-1'")
    assert abs(skew - 7_200_000) < 10
    open_now = rows(db_url, "SELECT kind FROM alerts WHERE state = 'open' ORDER BY kind")
    assert open_now == [("clock_skew",), ("device_offline",)]
    (summary,) = rows(db_url, "SELECT summary ->> 'en' FROM alerts WHERE kind = 'clock_skew'")
    assert "120 min ahead" in summary[0]
    # Back, with its clock set right: both clear; a 30 s slow clock is within limits.
    deliver(store, int((now + 2 - 30) * 1000), "online", now + 2)
    engine(db_url)
    assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("online",)]
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE state = 'open'") == [(0,)]
    ((skew,),) = rows(db_url, "SELECT skew_ms FROM gateway_clocks WHERE gateway_id = 'gw-home-1'")
    assert abs(skew + 30_000) < 10


def test_a_status_that_arrived_earlier_never_overrides_a_later_one(db_url: str, store: Store) -> None:
    now = time.time() - 60
    deliver(store, int(now * 1000), "online", now + 2)  # written first, arrived second
    deliver(store, int(now * 1000) - 5000, "offline", now + 1)  # a worker that was slower to commit
    engine(db_url)
    assert rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'") == [("online",)]
    assert rows(db_url, "SELECT count(*) FROM alerts") == [(0,)]  # the stale Will opens nothing


def test_recovery_clears_pipeline_stalled_however_recently_the_gateway_came_back(
    db_url: str, store: Store
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state = 'online', state_at = %s", (now - timedelta(hours=1),))
        conn.execute(
            "INSERT INTO readings VALUES (%s, 'gw-home-1', 'gw-home-1', 'heartbeat', 60)",
            (now - timedelta(minutes=20),),
        )

    def heartbeats(at: datetime) -> int:
        async def main() -> int:
            async with open_pool(db_url, min_size=1, max_size=2) as p:
                return await service.check_heartbeats(p, now=at)

        return asyncio.run(main())

    assert heartbeats(now) >= 1
    assert rows(
        db_url, "SELECT state FROM alerts WHERE kind = 'pipeline_stalled' AND gateway_id = 'gw-home-1'"
    ) == [("open",)]
    # The gateway re-publishes its status at every heartbeat, so its state is always under 300 s old:
    # heartbeats arriving again must still clear the alert.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE gateways SET state_at = %s WHERE id = 'gw-home-1'", (now + timedelta(seconds=50),)
        )
        conn.execute(
            "INSERT INTO readings VALUES (%s, 'gw-home-1', 'gw-home-1', 'heartbeat', 60)",
            (now + timedelta(seconds=55),),
        )
    heartbeats(now + timedelta(seconds=60))
    assert rows(
        db_url, "SELECT state FROM alerts WHERE kind = 'pipeline_stalled' AND gateway_id = 'gw-home-1'"
    ) == [("resolved",)]
    # And an online status clears it too (a recovery clears both device_offline and pipeline_stalled).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state_at = %s", (now - timedelta(hours=1),))
    heartbeats(now + timedelta(minutes=30))
    assert rows(db_url, "SELECT count(*) FROM alerts WHERE kind = 'pipeline_stalled' AND state = 'open'") != [
        (0,)
    ]
    deliver(store, int(time.time() * 1000), "online", time.time())
    engine(db_url)
    assert rows(
        db_url,
        "SELECT count(*) FROM alerts WHERE kind = 'pipeline_stalled' AND gateway_id = 'gw-home-1'"
        " AND state = 'open'",
    ) == [(0,)]


def test_an_agent_process_dropped_three_times_opens_and_clears_device_offline_each_time(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Any, store: Store
) -> None:
    """Through the real broker and ingest, then the engine's work: one MQTT client (one agent
    process, its Will built once at start-up) loses its connection three times and reconnects by
    itself, once the test lets it. Each step waits for the event it needs (ingest has stored the
    status) and then runs the engine on the queued work, so no step races a deadline or the next
    status on a loaded machine (a reconnect handled before the Will supersedes it: no alert)."""
    import json
    import socket
    import threading
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from ingest_support import IngestProcess, wait_for

    topic = f"{topic_root}/home-1/gw-home-1/status"

    def offline_alerts() -> list[tuple[Any, ...]]:
        return rows(db_url, "SELECT state FROM alerts WHERE kind = 'device_offline' ORDER BY id")

    def state() -> str:
        return str(rows(db_url, "SELECT state FROM gateways WHERE id = 'gw-home-1'")[0][0])

    def stored(state: str) -> int:
        q = "SELECT count(*) FROM gateway_status WHERE gateway_id = 'gw-home-1' AND state = %s"
        return int(rows(db_url, q, state)[0][0])

    onlines, offlines = stored("online"), stored("offline")
    ingest = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    agent = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"agent-{topic_root[-12:]}")
    back = threading.Event()  # the agent's network thread reconnects once this is set
    try:
        ingest.wait_healthy()
        will = {"v": 1, "t": int(time.time() * 1000), "state": "offline"}
        agent.will_set(topic, json.dumps(will), qos=1, retain=True)
        agent.on_connect = lambda c, *_: c.publish(
            topic,
            json.dumps({"v": 1, "t": int(time.time() * 1000), "state": "online"}),
            qos=1,
            retain=True,
        )
        agent.on_disconnect = lambda *_: back.wait(300)  # a bound only: a broken test must not hang
        agent.reconnect_delay_set(0.1, 0.5)
        u = urlsplit(mqtt_url)
        agent.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=10)
        agent.loop_start()
        for drop in range(1, 4):
            wait_for(
                lambda n=onlines + drop: stored("online") >= n, 120, f"online status number {drop} stored"
            )
            engine(db_url)
            assert state() == "online" and offline_alerts() == [("resolved",)] * (drop - 1)
            sock = agent.socket()
            assert sock is not None
            back.clear()
            sock.shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT: the broker sends the Will
            wait_for(lambda n=offlines + drop: stored("offline") >= n, 120, f"Will number {drop} stored")
            engine(db_url)
            assert state() == "offline" and offline_alerts() == [("resolved",)] * (drop - 1) + [("open",)]
            back.set()  # the agent reconnects by itself
        wait_for(lambda: stored("online") >= onlines + 4, 120, "the last reconnect's status stored")
        engine(db_url)
        assert state() == "online" and offline_alerts() == [("resolved",)] * 3
        assert stored("offline") == offlines + 3  # each Will stored, none taken for a duplicate of the first
        assert stored("online") == onlines + 4
    finally:
        back.set()
        agent.loop_stop()
        agent.disconnect()
        ingest.stop()


def test_a_disabled_gateway_raises_no_pipeline_stalled(db_url: str, store: Store) -> None:
    """`eldercare gateways disable` refuses a gateway's messages, its Will and heartbeats too: it
    stays "online" with no heartbeat, which is no broken pipeline (found by the outside protocol
    check: a disabled gateway's pipeline_stalled, high severity, detected every 30 s)."""
    now = datetime.now(UTC)

    def heartbeats() -> int:
        async def main() -> int:
            async with open_pool(db_url, min_size=1, max_size=2) as p:
                return await service.check_heartbeats(p, now=now)

        return asyncio.run(main())

    stalled = "SELECT count(*) FROM alerts WHERE kind = 'pipeline_stalled' AND state = 'open'"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state = 'online', state_at = %s", (now - timedelta(hours=1),))
    heartbeats()
    assert rows(db_url, stalled) != [(0,)]  # the control: enabled, online, silent
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET disabled_at = %s", (now - timedelta(minutes=1),))
    assert heartbeats() == 0
    assert rows(db_url, stalled) == [(0,)]
