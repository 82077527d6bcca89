"""Incidents: what each kind does to a home's plan and stream, and the truth it leaves.

An :class:`Incident` is spliced into the plan (:class:`~eldercare.simulators.days.Timeline`) from where
it happens, before that part is rendered; :class:`Incidents` applies them, one method per kind, and
records a :class:`TruthRecord` saying what happened and from when a detector should alert. The
kinds and their signatures are listed in :mod:`eldercare.simulators.routine`. Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from eldercare.kinds import CAUGHT_BY, INCIDENT_KINDS, RESIDENT_INCIDENT_KINDS
from eldercare.scoring import TruthRecord
from eldercare.simulators.days import (
    ACTIVITIES,
    DAY,
    DEFAULT_START,
    HOUR,
    MINUTE,
    OUT,
    ROOMS,
    Segment,
    SimulationError,
    Timeline,
)
from eldercare.simulators.render import SensorEvent, SensorSpec

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
# Kinds that are a stretch of time: lasting 0 s, nothing happens (a fall of 0 s is still a fall,
# the resident getting up at once; an SOS is a press)
LASTING_KINDS = frozenset(k for k, d in DEFAULT_DURATION.items() if d > 0 and k != "fall")
# How long after its start a situation becomes alert-worthy; a detector alerting earlier is early.
BATHROOM_NORMAL_S = 30 * MINUTE
ALERT_KINDS = CAUGHT_BY  # the alert kinds that count as catching each incident kind


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
        if self.duration is not None and not self.duration >= 0:  # nan too
            msg = f"{self.kind}: duration must be >= 0, not {self.duration}"
            raise SimulationError(msg)
        if self.duration == 0 and self.kind in LASTING_KINDS:
            msg = f"{self.kind}: a duration of 0 is nothing happening (it could only be scored as missed)"
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


@dataclass(slots=True)
class Occasion:
    """An incident about to be applied: when it happens, what the resident is doing then, notes."""

    inc: Incident
    t: float
    where: Segment
    resident: str
    notes: list[str] = field(default_factory=list)


class Incidents:
    """Applies incidents to one home's plan; ``truth`` is what they left, ``windows`` what is lost.

    ``press`` puts an SOS press into the home's stream (it is an event, not a change of plan).
    """

    def __init__(
        self,
        seed: int,
        timeline: Timeline,
        resident: str,
        sensors: list[SensorSpec],
        site: str | None,
        press: Callable[[SensorEvent], None],
    ) -> None:
        self.timeline, self.resident, self.sensors, self.site, self._press = (
            timeline,
            resident,
            sensors,
            site,
            press,
        )
        self._rng = random.Random(f"{seed}:incidents")
        self.truth: list[TruthRecord] = []
        self.windows: list[tuple[str | None, float, float]] = []  # dropped (sensor|all, from, to)
        # sensors of the home's gateway beyond the routine's, by id: their kind (a seeded home's
        # wearable-1 and env-1, a partner's bed-2, sos-2, wearable-2); set by the live runner
        self.extra_sensors: dict[str, str] = {}

    def check_device(self, inc: Incident) -> None:
        """A device incident's sensor is one of this home's, and a low battery's has a battery.
        Checked when an incident is scheduled too: a scenario's unknown sensor stopped a run (or a
        dataset) with a traceback when its day came."""
        if inc.kind not in ("device_offline", "low_battery") or inc.sensor is None:
            return
        kinds = {x.id: x.kind for x in self.sensors} | self.extra_sensors
        if inc.sensor not in kinds:
            raise SimulationError(f"{inc.kind}: no sensor {inc.sensor!r} in this home")
        if inc.kind == "low_battery" and kinds[inc.sensor] == "plug":
            raise SimulationError(f"low_battery: {inc.sensor} is mains-powered (a plug): it has no battery")

    def apply(self, inc: Incident, released: float) -> TruthRecord | None:
        """Change the plan from the incident's time on (not before ``released``, the stream's past);
        returns the ground truth it left."""
        if self.timeline.frozen is not None and inc.kind in RESIDENT_INCIDENT_KINDS:
            return None  # after a collapse nothing else happens to the resident
        t = max(inc.t, released)
        at = Occasion(inc, t, self.timeline.situation(t), inc.resident or self.resident)
        if at.where.room == OUT and inc.kind in ("fall", "collapse", "bathroom_too_long", "sos"):
            at.t = max(t, at.where.end) + self._rng.uniform(1, 5) * MINUTE
            at.notes.append("resident was out; it happened soon after coming home")
            at.where = self.timeline.situation(at.t)
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
            wake = (
                self.timeline.wakes[bisect.bisect_right(self.timeline.wakes, t)]
                if t < self.timeline.wakes[-1]
                else t
            )
            self.timeline.forever(t, "collapsed_in_bed", "bedroom")
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
                self.timeline.splice(pre[0].start, pre)
            self.timeline.forever(t, act, room)
            return self._truth(at, t, alert_from=t, end=None, room=room)
        rescue_end = t + dur + r.uniform(30, 60) * MINUTE
        self.timeline.splice(
            pre[0].start if pre else t,
            [*pre, Segment(t, t + dur, act, room), Segment(t + dur, rescue_end, "rescue", room)],
        )
        return self._truth(at, t, alert_from=t, end=t + dur, room=room)

    def _no_wake(self, at: Occasion) -> TruthRecord:
        """Still in bed past the next planned wake time."""
        t, dur = at.t, at.inc.effective_duration
        i = bisect.bisect_right(self.timeline.wakes, t)
        while i >= len(self.timeline.wakes):
            self.timeline.more()
        wake = self.timeline.wakes[i]
        self.timeline.ensure(wake + (dur if math.isfinite(dur) else 0.0) + DAY)
        last_sleep = self.timeline.segments[self.timeline.index(wake - 1.0)]
        t0 = max(t, last_sleep.start) if last_sleep.activity == "sleep" else max(t, wake - HOUR)
        if not math.isfinite(dur):
            self.timeline.forever(t0, "stuck_in_bed", "bedroom")
            at.notes = ["never got up"]
            return self._truth(at, wake, alert_from=wake, end=None, room="bedroom")
        rescue = wake + dur + self._rng.uniform(30, 60) * MINUTE
        new = [
            Segment(t0, wake + dur, "stuck_in_bed", "bedroom"),
            Segment(wake + dur, rescue, "rescue", "bedroom"),
        ]
        self.timeline.splice(t0, new)
        at.notes = [f"planned wake {wake:.0f}; stayed in bed"]
        return self._truth(at, wake, alert_from=wake, end=wake + dur, room="bedroom")

    def _night_wandering(self, at: Occasion) -> TruthRecord | None:
        """Up at night and out of the front door (back after the duration, or never)."""
        r, s, t, dur = self._rng, at.where, at.t, at.inc.effective_duration
        if s.activity != "sleep" or s.end - t < 30 * MINUTE:
            long_sleep = [
                x for x in self.timeline.segments if x.activity == "sleep" and x.end - x.start > 2 * HOUR
            ]
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
            self.timeline.splice(t, pre)
            self.timeline.forever(hall, "wander_out", OUT)
            at.notes.append("never came back")
            return self._truth(at, hall, alert_from=hall, end=None, room="hall")
        back = hall + dur
        new = [
            *pre,
            Segment(hall, back, "wander_out", OUT),
            Segment(back, back + r.uniform(2, 5) * MINUTE, "walk", "hall"),
        ]
        self.timeline.splice(t, new)
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
                self.timeline.splice(t0, pre)
            self.timeline.forever(t, "bathroom_long", "bathroom")
            return self._truth(at, t, alert_from=alert_from, end=None, room="bathroom")
        self.timeline.splice(t0, [*pre, Segment(t, t + dur, "bathroom_long", "bathroom")])
        return self._truth(at, t, alert_from=alert_from, end=t + dur, room="bathroom")

    def _sos(self, at: Occasion) -> TruthRecord:
        room = at.where.room if at.where.room != OUT else "hall"
        self._press(SensorEvent(round(at.t, 3), "sos-1", "sos", room, 1.0))
        return self._truth(at, at.t, alert_from=at.t, end=at.t, room=room, sensor="sos-1")

    def _device(self, at: Occasion) -> TruthRecord:
        """A sensor that goes silent (device_offline) or reports a low battery."""
        kind, t, dur = at.inc.kind, at.t, at.inc.effective_duration
        choices = [x.id for x in self.sensors if x.kind != "plug"]
        self.check_device(at.inc)
        sensor = at.inc.sensor or self._rng.choice(choices)
        end = t + dur if math.isfinite(dur) else None
        if kind == "device_offline":
            self.windows.append((sensor, t, t + dur))
        return self._truth(at, t, alert_from=t, end=end, room=None, sensor=sensor)

    def _gateway_outage(self, at: Occasion) -> TruthRecord:
        t, dur = at.t, at.inc.effective_duration
        self.windows.append((None, t, t + dur))
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
