"""A resident's inactivity limits through the API: a new home's starting limits a care worker sees
and sets, the engine applying them, outcome feedback changing them visibly, and undoing changes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from platform_seed import World

from eldercare.platform.engine import service
from eldercare.platform.repo import report
from eldercare.platform.repo.connections import connect, open_pool

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]
PATH = "/api/v1/residents/res-1/inactivity-limits"


def _tick(db_url: str, now_s: float) -> None:
    """One round of the engine's inactivity checks at the injected wall clock ``now_s``."""

    async def main() -> None:
        async with open_pool(db_url, min_size=1, max_size=2) as pool:
            await service.drive_inactivity(pool, now_s=now_s)

    asyncio.run(main())


def _feedback(db_url: str) -> int:
    async def main() -> int:
        async with await connect(db_url) as conn:
            return await report.apply_feedback(conn)

    return asyncio.run(main())


def _false_alarm(db_url: str, world: World) -> int:
    """An inactivity alert of res-1 that worker1 resolved as a false alarm."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO alerts (kind, severity, state, resident_id, site_id, dedup_key, title, detected_at,"
            " opened_at, resolved_at, resolved_by, outcome)"
            " VALUES ('inactivity', 'high', 'resolved', 'res-1', 'home-1', 'k-fa', 't', %s, %s, %s, %s,"
            " 'false_alarm') RETURNING id",
            (t0, t0, t0 + timedelta(minutes=10), world.user_id("worker1")),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _rooms(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["room"]: r for r in view["rooms"]}


def test_a_new_homes_limits_are_seen_set_applied_fed_back_and_undone(
    api: Api, db_url: str, world: World
) -> None:
    first = api.get("worker1", PATH)
    assert first.status_code == 200, first.text
    view = first.json()
    bath = _rooms(view)["bathroom"]
    assert bath["population_s"] == [1800.0, 3000.0] and bath["starting_s"] is None
    assert view["learning"]["own_share"] == 0.0 and view["changes"] == []
    assert api.get("family1", PATH).status_code == 403  # the care team's, not the family's
    assert api.get("worker2", PATH).status_code == 404  # not their provider's resident

    # a care worker sets "bathroom: alert after 45 min"; the engine applies it at its next check
    bad = api.put("worker1", PATH, json={"limits": {"garage": 2700}})
    assert bad.status_code == 422 and "garage" in bad.text
    short = api.put("worker1", PATH, json={"limits": {"bathroom": 60}})
    assert short.status_code == 422 and "limits.bathroom" in short.text
    # the refusals are worded from the catalogue in the reader's language, not English inside
    zh = {"Accept-Language": "zh-CN"}
    assert (
        "不是可设限时的房间" in api.put("worker1", PATH, json={"limits": {"garage": 2700}}, headers=zh).text
    )
    assert "秒" in api.put("worker1", PATH, json={"limits": {"bathroom": 60}}, headers=zh).text
    r = api.put("worker1", PATH, json={"limits": {"bathroom": 2700}})
    assert r.status_code == 200, r.text
    view = r.json()
    assert _rooms(view)["bathroom"]["starting_s"] == 2700 and view["learning"]["pending"]
    (set_by,) = view["changes"]
    assert (set_by["source"], set_by["actor"]) == ("limits", "worker1")
    assert set_by["before"]["limits"] == {} and set_by["after"]["limits"] == {"bathroom": 2700}
    _tick(db_url, time.time())  # no history at all: watched from the first hour
    view = api.get("worker1", PATH).json()
    assert not view["learning"]["pending"] and view["learning"]["days"] == 0
    assert _rooms(view)["bathroom"]["in_effect_s"] == pytest.approx(2700)

    # feedback: a false alarm makes every limit longer, visibly, with the alert and who said so
    alert = _false_alarm(db_url, world)
    assert _feedback(db_url) == 1
    view = api.get("worker1", PATH).json()
    fb = view["changes"][0]
    assert (fb["source"], fb["alert_id"], fb["outcome"], fb["actor"]) == (
        "feedback",
        alert,
        "false_alarm",
        "worker1",
    )
    assert view["sensitivity"] == pytest.approx(0.85)
    assert _rooms(view)["bathroom"]["in_effect_s"] == pytest.approx(2700 / 0.85, rel=1e-4)

    # ... and reversibly: undone, the limits are as before; a change is undone once only
    undone = api.post("worker1", f"{PATH}/changes/{fb['id']}/undo")
    assert undone.status_code == 200, undone.text
    view = undone.json()
    assert view["sensitivity"] == pytest.approx(1.0)
    assert view["changes"][0]["source"] == "undo" and view["changes"][0]["undoes"] == fb["id"]
    assert next(c for c in view["changes"] if c["id"] == fb["id"])["undone_by"] == view["changes"][0]["id"]
    assert api.post("worker1", f"{PATH}/changes/{fb['id']}/undo").status_code == 409
    assert api.post("worker1", f"{PATH}/changes/999999/undo").status_code == 404
    back = api.post("worker1", f"{PATH}/changes/{set_by['id']}/undo").json()
    assert _rooms(back)["bathroom"]["starting_s"] is None  # the population's again
    assert [c["source"] for c in back["changes"]] == ["undo", "undo", "feedback", "limits"]


def test_setting_limits_refuses_what_it_does_not_take_and_the_schema_says_so(api: Api) -> None:
    """A misspelt field beside ``limits`` was ignored and the limits saved as a change; the schema
    offered any room name and any number."""
    r = api.put("worker1", PATH, json={"limits": {"bathroom": 2700}, "limit": {"kitchen": 900}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit", r.text
    assert api.get("worker1", PATH).json()["changes"] == []  # nothing saved
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["LimitsIn"]
    assert schema["additionalProperties"] is False
    limits = schema["properties"]["limits"]
    assert limits["propertyNames"] == {"enum": ["bathroom", "kitchen", "living", "bedroom", "hall"]}
    number = limits["additionalProperties"]["anyOf"][0]
    assert (number["minimum"], number["maximum"]) == (300, 86400)
