"""Group commit, the event fast path, end-to-end acknowledgements and silent peers.

The store-level tests drive :class:`Store` against the real PostgreSQL; the process tests run
``eldercare ingest`` between the real Mosquitto and PostgreSQL. A commit "in flight" is held there
by another connection taking a lock on ``readings`` that the worker's COPY must wait for: the
worker is then provably inside its transaction (PostgreSQL reports it waiting on the lock).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
import pytest
from ingest_support import (
    IngestProcess,
    count,
    event,
    publisher,
    register,
    telemetry,
    wait_for,
)

from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.metrics import Metrics
from eldercare.ingest.mqtt import AckThrottle
from eldercare.ingest.store import Store
from eldercare.ingest.worker import Worker

ROOT = "eldercare/v1"
GATEWAYS = {"gw-1": "home-1", "gw-2": "home-2"}
EP = "epoch-test-0001"


# Store: the watermark ------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["acks-in-commit", "acks-after-commit"])
def store(db_url: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    register(db_url, GATEWAYS)
    s = Store(db_url, acks_after_commit=request.param)
    yield s
    s.close()


def write(store: Store, *seqs: int, gw: str = "gw-1", epoch: str = EP, raw: bytes | None = None) -> Any:
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    b = Batch()
    for seq in seqs:
        b.add(v.check(Inbound(f"{ROOT}/{GATEWAYS[gw]}/{gw}/telemetry", telemetry(seq, n=2, epoch=epoch))))
    if raw is not None:
        b.add(v.check(Inbound(f"{ROOT}/{GATEWAYS[gw]}/{gw}/telemetry", raw)))
    return store.write(b, reg)


def test_watermark_starts_below_the_first_stored_seq_and_waits_for_a_gap(store: Store) -> None:
    assert write(store, 5, 6).acks == {("home-1", "gw-1", EP): 6}
    assert write(store, 8, 9).acks == {("home-1", "gw-1", EP): 6}  # 7 missing
    assert write(store, 7).acks == {("home-1", "gw-1", EP): 9}  # the gap filled: up to 9
    assert write(store, 7).acks == {("home-1", "gw-1", EP): 9}  # a duplicate is answered too
    other = write(store, 101, epoch="epoch-new-0002", gw="gw-2")
    assert other.acks == {("home-2", "gw-2", "epoch-new-0002"): 101}


def test_watermark_runs_past_a_long_stretch_stored_out_of_order(store: Store) -> None:
    write(store, 1)
    assert write(store, *range(3, 60)).acks == {("home-1", "gw-1", EP): 1}
    # one message fills the gap; the window it reads first is smaller than the run behind it
    assert write(store, 2).acks == {("home-1", "gw-1", EP): 59}


def test_watermark_of_two_workers_committing_around_a_gap(store: Store, db_url: str) -> None:
    """The other worker commits seq 8 while we store 7: our watermark must see its 8."""
    write(store, 5, 6)
    with psycopg.connect(db_url) as other:  # "worker A", mid-commit with seq 8
        other.execute("INSERT INTO ingested_messages (gateway_id, epoch, seq) VALUES ('gw-1', %s, 8)", (EP,))
        other.execute("SELECT 1 FROM ingest_acks WHERE gateway_id = 'gw-1' FOR UPDATE")
        result: queue.Queue[Any] = queue.Queue()
        b = threading.Thread(target=lambda: result.put(write(store, 7)))  # "worker B"
        b.start()
        wait_for(
            lambda: (
                count(
                    db_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eldercare-ingest'"
                    " AND wait_event_type = 'Lock' AND datname = current_database()",
                )
                == 1
            ),
            what="worker B waiting for the watermark row",
        )
        other.commit()
        b.join(10)
    assert result.get(timeout=1).acks == {("home-1", "gw-1", EP): 8}


def test_watermark_passes_a_refused_message_but_not_an_unknown_gateway(store: Store, db_url: str) -> None:
    write(store, 1)
    future = json.dumps(
        {
            "v": 1,
            "epoch": EP,
            "seq": 2,
            "readings": [{"t": 4_000_000_000_000, "sensor": "a", "metric": "m", "value": 1}],
        }
    ).encode()
    r = write(store, 3, raw=future)
    assert [d.reason.split(":")[0] for d in r.dead] == ["readings"]
    assert r.acks == {("home-1", "gw-1", EP): 3}  # re-sending seq 2 cannot help: passed
    assert (
        count(db_url, "SELECT count(*) FROM ingested_messages WHERE seq = 2") == 0
    )  # a fixed copy is stored
    reg = Registry(store.load_registry())
    b = Batch()
    b.add(Validator(ROOT, reg).check(Inbound(f"{ROOT}/home-9/gw-9/telemetry", telemetry(1))))
    assert store.write(b, reg).acks == {}


# Pure pieces ---------------------------------------------------------------------------------


def test_ack_throttle_publishes_a_gateway_at_most_every_interval_and_events_at_once() -> None:
    t = AckThrottle(interval=0.25)  # binary fractions: exact clock arithmetic
    t.offer({("home-1", "gw-1", EP): 5, ("home-2", "gw-2", EP): 1})
    assert sorted(t.due(10.0)) == [("home-1", "gw-1", EP, 5), ("home-2", "gw-2", EP, 1)]
    t.offer({("home-1", "gw-1", EP): 7})
    t.offer({("home-1", "gw-1", EP): 6})  # another worker's older watermark: kept at 7
    assert t.due(10.125) == []
    assert t.next_due() == 10.25
    assert t.due(10.25) == [("home-1", "gw-1", EP, 7)]
    t.offer({("home-1", "gw-1", EP): 7})  # nothing new
    t.offer({("home-2", "gw-2", EP): 2}, urgent=True)  # an event: at once
    assert t.due(10.3) == [("home-2", "gw-2", EP, 2)]
    assert t.next_due() is None
    t.offer({("home-1", "gw-1", "epoch-new-0002"): 0})  # a new epoch is never "older"
    assert t.due(10.5) == [("home-1", "gw-1", "epoch-new-0002", 0)]


def test_silent_peers_count_only_sessions_that_may_still_hold_messages() -> None:
    m = Metrics()
    m.set_peers({"a": 2.0, "b": 40.0, "c": 200_000.0}, silent_after=15, session_expiry=86_400)
    assert m.silent_peers._value.get() == 1  # b; c's session has expired, a is alive
    assert {s.labels["client_id"] for s in m.peer_silent.collect()[0].samples} == {"a", "b"}


def test_the_database_is_ok_only_while_every_connection_works() -> None:
    """Two writers, the events thread and the registry reads each report their own connection:
    one's success does not hide another's failure (with two writers /healthz used to flip)."""
    m = Metrics()
    m.connected = True
    assert not m.health()[0]  # not connected yet
    m.set_db(None)  # the first registry load
    assert m.health()[0] and m.db_up._value.get() == 1
    m.set_db("connection lost", "writer-1")
    m.set_db(None, "writer-0")  # the other writer commits meanwhile
    ok, body = m.health()
    assert not ok and body["database"] == "connection lost" and m.db_up._value.get() == 0
    m.set_db(None, "writer-1")
    assert m.health()[0] and m.db_up._value.get() == 1


# Processes -----------------------------------------------------------------------------------


def topic(root: str, gw: str, kind: str = "telemetry") -> str:
    return f"{root}/{GATEWAYS[gw]}/{gw}/{kind}"


@pytest.fixture
def ingest(db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path) -> Iterator[Any]:
    register(db_url, GATEWAYS)
    procs: list[IngestProcess] = []

    def start(**env: str) -> IngestProcess:
        p = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, **env).start()
        procs.append(p)
        p.wait_healthy()
        return p

    yield start
    for p in procs:
        p.stop()


class AckListener:
    """Subscribes to every gateway's ack topic; checks the database as each ack arrives."""

    def __init__(self, mqtt_url: str, root: str, db_url: str) -> None:
        self.db_url = db_url
        self.got: queue.Queue[tuple[str, dict[str, Any], bool, int]] = queue.Queue()
        u = urlsplit(mqtt_url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(u.hostname or "127.0.0.1", u.port or 1883)
        self.client.subscribe(f"{root}/+/+/ack", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        # Everything the ack covers must already be committed when it arrives.
        stored = count(
            self.db_url,
            "SELECT count(*) FROM ingested_messages WHERE gateway_id = %s AND epoch = %s AND seq <= %s",
            msg.topic.split("/")[-2],
            body["epoch"],
            body["seq"],
        )
        self.got.put((msg.topic, body, bool(msg.retain), stored))

    def next(self, timeout: float = 15) -> tuple[str, dict[str, Any], bool, int]:
        return self.got.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.mqtt5
def test_ack_is_published_after_commit_and_moves_when_a_gap_fills(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    ingest()
    acks = AckListener(mqtt_url, topic_root, db_url)
    try:
        with publisher(mqtt_url) as pub:
            # seq 0 first: these messages carry no `low`, so the epoch's first ack starts below the
            # lowest seq stored, and two commits in flight may store seq 1 before seq 0
            pub.publish(topic(topic_root, "gw-1"), telemetry(0))
            wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 1, what="seq 0")
            pub.publish_many([(topic(topic_root, "gw-1"), telemetry(seq)) for seq in (1, 2, 4, 5)])
            wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 5, what="5 stored")
            seen = []
            while not seen or seen[-1][1]["seq"] < 2:
                seen.append(acks.next())
            t, body, _retained, stored = seen[-1]
            assert (t, body) == (f"{topic_root}/home-1/gw-1/ack", {"v": 1, "epoch": EP, "seq": 2})
            assert stored == 3  # seq 0, 1, 2 were committed before the ack left
            assert all(b["seq"] <= 2 for _, b, _, _ in seen)  # never past the gap at 3
            pub.publish(topic(topic_root, "gw-1", "event"), event(3, kind="sos"))  # the gap fills
            t, body, _, stored = acks.next()
            assert body == {"v": 1, "epoch": EP, "seq": 5} and stored == 6
    finally:
        acks.close()
    late = AckListener(mqtt_url, topic_root, db_url)  # a gateway connecting later: the retained ack
    try:
        t, body, retained, _ = late.next()
        assert (body["seq"], retained) == (5, True)
    finally:
        late.close()


def _waiting_on_lock(db_url: str) -> int:
    return count(
        db_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eldercare-ingest'"
        " AND wait_event_type = 'Lock' AND datname = current_database()",
    )


@pytest.mark.mqtt5
def test_a_commit_in_flight_gathers_everything_that_arrives_meanwhile_into_the_next(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    proc = ingest(ELDERCARE_INGEST_WRITERS="1")  # one writer: its commit in flight holds the rest
    with psycopg.connect(db_url) as blocker, publisher(mqtt_url) as pub:
        blocker.execute("LOCK TABLE readings IN SHARE MODE")
        pub.publish(topic(topic_root, "gw-1"), telemetry(0))
        wait_for(lambda: _waiting_on_lock(db_url) == 1, what="the first commit in flight")
        pub.publish_many([(topic(topic_root, "gw-1"), telemetry(seq)) for seq in range(1, 51)])
        wait_for(lambda: proc.metrics()['eldercare_ingest_received_total{kind="telemetry"}'] == 51, what="51")
        pub.publish(topic(topic_root, "gw-2", "event"), event(7, kind="sos"))
        # The event's own path is not held behind the telemetry commit.
        wait_for(lambda: count(db_url, "SELECT count(*) FROM events") == 1, 10, "the SOS stored")
        assert count(db_url, "SELECT count(*) FROM readings") == 0
        blocker.rollback()
    wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 52, what="all stored")
    m = proc.metrics()
    # one event commit, the blocked telemetry commit, and one group with the 50 that waited
    assert m["eldercare_ingest_batches_total"] == 3
    assert m["eldercare_ingest_stored_readings_total"] == 510


@pytest.mark.slow
@pytest.mark.mqtt5
def test_kill_9_in_the_middle_of_a_group_commit_loses_and_duplicates_nothing(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    client_id = f"test-gc-kill-{topic_root.split('/')[1][-8:]}-0"
    proc = ingest(ELDERCARE_INGEST_CLIENT_ID=client_id)
    msgs = [(topic(topic_root, "gw-1" if i % 2 else "gw-2"), telemetry(i // 2, n=10)) for i in range(300)]
    with publisher(mqtt_url) as pub:
        pub.publish_many(msgs[:100])
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 100, what="100 stored")
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE readings IN SHARE MODE")
            pub.publish_many(msgs[100:200])
            # one commit, or with ELDERCARE_INGEST_WRITERS=2 perhaps both writers' commits
            wait_for(lambda: _waiting_on_lock(db_url) >= 1, what="a group commit in flight")
            pub.publish_many(msgs[200:])  # the next group forms meanwhile
            wait_for(
                lambda: proc.metrics()['eldercare_ingest_received_total{kind="telemetry"}'] == 300,
                what="all in",
            )
            proc.kill()
            blocker.rollback()  # the killed worker's transaction proceeds, finds no client, rolls back
        wait_for(lambda: _waiting_on_lock(db_url) == 0, what="the dead transaction gone")
        assert count(db_url, "SELECT count(*) FROM ingested_messages") == 100
        ingest(ELDERCARE_INGEST_CLIENT_ID=client_id)  # its session redelivers the 200 unacknowledged
    wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 300, 40, "all 300")
    assert count(db_url, "SELECT count(*) FROM readings") == 3000
    distinct = "SELECT count(*) FROM (SELECT DISTINCT gateway_id, sensor_id, ts, value FROM readings) d"
    assert count(db_url, distinct) == 3000


# A deferred constraint trigger runs at COMMIT: taking an advisory lock the test holds, it keeps a
# worker's group commit waiting inside COMMIT, after everything of the transaction was written.
HOLD_AT_COMMIT = """
CREATE FUNCTION test_hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER test_hold_commit AFTER INSERT ON ingested_messages
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_hold_commit();
"""


def _waiting_at_commit(db_url: str) -> int:
    return count(
        db_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eldercare-ingest'"
        " AND wait_event = 'advisory' AND query ILIKE 'commit%%' AND datname = current_database()",
    )


@pytest.mark.slow
@pytest.mark.mqtt5
def test_kill_9_inside_commit_stores_the_group_once_and_its_redelivery_is_a_duplicate(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """The worker dies while its COMMIT is on its way: the database commits the group, the broker
    never got a PUBACK for it. Redelivered to the restarted worker, all of it must be recognised as
    stored (nothing twice), and the next group, which was only in memory, stored once."""
    client_id = f"test-gc-commit-{topic_root.split('/')[1][-8:]}-0"
    # one writer: one commit in flight, the next group in memory (two writers: the test below)
    proc = ingest(ELDERCARE_INGEST_CLIENT_ID=client_id, ELDERCARE_INGEST_WRITERS="1")
    msgs = [(topic(topic_root, "gw-1" if i % 2 else "gw-2"), telemetry(i // 2, n=10)) for i in range(300)]
    with publisher(mqtt_url) as pub, psycopg.connect(db_url, autocommit=True) as holder:
        pub.publish_many(msgs[:100])
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 100, what="100 stored")
        holder.execute("SELECT pg_advisory_lock(4242)")
        holder.execute(HOLD_AT_COMMIT)
        pub.publish_many(msgs[100:200])
        wait_for(lambda: _waiting_at_commit(db_url) == 1, what="a group commit inside COMMIT")
        pub.publish_many(msgs[200:])  # the next group forms meanwhile
        wait_for(
            lambda: proc.metrics()['eldercare_ingest_received_total{kind="telemetry"}'] == 300, what="all in"
        )
        proc.kill()
        holder.execute("SELECT pg_advisory_unlock(4242)")  # the orphaned COMMIT goes through
        wait_for(lambda: _waiting_at_commit(db_url) == 0, what="the orphaned commit done")
        holder.execute("DROP TRIGGER test_hold_commit ON ingested_messages")
    committed = count(db_url, "SELECT count(*) FROM ingested_messages")
    assert 100 < committed < 300  # one group (or more) committed and never acknowledged to the broker
    _redelivered_and_stored_once(ingest, db_url, client_id, committed, messages=300)


@pytest.mark.mqtt5
def test_a_second_writer_commits_while_the_first_is_inside_commit_and_the_ack_waits_for_both(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """Two commits in flight (``ELDERCARE_INGEST_WRITERS`` 2; the default is 1): a message is not held
    behind the commit in flight, so seq 2 is committed while seq 1 is still inside COMMIT, and
    returns first. The acknowledgement covers only what is committed: it stays at 0 until seq 1's
    commit returns, then moves to 2."""
    ingest(ELDERCARE_INGEST_WRITERS="2")
    hold = HOLD_AT_COMMIT.replace("FOR EACH ROW", "FOR EACH ROW WHEN (NEW.seq = 1)")
    acks = AckListener(mqtt_url, topic_root, db_url)
    gw1 = "SELECT count(*) FROM ingested_messages WHERE gateway_id = 'gw-1'"
    try:
        with publisher(mqtt_url) as pub, psycopg.connect(db_url, autocommit=True) as holder:
            pub.publish(topic(topic_root, "gw-1"), telemetry(0))
            assert acks.next()[1]["seq"] == 0
            holder.execute("SELECT pg_advisory_lock(4242)")
            holder.execute(hold)
            pub.publish(topic(topic_root, "gw-1"), telemetry(1))
            wait_for(lambda: _waiting_at_commit(db_url) == 1, what="seq 1's commit inside COMMIT")
            pub.publish(topic(topic_root, "gw-1"), telemetry(2))
            wait_for(lambda: count(db_url, gw1) == 2, 10, "seq 2 committed while seq 1 is in flight")
            assert _waiting_at_commit(db_url) == 1
            # gw-2's ack comes from a watermark turn after seq 2's commit handed over its work
            pub.publish(topic(topic_root, "gw-2"), telemetry(0))
            while acks.next()[0] != f"{topic_root}/home-2/gw-2/ack":
                pass
            assert count(db_url, "SELECT seq FROM ingest_acks WHERE gateway_id = 'gw-1'") == 0
            holder.execute("SELECT pg_advisory_unlock(4242)")
            wait_for(lambda: _waiting_at_commit(db_url) == 0, what="seq 1's commit returned")
            holder.execute("DROP TRIGGER test_hold_commit ON ingested_messages")
        seen = [acks.next()]
        while seen[-1][1]["seq"] < 2:
            seen.append(acks.next())
        # every ack of gw-1 covered only committed messages when it left (seq 0 .. its seq)
        assert all(stored == body["seq"] + 1 for t, body, _, stored in seen if "/gw-1/" in t)
    finally:
        acks.close()


@pytest.mark.slow
@pytest.mark.mqtt5
def test_kill_9_with_both_writers_inside_commit_stores_every_group_once(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """Both writers' commits are on their way and a third group waits in memory when the worker
    dies: the two orphaned commits go through, never acknowledged to the broker; redelivered to the
    restarted worker they are duplicates, and the third group is stored once."""
    client_id = f"test-gc-two-{topic_root.split('/')[1][-8:]}-0"
    proc = ingest(ELDERCARE_INGEST_CLIENT_ID=client_id, ELDERCARE_INGEST_WRITERS="2")
    msgs = [(topic(topic_root, "gw-1" if i % 2 else "gw-2"), telemetry(i // 2, n=10)) for i in range(400)]
    received = 'eldercare_ingest_received_total{kind="telemetry"}'
    with publisher(mqtt_url) as pub, psycopg.connect(db_url, autocommit=True) as holder:
        pub.publish_many(msgs[:100])
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 100, what="100 stored")
        holder.execute("SELECT pg_advisory_lock(4242)")
        holder.execute(HOLD_AT_COMMIT)
        pub.publish_many(msgs[100:200])
        wait_for(lambda: _waiting_at_commit(db_url) >= 1, what="a group commit inside COMMIT")
        pub.publish_many(msgs[200:300])
        wait_for(lambda: _waiting_at_commit(db_url) == 2, what="both writers inside COMMIT")
        pub.publish_many(msgs[300:])  # the next group forms meanwhile
        wait_for(lambda: proc.metrics()[received] == 400, what="all in")
        proc.kill()
        holder.execute("SELECT pg_advisory_unlock(4242)")  # the orphaned COMMITs go through
        wait_for(lambda: _waiting_at_commit(db_url) == 0, what="the orphaned commits done")
        holder.execute("DROP TRIGGER test_hold_commit ON ingested_messages")
    committed = count(db_url, "SELECT count(*) FROM ingested_messages")
    assert 100 < committed < 400  # two groups committed and never acknowledged to the broker
    _redelivered_and_stored_once(ingest, db_url, client_id, committed, messages=400)


@pytest.mark.mqtt5
@pytest.mark.parametrize("writers", [1, 2])
def test_a_writer_that_fails_stops_its_worker_and_its_batch_is_stored_by_the_next(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str, writers: int
) -> None:
    """An error in a writer (a bug, not the database) stops the worker instead of leaving it alive
    with its batch unacknowledged (one writer: stuck once the open batch fills; two: half its
    commits going on); its process exits non-zero and the next worker on its session stores the
    batch once."""
    from eldercare.config import Settings

    client_id = f"test-gc-fail-{topic_root.split('/')[1][-8:]}-0"
    settings = Settings(
        mqtt_topic_root=topic_root,
        ingest_client_id=client_id,
        ingest_shared_group=f"g{client_id[-10:]}",
        ingest_session_expiry_s=120,
        ingest_writers=writers,
        metrics_port=0,
    )
    worker = Worker(settings, db_url=db_url, mqtt_url=mqtt_url)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("a bug in the writer")

    for store in worker.stores:
        store.write = broken  # type: ignore[method-assign]
    run = threading.Thread(target=worker.run, daemon=True)
    run.start()
    try:
        wait_for(lambda: worker.source.connected.is_set() and worker.event_source.connected.is_set())
        with publisher(mqtt_url) as pub:
            pub.publish(topic(topic_root, "gw-1"), telemetry(0))
        run.join(20)
        assert not run.is_alive(), "the worker lives on without its writer"
        assert worker.failed
    finally:
        worker.stop()
        run.join(20)
    assert count(db_url, "SELECT count(*) FROM ingested_messages") == 0
    ingest(ELDERCARE_INGEST_CLIENT_ID=client_id, ELDERCARE_INGEST_SHARED_GROUP=settings.ingest_shared_group)
    wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 1, 20, "the batch stored")


@pytest.mark.mqtt5
def test_an_alarm_is_committed_while_its_gateways_telemetry_commit_holds_the_watermark(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    """Telemetry and events of one gateway share an epoch, hence a watermark row, which a commit
    locks until it returns. The event path advances it after its own commit: the SOS is stored
    while the telemetry commit is still inside COMMIT, holding that row."""
    ingest()
    hold = HOLD_AT_COMMIT.replace("ON ingested_messages", "ON readings")
    with publisher(mqtt_url) as pub, psycopg.connect(db_url, autocommit=True) as holder:
        pub.publish(topic(topic_root, "gw-1"), telemetry(0))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingest_acks") == 1, what="gw-1's watermark")
        holder.execute("SELECT pg_advisory_lock(4242)")
        holder.execute(hold)
        pub.publish(topic(topic_root, "gw-1"), telemetry(1))
        wait_for(lambda: _waiting_at_commit(db_url) == 1, what="the telemetry commit inside COMMIT")
        pub.publish(topic(topic_root, "gw-1", "event"), event(2, kind="sos"))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM events") == 1, 10, "the SOS stored")
        assert _waiting_at_commit(db_url) == 1  # the telemetry commit still holds gw-1's watermark
        holder.execute("SELECT pg_advisory_unlock(4242)")
        holder.execute("DROP TRIGGER test_hold_commit ON readings")
    wait_for(
        lambda: count(db_url, "SELECT seq FROM ingest_acks WHERE gateway_id = 'gw-1'") == 2, what="ack 2"
    )


@pytest.mark.slow
@pytest.mark.mqtt5
def test_every_sos_is_stored_within_seconds_while_one_of_two_workers_is_dead(
    ingest: Any, db_url: str, mqtt_url: str, topic_root: str
) -> None:
    tag = topic_root.split("/")[1][-6:]
    common = {"ELDERCARE_INGEST_SHARED_GROUP": f"s{tag}", "ELDERCARE_INGEST_HEARTBEAT_S": "0.5"}
    alive = ingest(ELDERCARE_INGEST_CLIENT_ID=f"test-sos-a-{tag}-0", **common)
    dead = ingest(ELDERCARE_INGEST_CLIENT_ID=f"test-sos-b-{tag}-0", **common)
    wait_for(
        lambda: (
            alive.metrics().get(f'eldercare_ingest_peer_silent_seconds{{client_id="test-sos-b-{tag}-0"}}')
            is not None
        ),
        what="peer seen",
    )
    dead.kill()
    wait_for(lambda: alive.metrics()["eldercare_ingest_silent_peers"] == 1, 15, "the dead peer reported")
    msgs: list[tuple[str, bytes]] = []
    for i in range(200):
        msgs.append((topic(topic_root, "gw-1"), telemetry(i)))
        if i % 40 == 0:
            msgs.append((topic(topic_root, "gw-2", "event"), event(1000 + i, kind="sos")))
    with publisher(mqtt_url) as pub:
        pub.publish_many(msgs)
    sos = "SELECT count(*) FROM events WHERE kind = 'sos'"
    wait_for(lambda: count(db_url, sos) == 5, 5, "all 5 SOS stored by the living worker")
    stranded = 200 - count(db_url, "SELECT count(*) FROM readings") // 10
    assert stranded > 20  # the dead worker's session holds its share of the telemetry
    revived = ingest(ELDERCARE_INGEST_CLIENT_ID=f"test-sos-b-{tag}-0", **common)
    wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 205, 30, "everything")
    wait_for(lambda: alive.metrics()["eldercare_ingest_silent_peers"] == 0, 15, "the peer back")
    assert count(db_url, sos) == 5
    assert count(db_url, "SELECT count(*) FROM alert_work WHERE kind = 'event'") == 5
    assert count(db_url, "SELECT count(*) FROM readings") == 2000
    assert revived.metrics()["eldercare_ingest_duplicates_total"] >= 0


# With a real gateway ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.mqtt5
def test_real_gateway_loses_nothing_when_the_broker_is_killed_holding_a_backlog(
    db_url: str, tmp_path: Path, topic_root: str
) -> None:
    """Issue 20's fault, end to end: ingest away, the backlog in the broker's memory only, the
    broker ``kill -9``ed; the gateway keeps everything until ingest's ack and sends it again.
    (That the kill really destroys the broker's queue is shown by test_edge_ack's control.)"""
    from edge_support import Mosquitto, gateway, gw_file

    from eldercare.edge.agent import Agent
    from eldercare.edge.drivers import Action, Sample

    n = 400
    register(db_url, {"gw-1": "home-1"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO residents (id, name, home_site_id) VALUES ('res-1', 'One', 'home-1')")
    broker = Mosquitto(tmp_path / "mosquitto", autosave_s=3600)
    broker.start()
    url = f"mqtt://127.0.0.1:{broker.port}"
    ingest = IngestProcess(db_url, url, topic_root, tmp_path).start()
    agent = None
    try:
        ingest.wait_healthy()
        assert ingest.stop() == 0  # away: the broker queues for its sessions, in memory
        raw = gateway(
            tmp_path,
            topic_root,
            broker.port,
            config={"telemetry_batch_max": 20, "telemetry_batch_ms": 50, "heartbeat_s": 3600},
            outbox={"path": str(tmp_path / "outbox.sqlite3"), "ack": "platform", "ack_timeout_s": 5.0},
        )
        agent = Agent(gw_file(raw))
        agent.start()
        assert agent.connected_once.wait(10)
        drv = agent.driver("sim")
        drv.feed_many(Sample("counter-1", "count", float(i)) for i in range(n))  # type: ignore[attr-defined]
        drv.feed(Action("sos-1", "sos"))  # type: ignore[attr-defined]
        wait_for(
            lambda: (
                agent is not None
                and agent.outbox.n_pending == 0
                and not agent.sending.inflight
                and not agent.rows
            ),
            15,
            "the backlog handed to the broker",
        )
        assert agent.outbox.n_messages > 0  # kept: the platform has acknowledged nothing
        broker.kill()
        broker.start()
        ingest = IngestProcess(db_url, url, topic_root, tmp_path).start()
        ingest.wait_healthy()
        values = "SELECT count(DISTINCT value) FROM readings WHERE sensor_id = 'counter-1'"
        wait_for(lambda: count(db_url, values) == n, 40, f"all {n} counter readings")
        wait_for(lambda: agent is not None and agent.outbox.n_messages == 0, 20, "the outbox emptied by acks")
        assert count(db_url, "SELECT count(*) FROM readings WHERE sensor_id = 'counter-1'") == n
        assert count(db_url, "SELECT count(*) FROM events WHERE kind = 'sos'") == 1
    finally:
        if agent is not None:
            agent.stop()
        ingest.stop()
        broker.stop()


def _redelivered_and_stored_once(
    ingest: Any, db_url: str, client_id: str, committed: int, *, messages: int
) -> None:
    """After a kill -9 mid-commit (the first 100 messages acknowledged, ``committed`` stored): the
    killed worker's session redelivers what was not acknowledged, every message of 10 readings ends
    up stored once, and the committed but unacknowledged ones are recognised as duplicates."""
    again = ingest(ELDERCARE_INGEST_CLIENT_ID=client_id)
    wait_for(
        lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == messages, 40, f"all {messages}"
    )
    assert count(db_url, "SELECT count(*) FROM readings") == messages * 10
    distinct = "SELECT count(*) FROM (SELECT DISTINCT gateway_id, sensor_id, ts, value FROM readings) d"
    assert count(db_url, distinct) == messages * 10
    wait_for(
        lambda: again.metrics()["eldercare_ingest_duplicates_total"] == committed - 100,
        what="the committed groups redelivered and recognised",
    )
