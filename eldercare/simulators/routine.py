"""Residents' daily lives as home sensor event streams: seeded, reproducible, with ground truth.

A resident's life is planned as a timeline of *segments* (sleep, night bathroom trips, hygiene,
meals with kettle and stove, TV, naps, chores, outings, day-station visits, visitors); the
timeline is then *rendered* into what the home's sensors would report: PIR motion with a
re-trigger hold-off and missed detections, the front-door contact, bed pressure, smart plugs in
watts. Incidents are spliced into the timeline before it is rendered, and each one leaves a
:class:`TruthRecord` saying what happened and from when a detector should alert.

Public API (stable; the inactivity model's evaluation and the dataset writer use it)::

    from eldercare.simulators.routine import simulate_home, Incident, random_incidents

    run = simulate_home(seed=7, days=28)                       # start: DEFAULT_START, a Monday 00:00
    run.events      # list[(t_seconds, sensor_kind, room, value)], sorted by time, the detector format
    run.sensor_ids  # list[str], parallel to events: which sensor sent each one ("pir-kitchen", ...)
    run.truth       # list[TruthRecord]: kind, resident, t, alert_from, end, room, sensor, notes
    run.profile     # the ResidentProfile drawn from the seed (or the one passed in)
    run.segments    # the ground-truth activity timeline (Segment(start, end, activity, room))

    run = simulate_home(7, 14, incidents=[Incident("fall", DEFAULT_START + 9 * DAY + 10 * HOUR)])
    incidents = random_incidents(random.Random(1), days=28, kinds=["fall", "no_wake"])

Sensor kinds and values follow ``docs/simulators.md`` and the design notes: ``pir`` 1.0 = motion,
``door`` 1.0 opened / 0.0 closed (room ``hall``), ``bed`` 1.0 in bed / 0.0 out (room
``bedroom``), ``plug`` watts (kettle and stove in ``kitchen``, TV in ``living``), ``sos`` 1.0.
Times are seconds since the Unix epoch; the simulated home lives in UTC ("local-as-UTC"), so
hour-of-day arithmetic needs no time zone.

Incident kinds and their signatures (``Incident.duration`` None means the kind's default, see
:data:`DEFAULT_DURATION`; ``math.inf`` means it never ends):

* ``fall``: the resident goes down in the room they are in (if out, just after coming home; if
  asleep, after getting up); a few motions in that room while trying to get up, then nothing
  until someone arrives (door, hall, activity) ``duration`` later and the routine resumes.
* ``collapse``: no further activity at all (default: for the rest of the run).
* ``no_wake``: no bed exit on the next morning; ``t`` of the truth is the planned wake time.
* ``night_wandering``: at night the resident leaves bed and goes out of the front door, and
  comes back ``duration`` later.
* ``bathroom_too_long``: enters the bathroom and stays ``duration`` with little motion.
* ``sos``: a press of the SOS button where the resident is.
* ``device_offline`` / ``gateway_outage``: one sensor / every sensor reports nothing for
  ``duration`` (events are lost, as a live detector would see it).
* ``low_battery``: no change in the event stream; the battery curve is in :mod:`.sensors`.

After a collapse that never ends, later incidents that need the resident are ignored (no truth).

One resident per home in this version. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eldercare.kinds import CAUGHT_BY, INCIDENT_KINDS, RESIDENT_INCIDENT_KINDS
from eldercare.scoring import TruthRecord

DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0
DEFAULT_START = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday

OUT = "out"  # the resident is away from home (outing, station, wandering)
ROOMS = ("bedroom", "bathroom", "kitchen", "living", "hall")
SENSOR_KINDS = ("pir", "door", "bed", "plug", "sos")

DEFAULT_DURATION: dict[str, float] = {
    "fall": 3 * HOUR,  # until someone finds them
    "collapse": math.inf,
    "no_wake": 4 * HOUR,  # after the planned wake time
    "night_wandering": 2.5 * HOUR,
    "bathroom_too_long": 90 * MINUTE,
    "sos": 0.0,
    "device_offline": 12 * HOUR,
    "low_battery": 2 * DAY,  # until the battery is replaced
    "gateway_outage": 2 * HOUR,
}
# How long after its start a situation becomes alert-worthy; a detector alerting earlier is early.
BATHROOM_NORMAL_S = 30 * MINUTE
ALERT_KINDS = CAUGHT_BY  # the alert kinds that count as catching each incident kind

Event = tuple[float, str, str, float]  # (t, sensor_kind, room, value): the detector format


class SensorEvent(NamedTuple):
    """One rendered reading with the sensor that sent it."""

    t: float
    sensor: str
    kind: str
    room: str
    value: float


class SimulationError(ValueError):
    """An incident or parameter the simulator cannot honour."""


# Residents ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResidentProfile:
    """Habits of one resident; every day is drawn around these with its own jitter."""

    resident: str = "resident-1"
    wake_h: float = 7.0  # weekday wake time, hours after midnight
    weekend_lie_in_h: float = 0.5
    bed_h: float = 22.0
    sleep_jitter_h: float = 0.3  # day-to-day spread (sd) of wake and bed times
    night_trips: float = 1.2  # mean bathroom trips per night
    day_toilet_every_h: float = 2.5
    kettle_per_day: float = 4.0
    cooks_lunch: float = 0.6  # probability the stove is used for lunch
    cooks_dinner: float = 0.8
    tv_hours: float = 3.0
    nap_prob: float = 0.5
    nap_in_bed: float = 0.3
    outing_prob: float = 0.5  # weekday probability of going out (shopping, a walk)
    weekend_outing_prob: float = 0.4
    station_days: tuple[int, ...] = ()  # weekdays (0 = Monday) at the day station
    visitor_prob: float = 0.15
    weekend_visitor_prob: float = 0.45
    activity: float = 1.0  # scales the time between movements (>1: slower, fewer PIR events)
    pir_miss: float = 0.03  # probability a PIR misses a movement it should have seen
    pir_holdoff_s: float = 45.0  # PIR re-trigger hold-off
    has_stove_plug: bool = True

    @classmethod
    def draw(cls, rng: random.Random | int, resident: str = "resident-1") -> ResidentProfile:
        """A plausible, varied resident; ``rng`` may be a seed."""
        r = rng if isinstance(rng, random.Random) else random.Random(f"profile:{rng}")
        n_station = r.choices((0, 1, 2, 3), weights=(4, 2, 3, 1))[0]
        station_days = tuple(sorted(r.sample(range(5), n_station)))
        return cls(
            resident=resident,
            wake_h=round(r.uniform(5.75, 8.5), 2),
            weekend_lie_in_h=round(r.uniform(0.0, 1.0), 2),
            bed_h=round(r.uniform(20.75, 23.5), 2),
            sleep_jitter_h=round(r.uniform(0.15, 0.45), 2),
            night_trips=round(r.uniform(0.3, 2.8), 2),
            day_toilet_every_h=round(r.uniform(2.0, 3.5), 2),
            kettle_per_day=round(r.uniform(2.0, 6.5), 2),
            cooks_lunch=round(r.uniform(0.2, 0.9), 2),
            cooks_dinner=round(r.uniform(0.5, 0.95), 2),
            tv_hours=round(r.uniform(1.0, 5.0), 2),
            nap_prob=round(r.uniform(0.1, 0.9), 2),
            nap_in_bed=round(r.uniform(0.0, 0.7), 2),
            outing_prob=round(r.uniform(0.2, 0.8), 2),
            weekend_outing_prob=round(r.uniform(0.1, 0.6), 2),
            station_days=station_days,
            visitor_prob=round(r.uniform(0.05, 0.3), 2),
            weekend_visitor_prob=round(r.uniform(0.2, 0.7), 2),
            activity=round(r.uniform(0.7, 1.5), 2),
            pir_miss=round(r.uniform(0.01, 0.06), 3),
            pir_holdoff_s=float(r.choice((30, 30, 45, 60))),
            has_stove_plug=r.random() < 0.8,
        )


def home_sensors(profile: ResidentProfile) -> list[SensorSpec]:
    """The fixed sensors of a one-resident home."""
    specs = [SensorSpec(f"pir-{room}", "pir", room) for room in ROOMS]
    specs += [
        SensorSpec("door-front", "door", "hall"),
        SensorSpec("bed-1", "bed", "bedroom"),
        SensorSpec("plug-kettle", "plug", "kitchen", "kettle"),
        SensorSpec("plug-tv", "plug", "living", "tv"),
        SensorSpec("sos-1", "sos", "living"),
    ]
    if profile.has_stove_plug:
        specs.append(SensorSpec("plug-stove", "plug", "kitchen", "stove"))
    return specs


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """A fixed sensor of a home; ``appliance`` names what a plug powers."""

    id: str
    kind: str
    room: str
    appliance: str | None = None


# Incidents and truth ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incident:
    """Something to make happen at ``t`` (epoch s). ``duration`` None: the kind's default."""

    kind: str
    t: float
    duration: float | None = None
    room: str | None = None  # fall / collapse: where (default: where the resident is)
    sensor: str | None = None  # device_offline / low_battery: which sensor (default: drawn)
    resident: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            msg = f"unknown incident kind {self.kind!r}; expected one of {', '.join(INCIDENT_KINDS)}"
            raise SimulationError(msg)
        if self.duration is not None and self.duration < 0:
            msg = f"{self.kind}: duration must be >= 0, not {self.duration}"
            raise SimulationError(msg)
        if self.room is not None and self.room not in ROOMS:
            msg = f"{self.kind}: unknown room {self.room!r}; expected one of {', '.join(ROOMS)}"
            raise SimulationError(msg)

    @property
    def effective_duration(self) -> float:
        return DEFAULT_DURATION[self.kind] if self.duration is None else self.duration


