"""Day planning: a resident's habits and days as a timeline of segments (no sensors, no incidents).

:class:`DayPlanner` draws each day (wake to next wake: hygiene, meals, naps, outings, day-station
visits, visitors, TV, chores, night bathroom trips) from the :class:`ResidentProfile` and an RNG
of its own per day, so a day's plan does not depend on what was rendered before it. :class:`Timeline`
is one home's timeline not yet rendered, extended a day at a time; incidents rewrite it.
Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0
DEFAULT_START = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday

OUT = "out"  # the resident is away from home (outing, station, wandering)
ROOMS = ("bedroom", "bathroom", "kitchen", "living", "hall")


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
class Activity:
    gap: float | None  # mean seconds between movements; None: still
    seen: float = 1.0  # probability a movement is in a PIR's view (lower under a duvet)
    in_bed: bool = False
    appliances: tuple[tuple[str, float], ...] = ()


ACTIVITIES: dict[str, Activity] = {
    "sleep": Activity(5400, 0.3, in_bed=True),
    "nap_bed": Activity(3600, 0.3, in_bed=True),
    "stuck_in_bed": Activity(5400, 0.3, in_bed=True),
    "collapsed_in_bed": Activity(None, in_bed=True),
    "night_toilet": Activity(25),
    "toilet": Activity(25),
    "hygiene": Activity(20),
    "dress": Activity(30),
    "getup": Activity(10),
    "walk": Activity(8),
    "breakfast": Activity(40, appliances=(("kettle", 0.85), ("stove", 0.2))),
    "cook": Activity(25, appliances=(("stove", 1.0), ("kettle", 0.2))),
    "eat": Activity(120),
    "tea": Activity(45, appliances=(("kettle", 1.0),)),
    "tv": Activity(500, appliances=(("tv", 1.0),)),
    "rest": Activity(300),
    "nap_chair": Activity(2400, 0.5),
    "chores": Activity(30),
    "visit": Activity(25, appliances=(("kettle", 0.7),)),
    "rescue": Activity(15),
    "down": Activity(None),
    "collapsed": Activity(None),
    "bathroom_long": Activity(None),
    "out": Activity(None),
    "station": Activity(None),
    "wander_out": Activity(None),
}


def poisson(rng: random.Random, lam: float) -> int:
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


class DayPlanner:
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
            for t in sorted(r.uniform(lo, hi) for _ in range(poisson(r, self.p.night_trips))):
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
        n_tea = poisson(r, max(0.0, p.kettle_per_day - 0.85 - 0.7 * n_visit_kettle))
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


# The home's timeline ----------------------------------------------------------------------------


class Timeline:
    """The segments of one home not yet rendered, planned a day at a time as the stream needs them.

    Incidents rewrite it (:meth:`splice`, :meth:`forever`); ``planned`` is called with the new
    horizon after every day added (the home draws its spurious PIR triggers up to there).
    """

    def __init__(
        self,
        seed: int,
        profile: ResidentProfile,
        start: float,
        end: float,
        planned: Callable[[float], None] = lambda until: None,
    ) -> None:
        self.end = end
        self.timelinener = DayPlanner(seed, profile, start)
        wake0 = self.timelinener.wake(0)
        self.segments: list[Segment] = self.timelinener.night("-1", start, wake0)
        self.wakes: list[float] = [wake0]
        self.next_day = 0
        self.until = wake0  # planned up to here
        self.frozen: Segment | None = None  # an activity that never ends (collapse)
        self._on_planned = planned

    def more(self) -> None:
        """Plan one more day (or one more day of the activity that never ends)."""
        if self.frozen is not None:
            f = self.frozen
            seg = Segment(self.until, self.until + DAY, f.activity, f.room, cont=True)
            self.segments.append(seg)
            self.until = seg.end
        else:
            segs = self.timelinener.day(self.next_day)
            self.next_day += 1
            self.wakes.append(self.timelinener.wake(self.next_day))
            until = self.until
            if segs and segs[0].start > until and self.segments:
                self.segments[-1].end = segs[0].start  # a wake jitter gap: stay asleep
            segs = [s for s in segs if s.end > until + 60]  # a late night overlapping the new day
            if segs and segs[0].start < until:
                segs[0].start = until
            self.segments.extend(s for s in segs if s.end > s.start)
            self.until = self.segments[-1].end
        self._on_planned(self.until)

    def ensure(self, t: float) -> None:
        """Plan until past ``t`` (or the end of the run)."""
        while self.until <= t and self.until < self.end:
            self.more()

    def out_between(self, t0: float, t1: float) -> bool:
        """Whether the resident is planned to be away from home at any time in ``[t0, t1]``."""
        self.ensure(t1 + DAY)
        i, j = self.index(t0), self.index(t1)
        return any(s.room == OUT for s in self.segments[i : j + 1])

    def index(self, t: float) -> int:
        """The index of the segment planned at ``t``."""
        starts = [s.start for s in self.segments]
        return max(0, bisect.bisect_right(starts, t) - 1)

    def splice(self, t0: float, new: list[Segment]) -> None:
        """Replace the plan from ``t0`` to the end of ``new`` with ``new``."""
        t1 = new[-1].end if new else t0
        self.ensure(t1 + HOUR)
        kept: list[Segment] = []
        for s in self.segments:
            if s.end <= t0 or s.start >= t1:
                kept.append(s)
                continue
            if s.start < t0:
                kept.append(Segment(s.start, t0, s.activity, s.room, True, s.cont, s.planned_end or s.end))
            if s.end > t1 and math.isfinite(t1):
                kept.append(Segment(t1, s.end, s.activity, s.room))
        kept.extend(s for s in new if s.end > s.start)
        kept.sort(key=lambda s: s.start)
        self.segments = kept
        if not math.isfinite(t1):
            self.until = math.inf

    def forever(self, t0: float, activity: str, room: str) -> None:
        """From ``t0`` on, ``activity`` until the end of the run (chunked by day)."""
        self.segments = [s for s in self.segments if s.end <= t0 or s.start < t0]
        if self.segments and self.segments[-1].end > t0:
            last = self.segments[-1]
            self.segments[-1] = Segment(
                last.start, t0, last.activity, last.room, True, last.cont, last.planned_end or last.end
            )
        first = Segment(t0, min(self.end, t0 + DAY), activity, room)
        self.segments.append(first)
        self.until = first.end
        self.frozen = first

    def situation(self, t: float) -> Segment:
        """What the resident is planned to be doing at ``t``."""
        self.ensure(t + DAY)
        return self.segments[self.index(t)] if self.segments else Segment(t, t, "rest", "living")
