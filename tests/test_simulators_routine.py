"""Resident routines: determinism, plausible statistics, and each incident's signature."""

from __future__ import annotations

import math
import random
import statistics
import time

import pytest

from eldercare.simulators.routine import (
    DAY,
    DEFAULT_START,
    HOUR,
    MINUTE,
    HomeSim,
    Incident,
    ResidentProfile,
    SimulationError,
    TruthRecord,
    random_incidents,
    simulate_home,
)

S = DEFAULT_START


def _hour(t: float) -> float:
    g = time.gmtime(t)
    return g.tm_hour + g.tm_min / 60


def test_same_seed_same_home_and_different_seed_different_home() -> None:
    a, b, c = simulate_home(11, 5), simulate_home(11, 5), simulate_home(12, 5)
    assert a.events == b.events and a.sensor_ids == b.sensor_ids and a.profile == b.profile
    assert a.events != c.events
    assert a.events == sorted(a.events)
    assert all(S <= e[0] < S + 5 * DAY for e in a.events)
    kinds = {e[1] for e in a.events}
    assert kinds <= {"pir", "door", "bed", "plug", "sos"}
    assert {"pir", "door", "bed", "plug"} <= kinds


def test_default_start_is_a_monday_midnight() -> None:
    g = time.gmtime(S)
    assert (g.tm_wday, g.tm_hour, g.tm_min) == (0, 0, 0)