def random_incidents(
    rng: random.Random | int,
    days: int,
    kinds: Iterable[str],
    start: float = DEFAULT_START,
    first_day: int = 0,
) -> list[Incident]:
    """One incident per entry of ``kinds`` on distinct days (while days last), at a plausible hour.

    ``first_day`` keeps the first days free, e.g. 7 to leave a week of normal history. A
    ``collapse`` (which ends all activity) takes the last of the chosen days.
    """
    r = rng if isinstance(rng, random.Random) else random.Random(rng)
    kinds = list(kinds)
    span = list(range(first_day, days))
    if not span:
        msg = f"no day to place incidents: first_day {first_day} >= days {days}"
        raise SimulationError(msg)
    chosen = r.sample(span, len(kinds)) if len(kinds) <= len(span) else [r.choice(span) for _ in kinds]
    if "collapse" in kinds:  # a collapse ends the resident's story: put it on the last day
        kinds.sort(key=lambda k: k == "collapse")
        last = max(chosen)
        chosen.sort(key=lambda d: d == last)
    out = []
    for kind, day in zip(kinds, chosen, strict=True):
        if kind == "no_wake":
            hour = r.uniform(2.0, 4.0)  # during the night before the morning that goes wrong
        elif kind == "night_wandering":
            hour = r.uniform(0.5, 4.0)
        elif kind in ("device_offline", "low_battery", "gateway_outage"):
            hour = r.uniform(0.0, 24.0)
        else:
            hour = r.uniform(8.5, 20.5)
        out.append(Incident(kind, start + day * DAY + hour * HOUR))
    return sorted(out, key=lambda i: i.t)


# The activity timeline ------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    """The resident doing ``activity`` in ``room`` over [start, end)."""

    start: float
    end: float
    activity: str
    room: str
    interrupted: bool = False  # cut short by an incident: appliances stay as they were
    cont: bool = False  # continues the previous segment: no arrival, no appliance starts
    planned_end: float | None = None  # the end before an incident cut it short


@dataclass(frozen=True, slots=True)
class _Act:
    gap: float | None  # mean seconds between movements; None: still
    seen: float = 1.0  # probability a movement is in a PIR's view (lower under a duvet)
    in_bed: bool = False
    appliances: tuple[tuple[str, float], ...] = ()


ACTIVITIES: dict[str, _Act] = {
    "sleep": _Act(5400, 0.3, in_bed=True),
    "nap_bed": _Act(3600, 0.3, in_bed=True),
    "stuck_in_bed": _Act(5400, 0.3, in_bed=True),
    "collapsed_in_bed": _Act(None, in_bed=True),
    "night_toilet": _Act(25),
    "toilet": _Act(25),
    "hygiene": _Act(20),
    "dress": _Act(30),
    "getup": _Act(10),
    "walk": _Act(8),
    "breakfast": _Act(40, appliances=(("kettle", 0.85), ("stove", 0.2))),
    "cook": _Act(25, appliances=(("stove", 1.0), ("kettle", 0.2))),
    "eat": _Act(120),
    "tea": _Act(45, appliances=(("kettle", 1.0),)),
    "tv": _Act(500, appliances=(("tv", 1.0),)),
    "rest": _Act(300),
    "nap_chair": _Act(2400, 0.5),
    "chores": _Act(30),
    "visit": _Act(25, appliances=(("kettle", 0.7),)),
    "rescue": _Act(15),
    "down": _Act(None),
    "collapsed": _Act(None),
    "bathroom_long": _Act(None),
    "out": _Act(None),
    "station": _Act(None),
    "wander_out": _Act(None),
}
_ADJACENT = {frozenset(("kitchen", "living")), frozenset(("bedroom", "bathroom"))}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _is_weekend(t: float) -> bool:
    return time.gmtime(t).tm_wday >= 5


