"""End-to-end acknowledgement: the gateway keeps a message until the platform says it is stored.

The platform side is played by :class:`edge_support.FakeIngest` (a persistent QoS 1 session like
ingest's, and the retained ``.../ack`` ingest publishes after its commit), so these tests do not
depend on the ingest worker. The broker is a private Mosquitto that the tests ``kill -9``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from edge_support import FakeIngest, Mosquitto, Subscriber, gateway, gw_file, publish_retained

from eldercare.edge.agent import Agent
from eldercare.edge.drivers import Action, Sample
from eldercare.edge.drivers.simulated import SimulatedDriver

pytestmark = pytest.mark.timeout(90)
pytest_plugins = ["edge_fixtures"]  # fixtures: edge_broker, edge_root, private_broker

N = 600  # counter readings: any gap or repeat is a lost or duplicated reading


def wait_until(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def start(raw: dict[str, Any], **kw: Any) -> Agent:
    agent = Agent(gw_file(raw), **kw)
    agent.start()
    assert agent.connected_once.wait(10), "agent did not connect"
    return agent


def sim(agent: Agent) -> SimulatedDriver:
    d = agent.driver("sim")
    assert isinstance(d, SimulatedDriver)
    return d


def counter_values(msgs: list[dict[str, Any]]) -> list[float]:
    return sorted(r["value"] for p in msgs for r in p.get("readings", []) if r["sensor"] == "counter-1")


def backlog_then_broker_kill_9(tmp_path: Path, root: str, ack: str) -> tuple[FakeIngest, Agent, Mosquitto]:
    """Ingest down, a backlog queued in the broker for it, then the broker killed before it saved
    its queue (autosave once an hour, as a deployment saving every 60 s would be mid-interval)."""
    broker = Mosquitto(tmp_path / "mosquitto", autosave_s=3600)
    broker.start()
    ingest = FakeIngest("127.0.0.1", broker.port, root, client_id=f"ingest-{tmp_path.name}"[:60])
    ingest.start()
    ingest.stop()  # ingest is down: the broker queues for its session
    raw = gateway(
        tmp_path,
        root,
        broker.port,
        config={"telemetry_batch_max": 20, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
        outbox={"path": str(tmp_path / "outbox.sqlite3"), "ack": ack, "ack_timeout_s": 5.0},
    )
    agent = start(raw)
    sim(agent).feed_many(Sample("counter-1", "count", float(i)) for i in range(N))
    sim(agent).feed(Action("sos-1", "sos"))

    def all_with_the_broker() -> bool:
        waiting = len(agent.sending.awaiting) if ack == "platform" else 0
        return (
            agent.outbox.n_pending == 0
            and not agent.sending.inflight
            and not agent.rows
            and agent.outbox.n_messages == waiting
            and (ack == "broker" or waiting > N // 20)
        )

    def state() -> tuple[int, ...]:
        return (
            agent.outbox.n_pending,
            len(agent.sending.inflight),
            agent.outbox.n_messages,
            len(agent.sending.awaiting),
        )

    assert wait_until(all_with_the_broker, 15), f"the backlog did not reach the broker: {state()}"
    broker.kill()
    broker.start()
    ingest.start()  # ingest is back (its session was lost with the broker's memory)
    return ingest, agent, broker


def test_broker_kill_9_holding_a_backlog_loses_nothing_with_platform_acks(
    tmp_path: Path, edge_root: str
) -> None:
    ingest, agent, broker = backlog_then_broker_kill_9(tmp_path, edge_root, "platform")
    try:
        key = ("home-1", "gw-1", agent.outbox.epoch)
        # the agent re-sends what the platform has not acknowledged: after its reconnect, and
        # again after the ack timeout if ingest subscribed only after that
        assert ingest.wait_for(lambda i: len(counter_values(i.messages())) == N, 30)
        msgs = ingest.messages()
        assert counter_values(msgs) == [float(i) for i in range(N)], "every reading once"
        assert [e["kind"] for e in msgs if "kind" in e] == ["sos"]
        assert agent.outbox.n_messages > 0, "nothing is deleted before the platform acknowledges it"
        top = ingest.contiguous(key)
        assert top == agent.outbox.next_seq - 1
        ingest.ack(*key, top)
        assert wait_until(lambda: agent.outbox.n_messages == 0, 10), "acknowledged messages are deleted"
        print(f"platform acks: {N} of {N} readings, 1 of 1 SOS stored; {ingest.copies} redelivered copies")
    finally:
        agent.stop()
        ingest.stop()
        broker.stop()


def test_control_broker_acks_lose_the_backlog_of_a_broker_kill_9(tmp_path: Path, edge_root: str) -> None:
    """The same fault with deletion on PUBACK (the old behaviour) loses the broker's queue: the
    harness above really destroys what the broker had not saved."""
    ingest, agent, broker = backlog_then_broker_kill_9(tmp_path, edge_root, "broker")
    try:
        # a marker sent after the restart proves the path works and the ingest had its chance
        sim(agent).feed(Sample("counter-2", "count", 1.0))
        assert ingest.wait_for(
            lambda i: any(r["sensor"] == "counter-2" for p in i.messages() for r in p.get("readings", [])), 15
        )
        got = counter_values(ingest.messages())
        assert len(got) < N, "with deletion on PUBACK the broker's unsaved queue is lost"
        print(f"broker acks: {len(got)} of {N} readings stored after the kill -9")
    finally:
        agent.stop()
        ingest.stop()
        broker.stop()


def test_ack_deletes_up_to_its_seq_of_the_current_epoch_only(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    raw = gateway(
        tmp_path,
        edge_root,
        port,
        host=host,
        config={"telemetry_batch_max": 10, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
        outbox={"path": str(tmp_path / "outbox.sqlite3"), "ack": "platform"},
    )
    agent = start(raw)
    ack_topic = f"{edge_root}/home-1/gw-1/ack"
    try:
        sim(agent).feed_many(Sample("pir-kitchen", "motion", float(i % 2)) for i in range(100))
        total = 11  # the start-up heartbeat's message and ten batches of ten
        assert wait_until(
            lambda: len(agent.sending.awaiting) == total and agent.outbox.n_messages == total, 10
        )
        epoch = agent.outbox.epoch
        # another epoch's ack (a wiped gateway's retained one) deletes nothing; an ack of this
        # epoch sent after it proves the first was handled
        publish_retained(host, port, ack_topic, b'{"v": 1, "epoch": "0123456789abcdef", "seq": 99}')
        publish_retained(host, port, ack_topic, f'{{"v": 1, "epoch": "{epoch}", "seq": 4}}'.encode())
        assert wait_until(lambda: agent.sending.platform_seq == 4, 10)
        assert agent.outbox.n_messages == total - 5
        assert sorted(m.seq for m in agent.outbox.next_batch([], 100)) == list(range(5, total))
        publish_retained(host, port, ack_topic, b"not json")  # refused, never fatal
        # an unknown field nested deeper than the parser goes (RecursionError, not a MsgspecError)
        publish_retained(host, port, ack_topic, b'{"x": ' + b"[" * 100_000)
        publish_retained(host, port, ack_topic, f'{{"v": 1, "epoch": "{epoch}", "seq": 10}}'.encode())
        assert wait_until(lambda: agent.outbox.n_messages == 0, 10)
        assert agent.error is None
    finally:
        agent.stop()
        publish_retained(host, port, ack_topic, b"")
        sub.close()


def test_unacknowledged_messages_are_sent_again_after_the_ack_timeout(
    edge_broker: tuple[str, int], tmp_path: Path, edge_root: str
) -> None:
    """The timeout runs on the agent's injected clock: the test moves it, nothing sleeps it out.

    After a connect the first wait is the short one (a restarted broker may have dropped what was
    sent before ingest subscribed again), then ``ack_timeout_s``."""
    host, port = edge_broker
    sub = Subscriber(host, port, edge_root)
    clock = {"t": 1000.0}
    wall0 = time.time()
    outbox = {"path": str(tmp_path / "outbox.sqlite3"), "ack": "platform", "ack_timeout_s": 30.0}
    raw = gateway(tmp_path, edge_root, port, host=host, outbox=outbox | {"ack_timeout_after_connect_s": 5.0})
    agent = start(raw, mono=lambda: clock["t"], wall=lambda: wall0 + clock["t"] - 1000.0)

    def events(n: int) -> None:
        assert sub.wait_for(lambda s: len(s.of("event")) >= n, 10), len(sub.of("event"))

    try:
        sim(agent).feed(Action("sos-1", "sos"))
        events(1)
        assert wait_until(lambda: len(agent.sending.awaiting) >= 1, 5)
        clock["t"] += 4.0  # not yet: a later message proves the agent looked at the time
        sim(agent).feed(Action("sos-1", "sos"))
        events(2)
        assert agent.sending.resends == 0 and len(sub.of("event")) == 2
        clock["t"] += 2.0  # 6 s since the connect without an ack: both go again, byte for byte
        events(4)
        assert agent.sending.resends == 1
        first, second = sub.of("event")[:2]
        assert sorted(e["seq"] for e in sub.of("event")[2:4]) == sorted([first["seq"], second["seq"]])
        assert sub.of("event")[2] in (first, second)
        # their PUBACKs taken (the timeout runs from the first one waiting), then ack_timeout_s
        assert wait_until(lambda: len(agent.sending.awaiting) >= 2, 5)
        clock["t"] += 29.0  # from now on ack_timeout_s: not yet
        sim(agent).feed(Action("sos-1", "sos"))
        events(5)
        assert agent.sending.resends == 1 and len(sub.of("event")) == 5
        clock["t"] += 2.0  # 31 s since the last resend: all three again
        events(8)
        assert agent.sending.resends == 2
    finally:
        agent.stop()
        sub.close()
