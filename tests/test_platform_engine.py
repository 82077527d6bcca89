"""The alert engine against the real database: events become alerts, alerts climb tiers until someone
acknowledges, two engines never double-escalate or double-notify, devices resolve themselves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from platform_seed import World, seed_world

from eldercare.platform.engine import rules, service
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo.connections import Pool, open_pool

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

NOW_MS = int(time.time() * 1000)


def queue(db_url: str, kind: str, gateway: str, site: str, payload: dict[str, Any]) -> None:
    """What ingest writes for each event or status: a work row (NOTIFY is tested in ingest)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES (%s, %s, %s, %s::jsonb)",
            (kind, gateway, site, json.dumps({"gateway": gateway, "site": site, **payload})),
        )


def fall(sensor: str = "wearable-res-1", resident: str | None = None) -> dict[str, Any]:
    return {
        "v": 1, "epoch": "epoch-0001", "seq": 1, "t": NOW_MS, "sensor": sensor, "kind": "fall",
        "confidence": 0.9, "resident": resident, "evidence": {"hz": 50, "acc": [[0.1, 0.2, 3.1]]},
    }  # fmt: skip


def with_pool(db_url: str, job: Callable[[Pool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with open_pool(db_url, min_size=1, max_size=4) as pool:
            return await job(pool)

    return asyncio.run(main())


def escalate_at(seconds_from_now: float) -> Callable[[Pool], Awaitable[int]]:
    """``escalate_due`` on an injected clock: deadlines pass without sleeping them out."""
    at = alerts_repo.now() + timedelta(seconds=seconds_from_now)
    return lambda pool: service.escalate_due(pool, now=at)


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def world(db_url: str) -> World:
    """The seeded world with acknowledgement deadlines of one second per tier."""
    with psycopg.connect(db_url) as conn:
        return seed_world(conn, ack_timeouts=(1, 1, 1))


def sensor_of_res1(db_url: str) -> str:
    found = rows(db_url, "SELECT id FROM sensors WHERE resident_id = 'res-1' AND kind = 'wearable'")
    return str(found[0][0])


def test_fall_event_opens_one_alert_and_notifies_tier_one(db_url: str, world: World) -> None:
    wearable = sensor_of_res1(db_url)
    queue(db_url, "event", "gw-home-1", "home-1", fall(wearable))
    queue(db_url, "event", "gw-home-1", "home-1", fall(wearable) | {"seq": 2})  # joins, not a second
    assert with_pool(db_url, service.process_work) == 2
    alerts = rows(db_url, "SELECT kind, severity, state, resident_id, detections, tier FROM alerts")
    assert alerts == [("fall", "critical", "open", "res-1", 2, 1)]
    notified = rows(
        db_url,
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.tier = 1 ORDER BY 1",
    )
    assert [n[0] for n in notified] == ["family1", "worker1"]
    actions = [r[0] for r in rows(db_url, "SELECT action FROM alert_trail ORDER BY id")]
    assert actions == ["opened", "notified", "detected_again"]
    assert rows(db_url, "SELECT count(*) FROM alert_work") == [(0,)]


def test_unacknowledged_alert_climbs_each_tier_in_order_and_stops_at_ack(
    db_url: str, world: World, api: Api
) -> None:
    queue(db_url, "event", "gw-home-1", "home-1", fall(sensor_of_res1(db_url)))
    with_pool(db_url, service.process_work)
    (alert_id,) = rows(db_url, "SELECT id FROM alerts")[0]
    assert with_pool(db_url, escalate_at(0.5)) == 0  # tier 1 still has time
    for expected_tier, at in ((2, 1.5), (3, 3.0)):
        assert with_pool(db_url, escalate_at(at)) == 1
        assert rows(db_url, "SELECT tier FROM alerts") == [(expected_tier,)]
    by_tier = rows(
        db_url,
        "SELECT n.tier, u.username FROM notifications n JOIN users u ON u.id = n.user_id ORDER BY 1, 2",
    )
    assert by_tier == [(1, "family1"), (1, "worker1"), (2, "station1"), (3, "nurse1")]
    assert rows(db_url, "SELECT next_escalation_at FROM alerts") == [(None,)]  # no tier 4

    r = api.post("nurse1", f"/api/v1/alerts/{alert_id}/ack")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged"
    again = api.post("nurse1", f"/api/v1/alerts/{alert_id}/ack")
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    detail = api.get("worker1", f"/api/v1/alerts/{alert_id}").json()
    assert detail["resident_name"]  # the detail names the resident, as the list does
    assert [t["action"] for t in detail["trail"]] == [
        "opened", "notified", "escalated", "notified", "escalated", "notified", "acknowledged",
    ]  # fmt: skip
    assert detail["trail"][-1]["actor"] == "nurse1"
    assert {n["username"] for n in detail["notifications"]} == {"family1", "worker1", "station1", "nurse1"}


def work_at(minutes_from_now: float) -> Callable[[Pool], Awaitable[int]]:
    at = alerts_repo.now() + timedelta(minutes=minutes_from_now)
    return lambda pool: service.process_work(pool, now=at)


def test_a_new_emergency_on_an_alert_acknowledged_long_ago_opens_it_again(
    db_url: str, world: World, api: Api
) -> None:
    """An SOS acknowledged and never resolved (helped, not closed) must not swallow tomorrow's: a
    press within the care worker's way there joins it quietly; later, the alert opens again at its
    first tier, is told to it and climbs as a new one would."""
    sos = {
        "v": 1,
        "epoch": "e-1",
        "seq": 1,
        "t": NOW_MS,
        "sensor": "sos-1",
        "kind": "sos",
        "resident": "res-1",
    }
    queue(db_url, "event", "gw-home-1", "home-1", sos)
    with_pool(db_url, service.process_work)
    (alert_id,) = rows(db_url, "SELECT id FROM alerts")[0]
    assert api.post("worker1", f"/api/v1/alerts/{alert_id}/ack").status_code == 200
    told = "SELECT count(*) FROM notifications WHERE alert_id = %s"
    assert rows(db_url, told, alert_id) == [(2,)]  # family1, worker1

    queue(db_url, "event", "gw-home-1", "home-1", sos | {"seq": 2})  # pressed again, help on its way
    with_pool(db_url, work_at(10))
    assert rows(db_url, "SELECT state, detections FROM alerts") == [("acknowledged", 2)]
    assert rows(db_url, told, alert_id) == [(2,)]

    queue(db_url, "event", "gw-home-1", "home-1", sos | {"seq": 3})  # the next day
    with_pool(db_url, work_at(24 * 60))
    assert rows(db_url, "SELECT state, tier, detections, acknowledged_by FROM alerts") == [
        ("open", 1, 3, None)
    ]
    assert rows(db_url, told, alert_id) == [(4,)]  # tier 1 told again
    detail = api.get("worker1", f"/api/v1/alerts/{alert_id}").json()
    actions = [t["action"] for t in detail["trail"]]
    assert actions[-4:] == ["detected_again", "detected_again", "reopened", "notified"], actions
    assert detail["trail"][-2]["detail"]["acknowledged_by"] == world.user_id("worker1")
    assert with_pool(db_url, escalate_at(24 * 3600 + 5)) == 1  # it climbs again
    assert rows(db_url, "SELECT tier FROM alerts") == [(2,)]


def test_a_new_inactivity_detection_never_reopens_an_acknowledged_alert() -> None:
    now = alerts_repo.now()
    assert service.escalation.reopen_if_acknowledged_before("inactivity", now) is None
    assert (
        service.escalation.reopen_if_acknowledged_before("fall", now) == now - service.escalation.REOPEN_AFTER
    )


def test_acknowledged_alert_does_not_escalate(db_url: str, world: World, api: Api) -> None:
    queue(db_url, "event", "gw-home-1", "home-1", fall(sensor_of_res1(db_url)))
    with_pool(db_url, service.process_work)
    (alert_id,) = rows(db_url, "SELECT id FROM alerts")[0]
    assert (
        api.post("worker1", f"/api/v1/alerts/{alert_id}/ack").status_code == 200
    )  # family: test_security_family_ack
    assert with_pool(db_url, escalate_at(60)) == 0
    assert rows(db_url, "SELECT tier, state FROM alerts") == [(1, "acknowledged")]


def test_two_engines_never_double_escalate_or_notify(db_url: str, world: World) -> None:
    wearable = sensor_of_res1(db_url)
    for seq in range(1, 21):
        queue(db_url, "event", "gw-home-1", "home-1", fall(wearable) | {"seq": seq})
    queue(db_url, "event", "gw-home-2", "home-2", fall("sos-1", resident="res-2") | {"kind": "sos"})

    async def two_engines(pool: Pool) -> None:
        async with open_pool(pool.conninfo, min_size=1, max_size=4) as other:
            await asyncio.gather(*(service.process_work(p, limit=3) for p in (pool, other) for _ in range(6)))
            at = alerts_repo.now() + timedelta(seconds=1.5)
            await asyncio.gather(
                *(service.escalate_due(p, now=at, batch=1) for p in (pool, other) for _ in range(3))
            )

    with_pool(db_url, two_engines)
    assert rows(db_url, "SELECT count(*) FROM alert_work") == [(0,)]
    assert rows(db_url, "SELECT kind, detections, tier FROM alerts ORDER BY kind") == [
        ("fall", 20, 2),
        ("sos", 1, 2),
    ]
    dupes = rows(
        db_url,
        "SELECT alert_id, user_id, tier, count(*) FROM notifications GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    assert dupes == []
    escalations = rows(
        db_url, "SELECT alert_id, count(*) FROM alert_trail WHERE action = 'escalated' GROUP BY 1"
    )
    assert sorted(n for _, n in escalations) == [1, 1]


def test_gateway_offline_opens_device_alert_and_online_resolves_it(db_url: str, world: World) -> None:
    queue(db_url, "status", "gw-home-1", "home-1", {"t": NOW_MS, "state": "offline", "sensors": {}})
    with_pool(db_url, service.process_work)
    assert rows(db_url, "SELECT kind, state, site_id, gateway_id FROM alerts") == [
        ("device_offline", "open", "home-1", "gw-home-1")
    ]
    # the family is not woken for a device problem
    assert rows(db_url, "SELECT count(*) FROM notifications n JOIN users u ON u.id = n.user_id "
                        "WHERE u.role = 'family'") == [(0,)]  # fmt: skip
    queue(
        db_url, "status", "gw-home-1", "home-1",
        {"t": NOW_MS + 1000, "state": "online", "sensors": {"sos-1": {"battery": 0.05}}},
    )  # fmt: skip
    with_pool(db_url, service.process_work)
    got = rows(db_url, "SELECT kind, state, outcome, sensor_id FROM alerts ORDER BY id")
    assert got == [
        ("device_offline", "resolved", "no_action_needed", None),
        ("low_battery", "open", None, "sos-1"),
    ]
    queue(
        db_url, "status", "gw-home-1", "home-1",
        {"t": NOW_MS + 2000, "state": "online", "sensors": {"sos-1": {"battery": 0.95}}},
    )  # fmt: skip
    with_pool(db_url, service.process_work)
    assert rows(db_url, "SELECT state FROM alerts WHERE kind = 'low_battery'") == [("resolved",)]
    trail = rows(db_url, "SELECT count(*) FROM alert_trail WHERE action = 'auto_resolved'")
    assert trail == [(2,)]


def test_pipeline_stalled_when_online_gateway_heartbeats_stop_arriving(db_url: str, world: World) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE gateways SET state = 'online', state_at = now() - interval '1 hour'")
        conn.execute(
            "INSERT INTO readings VALUES (now(), 'gw-home-2', 'gw-home-2', 'heartbeat', 60), "
            "(now() - interval '20 minutes', 'gw-home-1', 'gw-home-1', 'heartbeat', 60)"
        )
    with_pool(db_url, service.check_heartbeats)
    stalled = rows(db_url, "SELECT gateway_id FROM alerts WHERE kind = 'pipeline_stalled' ORDER BY 1")
    assert ("gw-home-1",) in stalled and ("gw-home-2",) not in stalled
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO readings VALUES (now(), 'gw-home-1', 'gw-home-1', 'heartbeat', 60)")
    with_pool(db_url, service.check_heartbeats)
    assert rows(db_url, "SELECT state FROM alerts WHERE gateway_id = 'gw-home-1'") == [("resolved",)]


def test_family_of_another_resident_cannot_see_or_act_on_an_alert(
    db_url: str, world: World, api: Api
) -> None:
    queue(db_url, "event", "gw-home-1", "home-1", fall(sensor_of_res1(db_url)))
    with_pool(db_url, service.process_work)
    (alert_id,) = rows(db_url, "SELECT id FROM alerts")[0]
    assert api.get("family2", "/api/v1/alerts").json() == []
    assert len(api.get("family1", "/api/v1/alerts").json()) == 1
    for method, path in (("get", ""), ("post", "/ack"), ("post", "/notes")):
        r = getattr(api, method)("family2", f"/api/v1/alerts/{alert_id}{path}", json={"note": "x"})
        assert r.status_code == 404, (method, path, r.text)
    r = api.post("family1", f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "false_alarm"})
    assert r.status_code == 403
    bad = api.post("worker1", f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "maybe"})
    assert bad.status_code == 422 and "outcome" in bad.text
    done = api.post(
        "worker1", f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "false_alarm", "note": "ok"}
    )
    assert done.status_code == 200 and done.json()["outcome"] == "false_alarm"


def test_rules_are_pure_decisions() -> None:
    event = {"site": "h", "gateway": "g", "sensor": "w", "kind": "fall", "t": 1, "confidence": 0.5}
    (decision,) = rules.decide_event(event, "r-1")
    assert isinstance(decision, rules.Open) and decision.dedup_key == "resident:r-1:fall"
    assert "50%" in decision.summary["en"] and "50%" in decision.summary["zh-CN"]
    (note,) = rules.decide_event(event | {"kind": "fall_cancelled"}, "r-1")
    assert isinstance(note, rules.Note) and note.dedup_key == decision.dedup_key
    assert rules.decide_event(event | {"kind": "clock_error"}, "r-1") == []
    hovering = rules.decide_status(
        {"site": "h", "gateway": "g", "t": 1, "state": "online", "sensors": {"s": {"battery": 0.2}}}
    )
    assert [type(d) for d in hovering] == [rules.Clear, rules.Clear]  # offline, stalled; battery between
    lost = rules.decide_status(
        {"site": "h", "gateway": "g", "t": 1, "state": "online", "sensors": {"sos-1": {"online": False}}}
    )
    assert [type(d) for d in lost] == [rules.Clear, rules.Clear, rules.Open]  # a lost SOS button alerts
    assert lost[2].kind == "device_offline" and lost[2].sensor_id == "sos-1"
    assert "sos-1" in lost[2].summary["en"] and "sos-1" in lost[2].summary["zh-CN"]
    back = rules.decide_status(
        {"site": "h", "gateway": "g", "t": 2, "state": "online", "sensors": {"sos-1": {"online": True}}}
    )
    assert [d.dedup_key for d in back] == [d.dedup_key for d in lost]  # cleared when heard again


def test_family_sees_who_is_on_duty_for_their_relative_only(db_url: str, world: World, api: Api) -> None:
    r = api.get("family1", "/api/v1/residents/res-1/on-duty")
    assert r.status_code == 200, r.text
    roles = {p["display_name"]: p["role"] for p in r.json()}
    names = {row[0]: row[1] for row in rows(db_url, "SELECT username, display_name FROM users")}
    assert roles[names["worker1"]] == "assigned_worker"
    assert roles[names["station1"]] == "station_on_duty"  # res-1 attends station-1, whose st-1 is on duty
    assert roles[names["nurse1"]] == "institution_on_duty"
    assert api.get("family2", "/api/v1/residents/res-1/on-duty").status_code == 404


def test_a_simulated_homes_event_is_stored_at_wall_time_with_its_own_time_marked(
    db_url: str, world: World
) -> None:
    """A simulated home's fall or SOS carries its own clock, 40 minutes ahead of the wall 40 s
    into a demo at 60x: the alert was stored as detected then, unmarked (a console showed it
    detected in the future, "waiting" for nothing). It is stored at the wall-clock moment it is
    raised with the home's time in the summary, as the home's inactivity alerts are; a real home's
    event keeps its own time, and a second press joining it keeps the home's time in the trail."""
    ahead_ms = 40 * 60 * 1000
    sos = {"v": 1, "epoch": "e-sim", "seq": 1, "t": NOW_MS + ahead_ms, "sensor": "sos-1", "kind": "sos"}
    queue(db_url, "event", "gw-sim-1", "sim-home-1", sos)
    queue(db_url, "event", "gw-sim-1", "sim-home-1", sos | {"seq": 2, "t": NOW_MS + ahead_ms + 60_000})
    queue(db_url, "event", "gw-home-1", "home-1", sos | {"epoch": "e-real", "t": NOW_MS - 5_000})
    before = time.time()
    assert with_pool(db_url, service.process_work) == 3
    after = time.time()
    (sim,) = rows(db_url, "SELECT id, detected_at, summary FROM alerts WHERE site_id = 'sim-home-1'")
    assert before - 1 <= sim[1].timestamp() <= after + 1
    assert sim[2]["sim_event_ms"] == NOW_MS + ahead_ms
    home_s = (NOW_MS + ahead_ms) / 1000
    assert home_s - after - 0.01 <= sim[2]["sim_offset_s"] <= home_s - before + 0.01
    # not the score's sim_detected_ms: a fall's event is stamped with its impact, and the score
    # dates the alert by when the platform raised it, as before
    assert "sim_detected_ms" not in sim[2]
    ((real_at, real_summary),) = rows(
        db_url, "SELECT detected_at, summary FROM alerts WHERE site_id = 'home-1'"
    )
    assert real_at.timestamp() == pytest.approx((NOW_MS - 5_000) / 1000, abs=0.01)
    assert "sim_detected_ms" not in real_summary
