"""``eldercare ingest`` as a process between the real Mosquitto and the real PostgreSQL.

The database outage is simulated with a proxy in front of the shared PostgreSQL (TCP, or the
embedded server's Unix socket) that cuts every connection and refuses new ones until ingest has
tried and failed several times (the shared server itself is never stopped).

No test waits a fixed time for something not to happen: a negative check waits for an event that
proves the system had its chance (a later message stored, a failed attempt counted).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from fix_db import unique_tag
from ingest_support import (
    IngestProcess,
    PausableProxy,
    count,
    event,
    publisher,
    register,
    telemetry,
    wait_for,
)

# These run ingest over MQTT v5 (persistent session, shared subscriptions); the 3.1.1 mode for the
# embedded amqtt broker is covered by test_ingest_mqtt311.py.
pytestmark = pytest.mark.mqtt5

GATEWAYS = {"gw-1": "home-1", "gw-2": "home-2", "gw-3": "home-3", "gw-4": "home-4"}


def topic(root: str, gw: str, kind: str = "telemetry") -> str:
    return f"{root}/{GATEWAYS.get(gw, 'home-9')}/{gw}/{kind}"


def stream(root: str, messages: int, readings: int = 10) -> list[tuple[str, bytes]]:
    """``messages`` telemetry messages spread over the four gateways, each seq once per gateway."""
    gws = list(GATEWAYS)
    return [(topic(root, gws[i % 4]), telemetry(i // 4, n=readings)) for i in range(messages)]


def stored(db_url: str) -> int:
    return count(db_url, "SELECT count(*) FROM ingested_messages")


def settle(db_url: str, mqtt_url: str, root: str, expected: int) -> int:
    """Publish one more message after everything else and wait until it is stored: whatever ingest
    was still going to do with the earlier ones (a late redelivery, say) it has had its chance to
    do. Returns the number of messages now expected."""
    with publisher(mqtt_url) as pub:
        pub.publish(topic(root, "gw-1"), telemetry(1_000_000, epoch="epoch-test-marker"))
    wait_for(lambda: stored(db_url) >= expected + 1, 40, "the marker message")
    return expected + 1


def assert_exactly_once(db_url: str, messages: int, readings: int) -> None:
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == messages
    assert count(db_url, "SELECT count(*) FROM readings") == messages * readings
    distinct = "SELECT count(*) FROM (SELECT DISTINCT gateway_id, sensor_id, ts, value FROM readings) d"
    assert count(db_url, distinct) == messages * readings


@pytest.fixture
def ingest(db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path):
    register(db_url, GATEWAYS)
    procs: list[IngestProcess] = []

    def start(**kw: str) -> IngestProcess:
        workers = int(kw.pop("workers", "1"))
        url = kw.pop("db", db_url)
        p = IngestProcess(url, mqtt_url, topic_root, tmp_path, workers=workers, **kw).start()
        procs.append(p)
        p.wait_healthy()
        return p

    yield start
    for p in procs:
        p.stop()


def test_messages_in_exactly_their_readings_stored_and_again_nothing_more(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    proc = ingest()
    msgs = stream(topic_root, 200)
    with publisher(mqtt_url) as pub:
        pub.publish_many(msgs)
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 200, what="200 messages")
        assert_exactly_once(db_url, 200, 10)
        pub.publish_many(msgs)  # the same messages again: a gateway replaying its outbox
        wait_for(lambda: proc.metrics().get("eldercare_ingest_duplicates_total", 0) == 200, what="duplicates")
    assert_exactly_once(db_url, 200, 10)
    m = proc.metrics()
    assert m['eldercare_ingest_received_total{kind="telemetry"}'] == 400
    assert m["eldercare_ingest_stored_readings_total"] == 2000
    assert proc.healthz()[1]["status"] == "ok"
    assert proc.stop() == 0


def test_metrics_listen_on_the_http_host_only(ingest) -> None:
    # 127.0.0.2 is loopback too (127/8): listening there, and not on 127.0.0.1, shows the bind
    # address is the setting and not every interface (0.0.0.0 would answer on both)
    proc = ingest(ELDERCARE_HTTP_HOST="127.0.0.2")
    assert proc.healthz()[0] == 200
    assert f"metrics on 127.0.0.2:{proc.port}/metrics" in proc.output()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proc.port), timeout=2).close()


def test_bad_payloads_end_as_dead_letters_with_reasons(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    proc = ingest(ELDERCARE_INGEST_MAX_PAYLOAD_BYTES="2048")
    bad = [
        (topic(topic_root, "gw-1"), b"\x00\xffnot json"),
        (topic(topic_root, "gw-1"), telemetry(1, n=100)),  # > 2048 bytes
        (topic(topic_root, "gw-1"), b'{"v": 1, "epoch": "epoch-test-0001", "seq": "one", "readings": []}'),
        (topic(topic_root, "gw-1", "event"), event(2, kind="exploded")),
        (topic(topic_root, "gw-9"), telemetry(3)),
        (f"{topic_root}/home-2/gw-1/telemetry", telemetry(4)),
    ]
    with publisher(mqtt_url) as pub:
        pub.publish_many([*bad, (topic(topic_root, "gw-2"), telemetry(5))])
    wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == 6, what="6 dead letters")
    wait_for(lambda: count(db_url, "SELECT count(*) FROM readings") == 10, what="the good message")
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT topic, payload, reason FROM dead_letters ORDER BY id").fetchall()
    reasons = {bytes(p)[:20]: r for _, p, r in rows}
    got = sorted(r.split(":")[0] for _, _, r in rows)
    assert got == ["$", "kind", "payload", "seq", "topic.gateway", "topic.site"], [r for *_, r in rows]
    assert reasons[b"\x00\xffnot json"].startswith("$: not valid JSON")
    assert "unknown gateway 'gw-9'" in " ".join(r for *_, r in rows)
    assert [len(bytes(p)) for _, p, r in rows if r.startswith("payload")] == [2048]
    m = proc.metrics()
    assert m['eldercare_ingest_dead_lettered_total{field="topic.gateway"}'] == 1
    assert m['eldercare_ingest_received_total{kind="invalid"}'] == 4  # the others fail the registry check


@pytest.mark.slow
def test_kill_9_mid_stream_and_restart_loses_and_duplicates_nothing(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    # The shared broker keeps at most 1,000 queued messages per session (Mosquitto's default
    # max_queued_messages), beyond which it drops them: fewer than that are left to publish once
    # ingest is killed (after 150), however slowly a loaded machine restarts it.
    client_id = f"test-ingest-kill-{unique_tag()}-0"
    proc = ingest(ELDERCARE_INGEST_CLIENT_ID=client_id)
    msgs = stream(topic_root, 1100)
    with publisher(mqtt_url) as pub:
        sender = threading.Thread(target=pub.publish_many, args=(msgs, 250.0))
        sender.start()
        wait_for(
            lambda: count(db_url, "SELECT count(*) FROM ingested_messages") > 150, what="a first part stored"
        )
        proc.kill()
        stored_at_kill = count(db_url, "SELECT count(*) FROM ingested_messages")
        assert stored_at_kill < 1100
        ingest(ELDERCARE_INGEST_CLIENT_ID=client_id)  # same client id: its session waits
        sender.join()
    wait_for(lambda: stored(db_url) == 1100, 40, "all 1100 messages")
    assert_exactly_once(db_url, settle(db_url, mqtt_url, topic_root, 1100), 10)


@pytest.mark.slow
def test_database_down_mid_stream_loses_nothing(ingest, db_url: str, mqtt_url: str, topic_root: str) -> None:
    proxy = PausableProxy(db_url).start()
    try:
        proc = ingest(db=proxy.url_for(db_url))
        msgs = stream(topic_root, 900)
        with publisher(mqtt_url) as pub:
            sender = threading.Thread(target=pub.publish_many, args=(msgs, 60.0))
            sender.start()
            wait_for(lambda: stored(db_url) > 100, what="first part")
            proxy.down()
            down_at = stored(db_url)
            wait_for(lambda: proc.healthz()[0] == 503, 10, "/healthz to report the database")
            # ingest retries with a growing back-off (0.5, 1, 2, ... s): three more failed
            # attempts, some 3.5 s of outage while the stream goes on, and nothing got through
            errors = proc.metrics()["eldercare_ingest_db_errors_total"]
            wait_for(
                lambda: proc.metrics()["eldercare_ingest_db_errors_total"] >= errors + 3,
                30,
                "three more failed attempts to write",
            )
            assert stored(db_url) == down_at
            proxy.up()
            sender.join()
        wait_for(lambda: stored(db_url) == 900, 40, "all 900 messages")
        assert_exactly_once(db_url, 900, 10)
        assert proc.metrics()["eldercare_ingest_db_errors_total"] >= 4
        wait_for(lambda: proc.healthz()[0] == 200, 10, "healthy again")
    finally:
        proxy.close()


def test_an_sos_is_committed_in_turn_not_behind_another_gateways_big_events(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """The events path commits the gateways in turn, at most ~1 MiB at a time: behind 200 falls of
    one gateway with 250 KB of evidence each, another home's SOS waited 36 s for the one commit of
    them all (found by the outside gateway check, round 3)."""
    proc = ingest()
    assert proc.stop() == 0  # its sessions keep what comes meanwhile: a backlog, as after a restart
    big = {"acc": {"x": list(range(30_000))}}  # ~190 KB
    falls = [(topic(topic_root, "gw-1", "event"), event(i, kind="fall", evidence=big)) for i in range(80)]
    with publisher(mqtt_url) as pub:
        pub.publish_many([*falls, (topic(topic_root, "gw-2", "event"), event(1, kind="sos"))])
    proc.start().wait_healthy()
    wait_for(lambda: count(db_url, "SELECT count(*) FROM events") == 81, 90, "the events")
    # received_at is its commit's start: most of gw-1's falls were committed after the SOS
    later = count(
        db_url,
        "SELECT count(*) FROM events WHERE gateway_id = 'gw-1'"
        " AND received_at > (SELECT received_at FROM events WHERE gateway_id = 'gw-2')",
    )
    assert later >= 40


@pytest.mark.slow
@pytest.mark.mqtt5
def test_two_workers_share_the_load_without_duplicates(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    proc = ingest(workers="2")
    msgs = stream(topic_root, 800)
    with publisher(mqtt_url) as pub:
        pub.publish_many(msgs)
    wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 800, what="800 messages")
    assert_exactly_once(db_url, 800, 10)
    per_worker = [proc.metrics(p)['eldercare_ingest_received_total{kind="telemetry"}'] for p in proc.ports()]
    assert sum(per_worker) == 800
    assert min(per_worker) > 100, per_worker


def test_event_through_ingest_reaches_a_listening_connection(
    ingest, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    import psycopg

    ingest()
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN alert_work")
        with publisher(mqtt_url) as pub:
            pub.publish(topic(topic_root, "gw-3", "event"), event(1, kind="sos"))
        notes = list(listener.notifies(timeout=10, stop_after=1))
    assert len(notes) == 1
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT id, payload FROM alert_work").fetchone()
    assert row is not None and notes[0].payload == str(row[0])
    assert (row[1]["kind"], row[1]["gateway"], row[1]["site"]) == ("sos", "gw-3", "home-3")


@pytest.mark.slow
@pytest.mark.mqtt5
def test_retiring_a_worker_delivers_its_share_and_leaves_the_group(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, GATEWAYS)
    tag = unique_tag()
    env = {"ELDERCARE_INGEST_CLIENT_ID": f"test-retire-{tag}-0", "ELDERCARE_INGEST_SHARED_GROUP": f"r{tag}"}
    two = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, workers=2, **env).start()
    two.wait_healthy()
    assert two.stop() == 0  # both sessions stay in the shared group
    one = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, **env).start()
    try:
        one.wait_healthy()
        with publisher(mqtt_url) as pub:
            pub.publish_many(stream(topic_root, 400))
        wait_for(
            lambda: one.metrics()['eldercare_ingest_received_total{kind="telemetry"}'] > 100, what="a share"
        )
        assert stored(db_url) < 400  # the stopped worker's session got its share and holds it
        retiring = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, **env)
        retiring.start(["retire", "--index", "1"])
        assert retiring.proc is not None and retiring.proc.wait(60) == 0, retiring.output()
        # the live worker may still be committing its own share: wait for it, not a fixed time
        wait_for(lambda: stored(db_url) == 400, what="all 400 messages")
        assert_exactly_once(db_url, 400, 10)
        by_one = one.metrics()["eldercare_ingest_stored_messages_total"]
        assert 400 - by_one > 100, by_one  # ... and only the retiring worker delivered it
        with publisher(mqtt_url) as pub:  # the group is down to the one live worker
            pub.publish_many([(topic(topic_root, "gw-1"), telemetry(1000 + i)) for i in range(50)])
        wait_for(lambda: stored(db_url) == 450, what="450 messages")
        assert one.metrics()["eldercare_ingest_stored_messages_total"] == by_one + 50
    finally:
        one.stop()
