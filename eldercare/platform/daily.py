"""Pure rules of the daily summary: at home or out, and last night's sleep from the bed sensor.

No database here: the repo fetches the few raw samples, these functions decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

OUT_AFTER = timedelta(minutes=15)  # no motion this long after the door opened: gone out
RETURN_GAP = timedelta(minutes=5)  # motion within this after the door: still (or again) at home
NIGHT_RETURN = timedelta(minutes=30)  # out of bed longer than this in the morning: the night is over


@dataclass(frozen=True)
class Presence:
    state: Literal["home", "out", "unknown"]
    since: datetime | None


def presence(last_motion: datetime | None, last_door: datetime | None, now: datetime) -> Presence:
    """Out when the front door opened and no motion followed for :data:`OUT_AFTER`."""
    if last_motion is None and last_door is None:
        return Presence("unknown", None)
    if last_door is not None and (last_motion is None or last_motion < last_door + RETURN_GAP):
        if now - last_door >= OUT_AFTER:
            return Presence("out", last_door)
        return Presence("home", last_door)
    return Presence("home", last_door if last_door and last_motion and last_door > last_motion else None)


@dataclass(frozen=True)
class Sleep:
    in_bed_at: datetime | None
    out_of_bed_at: datetime | None
    hours_in_bed: float | None
    bed_exits: int


def sleep(samples: Sequence[tuple[datetime, float]], window_end: datetime) -> Sleep | None:
    """Last night from bed samples ``(ts, in_bed 1/0)`` between the evening and ``window_end``.

    The night starts at the first in-bed sample; it ends at the last getting-up that was not
    followed by a return within :data:`NIGHT_RETURN`. Exits in between are counted.
    """
    state = 0.0
    intervals: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    for ts, value in sorted(samples):
        v = 1.0 if value >= 0.5 else 0.0
        if v == state:
            continue
        if v == 1.0:
            start = ts
        elif start is not None:
            intervals.append((start, ts))
            start = None
        state = v
    if start is not None:
        intervals.append((start, window_end))
    if not intervals:
        return None
    # merge short absences (bathroom trips) into one night and count them as exits
    night = [intervals[0]]
    exits = 0
    for a, b in intervals[1:]:
        if a - night[-1][1] <= NIGHT_RETURN:
            exits += 1
            night[-1] = (night[-1][0], b)
        else:
            night.append((a, b))
    longest = max(night, key=lambda ab: ab[1] - ab[0])
    in_bed = sum(
        (
            (min(b, longest[1]) - max(a, longest[0])).total_seconds()
            for a, b in intervals
            if b > longest[0] and a < longest[1]
        ),
        0.0,
    )
    return Sleep(longest[0], longest[1] if longest[1] < window_end else None, round(in_bed / 3600, 2), exits)
