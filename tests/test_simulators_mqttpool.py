"""The simulator's connection pool against the real broker: a socket the client library closed on
its own must not block another connection that is handed the same file descriptor."""

from __future__ import annotations

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
