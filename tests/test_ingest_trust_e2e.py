"""Nothing under the topic root vanishes: ``eldercare ingest`` between the real Mosquitto and PostgreSQL.

A valid payload on a topic of the wrong depth is a dead letter; clearing a retained topic is
counted, not an error; ingest does not receive the platform's own acknowledgements and config
pushes at all; a retained dead letter is kept once however often ingest restarts and the broker
replays it.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from ingest_support import IngestProcess, count, event, publisher, register, telemetry, wait_for

pytestmark = pytest.mark.mqtt5


def reasons(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return [(t, r) for t, r in conn.execute("SELECT topic, reason FROM dead_letters ORDER BY id")]


def test_wrong_topics_are_dead_lettered_and_the_platforms_own_topics_never_come_in(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, {"gw-1": "home-1"})
    proc = IngestProcess(db_url, mqtt_url, topic_root, tmp_path).start()
    try:
        proc.wait_healthy()
        base = f"{topic_root}/home-1/gw-1"
        wrong = [f"{base}/telemetry/extra", f"{topic_root}/home-1", f"{topic_root}/home-1/gw-1x"]
        own = [
            (f"{base}/config", b'{"v": 1, "revision": 1}'),
            (f"{base}/ack", b'{"v": 1, "epoch": "e", "seq": 1}'),
        ]
        with publisher(mqtt_url) as pub:
            pub.publish_many([(t, telemetry(i + 1)) for i, t in enumerate(wrong)])
            pub.publish_many([(f"{base}/status", b""), *own])
            pub.publish_many([(f"{base}/telemetry", telemetry(9))])
        wait_for(lambda: count(db_url, "SELECT count(*) FROM readings") == 10, what="the good message")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == 3, what="3 dead letters")
        got = reasons(db_url)
        assert [t for t, _ in got] == wrong
        assert got[0][1].startswith(f"topic: '{base}/telemetry/extra' has 4 levels")
        assert got[1][1].startswith(f"topic: '{topic_root}/home-1' has 1 levels")
        wait_for(
            lambda: proc.metrics().get('eldercare_ingest_ignored_total{why="cleared"}') == 1, what="cleared"
        )
        m = proc.metrics()
        assert m['eldercare_ingest_dead_lettered_total{field="topic"}'] == 3
        # the config and ack were published before the good message, which is stored: they had
        # their chance to arrive, and never did (ingest subscribes only to what it stores)
        assert m.get('eldercare_ingest_ignored_total{why="config"}', 0) == 0
        received = sum(v for k, v in m.items() if k.startswith("eldercare_ingest_received_total"))
        assert received == 5  # 3 wrong, the cleared status, the good one
    finally:
        proc.stop()


def retain(mqtt_url: str, topic: str, payload: bytes) -> None:
    with publisher(mqtt_url) as pub:
        pub.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)


def test_a_retained_dead_letter_is_kept_once_across_ingest_restarts(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, {"gw-1": "home-1"})
    base = f"{topic_root}/home-1/gw-1"
    retain(mqtt_url, f"{base}/status", b'{"v": 1, "state": "junk"}')
    try:
        for run in range(1, 3):
            # without a shared group the broker replays retained messages at every subscription
            proc = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_SHARED_GROUP="")
            proc.start()
            try:
                proc.wait_healthy()
                wait_for(
                    lambda p=proc: p.metrics().get('eldercare_ingest_received_total{kind="invalid"}') == 1,
                    what="the retained junk replayed",
                )
                with publisher(mqtt_url) as pub:  # a later message proves the junk's batch was written
                    pub.publish(f"{base}/telemetry", telemetry(run))
                wait_for(lambda r=run: count(db_url, "SELECT count(*) FROM readings") == 10 * r, what="data")
            finally:
                proc.stop()
            assert count(db_url, "SELECT count(*) FROM dead_letters") == 1
    finally:
        retain(mqtt_url, f"{base}/status", b"")  # clearing it is normal, and cleans the shared broker
    assert "state" in reasons(db_url)[0][1]


def test_junk_retained_on_an_event_topic_that_first_came_live_is_kept_once_across_restarts(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    """The live copy and the broker's replay of it are one dead letter, as for a status (found by the
    outside gateway check, round 3: the live one was keyed 'event:...', the replay 'retained:...')."""
    register(db_url, {"gw-1": "home-1"})
    base = f"{topic_root}/home-1/gw-1"
    proc = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_SHARED_GROUP="")
    try:
        proc.start().wait_healthy()
        retain(mqtt_url, f"{base}/event", b"junk left retained")  # arrives live
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == 1, what="the live junk")
        proc.stop()
        proc.start().wait_healthy()  # the broker replays it
        wait_for(
            lambda: proc.metrics().get('eldercare_ingest_received_total{kind="invalid"}') == 1,
            what="the retained junk replayed",
        )
        with publisher(mqtt_url) as pub:  # a later event proves the replay's commit was made
            pub.publish(f"{base}/event", event(1, kind="sos"))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM events") == 1, what="the later event")
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 1
    finally:
        proc.stop()
        retain(mqtt_url, f"{base}/event", b"")


def test_clearing_a_retained_topic_is_not_an_error(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, {"gw-1": "home-1"})
    proc = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_SHARED_GROUP="").start()
    try:
        proc.wait_healthy()
        base = f"{topic_root}/home-1/gw-1"
        retain(mqtt_url, f"{base}/status", b"")
        with publisher(mqtt_url) as pub:
            pub.publish(f"{base}/telemetry", telemetry(1))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM readings") == 10, what="data after the clear")
        assert proc.metrics()['eldercare_ingest_ignored_total{why="cleared"}'] == 1
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        proc.stop()


def test_a_deleted_gateway_is_refused_at_once_not_after_the_cache_ttl(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, {"gw-1": "home-1", "gw-2": "home-2"})
    # a cache that would keep the deleted gateway for an hour: only NOTIFY can refuse it in time
    proc = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, ELDERCARE_INGEST_REGISTRY_REFRESH_S="3600")
    try:
        proc.start().wait_healthy()
        with publisher(mqtt_url) as pub:
            pub.publish(f"{topic_root}/home-1/gw-1/telemetry", telemetry(1))
            wait_for(lambda: count(db_url, "SELECT count(*) FROM readings") == 10, what="gw-1 accepted")
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute("DELETE FROM gateways WHERE id = 'gw-1'")
                admin.execute("UPDATE gateways SET disabled_at = now() WHERE id = 'gw-2'")
            pub.publish(f"{topic_root}/home-1/gw-1/telemetry", telemetry(2))
            pub.publish(f"{topic_root}/home-2/gw-2/telemetry", telemetry(1))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == 2, timeout=10, what="refusals")
        assert sorted(r for _, r in reasons(db_url)) == [
            "topic.gateway: gateway 'gw-2' is disabled; its messages are refused",
            "topic.gateway: unknown gateway 'gw-1'",
        ]
        assert count(db_url, "SELECT count(*) FROM readings") == 10
    finally:
        proc.stop()