class _DayPlanner:
    """Plans one day (wake to next wake) of segments from the profile and a per-day RNG."""

    def __init__(self, seed: int, profile: ResidentProfile, start: float) -> None:
        self.seed, self.p, self.start = seed, profile, start

    def midnight(self, d: int) -> float:
        return self.start + d * DAY

    def wake(self, d: int) -> float:
        r = random.Random(f"{self.seed}:wake:{d}")
        m = self.midnight(d)
        h = self.p.wake_h + (self.p.weekend_lie_in_h if _is_weekend(m) else 0.0)
        h += max(-1.5, min(1.5, r.gauss(0.0, self.p.sleep_jitter_h)))
        if self.station_day(d):
            h = min(h, 7.6 + r.uniform(-0.2, 0.1))  # must be ready for the station's bus
        return m + h * HOUR

    def bedtime(self, d: int) -> float:
        r = random.Random(f"{self.seed}:bed:{d}")
        h = self.p.bed_h + max(-1.5, min(1.5, r.gauss(0.0, self.p.sleep_jitter_h)))
        return self.midnight(d) + h * HOUR

    def station_day(self, d: int) -> bool:
        return time.gmtime(self.midnight(d)).tm_wday in self.p.station_days

    def night(self, seed_key: str, bed: float, wake: float) -> list[Segment]:
        """Sleep from ``bed`` to ``wake`` with night bathroom trips."""
        r = random.Random(f"{self.seed}:night:{seed_key}")
        lo, hi = bed + 45 * MINUTE, wake - 30 * MINUTE
        trips: list[float] = []
        if hi > lo:
            for t in sorted(r.uniform(lo, hi) for _ in range(_poisson(r, self.p.night_trips))):
                if not trips or t - trips[-1] > 40 * MINUTE:
                    trips.append(t)
        segs, cursor = [], bed
        for t in trips:
            segs.append(Segment(cursor, t, "sleep", "bedroom"))
            back = t + r.uniform(2, 6) * MINUTE
            segs.append(Segment(t, back, "night_toilet", "bathroom"))
            cursor = back
        segs.append(Segment(cursor, wake, "sleep", "bedroom"))
        return segs

    def day(self, d: int) -> list[Segment]:
        """Day ``d`` from its wake time to the next day's wake time."""
        p = self.p
        r = random.Random(f"{self.seed}:day:{d}")
        m = self.midnight(d)
        weekend = _is_weekend(m)
        wake, bed, next_wake = self.wake(d), self.bedtime(d), self.wake(d + 1)
        segs: list[Segment] = []
        cursor = wake

        def add(activity: str, minutes: float, room: str) -> None:
            nonlocal cursor
            end = cursor + minutes * MINUTE
            segs.append(Segment(cursor, end, activity, room))
            cursor = end

        add("toilet", r.uniform(3, 8), "bathroom")
        add("hygiene", r.uniform(8, 25), "bathroom")
        add("dress", r.uniform(5, 12), "bedroom")
        add("breakfast", r.uniform(15, 25), "kitchen")
        add("eat", r.uniform(8, 20), "kitchen")

        awake_h = max(1.0, (bed - wake) / HOUR)
        n_visit_kettle = 0
        visit = r.random() < (p.weekend_visitor_prob if weekend else p.visitor_prob)
        if visit:
            n_visit_kettle = 1
        n_tea = _poisson(r, max(0.0, p.kettle_per_day - 0.85 - 0.7 * n_visit_kettle))
        teas = sorted(r.uniform(wake + HOUR, bed - HOUR) for _ in range(n_tea))
        station = self.station_day(d)
        outing = not station and r.random() < (p.weekend_outing_prob if weekend else p.outing_prob)
        tv_share = min(0.8, p.tv_hours / awake_h * 1.6)
        fill = _Filler(r, p, segs, teas, tv_share)

        lunch = m + r.uniform(11.75, 12.75) * HOUR
        if station:
            leave = m + (9.0 + r.uniform(-0.3, 0.3)) * HOUR
            back = m + (15.5 + r.uniform(-0.4, 0.5)) * HOUR
            cursor = fill.until(cursor, leave - 5 * MINUTE)
            add("toilet", r.uniform(2, 5), "bathroom")
            segs.append(Segment(cursor, back, "station", OUT))
            cursor = back
        else:
            if outing and r.random() < 0.6:  # a morning outing (market, a walk)
                go = r.uniform(cursor + 20 * MINUTE, max(cursor + 25 * MINUTE, lunch - 100 * MINUTE))
                cursor = fill.until(cursor, go)
                add("out", r.uniform(45, 100), OUT)
                outing = False
            cursor = fill.until(cursor, lunch)
            if r.random() < p.cooks_lunch:
                add("cook", r.uniform(20, 40), "kitchen")
            add("eat", r.uniform(15, 25), "kitchen")
            if r.random() < p.nap_prob:
                if r.random() < p.nap_in_bed:
                    add("nap_bed", r.uniform(30, 90), "bedroom")
                else:
                    add("nap_chair", r.uniform(20, 60), "living")
        dinner = max(cursor + 30 * MINUTE, m + r.uniform(17.25, 18.5) * HOUR)
        if visit:
            come = r.uniform(cursor + 10 * MINUTE, max(cursor + 15 * MINUTE, dinner - 130 * MINUTE))
            cursor = fill.until(cursor, come)
            add("visit", r.uniform(50, 120), "living")
        if outing:
            go = r.uniform(cursor + 10 * MINUTE, max(cursor + 15 * MINUTE, dinner - 110 * MINUTE))
            cursor = fill.until(cursor, go)
            add("out", r.uniform(40, 100), OUT)
        cursor = fill.until(cursor, max(cursor, dinner))
        if r.random() < p.cooks_dinner:
            add("cook", r.uniform(25, 45), "kitchen")
        add("eat", r.uniform(20, 30), "kitchen")
        evening_end = max(cursor + 10 * MINUTE, bed - 20 * MINUTE)
        cursor = fill.until(cursor, evening_end, evening=True)
        add("hygiene", r.uniform(8, 15), "bathroom")
        add("dress", r.uniform(3, 8), "bedroom")
        segs.extend(self.night(str(d), cursor, max(next_wake, cursor + 4 * HOUR)))
        return segs


