"""Timelines from the hourly rollup and daily summaries, with consent filtering (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import psycopg
import pytest
from platform_seed import World

from eldercare.db import maintain
from eldercare.platform import daily

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def day(db_url: str, world: World) -> datetime:
    """Yesterday (local) at home-2: a night in bed with one trip out, a morning, then going out."""
    d = (datetime.now(UTC).astimezone(TZ) - timedelta(days=1)).date()
    start = datetime.combine(d, time(0), TZ)
    at = lambda h, m=0: start + timedelta(hours=h, minutes=m)  # noqa: E731
    rows = [
        (at(-2), "bed-1", "in_bed", 1.0),  # 22:00 the evening before
        (at(2), "bed-1", "in_bed", 0.0),
        (at(2, 10), "pir-bathroom", "motion", 1.0),
        (at(2, 12), "bed-1", "in_bed", 1.0),
        (at(6, 30), "bed-1", "in_bed", 0.0),
        (at(8), "pir-bathroom", "motion", 1.0),
        (at(8, 5), "pir-kitchen", "motion", 1.0),
        (at(8, 6), "plug-kettle", "power", 1800.0),
        (at(9, 50), "pir-kitchen", "motion", 1.0),
        (at(10), "door-front", "contact", 1.0),
        (
            at(
                10,
                0,
            ),
            "wearable-res-2",
            "heart_rate",
            72.0,
        ),
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        maintain.ensure_partitions(conn, at(-30), datetime.now(UTC))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings VALUES (%s, 'gw-home-2', %s, %s, %s)", rows)
            # another resident's home must never appear in res-2's timeline
            cur.execute(
                "INSERT INTO readings VALUES (%s, 'gw-home-1', 'pir-kitchen', 'motion', 1.0)", (at(8),)
            )
        maintain.refresh_rollup(conn, at(-30))
        conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, dedup_key, title, detected_at)"
            " VALUES ('inactivity', 'high', 'res-2', 'res-2:inactivity', 'No activity', now())"
        )
    return start


def test_timeline_per_room_and_hour_filtered_by_consent(api: Api, day: datetime) -> None:
    params = {"start": (day - timedelta(hours=6)).isoformat(), "end": (day + timedelta(days=1)).isoformat()}
    staff = api.get("worker2", "/api/v1/residents/res-2/timeline", params=params).json()
    cells = {(c["bucket"][:13], c["room"], c["metric"]): c for c in staff["cells"]}
    assert staff["hidden_streams"] == []
    rooms = {c["room"] for c in staff["cells"]}
    assert rooms == {"bedroom", "bathroom", "kitchen", "hall", None}  # None: the wearable
    kitchen = [c for c in staff["cells"] if c["room"] == "kitchen" and c["metric"] == "power"]
    assert len(kitchen) == 1 and kitchen[0]["max_value"] == 1800.0
    assert sum(c["n"] for c in staff["cells"] if c["sensor_kind"] == "bed") == 4
    assert len(cells) == len(staff["cells"])
    # family2 has consent for activity and bed only
    fam = api.get("family2", "/api/v1/residents/res-2/timeline", params=params).json()
    assert set(fam["hidden_streams"]) == {"bathroom", "vitals"}
    assert {c["room"] for c in fam["cells"]} == {"bedroom", "kitchen", "hall"}
    only = api.get("worker2", "/api/v1/residents/res-2/timeline", params={**params, "room": "kitchen"}).json()
    assert {c["room"] for c in only["cells"]} == {"kitchen"}
    r = api.get(
        "worker2", "/api/v1/residents/res-2/timeline", params={"start": params["end"], "end": params["start"]}
    )
    assert r.status_code == 422 and "start" in r.json()["detail"]


def test_daily_summary(api: Api, day: datetime) -> None:
    r = api.get("family2", "/api/v1/residents/res-2/summary", params={"day": day.date().isoformat()})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["presence"] == "out"
    assert datetime.fromisoformat(s["presence_since"]) == day + timedelta(hours=10)
    assert s["last_activity_room"] == "kitchen"
    assert datetime.fromisoformat(s["last_activity_at"]) == day + timedelta(hours=9, minutes=50)
    sleep = s["sleep_last_night"]
    assert datetime.fromisoformat(sleep["in_bed_at"]) == day - timedelta(hours=2)
    assert datetime.fromisoformat(sleep["out_of_bed_at"]) == day + timedelta(hours=6, minutes=30)
    assert sleep["bed_exits"] == 1 and sleep["hours_in_bed"] == pytest.approx(8.3, abs=0.01)
    assert s["active_hours_today"] == 3  # 02:00, 08:00 and 09:00 saw motion
    assert [a["kind"] for a in s["open_alerts"]] == ["inactivity"]


def test_presence_and_sleep_rules() -> None:
    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert daily.presence(None, None, t0).state == "unknown"
    assert daily.presence(t0, None, t0).state == "home"
    door = t0 + timedelta(minutes=1)
    assert daily.presence(t0, door, door + timedelta(minutes=5)).state == "home"  # not long enough yet
    assert daily.presence(t0, door, door + timedelta(minutes=20)) == daily.Presence("out", door)
    assert (
        daily.presence(door + timedelta(minutes=30), door, door + timedelta(hours=1)).state == "home"
    )  # back
    assert daily.sleep([], t0) is None
    s = daily.sleep([(t0, 1.0)], t0 + timedelta(hours=2))
    assert s is not None and s.out_of_bed_at is None and s.hours_in_bed == 2.0
