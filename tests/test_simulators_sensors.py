"""Device models: batteries drain (early when told), radios lose in bursts, plausible climate and pulse."""

from __future__ import annotations

import math
import random
import statistics

from eldercare.simulators import sensors
from eldercare.simulators.routine import DAY, DEFAULT_START, HOUR, TruthRecord


def test_battery_drains_and_low_battery_incident_crosses_threshold() -> None:
    b = sensors.battery_for(1, "pir-kitchen", "pir", DEFAULT_START)
    assert b is not None
    assert b.level(DEFAULT_START + 30 * DAY) < b.level(DEFAULT_START)
    assert not b.is_low(DEFAULT_START + 30 * DAY)
    assert sensors.battery_for(1, "plug-tv", "plug", DEFAULT_START) is None
    t = DEFAULT_START + 10 * DAY
    truth = [TruthRecord("low_battery", "r", t, t, t + 2 * DAY, None, "pir-kitchen")]
    low = sensors.battery_for(1, "pir-kitchen", "pir", DEFAULT_START, truth)
    assert low is not None
    assert not low.is_low(t - HOUR) and low.is_low(t + HOUR)
    assert low.level(t + 2 * DAY + HOUR) > 0.95  # replaced
    # reported low from the incident's moment on, not minutes of drain later (the truth's time)
    assert low.reported(t - 1) >= sensors.LOW_BATTERY > low.reported(t + 1)


def test_radio_loses_in_bursts() -> None:
    radio = sensors.Radio(3, "gw", p_enter_bad=0.01)
    got = [radio.delivered() for _ in range(20_000)]
    lost = [i for i, ok in enumerate(got) if not ok]
    assert 0.005 < len(lost) / len(got) < 0.3
    runs = sum(1 for i in range(1, len(lost)) if lost[i] == lost[i - 1] + 1)
    assert runs > len(lost) * 0.3  # losses cluster


def test_env_and_heart_rate_plausible() -> None:
    temps = [sensors.env_reading(4, DEFAULT_START + h * HOUR)[0] for h in range(48)]
    assert min(temps) > 15 and max(temps) < 30 and max(temps) - min(temps) > 0.5
    assert sensors.env_reading(4, DEFAULT_START) == sensors.env_reading(4, DEFAULT_START)
    sleep = [sensors.heart_rate(1, "r", "sleep", DEFAULT_START + i * 60) for i in range(100)]
    walk = [sensors.heart_rate(1, "r", "walk", DEFAULT_START + i * 60) for i in range(100)]
    assert statistics.mean(walk) - statistics.mean(sleep) > 15  # type: ignore[arg-type]
    assert sensors.steps(1, "r", "walk", DEFAULT_START) > sensors.steps(1, "r", "sleep", DEFAULT_START)


def test_placement_rotation_is_orthonormal() -> None:
    for seed in range(20):
        p = sensors.Placement.draw(random.Random(seed))
        assert p.site in ("wrist", "pendant")
        m = p.rotation
        for i in range(3):
            for j in range(3):
                dot = sum(m[i][k] * m[j][k] for k in range(3))
                assert math.isclose(dot, 1.0 if i == j else 0.0, abs_tol=1e-9)


def test_the_wearables_steps_count_walks_and_stay_silent_when_off_out_or_asleep() -> None:
    """What the evaluation's homes send for a wearable: a reading a minute while worn and in range
    (none asleep, washing, out, or on a day left off), a walk's steps when the room changes, and
    (almost) nothing for a resident lying on the floor."""
    from eldercare.simulators.days import Segment
    from eldercare.simulators.sensors import WALK_STEPS, step_readings, steps

    d0 = 3 * 86_400.0
    segs = [
        Segment(d0, d0 + 3600, "sleep", "bedroom"),
        Segment(d0 + 3600, d0 + 7200, "tea", "kitchen"),
        Segment(d0 + 7200, d0 + 10800, "tv", "living"),
        Segment(d0 + 10800, d0 + 14400, "out", "out"),
        Segment(d0 + 14400, d0 + 18000, "down", "living"),
    ]
    worn_days = [
        bool(step_readings(s, "r", [Segment(d0 + 3600, d0 + 7200, "tea", "kitchen")], d0, d0 + 7200))
        for s in range(40)
    ]
    seed = worn_days.index(True)
    got = dict(step_readings(seed, "r", segs, d0, d0 + 18000))
    assert not [t for t in got if t < d0 + 3600 or d0 + 10800 <= t < d0 + 14400]  # asleep, out
    assert got[d0 + 7200] >= WALK_STEPS[0]  # from the kitchen to the living room
    assert max(n for t, n in got.items() if d0 + 7260 <= t < d0 + 10800) < 8  # watching TV
    assert max(n for t, n in got.items() if t >= d0 + 14460) < 8  # on the floor
    assert 0.6 < sum(worn_days) / len(worn_days) < 1.0  # some days it stays on the table
    assert steps(1, "r", "down", d0) <= 1.0 and steps(1, "r", "chores", d0) > 10
