"""Registry through the API: providers, sites, residents, gateways (credentials once, retained config
on the real broker), sensors, policies, rosters; validation and conflict messages; OpenAPI shape."""

from __future__ import annotations

import json
import queue
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psycopg
from argon2 import PasswordHasher
from paho.mqtt.enums import CallbackAPIVersion
from platform_seed import World

from eldercare.config import Settings

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def test_openapi_describes_every_operation(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in ops.items():
            assert op.get("tags"), f"{method} {path} has no tag"
            codes = op["responses"]
            ok = [c for c in codes if c.startswith("2")]
            assert ok, f"{method} {path} documents no success answer"
            if ok[0] != "204":
                assert "content" in codes[ok[0]], f"{method} {path} has no response model"
            for c in ("401", "403", "404"):
                if path.startswith("/api/v1/auth/token"):
                    break
                ref = codes[c]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorOut"), (method, path, c)


def test_create_site_resident_and_validation_messages(api: Api) -> None:
    r = api.post("admin", "/api/v1/sites", json={"id": "home-9", "kind": "home", "name": "Home 9"})
    assert r.status_code == 201 and r.json()["timezone"] == "Asia/Shanghai"
    r = api.post("admin", "/api/v1/sites", json={"id": "home-9", "kind": "home", "name": "again"})
    assert r.status_code == 409 and "home-9" in r.json()["detail"]
    r = api.post(
        "admin", "/api/v1/sites", json={"id": "x", "kind": "castle", "name": "", "timezone": "Mars/Base"}
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"kind", "name", "timezone"}
    assert "timezone" in r.json()["detail"] and "Asia/Shanghai" in r.json()["detail"]
    r = api.post(
        "admin", "/api/v1/sites", json={"id": "home-10", "kind": "home", "name": "n", "colour": "red"}
    )
    assert r.status_code == 422 and "colour" in r.json()["detail"]  # a misspelt field is not ignored
    body = {"id": "res-9", "name": "Zhou Lan", "home_site_id": "home-nowhere"}
    r = api.post("admin", "/api/v1/residents", json=body, headers={"Accept-Language": "en"})
    assert (
        r.status_code == 422 and "home_site_id" in r.json()["detail"] and "home-nowhere" in r.json()["detail"]
    )
    r = api.post("admin", "/api/v1/residents", json={**body, "home_site_id": "home-9"})
    assert r.status_code == 201
    r = api.patch("admin", "/api/v1/residents/res-9", json={"care_level": "dementia"})
    assert r.status_code == 200 and r.json()["care_level"] == "dementia"
    r = api.delete("admin", "/api/v1/sites/home-9", headers={"Accept-Language": "en"})
    assert r.status_code == 409  # a resident still lives there
    assert "'home-9'" in r.json()["detail"] and "(resident)" in r.json()["detail"]


def _retained(broker: tuple[str, int], topic: str, timeout: float = 5.0) -> dict[str, Any]:
    got: queue.Queue[bytes] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:16]}")
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.on_message = lambda _c, _u, msg: got.put(msg.payload) if msg.retain else None
    c.connect(*broker)
    c.loop_start()
    try:
        return json.loads(got.get(timeout=timeout))  # type: ignore[no-any-return]
    finally:
        c.disconnect()
        c.loop_stop()


