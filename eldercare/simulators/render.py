"""Rendering: a segment of the plan as the home's sensors would report it.

PIR motion with a re-trigger hold-off and missed detections, the front-door contact, bed
pressure, smart plugs in watts. :class:`Renderer` keeps what the home looks like between segments
(the room the resident is in, in bed or not, which plugs are on, when each PIR last fired); each
segment has its own seeded RNG, whose calls come in a fixed order. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from eldercare.simulators.days import ACTIVITIES, MINUTE, OUT, ROOMS, Activity, ResidentProfile, Segment

SENSOR_KINDS = ("pir", "door", "bed", "plug", "sos")

Event = tuple[float, str, str, float]  # (t, sensor_kind, room, value): the detector format


class SensorEvent(NamedTuple):
    """One rendered reading with the sensor that sent it."""

    t: float
    sensor: str
    kind: str
    room: str
    value: float


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


_ADJACENT = {frozenset(("kitchen", "living")), frozenset(("bedroom", "bathroom"))}


class Pen:
    """Writes one segment's sensor events: only inside [s0, s1), a motion sensor only past its hold-off."""

    def __init__(self, home: Renderer, r: random.Random, s0: float, s1: float) -> None:
        self.home, self.r, self.s0, self.s1 = home, r, s0, s1
        self.ev: list[SensorEvent] = []

    def emit(self, t: float, sensor: str, kind: str, where: str, value: float) -> bool:
        if self.s0 <= t < self.s1:
            self.ev.append(SensorEvent(round(t, 3), sensor, kind, where, value))
            return True
        return False

    def move(self, t: float, where: str) -> None:
        """The resident moves in ``where``: its PIR fires unless re-arming or it misses them."""
        sensor, home = "pir-" + where, self.home
        if t - home.pir_last.get(sensor, -1e18) < home.profile.pir_holdoff_s:
            return
        if self.r.random() < home.profile.pir_miss:
            return
        home.pir_last[sensor] = t
        self.emit(t, sensor, "pir", where, 1.0)


class Renderer:
    """Renders segments in time order, carrying the home's state from one segment to the next."""

    def __init__(self, seed: int, profile: ResidentProfile, sensors: list[SensorSpec], end: float) -> None:
        self.seed, self.profile, self.end = seed, profile, end
        self._plugs: dict[str, str] = {s.appliance: s.id for s in sensors if s.appliance}
        self._room = "bedroom"
        self._in_bed = True
        self._on: dict[str, bool] = {}  # plug -> switched on
        self.pir_last: dict[str, float] = {}  # PIR -> when it last fired (its hold-off)

    def forget(self, dropped: list[SensorEvent], extras: Callable[[SensorEvent], None]) -> None:
        """Events un-rendered by a rollback: the state goes back to before the first of each sensor's
        (an SOS press goes back to ``extras``)."""
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
                self.pir_last.pop(e.sensor, None)
            elif e.kind == "sos":
                extras(e)

    def render(self, seg: Segment) -> list[SensorEvent]:
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
        self.pir_last.pop("pir-hall", None)
        pen.move(s0 + r.uniform(5, 15), "hall")
        self.pir_last.pop("pir-" + room, None)
        pen.move(s0 + r.uniform(20, 40), room)
        off = s0 + r.uniform(2, 6) * MINUTE
        for sensor, on in list(self._on.items()):
            if on:
                pen.emit(off, sensor, "plug", self._plug_room(sensor), 0.6 if sensor == "plug-tv" else 0.0)
                self._on[sensor] = False
        return s0 + 40

    def _movements(self, pen: Pen, seg: Segment, act: Activity, t: float) -> None:
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
                    self.pir_last.pop("pir-bathroom", None)
                    pen.move(tt, room)
                tt += r.uniform(15, 30) * MINUTE

    def _appliances(self, pen: Pen, seg: Segment, act: Activity) -> None:
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
