"""A guard around the wall clock: readings are never stamped with a clock that is obviously wrong.

A gateway after a power cut may boot with its real-time clock at 1970 or at the firmware's build
date until NTP answers; someone may set the clock by hand; NTP may step it. The guard compares
the wall clock against hard bounds (``not_before``, ``not_after``, the last good time this
gateway persisted) and against the monotonic clock (a jump larger than ``jump_tolerance_s``
between two looks). Policy (docs/edge.md, "Clock"):

* clock plausible and consistent: its time is used, and re-anchored on every look;
* implausible or jumped, with an anchor from this run: time is *estimated* from the anchor plus
  monotonic time, so readings keep flowing with good stamps;
* implausible and no anchor (booted with a bad clock): :meth:`ClockGuard.now_ms` returns None and
  the agent holds readings (with their monotonic time) until the clock becomes plausible;
* after a jump the new wall clock is trusted again once it has stayed self-consistent for
  ``settle_s`` (NTP stepping a clock that was wrong all along).

Every change of verdict is queued as a :class:`ClockChange` for the agent to report.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eldercare.edge.config import ClockConfig


@dataclass(frozen=True, slots=True)
class ClockChange:
    ok: bool
    reason: str
    wall_ms: int  # what the wall clock said


class ClockGuard:
    """Decides, on each look, the time to stamp readings with (or None: hold them)."""

    def __init__(
        self,
        cfg: ClockConfig,
        last_good_ms: int | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.last_good_ms = last_good_ms
        self._wall, self._mono = wall, mono
        self._anchor: tuple[int, float] | None = None  # (wall ms, monotonic s) last trusted
        self._jump: tuple[float, float] | None = None  # (since mono, wall-minus-mono offset ms)
        self.ok = True
        self.changes: list[ClockChange] = []

    def mono(self) -> float:
        return self._mono()

    def now_ms(self) -> int | None:
        """The time to stamp with now, or None when no trustworthy time is known."""
        wall_ms, mono = int(self._wall() * 1000), self._mono()
        tol = self.cfg.jump_tolerance_s * 1000
        expected = None
        if self._anchor is not None:
            expected = self._anchor[0] + int((mono - self._anchor[1]) * 1000)
        reason = self._implausible(wall_ms, tol)
        if reason:
            self._verdict(False, reason, wall_ms)
            return expected
        if expected is not None and abs(wall_ms - expected) > tol:
            offset = wall_ms - mono * 1000
            if self._jump is None or abs(offset - self._jump[1]) > tol:
                self._jump = (mono, offset)
                self._verdict(False, f"clock jumped by {(wall_ms - expected) / 1000:+.0f} s", wall_ms)
            if mono - self._jump[0] < self.cfg.settle_s:
                return expected
            self._jump = None  # settled: the new clock has been self-consistent long enough
        self._jump = None
        self._anchor = (wall_ms, mono)
        self._verdict(True, "clock plausible", wall_ms)
        if self.last_good_ms is None or wall_ms > self.last_good_ms:
            self.last_good_ms = wall_ms
        return wall_ms

    def ms_at(self, mono: float) -> int | None:
        """Wall time of an earlier monotonic instant, for readings held while the clock was bad."""
        now = self.now_ms()
        if now is None:
            return None
        return now - int((self._mono() - mono) * 1000)

    def _implausible(self, wall_ms: int, tol: float) -> str | None:
        if wall_ms < self.cfg.not_before_ms:
            return f"clock reads {wall_ms} ms, before {self.cfg.not_before_ms} (build date)"
        if wall_ms >= self.cfg.not_after_ms:
            return f"clock reads {wall_ms} ms, after {self.cfg.not_after_ms} (far future)"
        if self.last_good_ms is not None and wall_ms < self.last_good_ms - tol:
            return f"clock reads {wall_ms} ms, before the last good time {self.last_good_ms}"
        return None

    def _verdict(self, ok: bool, reason: str, wall_ms: int) -> None:
        if ok != self.ok:
            self.ok = ok
            self.changes.append(ClockChange(ok, reason, wall_ms))


class Held:
    """Readings and events that came while :meth:`ClockGuard.now_ms` had no time to give, with
    their monotonic time, until the clock can stamp them (:meth:`release`).

    Readings are bounded (``hold_max``; the oldest is dropped first and counted in
    :attr:`dropped`); events are never dropped. Entries are ``("r", mono, (sensor, metric, value))``
    or ``("e", mono, fields)``.
    """

    def __init__(self, hold_max: int) -> None:
        self.hold_max = hold_max
        self.entries: deque[tuple[str, float, Any]] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[str, float, Any]]:
        return iter(self.entries)

    def reading(self, mono: float, data: tuple[str, str, float]) -> None:
        if sum(1 for e in self.entries if e[0] == "r") >= self.hold_max:
            for i, e in enumerate(self.entries):  # drop the oldest held reading, never an event
                if e[0] == "r":
                    del self.entries[i]
                    self.dropped += 1
                    break
        self.entries.append(("r", mono, data))

    def event(self, mono: float, fields: dict[str, Any]) -> None:
        self.entries.append(("e", mono, fields))

    def release(self, ms_at: Callable[[float], int | None]) -> Iterator[tuple[str, int, Any]]:
        """Each entry in order with its time on the gateway's clock, taken off as it is yielded;
        stops at the first one ``ms_at`` cannot stamp (it stays held)."""
        while self.entries:
            kind, mono, data = self.entries[0]
            t = ms_at(mono)
            if t is None:
                return
            self.entries.popleft()
            yield kind, t, data