def test_gateway_provisioning_returns_credentials_once_and_publishes_config(
    api: Api, settings: Settings, db_url: str, mqtt_host_port: tuple[str, int]
) -> None:
    body = {
        "id": "gw-new",
        "site_id": "home-2",
        "sensors": [
            {"id": "pir-hall", "kind": "pir", "room": "hall"},
            {"id": "bed-2", "kind": "bed", "room": "bedroom"},
        ],
    }
    r = api.post("admin", "/api/v1/gateways", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    creds = out["credentials"]
    assert creds["mqtt_username"] == "gw-new" and len(creds["mqtt_password"]) >= 24
    assert creds["topic_prefix"] == f"{settings.mqtt_topic_root}/home-2/gw-new/"
    assert [s["id"] for s in out["config"]["sensors"]] == ["pir-hall", "bed-2"] and out["config"][
        "revision"
    ] == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT mqtt_password_hash FROM gateways WHERE id = 'gw-new'").fetchone()
    assert row is not None and row[0].startswith("$argon2")
    assert PasswordHasher().verify(row[0], creds["mqtt_password"])
    # its revision-0 config is waiting, retained, for the gateway's first connect
    first = _retained(mqtt_host_port, f"{settings.mqtt_topic_root}/home-2/gw-new/config")
    assert first == out["config"] and first["revision"] == 0
    # never shown again
    got = api.get("admin", "/api/v1/gateways/gw-new").json()
    assert "mqtt_password" not in json.dumps(got) and "hash" not in json.dumps(got)
    # a new config: revision + 1, stored, and retained on the gateway's config topic
    r = api.put(
        "admin",
        "/api/v1/gateways/gw-new/config",
        json={"config": {"heartbeat_s": 30}, "expected_revision": 0},
    )
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 1 and r.json()["published"] is True
    retained = _retained(mqtt_host_port, f"{settings.mqtt_topic_root}/home-2/gw-new/config")
    assert retained["revision"] == 1 and retained["heartbeat_s"] == 30 and len(retained["sensors"]) == 2
    assert api.get("worker2", "/api/v1/gateways/gw-new/config").json()["config"]["heartbeat_s"] == 30
    # stale revision: refused, nothing lost
    r = api.put("admin", "/api/v1/gateways/gw-new/config", json={"config": {}, "expected_revision": 0})
    assert r.status_code == 409
    r = api.put("admin", "/api/v1/gateways/gw-new/config", json={"config": {"heartbeat_s": 1}})
    assert r.status_code == 422 and "heartbeat_s" in r.json()["detail"]
    # rotate the password: the old one no longer verifies
    new = api.post("admin", "/api/v1/gateways/gw-new/credentials").json()["mqtt_password"]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT mqtt_password_hash FROM gateways WHERE id = 'gw-new'").fetchone()
    assert row is not None and PasswordHasher().verify(row[0], new)


def test_unknown_sensors_are_listed_for_admins(api: Api, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO unknown_sensors (gateway_id, sensor_id) VALUES ('gw-home-2', 'pir-attic')")
    r = api.get("admin", "/api/v1/gateways/unknown-sensors")
    assert r.status_code == 200, r.text
    assert [(u["gateway_id"], u["site_id"], u["sensor_id"]) for u in r.json()] == [
        ("gw-home-2", "home-2", "pir-attic")
    ]
    assert api.get("worker2", "/api/v1/gateways/unknown-sensors").status_code == 403
    # registered since: no longer listed
    api.post("admin", "/api/v1/gateways/gw-home-2/sensors", json={"id": "pir-attic", "kind": "pir"})
    assert api.get("admin", "/api/v1/gateways/unknown-sensors").json() == []


def test_sensors_crud(api: Api) -> None:
    r = api.post(
        "admin", "/api/v1/gateways/gw-home-2/sensors", json={"id": "env-1", "kind": "env", "room": "living"}
    )
    assert r.status_code == 201
    r = api.patch("admin", "/api/v1/gateways/gw-home-2/sensors/env-1", json={"room": "kitchen"})
    assert r.json()["room"] == "kitchen"
    ids = [s["id"] for s in api.get("worker2", "/api/v1/gateways/gw-home-2/sensors").json()]
    assert "env-1" in ids
    assert api.delete("admin", "/api/v1/gateways/gw-home-2/sensors/env-1").status_code == 204
    assert api.delete("admin", "/api/v1/gateways/gw-home-2/sensors/env-1").status_code == 404


def test_a_sensor_is_registered_only_as_its_gateway_config_can_carry_it(api: Api) -> None:
    """A room over 64 characters, a wearer id the protocol has no room for or a sample rate it
    refuses were stored, and then every PUT .../config of that gateway was a 422 about a
    "sensors[0]" its caller never sent (and POST /gateways answered with the protocol's regex)."""
    base = "/api/v1/gateways/gw-home-2/sensors"
    refused = [
        ("post", base, {"id": "pir-x", "kind": "pir", "room": "r" * 65}, "room"),
        ("post", base, {"id": "pir-x", "kind": "pir", "resident_id": "res 2"}, "resident_id"),
        ("post", base, {"id": "w-x", "kind": "wearable", "meta": {"sample_hz": 500}}, "meta"),
        ("patch", f"{base}/pir-kitchen", {"room": "r" * 65}, "room"),
        ("patch", f"{base}/pir-kitchen", {"meta": {"sample_hz": "fast"}}, "meta"),
        ("post", "/api/v1/gateways", {"id": "gw-x", "site_id": "home-2",
         "sensors": [{"id": "s-1", "kind": "sos", "resident_id": "res 2"}]}, "sensors.0.resident_id"),
    ]  # fmt: skip
    for method, path, body, field in refused:
        r = getattr(api, method)("admin", path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
        assert "A-Za-z" not in r.text  # said in words, never the pattern
    ok = api.post(
        "admin", base, json={"id": "w-x", "kind": "wearable", "room": "r" * 64, "meta": {"sample_hz": 50}}
    )
    assert ok.status_code == 201, ok.text
    r = api.put("admin", "/api/v1/gateways/gw-home-2/config", json={"config": {}})
    assert r.status_code == 200, r.text
    (sent,) = [x for x in r.json()["config"]["sensors"] if x["id"] == "w-x"]
    assert (sent["room"], sent["sample_hz"]) == ("r" * 64, 50)


def test_conflicts_name_the_thing_in_the_readers_words(api: Api) -> None:
    """They named tables: "A providers with id 'hc-1' already exists", "ID 为 'hc-1' 的providers已存在",
    and deleting a site still lived in was "The residents 'home-1' is still referenced (residents)"."""
    r = api.post("admin", "/api/v1/providers", json={"id": "hc-1", "name": "x", "kind": "home_care"})
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "A provider with id 'hc-1' already exists; choose another id.",
    )
    r = api.delete("admin", "/api/v1/sites/home-1")
    assert (r.status_code, r.json()["detail"]) == (
        409, "The site 'home-1' is still referenced (resident); remove those first.",
    )  # fmt: skip
    assert api.put("admin", "/api/v1/auth/me/locale", json={"locale": "zh-CN"}).status_code == 200
    r = api.post("admin", "/api/v1/sites", json={"id": "home-1", "kind": "home", "name": "x"})
    assert (r.status_code, r.json()["detail"]) == (409, "ID 为 'home-1' 的场所已存在，请换一个 ID。")
    r = api.delete("admin", "/api/v1/providers/hc-1")
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "服务机构 'hc-1' 仍被引用（长者），请先删除这些引用。",
    )


def test_policies_tiers_and_rosters(api: Api, world: World) -> None:
    tiers = [
        {"tier": 1, "name": "family", "targets": ["family", "assigned_worker"], "ack_timeout_s": 120},
        {"tier": 2, "name": "station", "targets": ["station_on_duty"], "ack_timeout_s": 300},
        {"tier": 3, "name": "provider", "targets": ["provider:inst-1"], "ack_timeout_s": 600},
    ]
    r = api.post("admin", "/api/v1/policies", json={"name": "fast", "tiers": tiers})
    assert r.status_code == 201 and [t["tier"] for t in r.json()["tiers"]] == [1, 2, 3]
    pid = r.json()["id"]
    r = api.post(
        "admin", "/api/v1/policies", json={"name": "gappy", "tiers": [tiers[0], {**tiers[2], "tier": 3}]}
    )
    assert r.status_code == 422 and "1, 2, 3" in r.json()["detail"]
    r = api.post(
        "admin", "/api/v1/policies", json={"name": "bad", "tiers": [{**tiers[0], "targets": ["mayor"]}]}
    )
    assert r.status_code == 422 and "mayor" in r.json()["detail"]
    r = api.put("admin", f"/api/v1/policies/{pid}", json={"name": "fast", "tiers": tiers[:2]})
    assert r.status_code == 200 and len(r.json()["tiers"]) == 2
    assert api.delete("admin", f"/api/v1/policies/{world.policy_id}").status_code == 409  # residents use it
    assert api.delete("admin", f"/api/v1/policies/{pid}").status_code == 204
    # rosters: station staff put a colleague on duty; only members of that provider
    now = datetime.now(UTC)
    shift = {
        "user_id": world.user_id("station1"),
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=8)).isoformat(),
    }
    r = api.post("station1", "/api/v1/providers/st-1/shifts", json=shift)
    assert r.status_code == 201, r.text
    r = api.post(
        "station1", "/api/v1/providers/st-1/shifts", json={**shift, "user_id": world.user_id("nurse1")}
    )
    assert r.status_code == 422 and "user_id" in r.json()["detail"]
    assert api.post("worker1", "/api/v1/providers/st-1/shifts", json=shift).status_code == 404
    r = api.get("admin", "/api/v1/providers/st-1/shifts", params={"start": now.isoformat()})
    assert len(r.json()) == 2
    members = {m["username"] for m in api.get("station1", "/api/v1/providers/st-1/members").json()}
    assert members == {"station1"}


