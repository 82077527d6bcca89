"""After a suspected fall: ask "are you OK?", wait for an answer, weigh the home's other sensors.

Pure logic over monotonic seconds: the agent feeds it sensor events and the clock and acts on
what it returns. A suspected fall opens a check-in for ``window_s``; a press of the wearable's
button (or an answer through a speaker) cancels it and the agent reports ``fall_cancelled``;
otherwise the agent reports ``fall`` with a confidence combining the detector's with what the
home said after the impact (:func:`combine_confidence`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

# How much each observation after the impact changes the odds that the person is down.
# Multipliers on the detector's confidence; documented in docs/edge.md ("Fall check-in").
FACTOR_MOTION_ELSEWHERE = 0.5  # motion in another room: someone is up and walking
FACTOR_BACK_IN_BED = 0.4  # the bed mat says someone lay down in bed
FACTOR_DOOR = 0.7  # the front door moved: they left, or someone came in to help
STILL_BOOST = 0.3  # no motion anywhere while PIRs exist: 1 - (1 - c) * (1 - 0.3)
SETTLE_S = 3.0  # motion in the first seconds after an impact is the fall itself


@dataclass
class Suspect:
    """One open check-in."""

    wearable: str
    resident: str | None
    impact_ms: int
    impact_mono: float
    confidence: float
    deadline: float
    room: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HomeEvent:
    mono: float
    kind: str  # sensor kind: pir, door, bed, ...
    room: str | None
    value: float


class HomeContext:
    """Recent PIR, door and bed events, to place the resident and judge a fall afterwards."""

    def __init__(self, keep_s: float = 900.0) -> None:
        self.keep_s = keep_s
        self.events: deque[HomeEvent] = deque()
        self.has_pir = False

    def add(self, mono: float, kind: str, room: str | None, value: float) -> None:
        if kind not in {"pir", "door", "bed"}:
            return
        self.has_pir = self.has_pir or kind == "pir"
        self.events.append(HomeEvent(mono, kind, room, value))
        while self.events and self.events[0].mono < mono - self.keep_s:
            self.events.popleft()

    def room_at(self, mono: float) -> str | None:
        """Room of the last motion seen at or before ``mono`` (where the resident probably is)."""
        for e in reversed(self.events):
            if e.mono <= mono and e.kind == "pir" and e.value >= 0.5 and e.room:
                return e.room
        return None

    def after(self, since: float, until: float) -> list[HomeEvent]:
        return [e for e in self.events if since <= e.mono <= until]


def combine_confidence(
    detector: float, room: str | None, after: list[HomeEvent], has_pir: bool
) -> tuple[float, dict[str, Any]]:
    """The fall's confidence given what the home's sensors said after the impact."""
    elsewhere = sorted(
        {e.room for e in after if e.kind == "pir" and e.value >= 0.5 and e.room and e.room != room}
    )
    bed = any(e.kind == "bed" and e.value >= 0.5 for e in after)
    door = any(e.kind == "door" and e.value >= 0.5 for e in after)
    motion_any = any(e.kind == "pir" and e.value >= 0.5 for e in after)
    c = detector
    factors: dict[str, float] = {}
    if elsewhere:
        factors["motion_elsewhere"] = FACTOR_MOTION_ELSEWHERE
    if bed:
        factors["back_in_bed"] = FACTOR_BACK_IN_BED
    if door:
        factors["door"] = FACTOR_DOOR
    for f in factors.values():
        c *= f
    still = has_pir and not motion_any and not bed and not door
    if still:
        c = 1.0 - (1.0 - c) * (1.0 - STILL_BOOST)
        factors["still"] = STILL_BOOST
    context = {
        "room": room,
        "motion_elsewhere": elsewhere,
        "back_in_bed": bed,
        "door": door,
        "still": still,
        "factors": factors,
        "detector_confidence": round(detector, 4),
    }
    return round(min(1.0, max(0.0, c)), 4), context


class CheckIns:
    """Open check-ins by wearable; answers cancel them, the clock expires them."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.open: dict[str, Suspect] = {}

    def start(
        self,
        wearable: str,
        resident: str | None,
        impact_ms: int,
        impact_mono: float,
        confidence: float,
        now: float,
        room: str | None = None,
    ) -> Suspect | None:
        """Open a check-in; None if one is already open for this wearable (it is kept, the
        higher confidence wins)."""
        cur = self.open.get(wearable)
        if cur is not None:
            cur.confidence = max(cur.confidence, confidence)
            return None
        s = Suspect(wearable, resident, impact_ms, impact_mono, confidence, now + self.window_s, room)
        self.open[wearable] = s
        return s

    def answer(self, *, wearable: str | None = None, resident: str | None = None) -> list[Suspect]:
        """An "I'm OK": from a wearable (its own check-in), a resident's button, or (neither
        given) a room speaker, which answers every open check-in."""
        keys = [
            k
            for k, s in self.open.items()
            if (wearable is None and resident is None)
            or (wearable is not None and k == wearable)
            or (resident is not None and s.resident == resident)
        ]
        return [self.open.pop(k) for k in keys]

    def expired(self, now: float) -> list[Suspect]:
        keys = [k for k, s in self.open.items() if s.deadline <= now]
        return [self.open.pop(k) for k in keys]

    def next_deadline(self) -> float | None:
        return min((s.deadline for s in self.open.values()), default=None)
