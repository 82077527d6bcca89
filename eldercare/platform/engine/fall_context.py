"""Does the home confirm or doubt a wearable's fall? A pure rule over what the home's sensors said.

A fallen person cannot walk into another room, lie down in bed or open the front door within a
minute of the impact, nor press "I'm OK"; a pendant tossed onto the nightstand or a hard sit on the
bed is followed by exactly that. So, over the minute after the impact (the first seconds are the
fall itself and are ignored):

- ``doubtful`` ("I'm OK" pressed, motion in another room, the bed saying "in bed", a door
  opened, or an appliance switched on): high severity, normal escalation;
- ``certain`` (nothing at all, though the home has motion sensors and was watched long enough):
  critical, and the next tier is told at once;
- ``unconfirmed`` (motion only in the room of the fall, no motion sensors, or too short a watch):
  critical, normal escalation, as without context.

A doubtful fall still opens an alert: doubt lowers the urgency, it never hides a fall. Motion in
the fall's own room says nothing either way (a fallen person moves on the floor), and a home with
no motion sensors cannot vouch for silence.

Pure: no clock, database or I/O; the engine gathers the signals (the gateway's own view of the
check-in, ``evidence.context``, and the home's readings stored around the impact) and calls
:func:`judge_fall`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from eldercare import i18n

SETTLE_S = 3.0  # motion in the first seconds after an impact is the fall itself
WINDOW_S = 60.0  # "within a minute after the impact"
MIN_SILENCE_S = 30.0  # silence must have been watched at least this long to make a fall certain
DECISION_DELAY_S = 10.0  # the wearable's detector decides about this long after the impact
PLUG_ON_W = 20.0  # a plug's draw rising through this is someone switching an appliance on

Verdict = Literal["certain", "doubtful", "unconfirmed"]
SEVERITY: dict[str, str] = {"certain": "critical", "unconfirmed": "critical", "doubtful": "high"}


@dataclass(frozen=True, slots=True)
class Signal:
    """One thing a home sensor said: ``kind`` pir (1 = motion), bed (1 = in bed), door (1 = opened),
    plug (watts; ``sensor`` tells one plug of a room from another)."""

    t_s: float
    kind: str
    room: str | None
    value: float
    sensor: str | None = None


@dataclass(frozen=True)
class FallJudgement:
    """The verdict, what it rests on, and what it means for the alert."""

    verdict: Verdict
    motion_elsewhere: tuple[str, ...] = ()
    in_bed: bool = False
    door: bool = False
    switched_on: tuple[str, ...] = ()  # rooms where an appliance was switched on
    answered: bool = False
    motion_in_room: bool = False
    watched_s: float = 0.0
    room: str | None = None

    @property
    def severity(self) -> str:
        return SEVERITY[self.verdict]

    @property
    def escalate_now(self) -> bool:
        """A certain fall skips the first tier's wait: the next tier is told at once as well."""
        return self.verdict == "certain"

    def explain(self, lang: str = "en") -> str:
        """One sentence for the alert in ``lang`` (``fall.*`` messages of the catalogue)."""
        loc = i18n.supported(lang) or "en"
        if self.verdict == "doubtful":
            listed = i18n.t("fall.list_sep", loc).join
            why = [
                i18n.t(f"fall.why.{name}", loc, rooms=listed(rooms))
                for name, on, rooms in (
                    ("answered", self.answered, ()),
                    ("motion_elsewhere", bool(self.motion_elsewhere), self.motion_elsewhere),
                    ("in_bed", self.in_bed, ()),
                    ("door", self.door, ()),
                    ("switched_on", bool(self.switched_on), self.switched_on),
                )
                if on
            ]
            return i18n.t("fall.doubtful", loc, why=i18n.t("fall.why_sep", loc).join(why))
        if self.verdict == "certain":
            return i18n.t("fall.certain", loc, seconds=f"{self.watched_s:.0f}")
        return i18n.t("fall.motion_in_room" if self.motion_in_room else "fall.unknown", loc)


