"""Live pushes against a real uvicorn server with the engine running: an event row written to the
database reaches the WebSocket of exactly the people who may see the alert."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from platform_seed import World, seed_world
from server_support import serving
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from eldercare.config import Settings

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


@pytest.fixture
def server(settings: Settings, world: World) -> Iterator[str]:
    """The whole app (engine and hub started by its lifespan) under uvicorn on a free port."""
    from eldercare.platform.app import create_app

    app = create_app(settings)
    with serving(app) as port:
        yield f"127.0.0.1:{port}"


def token(base: str, username: str, password: str) -> str:
    r = httpx.post(f"http://{base}/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def open_socket(base: str, world: World, username: str) -> ClientConnection:
    ws = connect(f"ws://{base}/api/v1/ws?token={token(base, username, world.password)}", open_timeout=10)
    hello = json.loads(ws.recv(timeout=10))
    assert hello == {"type": "hello", "user": username, "role": hello["role"]}
    return ws


def queue_event(db_url: str, gateway: str, site: str, sensor: str, kind: str, seq: int) -> None:
    """What ingest does for an edge event: a work row and NOTIFY alert_work, one transaction."""
    payload = {
        "v": 1, "epoch": "e-1", "seq": seq, "t": NOW_MS, "sensor": sensor, "kind": kind,
        "confidence": 0.93, "resident": None, "evidence": {}, "gateway": gateway, "site": site,
    }  # fmt: skip
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            (gateway, site, json.dumps(payload)),
        )
        conn.execute("NOTIFY alert_work")


def next_alert(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        msg = json.loads(ws.recv(timeout=timeout))
        if msg["type"] == "alert":
            return msg  # type: ignore[no-any-return]


def test_fall_reaches_the_worker_and_not_another_family(db_url: str, world: World, server: str) -> None:
    worker = open_socket(server, world, "worker1")
    family2 = open_socket(server, world, "family2")
    admin = open_socket(server, world, "admin")
    try:
        queue_event(db_url, "gw-home-1", "home-1", "wearable-res-1", "fall", 1)
        got = next_alert(worker)
        assert got["event"] == "notified"
        alert = got["alert"]
        assert (alert["kind"], alert["severity"], alert["state"], alert["tier"]) == (
            "fall",
            "critical",
            "open",
            1,
        )
        assert alert["resident_id"] == "res-1" and alert["resident_name"] == "Wang Fang"
        assert alert["title"] == {"en": "Possible fall", "zh-CN": "疑似跌倒"}
        assert "93%" in alert["summary"]["en"] and "93%" in alert["summary"]["zh-CN"]
        assert next_alert(admin)["alert"]["id"] == alert["id"]  # may see it, though not notified
        with pytest.raises(TimeoutError):
            family2.recv(timeout=1.0)
        # family2's socket works: their own relative's SOS is the first thing it receives
        queue_event(db_url, "gw-home-2", "home-2", "sos-1", "sos", 1)
        own = next_alert(family2)
        assert own["alert"]["resident_id"] == "res-2" and own["alert"]["kind"] == "sos"
        with pytest.raises(TimeoutError):
            worker.recv(timeout=0.5)  # res-2 is served by hc-2, not worker1's provider
    finally:
        for ws in (worker, family2, admin):
            ws.close()


def test_acknowledgement_reaches_everyone_who_may_see_the_alert(
    db_url: str, world: World, server: str
) -> None:
    family1 = open_socket(server, world, "family1")
    nurse = open_socket(server, world, "nurse1")
    try:
        queue_event(db_url, "gw-home-1", "home-1", "wearable-res-1", "fall", 1)
        first = next_alert(family1)
        assert first["event"] == "notified"
        # nurse1 (institution of res-1) may see it although tier 3 was not notified
        assert next_alert(nurse)["alert"]["id"] == first["alert"]["id"]
        base = f"http://{server}"
        headers = {"Authorization": f"Bearer {token(server, 'worker1', world.password)}"}
        r = httpx.post(f"{base}/api/v1/alerts/{first['alert']['id']}/ack", headers=headers)
        assert r.status_code == 200, r.text
        for ws in (family1, nurse):
            acked = next_alert(ws)
            assert acked["event"] == "acknowledged" and acked["alert"]["state"] == "acknowledged"
    finally:
        family1.close()
        nurse.close()


def test_a_bad_token_is_refused_with_a_close_code(server: str) -> None:
    ws = connect(f"ws://{server}/api/v1/ws?token=not-a-token", open_timeout=10)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