class _Filler:
    """Fills free time with chores, rest, TV, tea and toilet visits."""

    def __init__(
        self, r: random.Random, p: ResidentProfile, segs: list[Segment], teas: list[float], tv_share: float
    ) -> None:
        self.r, self.p, self.segs, self.teas, self.tv_share = r, p, segs, teas, tv_share
        self.next_toilet = (segs[0].start if segs else 0.0) + p.day_toilet_every_h * HOUR

    def until(self, cursor: float, until: float, evening: bool = False) -> float:
        r, p = self.r, self.p
        while until - cursor > 4 * MINUTE:
            if cursor >= self.next_toilet:
                act, room, minutes = "toilet", "bathroom", r.uniform(2, 6)
                self.next_toilet = cursor + r.uniform(0.7, 1.3) * p.day_toilet_every_h * HOUR
            elif self.teas and cursor >= self.teas[0]:
                self.teas.pop(0)
                act, room, minutes = "tea", "kitchen", r.uniform(6, 15)
            else:
                x = r.random()
                tv = self.tv_share * (1.6 if evening else 0.6)
                if x < tv:
                    act, room, minutes = "tv", "living", r.uniform(25, 80)
                elif x < tv + (0.15 if evening else 0.45):
                    act, minutes = "chores", r.uniform(10, 40)
                    room = r.choice(("kitchen", "living", "bedroom", "kitchen"))
                else:
                    act, room, minutes = "rest", "living", r.uniform(15, 50)
            end = min(until, cursor + minutes * MINUTE)
            if self.segs and self.segs[-1].activity == act and self.segs[-1].room == room:
                self.segs[-1].end = end
            else:
                self.segs.append(Segment(cursor, end, act, room))
            cursor = end
        if self.segs and cursor < until:
            self.segs[-1].end = until  # absorb the small remainder
            cursor = until
        return cursor


# The home: plan, splice incidents, render ---------------------------------------------------------


class Pen:
    """Writes one segment's sensor events: only inside [s0, s1), a motion sensor only past its hold-off."""

    def __init__(self, sim: HomeSim, r: random.Random, s0: float, s1: float) -> None:
        self.sim, self.r, self.s0, self.s1 = sim, r, s0, s1
        self.ev: list[SensorEvent] = []

    def emit(self, t: float, sensor: str, kind: str, where: str, value: float) -> bool:
        if self.s0 <= t < self.s1:
            self.ev.append(SensorEvent(round(t, 3), sensor, kind, where, value))
            return True
        return False

    def move(self, t: float, where: str) -> None:
        """The resident moves in ``where``: its PIR fires unless re-arming or it misses them."""
        sensor, sim = "pir-" + where, self.sim
        if t - sim._pir_last.get(sensor, -1e18) < sim.profile.pir_holdoff_s:
            return
        if self.r.random() < sim.profile.pir_miss:
            return
        sim._pir_last[sensor] = t
        self.emit(t, sensor, "pir", where, 1.0)


@dataclass(slots=True)
class Occasion:
    """An incident about to be applied: when it happens, what the resident is doing then, notes."""

    inc: Incident
    t: float
    where: Segment
    resident: str
    notes: list[str] = field(default_factory=list)


