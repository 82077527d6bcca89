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

:class:`HomeSim` composes three parts, each a module of its own: the day planning
(:mod:`.days`: the profile, the days as segments, the home's :class:`~.days.Timeline`), the
incidents (:mod:`.incidents`: what each kind does to the plan, and its truth) and the rendering
(:mod:`.render`: segments as sensor events); this module keeps the stream that ties them together
and the one-shot :func:`simulate_home`. The names above are importable from here.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from eldercare.kinds import INCIDENT_KINDS
from eldercare.scoring import TruthRecord
from eldercare.simulators.days import (
    ACTIVITIES,
    DAY,
    DEFAULT_START,
    HOUR,
    MINUTE,
    OUT,
    ROOMS,
    ResidentProfile,
    Segment,
    SimulationError,
    Timeline,
    poisson,
)
from eldercare.simulators.incidents import (
    ALERT_KINDS,
    BATHROOM_NORMAL_S,
    DEFAULT_DURATION,
    Incident,
    Incidents,
    random_incidents,
)
from eldercare.simulators.render import SENSOR_KINDS, Event, Renderer, SensorEvent, SensorSpec, home_sensors

__all__ = [
    "ACTIVITIES",
    "ALERT_KINDS",
    "BATHROOM_NORMAL_S",
    "DAY",
    "DEFAULT_DURATION",
    "DEFAULT_START",
    "HOUR",
    "INCIDENT_KINDS",
    "MINUTE",
    "OUT",
    "ROOMS",
    "SENSOR_KINDS",
    "Event",
    "HomeRun",
    "HomeSim",
    "Incident",
    "ResidentProfile",
    "Segment",
    "SensorEvent",
    "SensorSpec",
    "SimulationError",
    "TruthRecord",
    "home_sensors",
    "random_incidents",
    "simulate_home",
]


# The home: plan, splice incidents, render ---------------------------------------------------------


class HomeSim:
    """One home as a lazily rendered, time-ordered event stream.

    :func:`simulate_home` wraps it for a fixed number of days; the live runner keeps one per
    home and calls :meth:`pop_until` as its clock advances, and :meth:`trigger` for incidents
    fired while it runs. Memory stays at about a day of plan plus one segment of events.
    The plan, the incidents and the rendering are parts of their own (``timeline``, ``incidents``,
    ``renderer``); what is here is the stream: pending incidents, extra events, losses, rollback.
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
        self.segments: list[Segment] | None = [] if keep_segments else None
        self._pirs = [s.id for s in self.sensors if s.kind == "pir"]
        self._extras: list[SensorEvent] = []  # heap: SOS presses, spurious triggers
        self._spurious_until = self.start
        self.timeline = Timeline(seed, self.profile, self.start, end, planned=self._spurious)
        self.incidents = Incidents(
            seed, self.timeline, self.profile.resident, self.sensors, site, self._insert_extra
        )
        self.renderer = Renderer(seed, self.profile, self.sensors, end)
        self._pending: list[tuple[float, int, Incident]] = []
        self._n_pending = 0
        # the stream
        self._buffer: list[SensorEvent] = []
        self._pos = 0
        self._released = self.start
        self._spurious(self.timeline.until)

    @property
    def truth(self) -> list[TruthRecord]:
        """The ground truth the incidents left so far."""
        return self.incidents.truth

    def _spurious(self, until: float) -> None:
        """False PIR triggers up to ``until`` (called as the plan grows)."""
        if self.spurious_rate <= 0 or until <= self._spurious_until:
            return
        lo, hi = self._spurious_until, min(until, self.end)
        if not math.isfinite(hi):
            return
        r = random.Random(f"{self.seed}:spurious:{lo:.0f}")
        for sensor in self._pirs:
            for _ in range(poisson(r, self.spurious_rate * (hi - lo) / DAY)):
                t = round(r.uniform(lo, hi), 3)
                heapq.heappush(self._extras, SensorEvent(t, sensor, "pir", sensor[4:], 1.0))
        self._spurious_until = hi

    # incidents -----------------------------------------------------------------------------------

    def schedule(self, incident: Incident) -> None:
        """Make ``incident`` happen when the stream reaches its time (its sensor checked now)."""
        self.incidents.check_device(incident)
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
        return self.incidents.apply(inc, self._released)

    def out_between(self, t0: float, t1: float) -> bool:
        """Whether the resident is planned to be away from home at any time in ``[t0, t1]``."""
        return self.timeline.out_between(t0, t1)

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
            self.timeline.segments.insert(0, Segment(now, cur.end, cur.activity, cur.room, cont=True))
        self.renderer.forget(dropped, lambda e: heapq.heappush(self._extras, e))

    # rendering -----------------------------------------------------------------------------------

    _current: Segment | None = None

    def _next_segment(self) -> Segment | None:
        if not self.timeline.segments:
            self.timeline.ensure(self.timeline.until + 1)
            if not self.timeline.segments:
                return None
        nxt = self.timeline.segments[0]
        if nxt.start >= self.end:
            return None
        while self._pending and self._pending[0][0] < nxt.end:
            _, _, inc = heapq.heappop(self._pending)
            self.incidents.apply(inc, self._released)
            if not self.timeline.segments:
                return None
            nxt = self.timeline.segments[0]
        seg = self.timeline.segments.pop(0)
        if not self.timeline.segments:
            self.timeline.ensure(seg.end + 1)
        return seg

    def _render_next(self) -> bool:
        seg = self._next_segment()
        if seg is None:
            return False
        self._current = seg
        if self.segments is not None:
            self.segments.append(seg)
        evs = self.renderer.render(seg)
        end = min(seg.end, self.end)
        while self._extras and self._extras[0].t < end:
            evs.append(heapq.heappop(self._extras))
        if self.incidents.windows or self.drop_rate:
            evs = self._lose(evs, seg)
        evs.sort()
        self._buffer = evs
        self._pos = 0
        return True

    def _lose(self, evs: list[SensorEvent], seg: Segment) -> list[SensorEvent]:
        windows = [w for w in self.incidents.windows if w[1] < seg.end and w[2] > seg.start]
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
                if (
                    self.timeline.segments
                    and self.timeline.segments[0].start >= limit
                    and not self._pending_before(limit)
                ):
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