def test_users_and_family_links(api: Api, world: World) -> None:
    r = api.post(
        "admin",
        "/api/v1/users",
        json={"username": "grandson", "display_name": "Wang Lei", "password": "x" * 12, "role": "family"},
    )
    assert r.status_code == 201
    uid = r.json()["id"]
    r = api.put(
        "worker1", f"/api/v1/residents/res-1/family/{uid}", json={"user_id": uid, "relation": "grandson"}
    )
    assert r.status_code == 200 and r.json()["consent"] == {}
    assert {f["username"] for f in api.get("worker1", "/api/v1/residents/res-1/family").json()} == {
        "family1",
        "grandson",
    }
    api.login("grandson", "x" * 12)
    assert api.get("grandson", "/api/v1/residents/res-1/summary").status_code == 200
    r = api.put("admin", f"/api/v1/residents/res-1/family/{world.user_id('worker2')}",
                json={"user_id": world.user_id("worker2"), "relation": "x"})  # fmt: skip
    assert r.status_code == 422 and "family" in r.json()["detail"]
    assert api.delete("admin", f"/api/v1/residents/res-1/family/{uid}").status_code == 204
    assert api.get("grandson", "/api/v1/residents/res-1/summary").status_code == 404


def test_editing_a_provider_keeps_its_webhook_secret_unless_the_body_names_it(api: Api, db_url: str) -> None:
    body = {"id": "hc-s", "name": "S", "kind": "home_care", "webhook_url": "https://93.184.216.34/hook"}
    r = api.post("admin", "/api/v1/providers", json={**body, "webhook_secret": "a-secret-of-16-chars"})
    assert r.status_code == 201 and r.json()["webhook_secret_set"] is True
    assert "webhook_secret" not in r.json()  # shown as set, never as itself

    def secret() -> str | None:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT webhook_secret FROM providers WHERE id = 'hc-s'").fetchone()
        assert row is not None
        return row[0]

    r = api.put("admin", "/api/v1/providers/hc-s", json={**body, "name": "S renamed"})
    assert r.status_code == 200 and r.json()["name"] == "S renamed" and r.json()["webhook_secret_set"]
    assert secret() == "a-secret-of-16-chars"  # an edit form that cannot show it does not wipe it
    listed = {p["id"]: p for p in api.get("admin", "/api/v1/providers").json()}
    assert listed["hc-s"]["webhook_secret_set"] is True and not listed["hc-1"]["webhook_secret_set"]
    r = api.put("admin", "/api/v1/providers/hc-s", json={**body, "webhook_secret": "another-secret-16c"})
    assert r.status_code == 200 and secret() == "another-secret-16c"
    r = api.put("admin", "/api/v1/providers/hc-s", json={**body, "webhook_secret": None})
    assert r.status_code == 200 and not r.json()["webhook_secret_set"] and secret() is None