class HomeSim:
    """One home as a lazily rendered, time-ordered event stream.

    :func:`simulate_home` wraps it for a fixed number of days; the live runner keeps one per
    home and calls :meth:`pop_until` as its clock advances, and :meth:`trigger` for incidents
    fired while it runs. Memory stays at about a day of plan plus one segment of events.
    """

    def __init__(
        self,
        seed: int,
        start: float = DEFAULT_START,
        profile: ResidentProfile | None = None,
        *,
        end: float = math.inf,
        drop_rate: float = 0.0,
        spurious_rate: float = 0.0,
        keep_segments: bool = False,
        site: str | None = None,
        drop_kinds: Collection[str] | None = None,
    ) -> None:
        if not 0.0 <= drop_rate < 1.0:
            msg = f"drop_rate must be in [0, 1), not {drop_rate}"
            raise SimulationError(msg)
        if spurious_rate < 0:
            msg = f"spurious_rate (per PIR per day) must be >= 0, not {spurious_rate}"
            raise SimulationError(msg)
        self.seed, self.start, self.end, self.site = seed, float(start), end, site
        self.profile = profile or ResidentProfile.draw(seed)
        self.sensors = home_sensors(self.profile)
        self.drop_rate, self.spurious_rate = drop_rate, spurious_rate
        # sensor kinds the radio loses (None: all); e.g. ("pir",) for lost motion events only
        self.drop_kinds = None if drop_kinds is None else frozenset(drop_kinds)
        self.truth: list[TruthRecord] = []
        self.segments: list[Segment] | None = [] if keep_segments else None
        self._planner = _DayPlanner(seed, self.profile, self.start)
        self._pirs = [s.id for s in self.sensors if s.kind == "pir"]
        self._plugs: dict[str, str] = {s.appliance: s.id for s in self.sensors if s.appliance}
        self._rng = random.Random(f"{seed}:incidents")
        # plan
        wake0 = self._planner.wake(0)
        self._planned: list[Segment] = self._planner.night("-1", self.start, wake0)
        self._wakes: list[float] = [wake0]
        self._next_day = 0
        self._planned_until = wake0
        self._frozen: Segment | None = None  # an activity that never ends (collapse)
        self._pending: list[tuple[float, int, Incident]] = []
        self._n_pending = 0
        self._extras: list[SensorEvent] = []  # heap: SOS presses, spurious triggers
        self._spurious_until = self.start
        self._windows: list[tuple[str | None, float, float]] = []  # dropped (sensor|all, from, to)
        # render state
        self._buffer: list[SensorEvent] = []
        self._pos = 0
        self._released = self.start
        self._room = "bedroom"
        self._in_bed = True
        self._on: dict[str, bool] = {}
        self._pir_last: dict[str, float] = {}
        self._spurious(self._planned_until)

    # planning ----------------------------------------------------------------------------------

    def _plan_more(self) -> None:
        if self._frozen is not None:
            f = self._frozen
            seg = Segment(self._planned_until, self._planned_until + DAY, f.activity, f.room, cont=True)
            self._planned.append(seg)
            self._planned_until = seg.end
        else:
            segs = self._planner.day(self._next_day)
            self._next_day += 1
            self._wakes.append(self._planner.wake(self._next_day))
            until = self._planned_until
            if segs and segs[0].start > until and self._planned:
                self._planned[-1].end = segs[0].start  # a wake jitter gap: stay asleep
            segs = [s for s in segs if s.end > until + 60]  # a late night overlapping the new day
            if segs and segs[0].start < until:
                segs[0].start = until
            self._planned.extend(s for s in segs if s.end > s.start)
            self._planned_until = self._planned[-1].end
        self._spurious(self._planned_until)

    def _ensure_planned(self, t: float) -> None:
        while self._planned_until <= t and self._planned_until < self.end:
            self._plan_more()

    def _spurious(self, until: float) -> None:
        if self.spurious_rate <= 0 or until <= self._spurious_until:
            return
        lo, hi = self._spurious_until, min(until, self.end)
        if not math.isfinite(hi):
            return
        r = random.Random(f"{self.seed}:spurious:{lo:.0f}")
        for sensor in self._pirs:
            for _ in range(_poisson(r, self.spurious_rate * (hi - lo) / DAY)):
                t = round(r.uniform(lo, hi), 3)
                heapq.heappush(self._extras, SensorEvent(t, sensor, "pir", sensor[4:], 1.0))
        self._spurious_until = hi

    # incidents -----------------------------------------------------------------------------------

    def schedule(self, incident: Incident) -> None:
        """Make ``incident`` happen when the stream reaches its time."""
        if self._current is not None and incident.t < self._current.end:
            self.trigger(incident)
            return
        heapq.heappush(self._pending, (incident.t, self._n_pending, incident))
        self._n_pending += 1

    def trigger(self, incident: Incident) -> TruthRecord | None:
        """Make ``incident`` happen now: at ``incident.t`` or, if already past, at the released time."""
        now = max(incident.t, self._released)
        self._rollback(now)
        inc = Incident(
            incident.kind, now, incident.duration, incident.room, incident.sensor, incident.resident
        )
        return self._apply(inc)

    def out_between(self, t0: float, t1: float) -> bool:
        """Whether the resident is planned to be away from home at any time in ``[t0, t1]``."""
        self._ensure_planned(t1 + DAY)
        i, j = self._seg_index(t0), self._seg_index(t1)
        return any(s.room == OUT for s in self._planned[i : j + 1])

    def _seg_index(self, t: float) -> int:
        starts = [s.start for s in self._planned]
        return max(0, bisect.bisect_right(starts, t) - 1)

    def _splice(self, t0: float, new: list[Segment]) -> None:
        """Replace the plan from ``t0`` to the end of ``new`` with ``new``."""
        t1 = new[-1].end if new else t0
        self._ensure_planned(t1 + HOUR)
        kept: list[Segment] = []
        for s in self._planned:
            if s.end <= t0 or s.start >= t1:
                kept.append(s)
                continue
            if s.start < t0:
                kept.append(Segment(s.start, t0, s.activity, s.room, True, s.cont, s.planned_end or s.end))
            if s.end > t1 and math.isfinite(t1):
                kept.append(Segment(t1, s.end, s.activity, s.room))
        kept.extend(s for s in new if s.end > s.start)
        kept.sort(key=lambda s: s.start)
        self._planned = kept
        if not math.isfinite(t1):
            self._planned_until = math.inf

    def _forever(self, t0: float, activity: str, room: str) -> None:
        """From ``t0`` on, ``activity`` until the end of the run (chunked by day)."""
        self._planned = [s for s in self._planned if s.end <= t0 or s.start < t0]
        if self._planned and self._planned[-1].end > t0:
            last = self._planned[-1]
            self._planned[-1] = Segment(
                last.start, t0, last.activity, last.room, True, last.cont, last.planned_end or last.end
            )
        first = Segment(t0, min(self.end, t0 + DAY), activity, room)
        self._planned.append(first)
        self._planned_until = first.end
        self._frozen = first

    def _situation(self, t: float) -> Segment:
        self._ensure_planned(t + DAY)
        return self._planned[self._seg_index(t)] if self._planned else Segment(t, t, "rest", "living")

    def _apply(self, inc: Incident) -> TruthRecord | None:
        """Change the plan from the incident's time on; returns the ground truth it left."""
        if self._frozen is not None and inc.kind in RESIDENT_INCIDENT_KINDS:
            return None  # after a collapse nothing else happens to the resident
        t = max(inc.t, self._released)
        at = Occasion(inc, t, self._situation(t), inc.resident or self.profile.resident)
        if at.where.room == OUT and inc.kind in ("fall", "collapse", "bathroom_too_long", "sos"):
            at.t = max(t, at.where.end) + self._rng.uniform(1, 5) * MINUTE
            at.notes.append("resident was out; it happened soon after coming home")
            at.where = self._situation(at.t)
            if at.where.room == OUT:
                at.where = Segment(at.t, at.t, "walk", "hall")
        apply = {
            "fall": self._fall,
            "collapse": self._fall,
            "no_wake": self._no_wake,
            "night_wandering": self._night_wandering,
            "bathroom_too_long": self._bathroom_too_long,
            "sos": self._sos,
            "device_offline": self._device,
            "low_battery": self._device,
        }.get(inc.kind, self._gateway_outage)
        return apply(at)

    def _fall(self, at: Occasion) -> TruthRecord:
        """A fall (down until found) or a collapse (no more movement at all)."""
        kind, r, s, t, dur = at.inc.kind, self._rng, at.where, at.t, at.inc.effective_duration
        if ACTIVITIES[s.activity].in_bed and kind == "collapse":
            wake = self._wakes[bisect.bisect_right(self._wakes, t)] if t < self._wakes[-1] else t
            self._forever(t, "collapsed_in_bed", "bedroom")
            at.notes = ["collapsed in bed: visible from the planned wake time"]
            return self._truth(at, t, alert_from=max(t, wake), end=None, room="bedroom")
        room = at.inc.room or ("bedroom" if s.room == OUT else s.room)
        pre: list[Segment] = []
        if ACTIVITIES[s.activity].in_bed:
            up = t + r.uniform(20, 60)
            pre.append(Segment(t, up, "getup", "bedroom"))
            at.notes.append("got out of bed first")
            t = up
        elif room != s.room and s.room != OUT:
            step = t + r.uniform(10, 30)
            pre.append(Segment(t, step, "walk", room))
            t = step
        act = "down" if kind == "fall" else "collapsed"
        if not math.isfinite(dur):
            if pre:
                self._splice(pre[0].start, pre)
            self._forever(t, act, room)
            return self._truth(at, t, alert_from=t, end=None, room=room)
        rescue_end = t + dur + r.uniform(30, 60) * MINUTE
        self._splice(
            pre[0].start if pre else t,
            [*pre, Segment(t, t + dur, act, room), Segment(t + dur, rescue_end, "rescue", room)],
        )
        return self._truth(at, t, alert_from=t, end=t + dur, room=room)

    def _no_wake(self, at: Occasion) -> TruthRecord:
        """Still in bed past the next planned wake time."""
        t, dur = at.t, at.inc.effective_duration
        i = bisect.bisect_right(self._wakes, t)
        while i >= len(self._wakes):
            self._plan_more()
        wake = self._wakes[i]
        self._ensure_planned(wake + (dur if math.isfinite(dur) else 0.0) + DAY)
        last_sleep = self._planned[self._seg_index(wake - 1.0)]
        t0 = max(t, last_sleep.start) if last_sleep.activity == "sleep" else max(t, wake - HOUR)
        if not math.isfinite(dur):
            self._forever(t0, "stuck_in_bed", "bedroom")
            at.notes = ["never got up"]
            return self._truth(at, wake, alert_from=wake, end=None, room="bedroom")
        rescue = wake + dur + self._rng.uniform(30, 60) * MINUTE
        new = [
            Segment(t0, wake + dur, "stuck_in_bed", "bedroom"),
            Segment(wake + dur, rescue, "rescue", "bedroom"),
        ]
        self._splice(t0, new)
        at.notes = [f"planned wake {wake:.0f}; stayed in bed"]
        return self._truth(at, wake, alert_from=wake, end=wake + dur, room="bedroom")

    def _night_wandering(self, at: Occasion) -> TruthRecord | None:
        """Up at night and out of the front door (back after the duration, or never)."""
        r, s, t, dur = self._rng, at.where, at.t, at.inc.effective_duration
        if s.activity != "sleep" or s.end - t < 30 * MINUTE:
            long_sleep = [x for x in self._planned if x.activity == "sleep" and x.end - x.start > 2 * HOUR]
            cand = [x for x in long_sleep if x.start > t]
            if not cand:
                return None
            x = cand[0]
            t = x.start + r.uniform(0.3, 0.6) * (x.end - x.start)
            at.notes.append("moved to the next night")
        up = t + r.uniform(30, 90)
        hall = up + r.uniform(20, 60)
        pre = [Segment(t, up, "getup", "bedroom"), Segment(up, hall, "walk", "hall")]
        if not math.isfinite(dur):
            self._splice(t, pre)
            self._forever(hall, "wander_out", OUT)
            at.notes.append("never came back")
            return self._truth(at, hall, alert_from=hall, end=None, room="hall")
        back = hall + dur
        new = [
            *pre,
            Segment(hall, back, "wander_out", OUT),
            Segment(back, back + r.uniform(2, 5) * MINUTE, "walk", "hall"),
        ]
        self._splice(t, new)
        return self._truth(at, hall, alert_from=hall, end=back, room="hall")

    def _bathroom_too_long(self, at: Occasion) -> TruthRecord:
        """In the bathroom far longer than a visit (alert-worthy after BATHROOM_NORMAL_S)."""
        t, dur = at.t, at.inc.effective_duration
        pre = []
        t0 = t
        if ACTIVITIES[at.where.activity].in_bed:
            t = t + self._rng.uniform(20, 60)
            pre.append(Segment(t0, t, "getup", "bedroom"))
        if dur <= BATHROOM_NORMAL_S:
            msg = f"bathroom_too_long: duration must exceed {BATHROOM_NORMAL_S / 60:.0f} min"
            raise SimulationError(msg)
        alert_from = t + BATHROOM_NORMAL_S
        if not math.isfinite(dur):
            if pre:
                self._splice(t0, pre)
            self._forever(t, "bathroom_long", "bathroom")
            return self._truth(at, t, alert_from=alert_from, end=None, room="bathroom")
        self._splice(t0, [*pre, Segment(t, t + dur, "bathroom_long", "bathroom")])
        return self._truth(at, t, alert_from=alert_from, end=t + dur, room="bathroom")

    def _sos(self, at: Occasion) -> TruthRecord:
        room = at.where.room if at.where.room != OUT else "hall"
        self._insert_extra(SensorEvent(round(at.t, 3), "sos-1", "sos", room, 1.0))
        return self._truth(at, at.t, alert_from=at.t, end=at.t, room=room, sensor="sos-1")

    def _device(self, at: Occasion) -> TruthRecord:
        """A sensor that goes silent (device_offline) or reports a low battery."""
        kind, t, dur = at.inc.kind, at.t, at.inc.effective_duration
        choices = [x.id for x in self.sensors if x.kind != "plug"]
        sensor = at.inc.sensor or self._rng.choice(choices)
        if sensor not in {x.id for x in self.sensors}:
            msg = f"{kind}: no sensor {sensor!r} in this home"
            raise SimulationError(msg)
        end = t + dur if math.isfinite(dur) else None
        if kind == "device_offline":
            self._windows.append((sensor, t, t + dur))
        return self._truth(at, t, alert_from=t, end=end, room=None, sensor=sensor)

    def _gateway_outage(self, at: Occasion) -> TruthRecord:
        t, dur = at.t, at.inc.effective_duration
        self._windows.append((None, t, t + dur))
        end = t + dur if math.isfinite(dur) else None
        return self._truth(at, t, alert_from=t, end=end, room=None)

    def _truth(
        self,
        at: Occasion,
        t: float,
        *,
        alert_from: float,
        end: float | None,
        room: str | None,
        sensor: str | None = None,
    ) -> TruthRecord:
        rec = TruthRecord(
            at.inc.kind,
            at.resident,
            round(t, 3),
            round(alert_from, 3),
            None if end is None else round(end, 3),
            room,
            sensor,
            "; ".join(at.notes),
            self.site,
        )
        self.truth.append(rec)
        return rec

    def _insert_extra(self, ev: SensorEvent) -> None:
        if self._current is not None and ev.t < self._current.end:
            bisect.insort(self._buffer, ev, lo=self._pos)
        else:
            heapq.heappush(self._extras, ev)

    def _rollback(self, now: float) -> None:
        """Un-render buffered events at or after ``now`` so the plan can change from there."""
        buf = self._buffer
        i = bisect.bisect_left([e.t for e in buf], now, lo=self._pos)
        dropped = buf[i:]
        del buf[i:]
        if self._current is not None and self._current.end > now:
            cur = self._current
            self._current = Segment(cur.start, now, cur.activity, cur.room, True, cur.cont, cur.end)
            self._planned.insert(0, Segment(now, cur.end, cur.activity, cur.room, cont=True))
        seen: set[str] = set()
        for e in dropped:
            if e.sensor in seen:
                continue
            seen.add(e.sensor)
            if e.kind == "bed":
                self._in_bed = e.value < 0.5
            elif e.kind == "plug":
                self._on[e.sensor] = e.value < 5.0
            elif e.kind == "pir":
                self._pir_last.pop(e.sensor, None)
            elif e.kind == "sos":
                heapq.heappush(self._extras, e)

    # rendering -----------------------------------------------------------------------------------

    _current: Segment | None = None

    def _next_segment(self) -> Segment | None:
        if not self._planned:
            self._ensure_planned(self._planned_until + 1)
            if not self._planned:
                return None
        nxt = self._planned[0]
        if nxt.start >= self.end:
            return None
        while self._pending and self._pending[0][0] < nxt.end:
            _, _, inc = heapq.heappop(self._pending)
            self._apply(inc)
            if not self._planned:
                return None
            nxt = self._planned[0]
        seg = self._planned.pop(0)
        if not self._planned:
            self._ensure_planned(seg.end + 1)
        return seg

    def _render_next(self) -> bool:
        seg = self._next_segment()
        if seg is None:
            return False
        self._current = seg
        if self.segments is not None:
            self.segments.append(seg)
        evs = self._render(seg)
        end = min(seg.end, self.end)
        while self._extras and self._extras[0].t < end:
            evs.append(heapq.heappop(self._extras))
        if self._windows or self.drop_rate:
            evs = self._lose(evs, seg)
        evs.sort()
        self._buffer = evs
        self._pos = 0
        return True

    def _lose(self, evs: list[SensorEvent], seg: Segment) -> list[SensorEvent]:
        windows = [w for w in self._windows if w[1] < seg.end and w[2] > seg.start]
        r = random.Random(f"{self.seed}:drop:{seg.start:.0f}")
        out = []
        for e in evs:
            if any((w[0] is None or w[0] == e.sensor) and w[1] <= e.t < w[2] for w in windows):
                continue
            # one draw per event whatever its kind, so a kind-limited loss drops exactly the
            # events of those kinds that an all-kind loss of the same seed drops
            lost = bool(self.drop_rate) and r.random() < self.drop_rate
            if lost and (self.drop_kinds is None or e.kind in self.drop_kinds):
                continue
            out.append(e)
        return out

    def _render(self, seg: Segment) -> list[SensorEvent]:
        """The sensor events of one segment of the plan (the RNG calls in a fixed order: seeded)."""
        act = ACTIVITIES[seg.activity]
        r = random.Random(f"{self.seed}:{seg.activity}:{seg.start:.0f}:{int(seg.cont)}")
        pen = Pen(self, r, seg.start, min(seg.end, self.end))
        if act.in_bed != self._in_bed:  # getting into or out of bed (or helped out by the rescue)
            delay = (
                r.uniform(5, 30) if act.in_bed else r.uniform(60, 180) if seg.activity == "rescue" else 0.5
            )
            pen.emit(pen.s0 + delay, "bed-1", "bed", "bedroom", 1.0 if act.in_bed else 0.0)
            self._in_bed = act.in_bed
        t = pen.s0
        if not seg.cont and seg.room != self._room:
            t = self._arrive(pen, seg.room, self._room)
        if seg.activity == "visit" and not seg.cont:
            self._visit(pen, seg)
        if seg.activity == "rescue":
            t = self._rescue(pen, seg.room)
        self._room = seg.room
        self._movements(pen, seg, act, t)
        self._appliances(pen, seg, act)
        return pen.ev

    def _arrive(self, pen: Pen, room: str, prev: str) -> float:
        """Walking from ``prev`` into ``room`` (out of or in by the front door); when it is done."""
        s0, r = pen.s0, pen.r
        if room == OUT:
            if prev != "hall":
                pen.move(s0 + r.uniform(0, 3), prev)
            pen.move(s0 + r.uniform(5, 15), "hall")
            pen.emit(s0 + r.uniform(20, 30), "door-front", "door", "hall", 1.0)
            pen.emit(s0 + r.uniform(35, 45), "door-front", "door", "hall", 0.0)
            return s0
        if prev == OUT:
            pen.emit(s0 + 1.0, "door-front", "door", "hall", 1.0)
            pen.emit(s0 + r.uniform(5, 15), "door-front", "door", "hall", 0.0)
            pen.move(s0 + r.uniform(3, 10), "hall")
            pen.move(s0 + r.uniform(15, 30), room)
            return s0 + 30
        pen.move(s0 + r.uniform(0, 3), prev)
        if frozenset((prev, room)) not in _ADJACENT and "hall" not in (prev, room) and r.random() < 0.6:
            pen.move(s0 + r.uniform(4, 8), "hall")
        pen.move(s0 + r.uniform(8, 15), room)
        return s0 + 15

    def _visit(self, pen: Pen, seg: Segment) -> None:
        """A visitor let in by the front door, and let out before the planned end."""
        s0, r = pen.s0, pen.r
        pen.move(s0 + r.uniform(0, 5), "hall")
        pen.emit(s0 + r.uniform(10, 20), "door-front", "door", "hall", 1.0)
        pen.emit(s0 + r.uniform(25, 40), "door-front", "door", "hall", 0.0)
        pe = seg.planned_end or pen.s1
        if pe - s0 > 10 * MINUTE:
            leave = pe - r.uniform(2, 5) * MINUTE
            pen.move(leave, "hall")
            pen.emit(leave + r.uniform(10, 20), "door-front", "door", "hall", 1.0)
            pen.emit(leave + r.uniform(30, 50), "door-front", "door", "hall", 0.0)

    def _rescue(self, pen: Pen, room: str) -> float:
        """Someone comes in to help: the door, the hall, the room; appliances switched off."""
        s0, r = pen.s0, pen.r
        pen.emit(s0 + 1.0, "door-front", "door", "hall", 1.0)
        pen.emit(s0 + r.uniform(8, 20), "door-front", "door", "hall", 0.0)
        self._pir_last.pop("pir-hall", None)
        pen.move(s0 + r.uniform(5, 15), "hall")
        self._pir_last.pop("pir-" + room, None)
        pen.move(s0 + r.uniform(20, 40), room)
        off = s0 + r.uniform(2, 6) * MINUTE
        for sensor, on in list(self._on.items()):
            if on:
                pen.emit(off, sensor, "plug", self._plug_room(sensor), 0.6 if sensor == "plug-tv" else 0.0)
                self._on[sensor] = False
        return s0 + 40

    def _movements(self, pen: Pen, seg: Segment, act: _Act, t: float) -> None:
        """Motion within the segment's room from ``t`` on, as its activity makes it."""
        r, s0, room = pen.r, pen.s0, seg.room
        if act.gap is not None and room != OUT:
            gap = act.gap * self.profile.activity
            t += r.expovariate(1.0 / gap)
            while t < pen.s1:
                if act.seen >= 1.0 or r.random() < act.seen:
                    pen.move(t, room)
                t += r.expovariate(1.0 / gap)
        elif seg.activity == "down" and not seg.cont and r.random() < 0.6:
            for _ in range(r.randint(1, 4)):  # attempts to get up, then nothing
                pen.move(s0 + r.uniform(30, 600), room)
        elif seg.activity == "bathroom_long" and not seg.cont:
            tt = s0 + r.uniform(5, 20)
            while tt < s0 + 3 * MINUTE:
                pen.move(tt, room)
                tt += r.uniform(15, 40)
            tt = s0 + r.uniform(15, 30) * MINUTE
            while tt < pen.s1:
                if r.random() < 0.3:
                    self._pir_last.pop("pir-bathroom", None)
                    pen.move(tt, room)
                tt += r.uniform(15, 30) * MINUTE

    def _appliances(self, pen: Pen, seg: Segment, act: _Act) -> None:
        """Appliances used in the segment, and those left on switched off at its end."""
        r, s0, s1 = pen.r, pen.s0, pen.s1
        # their own RNG and the planned end, so that a cut does not change the past
        if not seg.cont:
            ra = random.Random(f"{self.seed}:{seg.activity}:{seg.start:.0f}:appliances")
            for appliance, prob in act.appliances:
                plug = self._plugs.get(appliance)
                if plug is None or ra.random() >= prob:
                    continue
                self._appliance(ra, appliance, plug, seg, s0, min(seg.planned_end or s1, self.end), pen.emit)
        if self._on.get("plug-kettle") and not any(e.sensor == "plug-kettle" for e in pen.ev):
            pen.emit(s0 + r.uniform(30, 120), "plug-kettle", "plug", "kitchen", 0.0)  # auto-off
            self._on["plug-kettle"] = False
        if not seg.interrupted and seg.activity != "rescue" and math.isfinite(s1):
            for sensor in ("plug-tv", "plug-stove"):
                if self._on.get(sensor) and (seg.cont or ACTIVITIES[seg.activity].appliances):
                    watts = 0.6 if sensor == "plug-tv" else 0.0
                    pen.emit(s1 - r.uniform(1, 20), sensor, "plug", self._plug_room(sensor), watts)
                    self._on[sensor] = False

    def _plug_room(self, sensor: str) -> str:
        return "living" if sensor == "plug-tv" else "kitchen"

    def _appliance(
        self, r: random.Random, appliance: str, sensor: str, seg: Segment, s0: float, s1: float, emit: Any
    ) -> None:
        """Plug readings over the planned [s0, s1); ``emit`` drops what falls after a cut."""
        room = self._plug_room(sensor)

        def put(t: float, watts: float) -> None:
            if emit(t, sensor, "plug", room, watts) and appliance != "kettle":
                self._on[sensor] = watts >= 5.0

        if appliance == "kettle":
            if s1 - s0 < 4 * MINUTE:
                return
            on = s0 + r.uniform(20, min(180, (s1 - s0) / 3))
            put(on, round(r.gauss(2000, 80), 1))
            put(min(on + r.uniform(120, 240), s1 - 1), 0.0)  # kettles switch themselves off
        elif appliance == "stove":
            if s1 - s0 < 5 * MINUTE:
                return
            t = s0 + r.uniform(30, 120)
            stop = (
                t + r.uniform(4, 9) * MINUTE if seg.activity == "breakfast" else s1 - r.uniform(1, 4) * MINUTE
            )
            stop = min(stop, s1 - 30)
            watts = r.gauss(1500, 150)
            while t < stop:  # the hob's thermostat cycles
                put(t, round(watts * r.uniform(0.95, 1.05), 1))
                t += r.uniform(180, 480)
                if t >= stop:
                    break
                put(t, 0.0)
                t += r.uniform(60, 180)
            put(min(stop, s1 - 1), 0.0)
        elif appliance == "tv":
            t = s0 + r.uniform(5, 60)
            watts = r.gauss(95, 12)
            put(t, round(watts, 1))
            t += r.uniform(600, 1800)
            while t < s1 - 60:
                put(t, round(watts + r.gauss(0, 8), 1))
                t += r.uniform(600, 1800)

    # the stream ----------------------------------------------------------------------------------

    def peek_time(self) -> float:
        """Time of the next event, or ``inf`` when the run is over."""
        while self._pos >= len(self._buffer):
            if not self._render_next():
                return math.inf
        return self._buffer[self._pos].t

    def pop_until(self, t: float) -> list[SensorEvent]:
        """All events before ``t`` not yet returned, in time order."""
        out: list[SensorEvent] = []
        limit = min(t, self.end)
        while True:
            if self._pos >= len(self._buffer):
                if self._planned and self._planned[0].start >= limit and not self._pending_before(limit):
                    break
                if not self._render_next():
                    break
                continue
            buf, pos = self._buffer, self._pos
            n = len(buf)
            j = pos
            while j < n and buf[j].t < limit:
                j += 1
            out.extend(buf[pos:j])
            self._pos = j
            if j < n:
                break
        self._released = max(self._released, min(limit, self.end))
        return out

    def _pending_before(self, t: float) -> bool:
        return bool(self._pending) and self._pending[0][0] < t


