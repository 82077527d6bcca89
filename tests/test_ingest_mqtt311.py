"""Ingest on a broker without MQTT v5 (the embedded amqtt of a bare machine): MQTT 3.1.1 with a
persistent session and acknowledgement after commit, without shared subscriptions."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
from ingest_support import IngestProcess, count, register, telemetry, wait_for

from eldercare.embedded import EmbeddedBroker


def test_ingest_stores_exactly_once_through_the_embedded_amqtt_broker(
    db_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, {"gw-1": "home-1"})
    with EmbeddedBroker(kind="amqtt") as (host, port):
        url = f"mqtt://{host}:{port}"
        proc = IngestProcess(db_url, url, topic_root, tmp_path, ELDERCARE_MQTT_PROTOCOL="3.1.1").start()
        try:
            proc.wait_healthy()
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            pub.connect(host, port)
            pub.loop_start()
            topic = f"{topic_root}/home-1/gw-1/telemetry"
            payloads = [telemetry(seq, n=5) for seq in range(30)]
            for rounds in range(2):  # the second round is a replay: nothing more may be stored
                infos = [pub.publish(topic, payload, qos=1) for payload in payloads]
                for info in infos:
                    info.wait_for_publish(10)
                if rounds == 0:
                    wait_for(
                        lambda: count(db_url, "SELECT count(*) FROM readings") == 150, what="150 readings"
                    )
            wait_for(
                lambda: proc.metrics().get("eldercare_ingest_duplicates_total", 0) == 30, what="30 duplicates"
            )
            pub.disconnect()
            pub.loop_stop()
            assert count(db_url, "SELECT count(*) FROM ingested_messages") == 30
            assert count(db_url, "SELECT count(*) FROM readings") == 150
        finally:
            assert proc.stop() == 0, proc.output()
