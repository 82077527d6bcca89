"""Device health per home through the API: gateway state and last heard, clock skew, the sensors'
batteries and links from the latest status; the homes needing attention first; scoped per role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from platform_seed import World
from psycopg.types.json import Jsonb

from eldercare.platform import device_health

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]


def report(db_url: str, gateway: str, site: str, sensors: dict[str, Any], *, at: datetime) -> None:
    """What ingest stores for a gateway's status message."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO gateway_status (ts, gateway_id, site_id, state, sensors)"
            " VALUES (%s, %s, %s, 'online', %s)",
            (at, gateway, site, Jsonb(sensors)),
        )


def test_homes_needing_attention_come_first_with_battery_and_clock_skew(
    api: Api, db_url: str, world: World
) -> None:
    now = datetime.now(UTC)
    # home-1: an old status with a full battery, then the latest with the wearable nearly flat
    report(db_url, "gw-home-1", "home-1", {"wearable-res-1": {"battery": 0.9}}, at=now - timedelta(hours=1))
    report(
        db_url, "gw-home-1", "home-1",
        {"wearable-res-1": {"battery": 0.08, "online": True, "last_seen": int(now.timestamp() * 1000)}},
        at=now,
    )  # fmt: skip
    report(db_url, "gw-home-2", "home-2", {"wearable-res-2": {"battery": 0.77}}, at=now)
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO gateway_clocks (gateway_id, skew_ms) VALUES ('gw-home-2', 420000)")
        conn.execute("INSERT INTO gateway_clocks (gateway_id, skew_ms) VALUES ('gw-station-1', -1500)")
        conn.execute("UPDATE gateways SET state = 'offline' WHERE id = 'gw-station-1'")

    homes = api.get("admin", "/api/v1/gateways/health").json()
    order = [h["site_id"] for h in homes]
    assert order == ["station-1", "home-1", "home-2", "sim-home-1"]  # offline, flat battery, clock, fine
    by_site = {h["site_id"]: h for h in homes}
    assert by_site["station-1"]["problems"] == ["offline"]
    home1 = by_site["home-1"]
    assert home1["problems"] == ["low_battery"] and home1["residents"] == ["Wang Fang"]
    wearable = {s["id"]: s for s in home1["gateways"][0]["sensors"]}["wearable-res-1"]
    assert wearable["battery"] == 0.08 and wearable["online"] is True and wearable["last_seen"]
    home2 = by_site["home-2"]["gateways"][0]
    assert home2["clock_skew_ms"] == 420000 and home2["problems"] == ["clock_skew"]
    assert by_site["station-1"]["gateways"][0]["clock_skew_ms"] == -1500  # small: no problem
    assert by_site["sim-home-1"]["problems"] == []

    # a care worker sees the homes of the residents their provider serves, a tester the simulated
    # ones, a family member nothing (she may not see devices at all)
    mine = [h["site_id"] for h in api.get("worker1", "/api/v1/gateways/health").json()]
    assert "home-2" not in mine and "home-1" in mine
    assert [h["site_id"] for h in api.get("tester", "/api/v1/gateways/health").json()] == ["sim-home-1"]
    assert api.get("family1", "/api/v1/gateways/health").status_code == 403


def test_problems_are_ranked_gravest_first() -> None:
    row = {
        "site_id": "s", "site_name": "S", "site_kind": "home", "state": "unknown", "clock_ok": False,
        "sensors": [{"id": "a", "kind": "pir", "room": "x"}], "sensor_status": {"a": {"online": False}},
    }  # fmt: skip
    sensors = device_health.sensors_of(row)
    assert device_health.gateway_problems(row, sensors) == ["never_seen", "sensor_offline", "clock_skew"]