# The one-shot API ---------------------------------------------------------------------------------


@dataclass(slots=True)
class HomeRun:
    """A simulated home over a fixed period: events in the detector format, plus the truth."""

    seed: int
    start: float
    end: float
    profile: ResidentProfile
    sensors: list[SensorSpec]
    events: list[Event]
    sensor_ids: list[str]
    truth: list[TruthRecord]
    segments: list[Segment] = field(default_factory=list)
    partner: ResidentProfile | None = None  # a home of two (see .couple)
    partner_segments: list[Segment] = field(default_factory=list)

    def sensor_events(self) -> list[SensorEvent]:
        return [
            SensorEvent(t, s, k, r, v) for (t, k, r, v), s in zip(self.events, self.sensor_ids, strict=True)
        ]

    def split(self, t: float) -> tuple[list[Event], list[Event]]:
        """Events before ``t`` and from ``t`` on, e.g. history for ``fit`` and a stream for ``detect``."""
        i = bisect.bisect_left(self.events, (t,))
        return self.events[:i], self.events[i:]


def simulate_home(
    seed: int,
    days: int,
    start: float = DEFAULT_START,
    incidents: Sequence[Incident] = (),
    profile: ResidentProfile | None = None,
    drop_rate: float = 0.0,
    spurious_rate: float = 0.0,
    site: str | None = None,
    *,
    drop_kinds: Collection[str] | None = None,
) -> HomeRun:
    """Simulate one home for ``days`` days from ``start`` (midnight; the resident is asleep).

    ``drop_rate``: probability that an event is lost on the radio; ``drop_kinds`` limits the loss
    to those sensor kinds (e.g. ``("pir",)``: motion events only; default all). ``spurious_rate``: false PIR
    triggers per PIR sensor per day. The same seed gives the same resident and the same days;
    incidents change the routine only from where they happen.
    """
    if days < 1:
        msg = f"days must be >= 1, not {days}"
        raise SimulationError(msg)
    end = start + days * DAY
    sim = HomeSim(
        seed,
        start,
        profile,
        end=end,
        drop_rate=drop_rate,
        spurious_rate=spurious_rate,
        keep_segments=True,
        site=site,
        drop_kinds=drop_kinds,
    )
    for inc in sorted(incidents, key=lambda i: i.t):
        if not start <= inc.t < end:
            msg = f"{inc.kind} at {inc.t:.0f} is outside the run [{start:.0f}, {end:.0f})"
            raise SimulationError(msg)
        sim.schedule(inc)
    evs = sim.pop_until(end)
    segs = sim.segments or []
    return HomeRun(
        seed=seed,
        start=start,
        end=end,
        profile=sim.profile,
        sensors=sim.sensors,
        events=[(e.t, e.kind, e.room, e.value) for e in evs],
        sensor_ids=[e.sensor for e in evs],
        truth=sorted(sim.truth, key=lambda x: x.t),
        segments=[s for s in segs if s.start < end],
    )
