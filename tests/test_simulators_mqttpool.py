"""The simulator's connection pool against the real broker: a socket the client library closed on
its own must not block another connection that is handed the same file descriptor."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from edge_support import Mosquitto, Subscriber

from eldercare.config import Settings
from eldercare.simulators.mqttpool import Conn, Pool


def test_a_descriptor_reused_after_the_library_closed_a_socket_is_taken_over(settings: Settings) -> None:
    pool = Pool()
    a, b = Conn("pool-test-a", settings), Conn("pool-test-b", settings)
    try:
        pool.add(a)
        pool.add(b)
        pool.wait_connected(10)
        fd_a = a.client.socket().fileno()  # type: ignore[union-attr]
        assert fd_a < b.client.socket().fileno()  # type: ignore[union-attr]
        a.client._sock_close()  # what paho does itself on a keepalive timeout or a write error
        # b's new socket gets the lowest free descriptor: the one a's closed socket still holds in
        # the selector. Before the fix this raised KeyError("... is already registered").
        assert pool.reconnect(b)
        assert b.client.socket().fileno() == fd_a  # type: ignore[union-attr]
        assert list(pool.pending) == [a]  # a is queued for reconnection, not forgotten
        assert pool.reconnect(pool.pending.popleft())
        pool.wait_connected(10)
        assert a.connected and b.connected
    finally:
        pool.close()


def test_after_a_broker_outage_connections_come_back_and_sent_counts_only_acknowledged(
    settings: Settings, tmp_path: Path
) -> None:
    """The broker is stopped and started again: the pool keeps trying (like the edge agents, with
    jittered backoff) until the connection is back; what was published meanwhile is delivered
    after the reconnect, and ``sent`` counts only what the broker acknowledged."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    root = f"test-pool/{uuid.uuid4().hex}"
    own = Settings(**{**dict(settings), "mqtt_url": f"mqtt://127.0.0.1:{broker.port}"})
    sub = Subscriber("127.0.0.1", broker.port, root, client_id=f"pool-sub-{uuid.uuid4().hex[:8]}")
    pool = Pool()
    conn = Conn(f"pool-{uuid.uuid4().hex[:8]}", own)
    topic = f"{root}/home-1/gw-1/telemetry"

    def poll_until(pred: Any, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pool.poll(0.02)
            if pred():
                return True
        return False

    try:
        pool.add(conn)
        pool.wait_connected(10)
        for i in range(5):
            conn.publish(topic, json.dumps({"i": i}).encode())
        assert poll_until(lambda: conn.sent == 5 and conn.unacked == 0)
        broker.stop()
        assert poll_until(lambda: not conn.connected)
        while pool.pending:  # what the runner does with a lost connection: one attempt, refused
            assert not pool.reconnect(pool.pending.popleft())
        for i in range(5, 8):
            conn.publish(topic, json.dumps({"i": i}).encode())
        assert conn.sent == 5 and conn.unacked == 3  # queued, not sent
        broker.start()
        assert poll_until(lambda: conn.connected and conn.sent == 8 and conn.unacked == 0, 30)
        got = lambda: sorted({p["i"] for p in sub.of("telemetry")})  # noqa: E731 (QoS 1: copies allowed)
        assert sub.wait_for(lambda s: got() == list(range(8)), 10), got()
    finally:
        pool.close()
        sub.close()
        broker.stop()
