"""Homes of two elders: two residents' routines in one home, sharing its fixed sensors.

Many adapted homes house a couple, and a couple is the hard case for home-sensor detectors: while
one lies on the floor the other still walks through the kitchen. :func:`simulate_couple` runs each
resident's day with :func:`~eldercare.simulators.routine.simulate_home` and merges them as the
home's sensors would see them: one set of PIRs (whose re-trigger hold-off now spans both people),
one front door and set of plugs, and a bed mat and SOS button each (``bed-2`` and ``sos-2`` for the
second resident). Partners keep similar hours (the second's wake and bed times are drawn close to
the first's).

Incidents name their resident (``Incident.resident``, default the first); device incidents
(``device_offline``, ``gateway_outage``, ``low_battery``) belong to the home and are recorded once.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Sequence

from eldercare.kinds import DEVICE_INCIDENT_KINDS
from eldercare.simulators.routine import (
    DEFAULT_START,
    HomeRun,
    Incident,
    ResidentProfile,
    SensorSpec,
    SimulationError,
    home_sensors,
    simulate_home,
)

DEVICE_KINDS = DEVICE_INCIDENT_KINDS
_RENAME = {"bed-1": "bed-2", "sos-1": "sos-2"}  # the second resident's own devices
_RENAME_BACK = {v: k for k, v in _RENAME.items()}


def partner_profiles(seed: int) -> tuple[ResidentProfile, ResidentProfile]:
    """Two residents of one home with similar hours."""
    r = random.Random(f"couple:{seed}")
    a = ResidentProfile.draw(r, "resident-1")
    b = ResidentProfile.draw(r, "resident-2")
    b = dataclasses.replace(
        b,
        wake_h=round(a.wake_h + r.uniform(-0.4, 0.4), 2),
        bed_h=round(a.bed_h + r.uniform(-0.5, 0.5), 2),
        weekend_lie_in_h=a.weekend_lie_in_h,
        has_stove_plug=a.has_stove_plug,
        pir_holdoff_s=a.pir_holdoff_s,
        pir_miss=a.pir_miss,
    )
    return a, b


def partner_of(first: ResidentProfile, seed: int, resident: str) -> ResidentProfile:
    """The second resident of ``first``'s home: own habits, similar hours, the same home's devices."""
    _, b = partner_profiles(seed)
    return dataclasses.replace(
        b,
        resident=resident,
        wake_h=round(first.wake_h + b.wake_h % 0.4 - 0.2, 2),
        bed_h=first.bed_h,
        weekend_lie_in_h=first.weekend_lie_in_h,
        pir_holdoff_s=first.pir_holdoff_s,
        pir_miss=first.pir_miss,
        has_stove_plug=first.has_stove_plug,
    )


def is_couple(seed: int, home: int, share: float) -> bool:
    """Whether home ``home`` of a neighbourhood or scenario with this seed houses two."""
    return share > 0 and random.Random(f"{seed}:couple:{home}").random() < share


def simulate_couple(
    seed: int,
    days: int,
    start: float = DEFAULT_START,
    incidents: Sequence[Incident] = (),
    profiles: tuple[ResidentProfile, ResidentProfile] | None = None,
    drop_rate: float = 0.0,
    spurious_rate: float = 0.0,
    site: str | None = None,
) -> HomeRun:
    """Like :func:`simulate_home` for a home of two; ``run.partner`` is the second resident."""
    a, b = profiles or partner_profiles(seed)
    if a.resident == b.resident:
        raise SimulationError("the two residents of a home need different ids")
    r = random.Random(f"couple:{seed}:devices")
    choices = [s.id for s in home_sensors(a) if s.kind != "plug"]
    mine: list[Incident] = []
    theirs: list[Incident] = []
    b_devices = False  # whether a device incident of the second resident's own devices is in theirs
    for inc in incidents:
        if inc.kind in DEVICE_KINDS:
            # one sensor for both halves, chosen here so that both drop the same one
            sensor = inc.sensor or (r.choice(choices) if inc.kind != "gateway_outage" else None)
            if sensor in _RENAME_BACK:  # the second resident's bed or button
                theirs.append(dataclasses.replace(inc, sensor=_RENAME_BACK[sensor]))
                b_devices = True
                continue
            inc = dataclasses.replace(inc, sensor=sensor)
            mine.append(inc)
            if inc.kind != "low_battery" and sensor not in _RENAME:
                theirs.append(inc)
        elif inc.resident in (None, a.resident):
            mine.append(inc)
        elif inc.resident == b.resident:
            theirs.append(inc)
        else:
            raise SimulationError(f"{inc.kind}: no resident {inc.resident!r} in this home")
    run_a = simulate_home(seed, days, start, mine, a, drop_rate, spurious_rate, site)
    run_b = simulate_home(seed ^ 0x5BD1E995, days, start, theirs, b, drop_rate, 0.0, site)
    hold = a.pir_holdoff_s
    last: dict[str, float] = {}
    events, ids = [], []
    merged = heapq.merge(
        zip(run_a.events, run_a.sensor_ids, strict=True),
        ((e, _RENAME.get(s, s)) for e, s in zip(run_b.events, run_b.sensor_ids, strict=True)),
    )
    for ev, sensor in merged:
        if ev[1] == "pir":
            if ev[0] - last.get(sensor, -1e18) < hold:
                continue  # one PIR, one hold-off, whoever moved
            last[sensor] = ev[0]
        events.append(ev)
        ids.append(sensor)
    truth = run_a.truth + [t for t in run_b.truth if t.kind not in DEVICE_KINDS]
    if b_devices:
        truth += [
            dataclasses.replace(t, sensor=_RENAME[t.sensor])
            for t in run_b.truth
            if t.kind in DEVICE_KINDS and t.sensor in _RENAME
        ]
    sensors = [*run_a.sensors, SensorSpec("bed-2", "bed", "bedroom"), SensorSpec("sos-2", "sos", "living")]
    return HomeRun(
        seed=seed,
        start=run_a.start,
        end=run_a.end,
        profile=a,
        sensors=sensors,
        events=events,
        sensor_ids=ids,
        truth=sorted(truth, key=lambda t: t.t),
        segments=run_a.segments,
        partner=b,
        partner_segments=run_b.segments,
    )