def judge_fall(
    *,
    impact_s: float,
    room: str | None,
    signals: Iterable[Signal],
    watched_until_s: float,
    has_motion_sensors: bool,
    answered: bool = False,
) -> FallJudgement:
    """Judge a fall candidate by the home's signals in the minute after its impact.

    ``room``: where the resident was at the impact (the last motion before it), None if unknown;
    ``watched_until_s``: until when the signals are known to be complete (silence is only evidence
    up to there; a doubting signal counts whenever it came within the minute).
    """
    lo, hi = impact_s + SETTLE_S, impact_s + WINDOW_S
    signals = sorted(signals, key=lambda s: s.t_s)
    switched_on = _switched_on(signals, lo, hi)
    seen = [s for s in signals if lo <= s.t_s <= hi and s.value >= 0.5 and s.kind != "plug"]
    elsewhere = tuple(
        sorted({s.room for s in seen if s.kind == "pir" and s.room and room is not None and s.room != room})
    )
    in_bed = any(s.kind == "bed" for s in seen)
    door = any(s.kind == "door" for s in seen)
    motion = any(s.kind == "pir" for s in seen)
    watched = max(0.0, min(watched_until_s, hi) - lo)
    common = {
        "motion_elsewhere": elsewhere,
        "in_bed": in_bed,
        "door": door,
        "switched_on": switched_on,
        "answered": answered,
        "watched_s": watched,
        "room": room,
        "motion_in_room": motion and not elsewhere,
    }
    if answered or elsewhere or in_bed or door or switched_on:
        return FallJudgement("doubtful", **common)  # type: ignore[arg-type]
    if not motion and has_motion_sensors and watched >= MIN_SILENCE_S:
        return FallJudgement("certain", **common)  # type: ignore[arg-type]
    return FallJudgement("unconfirmed", **common)  # type: ignore[arg-type]


def _switched_on(signals: list[Signal], lo: float, hi: float) -> tuple[str, ...]:
    """Rooms where a plug's draw rose through :data:`PLUG_ON_W` within [lo, hi] (its reading before
    is needed: a plug first heard drawing power says nothing of when it was switched on)."""
    last: dict[str | None, float] = {}
    rooms: set[str] = set()
    for s in signals:
        if s.kind != "plug" or s.t_s > hi:
            continue
        key = s.sensor or s.room
        before = last.get(key)
        if s.t_s >= lo and before is not None and before < PLUG_ON_W <= s.value:
            rooms.add(s.room or "?")
        last[key] = s.value
    return tuple(sorted(rooms))


def edge_signals(context: dict[str, Any], impact_s: float) -> list[Signal]:
    """What the gateway saw during its check-in (``evidence.context``) as signals.

    The gateway reports which rooms had motion, whether the bed said "in bed" and whether a door
    opened after the impact, not when: they are placed just after the settling seconds.
    """
    at = impact_s + SETTLE_S
    out = [
        Signal(at, "pir", str(r), 1.0) for r in context.get("motion_elsewhere") or () if isinstance(r, str)
    ]
    if context.get("back_in_bed"):
        out.append(Signal(at, "bed", None, 1.0))
    if context.get("door"):
        out.append(Signal(at, "door", None, 1.0))
    room = context.get("room")
    if not out and context.get("still") is False and isinstance(room, str):
        out.append(Signal(at, "pir", room, 1.0))  # moved, but only where they fell
    return out


def edge_watched_until(evidence: dict[str, Any], impact_s: float) -> float:
    """Until when the gateway watched the home for its ``fall`` event: its detector's decision delay,
    then the check-in window. Without a check-in record, nothing after the impact is known."""
    checkin = evidence.get("checkin")
    if not isinstance(checkin, dict) or not isinstance(evidence.get("context"), dict):
        return impact_s
    window = checkin.get("window_s")
    return impact_s + DECISION_DELAY_S + float(window) if isinstance(window, int | float) else impact_s
