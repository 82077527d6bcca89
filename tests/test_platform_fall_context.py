"""The home confirms or doubts a wearable's fall: the pure rule, then the engine using it on a real
database (severity, explanation in both languages, escalation at once when certain)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from platform_seed import World, seed_world
from test_platform_engine import NOW_MS, fall, queue, rows, sensor_of_res1, with_pool

from eldercare.platform.engine import service
from eldercare.platform.engine.fall_context import Signal, judge_fall

T = 1_000_000.0  # an impact, in seconds


def judge(
    *signals: Signal, room: str | None = "kitchen", watched: float = 40.0, pirs: bool = True, **kw: bool
):
    return judge_fall(
        impact_s=T, room=room, signals=signals, watched_until_s=T + watched, has_motion_sensors=pirs, **kw
    )


@pytest.mark.parametrize(
    ("signal", "what"),
    [
        (Signal(T + 20, "pir", "bedroom", 1.0), "movement in another room (bedroom)"),
        (
            Signal(T + 50, "bed", "bedroom", 1.0),
            "the bed sensor says in bed",
        ),  # later than watched: still counts
        (Signal(T + 10, "door", "hall", 1.0), "a door opened"),
    ],
)
def test_a_sign_of_life_elsewhere_makes_the_fall_doubtful(signal: Signal, what: str) -> None:
    j = judge(signal)
    assert j.verdict == "doubtful" and j.severity == "high" and not j.escalate_now
    assert what in j.explain("en")
    assert j.explain("zh-CN").startswith("跌倒存疑")


def test_im_ok_makes_it_doubtful_and_silence_makes_it_certain() -> None:
    assert judge(answered=True).verdict == "doubtful"
    assert "I'm OK" in judge(answered=True).explain("en")
    certain = judge()
    assert certain.verdict == "certain" and certain.severity == "critical" and certain.escalate_now
    assert "no movement anywhere in the home for 37 s" in certain.explain("en")
    assert "37 秒" in certain.explain("zh-CN")


@pytest.mark.parametrize(
    ("case", "j"),
    [
        ("motion only where they fell", judge(Signal(T + 12, "pir", "kitchen", 1.0))),
        ("room unknown: no motion is 'elsewhere'", judge(Signal(T + 12, "pir", "bedroom", 1.0), room=None)),
        ("no motion sensors cannot vouch for silence", judge(pirs=False)),
        ("watched too briefly", judge(watched=20.0)),
    ],
)
def test_otherwise_the_home_neither_confirms_nor_doubts(case: str, j: object) -> None:
    assert j.verdict == "unconfirmed", case
    assert j.severity == "critical" and not j.escalate_now


def test_only_the_minute_after_the_impact_counts() -> None:
    assert judge(Signal(T + 2, "pir", "bedroom", 1.0)).verdict == "certain"  # the fall itself
    assert judge(Signal(T - 30, "door", "hall", 1.0)).verdict == "certain"  # before it
    assert judge(Signal(T + 61, "pir", "bedroom", 1.0)).verdict == "certain"  # after the minute
    assert judge(Signal(T + 20, "bed", "bedroom", 0.0)).verdict == "certain"  # out of bed is no alibi


# -- the engine, real database ---------------------------------------------------------------


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn, ack_timeouts=(60, 60, 60))


def fall_with_checkin(db_url: str, *, still: bool) -> dict[str, object]:
    context = {"room": "kitchen", "motion_elsewhere": [], "back_in_bed": False, "door": False, "still": still}
    return fall(sensor_of_res1(db_url)) | {
        "evidence": {"context": context, "checkin": {"window_s": 30, "answered": False}, "acc": {}}
    }


def reading(db_url: str, sensor: str, metric: str, after_s: float) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (ts, gateway_id, sensor_id, metric, value)"
            " VALUES (%s, 'gw-home-1', %s, %s, 1)",
            (datetime.fromtimestamp(NOW_MS / 1000 + after_s, UTC), sensor, metric),
        )


def test_silence_everywhere_makes_a_certain_fall_that_escalates_at_once(db_url: str, world: World) -> None:
    reading(db_url, "pir-kitchen", "motion", -20)  # before the impact: where they were
    queue(db_url, "event", "gw-home-1", "home-1", fall_with_checkin(db_url, still=True))
    assert with_pool(db_url, service.process_work) == 1
    ((severity, tier, summary),) = rows(db_url, "SELECT severity, tier, summary FROM alerts")
    assert (severity, tier, summary["home"]) == ("critical", 2, "certain")
    assert "escalated at once" in summary["en"] and "立即升级" in summary["zh-CN"]
    by_tier = rows(
        db_url,
        "SELECT DISTINCT n.tier, u.username FROM notifications n JOIN users u ON u.id = n.user_id"
        " ORDER BY 1, 2",
    )
    assert by_tier == [(1, "family1"), (1, "worker1"), (2, "station1")]  # tier 2 without waiting
    actions = [r[0] for r in rows(db_url, "SELECT action FROM alert_trail ORDER BY id")]
    assert actions == ["opened", "notified", "escalated", "notified"]


def test_motion_in_another_room_stored_by_the_platform_makes_it_doubtful(db_url: str, world: World) -> None:
    reading(db_url, "pir-bathroom", "motion", 25)  # the gateway reported none: seen in the database
    queue(db_url, "event", "gw-home-1", "home-1", fall_with_checkin(db_url, still=True))
    assert with_pool(db_url, service.process_work) == 1
    ((severity, tier, summary),) = rows(db_url, "SELECT severity, tier, summary FROM alerts")
    assert (severity, tier, summary["home"]) == ("high", 1, "doubtful")
    assert "movement in another room (bathroom)" in summary["en"]
    assert "其他房间（bathroom）有活动" in summary["zh-CN"]
    assert rows(db_url, "SELECT count(*) FROM alert_trail WHERE action = 'escalated'") == [(0,)]


def test_the_gateways_own_view_of_the_bed_makes_it_doubtful(db_url: str, world: World) -> None:
    ev = fall_with_checkin(db_url, still=False)
    ev["evidence"]["context"]["back_in_bed"] = True  # type: ignore[index]
    queue(db_url, "event", "gw-home-1", "home-1", ev)
    with_pool(db_url, service.process_work)
    assert rows(db_url, "SELECT severity, summary->>'home' FROM alerts") == [("high", "doubtful")]


def test_an_appliance_switched_on_is_a_sign_of_life_but_a_plug_first_heard_on_is_not() -> None:
    tv_before = Signal(T - 600, "plug", "living", 0.5, "plug-tv")
    tv_on = Signal(T + 15, "plug", "living", 95.0, "plug-tv")
    j = judge(tv_before, tv_on)
    assert j.verdict == "doubtful" and "an appliance was switched on (living)" in j.explain("en")
    assert "living有电器被打开" in j.explain("zh-CN")
    assert judge(tv_on).verdict == "certain"  # no reading before: when it went on is unknown
    kettle_on = Signal(T - 5, "plug", "kitchen", 0.0, "plug-kettle")
    assert judge(kettle_on, Signal(T + 15, "plug", "kitchen", 2000.0, "plug-stove")).verdict == "certain"


def _bench() -> ModuleType:
    """bench/fall_context.py, whose harness feeds simulated homes to the rule as the engine does."""
    path = Path(__file__).resolve().parent.parent / "bench" / "fall_context.py"
    spec = importlib.util.spec_from_file_location("bench_fall_context", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_on_simulated_homes_falls_stay_urgent_and_getting_up_from_bed_is_doubted() -> None:
    """A week of each of 6 simulated homes with two falls: the rule judges the falls (not doubted:
    nobody walks off after them) and every bed exit, where the detector's false alarms on the
    simulated days all came from (getting up hard): most are doubted, almost none made certain."""
    bench = _bench()
    clean = bench.run_homes(homes=6, days=7, seed=11, noisy=False)
    falls, bed = clean["falls"], clean["causes"]["get_up_hard"]
    assert sum(falls.values()) == 12
    assert falls.get("doubtful", 0) == 0 and falls.get("certain", 0) >= 10
    assert bed.get("doubtful", 0) >= 0.5 * sum(bed.values())
    assert bed.get("certain", 0) <= 0.05 * sum(bed.values())
    noisy = bench.run_homes(homes=6, days=7, seed=11, noisy=True)  # spurious PIR triggers can doubt
    assert noisy["falls"].get("doubtful", 0) <= 2
