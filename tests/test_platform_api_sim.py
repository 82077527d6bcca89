"""Tester endpoints: a trigger reaches the simulation's control topic on the real broker, its ground
truth is kept, and the score matches it against the alerts the platform raised."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.config import Settings

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
CLOCK = {"wall_start": 1.0e9, "sim_start": 1.0e9, "speed": 60.0, "homes": 1, "sim_now": 1.0e9}


@pytest.fixture
def runner(settings: Settings, mqtt_host_port: tuple[str, int]) -> Iterator[list[dict[str, Any]]]:
    """A stand-in for ``eldercare simulate run``: answers triggers like the runner does."""
    root = settings.mqtt_topic_root
    seen: list[dict[str, Any]] = []
    ready: list[bool] = []

    def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        req = json.loads(msg.payload)
        seen.append(req)
        if req.get("room") == "attic":  # the homes have none: refused as the runner does
            answer = {"id": req["id"], "ok": False, "error": "unknown room 'attic'"}
            client.publish(f"{root}/_sim/ack", json.dumps(answer), qos=1)
            return
        if req.get("room") == "cellar":  # what runners answered when nothing happened: no truth
            answer = {"id": req["id"], "ok": True, "truth": None, "clock": CLOCK}
            client.publish(f"{root}/_sim/ack", json.dumps(answer), qos=1)
            return
        now = time.time()
        truth = {"kind": req["kind"], "resident": req["resident"], "t": now, "alert_from": now}
        truth |= {"end": now + 3600, "site": "sim-home-1"}
        answer = {"id": req["id"], "ok": True, "truth": truth}
        if req.get("room") == "living":  # as the runner answers: with its clock
            answer |= {"clock": CLOCK}
        client.publish(f"{root}/_sim/ack", json.dumps(answer), qos=1)

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-runner-{uuid.uuid4().hex[:16]}")
    c.on_connect = lambda cl, *_: cl.subscribe(f"{root}/_sim/control", qos=1)
    c.on_subscribe = lambda *_: ready.append(True)
    c.on_message = on_message
    c.connect(*mqtt_host_port)
    c.loop_start()
    deadline = time.time() + 5
    while not ready and time.time() < deadline:
        time.sleep(0.02)
    yield seen
    c.disconnect()
    c.loop_stop()


def test_trigger_and_score(api: Api, runner: list[dict[str, Any]], db_url: str) -> None:
    r = api.post("tester", "/api/v1/sim/incidents", json={"resident": "sim-res-1", "kind": "fall"})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["acknowledged"] and out["truth"]["kind"] == "fall"
    assert runner[0]["resident"] == "sim-res-1" and runner[0]["kind"] == "fall"
    # nothing raised yet: the fall is not caught, and its window is still open
    score = api.get("tester", "/api/v1/sim/score").json()
    assert score["incidents"] == 1 and score["report"]["kinds"]["fall"]["caught"] == 0
    assert score["report"]["kinds"]["fall"]["under_way"] == 1
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, site_id, dedup_key, title, detected_at,"
            " simulated) VALUES ('fall', 'critical', 'sim-res-1', 'sim-home-1', 'sim-res-1:fall',"
            " 'Fall', now(), true)"
        )
    score = api.get("tester", "/api/v1/sim/score").json()
    assert score["report"]["kinds"]["fall"] == {**score["report"]["kinds"]["fall"], "caught": 1, "missed": 0}


def test_tester_drives_only_simulated_residents(api: Api, runner: list[dict[str, Any]]) -> None:
    assert (
        api.post("tester", "/api/v1/sim/incidents", json={"resident": "res-1", "kind": "fall"}).status_code
        == 404
    )
    r = api.post("admin", "/api/v1/sim/incidents", json={"resident": "res-1", "kind": "fall"})
    assert r.status_code == 403 and "res-1" in r.json()["detail"]
    r = api.post("tester", "/api/v1/sim/incidents", json={"resident": "sim-res-1", "kind": "meteor"})
    assert r.status_code == 422 and "kind" in r.json()["detail"]
    assert (
        api.post(
            "worker1", "/api/v1/sim/incidents", json={"resident": "sim-res-1", "kind": "fall"}
        ).status_code
        == 403
    )
    assert runner == []  # nothing refused reached the simulation


def test_a_refusal_of_the_simulation_is_told_in_the_readers_language(
    api: Api, runner: list[dict[str, Any]], db_url: str
) -> None:
    body = {"resident": "sim-res-1", "kind": "fall", "room": "attic"}
    for lang, said in (("zh-CN", "模拟程序拒绝了该事件"), ("en", "The simulation refused the incident")):
        with psycopg.connect(db_url) as conn:  # the tester's own language
            conn.execute("UPDATE users SET locale = %s WHERE username = 'tester'", (lang,))
        r = api.post("tester", "/api/v1/sim/incidents", json=body)
        assert r.status_code == 422, r.text  # the request's fault, not a missing simulation
        detail = r.json()["detail"]
        assert said in detail and "unknown room 'attic'" in detail, detail


def test_a_trigger_answered_without_truth_does_not_break_the_score(
    api: Api, runner: list[dict[str, Any]]
) -> None:
    """A runner answered a trigger that changed nothing (a resident who had collapsed for good) with
    a truth of null and its clock; the score then failed with a 500 for every later request."""
    for room in ("living", "cellar"):  # a fall, then a trigger of the same run that changed nothing
        body = {"resident": "sim-res-1", "kind": "fall", "room": room}
        assert api.post("tester", "/api/v1/sim/incidents", json=body).status_code == 201
    r = api.get("tester", "/api/v1/sim/score")
    assert r.status_code == 200, r.text
    assert r.json()["incidents"] == 1
