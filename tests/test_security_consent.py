"""Consent covers data derived from raw streams as well as the streams (issue 19, item 5), and
families see other people in alert trails by display name and role only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import psycopg
import pytest
from platform_seed import World

from eldercare.db import maintain

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def day(db_url: str, world: World) -> datetime:
    """Yesterday at home-1 (res-1): a night in bed, then the bathroom last."""
    d = (datetime.now(UTC).astimezone(TZ) - timedelta(days=1)).date()
    start = datetime.combine(d, time(0), TZ)
    rows = [
        (start - timedelta(hours=2), "bed-1", "in_bed", 1.0),
        (start + timedelta(hours=6), "bed-1", "in_bed", 0.0),
        (start + timedelta(hours=7), "pir-kitchen", "motion", 1.0),
        (start + timedelta(hours=9), "pir-bathroom", "motion", 1.0),
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        maintain.ensure_partitions(conn, start - timedelta(days=30), datetime.now(UTC))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings VALUES (%s, 'gw-home-1', %s, %s, %s)", rows)
        maintain.refresh_rollup(conn, start - timedelta(days=30))
    return start


def _summary(api: Api, who: str, day: datetime) -> dict:  # type: ignore[type-arg]
    r = api.get(who, "/api/v1/residents/res-1/summary", params={"day": day.date().isoformat()})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _consent(api: Api, world: World, consent: dict[str, bool]) -> None:
    uid = world.user_id("family1")
    r = api.put("admin", f"/api/v1/residents/res-1/family/{uid}/consent", json={"consent": consent})
    assert r.status_code == 200, r.text


def test_withdrawn_consent_hides_sleep_and_the_last_room(api: Api, world: World, day: datetime) -> None:
    staff = _summary(api, "worker1", day)
    assert staff["sleep_last_night"]["in_bed_at"] and staff["last_activity_room"] == "bathroom"
    assert staff["hidden_fields"] == []
    _consent(api, world, {"activity": False, "bed": False, "bathroom": False, "vitals": False})
    fam = _summary(api, "family1", day)
    assert fam["sleep_last_night"] is None and fam["last_activity_room"] is None
    assert sorted(fam["hidden_fields"]) == ["last_activity_room", "sleep_last_night"]
    assert fam["last_activity_at"] == staff["last_activity_at"]  # "something happened" stays
    # activity alone does not reveal that the last room was the bathroom
    _consent(api, world, {"activity": True, "bed": True})
    fam = _summary(api, "family1", day)
    assert fam["sleep_last_night"] == staff["sleep_last_night"]
    assert fam["last_activity_room"] is None and fam["hidden_fields"] == ["last_activity_room"]
    _consent(api, world, {"activity": True, "bed": True, "bathroom": True})
    assert _summary(api, "family1", day)["last_activity_room"] == "bathroom"


def test_families_see_people_by_display_name_and_role(api: Api, db_url: str, world: World) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, dedup_key, title, detected_at)"
            " VALUES ('fall', 'critical', 'res-1', 'res-1:fall', 'Fall', now()) RETURNING id"
        ).fetchone()  # type: ignore[misc]
        for name in ("family1", "worker1"):
            conn.execute(
                "INSERT INTO notifications (alert_id, user_id, tier, channel, target, status, attempts)"
                " VALUES (%s, %s, 1, 'websocket', 'family', 'sent', 1),"
                " (%s, %s, 1, 'email', %s, 'delivered', 1)",
                [alert_id, world.user_id(name), alert_id, world.user_id(name), f"{name}@example.org"],
            )
        conn.execute(
            "INSERT INTO alert_trail (alert_id, action, tier, detail) VALUES (%s, 'notified', 1, %s)",
            [alert_id, json.dumps({"users": ["family1", "worker1"]})],
        )
    assert api.post("worker1", f"/api/v1/alerts/{alert_id}/notes", json={"note": "on it"}).status_code == 201
    staff = api.get("admin", f"/api/v1/alerts/{alert_id}").json()
    assert staff["trail"][-1]["actor"] == "worker1"
    fam = api.get("family1", f"/api/v1/alerts/{alert_id}")
    assert fam.status_code == 200, fam.text
    text = fam.text
    assert "worker1" not in text  # the worker's user name never reaches a family member
    trail = fam.json()["trail"]
    # by name and role, the role in her language (family1 reads Chinese), never its code "care_worker"
    assert trail[-1]["actor"] == "Zhang Min (护理员)"
    assert trail[0]["detail"]["users"] == ["family1", "Zhang Min (护理员)"]
    assert {n["username"] for n in fam.json()["notifications"]} == {"family1", None}
    # nor the worker's e-mail address (it was the target of their e-mail): the person, as above
    mails = {n["target"] for n in fam.json()["notifications"] if n["channel"] == "email"}
    assert mails == {"family1@example.org", "Zhang Min (护理员)"}
    staff_mails = {n["target"] for n in staff["notifications"] if n["channel"] == "email"}
    assert staff_mails == {"family1@example.org", "worker1@example.org"}


def test_a_family_note_answers_with_the_trail_as_families_see_it(api: Api, db_url: str, world: World) -> None:
    """Adding a note answers with the trail: to a family member it names people as the alert's
    detail does, not by user name (the answer to her note listed the workers' user names)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, dedup_key, title, detected_at)"
            " VALUES ('sos', 'critical', 'res-1', 'res-1:sos', 'SOS', now()) RETURNING id"
        ).fetchone()  # type: ignore[misc]
        conn.execute(
            "INSERT INTO alert_trail (alert_id, action, tier, detail) VALUES (%s, 'notified', 1, %s)",
            [alert_id, json.dumps({"users": ["family1", "worker1"]})],
        )
    assert api.post("worker1", f"/api/v1/alerts/{alert_id}/notes", json={"note": "on it"}).status_code == 201
    r = api.post("family1", f"/api/v1/alerts/{alert_id}/notes", json={"note": "thank you"})
    assert r.status_code == 201, r.text
    assert "worker1" not in r.text
    trail = r.json()
    assert trail == api.get("family1", f"/api/v1/alerts/{alert_id}").json()["trail"]
    assert [t["actor"] for t in trail[-2:]] == ["Zhang Min (护理员)", "family1"]