def _nights(run_events: list[tuple[float, str, str, float]]) -> list[float]:
    """The last bed entry of each evening (after 19:00, before 03:00 the next day)."""
    beds: dict[int, float] = {}
    for t, kind, _, v in run_events:
        if kind == "bed" and v == 1.0:
            h = _hour(t)
            if h >= 19 or h < 3:
                day = int((t - S - 3 * HOUR) // DAY)
                beds.setdefault(day, t)  # first bed entry of the evening
    return [_hour(t) + (24 if _hour(t) < 12 else 0) for t in beds.values()]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_routine_statistics_are_plausible(seed: int) -> None:
    days = 14
    run = simulate_home(seed, days)
    bedtimes = _nights(run.events)
    assert len(bedtimes) >= days - 2
    assert 20.0 <= statistics.median(bedtimes) <= 24.5
    # bathroom visits: bathroom PIR episodes separated by at least 10 minutes
    visits, last = 0, -1e18
    for t, kind, room, _ in run.events:
        if kind == "pir" and room == "bathroom":
            if t - last > 10 * MINUTE:
                visits += 1
            last = t
    assert 3 <= visits / days <= 14
    kettle_on = sum(1 for t, k, r, v in run.events if k == "plug" and r == "kitchen" and v > 1800)
    assert 1 <= kettle_on / days <= 9
    per_day = len(run.events) / days
    assert 100 <= per_day <= 1500
    # nights have bathroom trips for most residents: bed exits between 00:00 and 05:00
    night_exits = sum(1 for t, k, _, v in run.events if k == "bed" and v == 0.0 and _hour(t) < 5)
    assert night_exits <= 4 * days


def test_pir_hold_off_and_door_pairs() -> None:
    run = simulate_home(21, 7)
    hold = run.profile.pir_holdoff_s
    last: dict[str, float] = {}
    for (t, kind, _, _), sensor in zip(run.events, run.sensor_ids, strict=True):
        if kind == "pir":
            assert t - last.get(sensor, -1e18) >= hold - 1e-6
            last[sensor] = t
    doors = [v for _, k, _, v in run.events if k == "door"]
    assert doors and all(doors[i] != doors[i + 1] for i in range(len(doors) - 1))


def test_station_days_are_long_silences_after_the_door() -> None:
    profile = ResidentProfile(station_days=(1, 3))  # Tuesday, Thursday
    run = simulate_home(5, 7, profile=profile)
    tuesday = S + 1 * DAY
    window = [e for e in run.events if tuesday + 9.5 * HOUR <= e[0] < tuesday + 14.5 * HOUR]
    assert window == []
    morning_doors = [
        e for e in run.events if e[1] == "door" and tuesday + 8 * HOUR <= e[0] < tuesday + 9.6 * HOUR
    ]
    assert [e[3] for e in morning_doors][:2] == [1.0, 0.0]
    monday = [e for e in run.events if S + 9.5 * HOUR <= e[0] < S + 14.5 * HOUR]
    assert monday  # not a station day: home activity


def test_weekends_differ_from_weekdays() -> None:
    wake_diff = []
    for seed in range(8):
        p = ResidentProfile.draw(seed)
        run = simulate_home(seed, 14, profile=p)
        exits = {}
        for t, k, _, v in run.events:
            h = _hour(t)
            if k == "bed" and v == 0.0 and 5 <= h <= 11:
                exits[int((t - S) // DAY)] = h  # the last morning exit: getting up
        wk = [h for d, h in exits.items() if d % 7 < 5]
        we = [h for d, h in exits.items() if d % 7 >= 5]
        wake_diff.append(statistics.mean(we) - statistics.mean(wk) - p.weekend_lie_in_h)
    assert abs(statistics.mean(wake_diff)) < 0.5  # weekend lie-in shows up in the data


def _events_between(run, t0: float, t1: float) -> list[tuple[float, str, str, float]]:
    return [e for e in run.events if t0 <= e[0] < t1]


def _one(run) -> TruthRecord:
    assert len(run.truth) == 1
    return run.truth[0]


def test_history_before_an_incident_is_unchanged() -> None:
    t = S + 3 * DAY + 15 * HOUR
    base = simulate_home(8, 5)
    with_fall = simulate_home(8, 5, incidents=[Incident("fall", t)])
    tr = _one(with_fall)
    assert [e for e in base.events if e[0] < tr.t - 60] == [e for e in with_fall.events if e[0] < tr.t - 60]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fall_signature(seed: int) -> None:
    run = simulate_home(seed, 4, incidents=[Incident("fall", S + 2 * DAY + 10.5 * HOUR)])
    tr = _one(run)
    assert tr.kind == "fall" and tr.end == pytest.approx(tr.t + 3 * HOUR)
    assert tr.alert_from == tr.t
    assert all(e[2] == tr.room for e in _events_between(run, tr.t + 30, tr.t + 11 * MINUTE) if e[1] == "pir")
    assert not [e for e in _events_between(run, tr.t + 11 * MINUTE, tr.end) if e[1] in ("pir", "door", "bed")]
    after = _events_between(run, tr.end, tr.end + 5 * MINUTE)
    assert after[0][1] == "door" and after[0][3] == 1.0  # someone comes in


def test_collapse_is_silence_to_the_end() -> None:
    run = simulate_home(4, 4, incidents=[Incident("collapse", S + 1 * DAY + 16 * HOUR)])
    tr = _one(run)
    assert tr.end is None
    assert [e for e in run.events if e[0] > tr.t + 60 and e[1] != "plug"] == []


def test_no_wake_signature() -> None:
    run = simulate_home(6, 4, incidents=[Incident("no_wake", S + 2 * DAY + 2 * HOUR)])
    tr = _one(run)
    assert 5 <= _hour(tr.t) <= 10  # the planned wake time is the truth's time
    assert tr.end == pytest.approx(tr.t + 4 * HOUR)
    stay = _events_between(run, tr.t - 10 * MINUTE, tr.end)
    assert not [e for e in stay if e[1] == "bed" or e[2] != "bedroom"]
    assert any(e[1] == "bed" and e[3] == 0.0 for e in _events_between(run, tr.end, tr.end + HOUR))


def test_night_wandering_signature() -> None:
    run = simulate_home(9, 4, incidents=[Incident("night_wandering", S + 2 * DAY + 1.5 * HOUR)])
    tr = _one(run)
    assert _hour(tr.t) < 6 or _hour(tr.t) > 21
    out = _events_between(run, tr.t - 5 * MINUTE, tr.t + 2 * MINUTE)
    assert ("bed", 0.0) in [(e[1], e[3]) for e in out]
    assert ("door", 1.0) in [(e[1], e[3]) for e in out]
    assert _events_between(run, tr.t + 2 * MINUTE, tr.end) == []
    back = _events_between(run, tr.end, tr.end + 10 * MINUTE)
    assert back[0][1] == "door"


def test_bathroom_too_long_signature() -> None:
    run = simulate_home(10, 4, incidents=[Incident("bathroom_too_long", S + 2 * DAY + 14 * HOUR)])
    tr = _one(run)
    assert tr.alert_from == tr.t + 30 * MINUTE and tr.end == tr.t + 90 * MINUTE
    inside = _events_between(run, tr.t + MINUTE, tr.end)
    assert inside and all(e[1] == "pir" and e[2] == "bathroom" for e in inside)
    with pytest.raises(SimulationError):
        simulate_home(10, 4, incidents=[Incident("bathroom_too_long", S + DAY, duration=600)])


def test_sos_signature() -> None:
    run = simulate_home(3, 3, incidents=[Incident("sos", S + DAY + 11 * HOUR)])
    tr = _one(run)
    presses = [e for e in run.events if e[1] == "sos"]
    assert presses == [(tr.t, "sos", tr.room, 1.0)]


def test_device_offline_and_gateway_outage_lose_events() -> None:
    t = S + DAY + 8 * HOUR
    base = simulate_home(3, 3)
    off = simulate_home(
        3, 3, incidents=[Incident("device_offline", t, duration=10 * HOUR, sensor="pir-kitchen")]
    )
    tr = _one(off)
    assert tr.sensor == "pir-kitchen"
    lost = [
        e
        for e, s in zip(base.events, base.sensor_ids, strict=True)
        if s == "pir-kitchen" and t <= e[0] < t + 10 * HOUR
    ]
    assert lost
    assert not [
        s
        for e, s in zip(off.events, off.sensor_ids, strict=True)
        if s == "pir-kitchen" and t <= e[0] < t + 10 * HOUR
    ]
    assert len(off.events) == len(base.events) - len(lost)

    gw = simulate_home(3, 3, incidents=[Incident("gateway_outage", t)])
    assert _events_between(gw, t, t + 2 * HOUR) == []
    assert _events_between(gw, t + 2 * HOUR, S + 3 * DAY) == _events_between(base, t + 2 * HOUR, S + 3 * DAY)


def test_low_battery_leaves_events_alone() -> None:
    base = simulate_home(3, 3)
    low = simulate_home(3, 3, incidents=[Incident("low_battery", S + DAY, sensor="pir-hall")])
    assert low.events == base.events and _one(low).sensor == "pir-hall"


def test_drop_and_spurious_rates() -> None:
    base = simulate_home(2, 7)
    dropped = simulate_home(2, 7, drop_rate=0.2)
    assert 0.7 < len(dropped.events) / len(base.events) < 0.9
    noisy = simulate_home(2, 7, spurious_rate=5.0)
    extra = len(noisy.events) - len(base.events)
    assert 5 * 5 * 7 * 0.6 < extra < 5 * 5 * 7 * 1.4  # 5 PIRs, 5 per day each, 7 days
    with pytest.raises(SimulationError):
        simulate_home(2, 7, drop_rate=1.5)


def test_motion_only_drop_loses_pir_events_alone() -> None:
    from collections import Counter

    base = simulate_home(2, 7)
    motion = simulate_home(2, 7, drop_rate=0.2, drop_kinds=("pir",))
    every = simulate_home(2, 7, drop_rate=0.2)
    n0, n1 = Counter(e[1] for e in base.events), Counter(e[1] for e in motion.events)
    assert n0["bed"] > 0 and n0["door"] > 0 and n0["plug"] > 0
    assert {k: v for k, v in n1.items() if k != "pir"} == {k: v for k, v in n0.items() if k != "pir"}
    assert 0.75 < n1["pir"] / n0["pir"] < 0.85
    # the same PIR events are lost as when every kind is dropped with the same seed
    assert [e for e in motion.events if e[1] == "pir"] == [e for e in every.events if e[1] == "pir"]
    assert [e for e in motion.events if e[1] != "pir"] == [e for e in base.events if e[1] != "pir"]


def test_stream_in_chunks_equals_one_shot() -> None:
    incs = [Incident("fall", S + 2 * DAY + 9 * HOUR), Incident("sos", S + 3 * DAY + 12 * HOUR)]
    run = simulate_home(13, 5, incidents=incs)
    sim = HomeSim(13, end=S + 5 * DAY)
    for inc in incs:
        sim.schedule(inc)
    got, t = [], S
    while t < S + 5 * DAY:
        t += 317.0
        got.extend(sim.pop_until(t))
    assert [(e.t, e.kind, e.room, e.value) for e in got] == run.events
    assert sim.truth == run.truth


def test_live_trigger_changes_only_the_future() -> None:
    sim = HomeSim(14)
    now = S + DAY + 15 * HOUR
    before = sim.pop_until(now)
    tr = sim.trigger(Incident("collapse", now - 3600))  # in the past: happens now
    assert tr is not None and tr.t >= now
    after = sim.pop_until(now + 2 * DAY)
    assert before and all(e.t < now for e in before)
    assert all(e.kind == "plug" for e in after if e.t > tr.t + 60)
    sim2 = HomeSim(14)
    sim2.pop_until(now)
    tr2 = sim2.trigger(Incident("sos", now))
    assert tr2 is not None
    assert next(e for e in sim2.pop_until(now + HOUR) if e.kind == "sos").t == now


def test_random_incidents() -> None:
    incs = random_incidents(random.Random(3), 28, ["fall", "no_wake", "sos", "night_wandering"], first_day=7)
    assert len(incs) == 4 and len({int((i.t - S) // DAY) for i in incs}) == 4
    assert all(S + 7 * DAY <= i.t < S + 28 * DAY for i in incs)
    run = simulate_home(3, 28, incidents=incs)
    assert sorted(tr.kind for tr in run.truth) == sorted(["fall", "no_wake", "sos", "night_wandering"])
    assert random_incidents(3, 28, ["fall"]) == random_incidents(3, 28, ["fall"])


def test_bad_incidents_are_refused() -> None:
    with pytest.raises(SimulationError, match="unknown incident kind"):
        Incident("earthquake", S)
    for kind in ("device_offline", "gateway_outage", "bathroom_too_long", "night_wandering", "no_wake"):
        with pytest.raises(SimulationError, match=f"{kind}: a duration of 0 is nothing happening"):
            Incident(kind, S, duration=0.0)
    assert Incident("fall", S, duration=0.0).effective_duration == 0.0  # down and up at once
    with pytest.raises(SimulationError, match="outside the run"):
        simulate_home(1, 2, incidents=[Incident("fall", S + 3 * DAY)])
    with pytest.raises(SimulationError, match="no sensor"):
        simulate_home(1, 2, incidents=[Incident("device_offline", S + DAY, sensor="pir-garage")])


def test_truth_json_round_trip() -> None:
    run = simulate_home(3, 3, incidents=[Incident("collapse", S + DAY + 12 * HOUR)])
    d = run.truth[0].to_json()
    assert d["end"] is None and TruthRecord.from_json(d) == run.truth[0]


@pytest.mark.parametrize(
    "kind",
    [
        "fall",
        "collapse",
        "no_wake",
        "night_wandering",
        "bathroom_too_long",
        "sos",
        "device_offline",
        "low_battery",
        "gateway_outage",
    ],
)
def test_every_kind_can_be_triggered_live(kind: str) -> None:
    sim = HomeSim(31)
    now = S + 2 * DAY + 13.5 * HOUR
    sim.pop_until(now)
    tr = sim.trigger(Incident(kind, now))
    assert tr is not None and tr.kind == kind and tr.t >= now
    later = sim.pop_until(now + 2 * DAY)
    assert all(e.t >= now for e in later)
    assert [e.t for e in later] == sorted(e.t for e in later)


def test_never_ending_incidents_live_do_not_hang() -> None:
    for kind in ("no_wake", "collapse", "night_wandering", "fall", "bathroom_too_long"):
        sim = HomeSim(24)
        now = S + DAY + 20 * HOUR
        sim.pop_until(now)
        tr = sim.trigger(Incident(kind, now, duration=math.inf))
        assert tr is not None and tr.end is None
        later = sim.pop_until(now + 3 * DAY)
        assert not [e for e in later if e.t > tr.t + 11 * MINUTE and e.kind in ("bed", "door")]
