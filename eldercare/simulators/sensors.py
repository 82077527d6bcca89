"""Device behaviour that the home event stream leaves out: batteries, radios, climate, heart rate.

:mod:`.routine` renders what a resident *does* into PIR, door, bed and plug events. This module
models the devices themselves so that the live runner and the datasets can report what real
hardware reports: battery levels that drain (and a ``low_battery`` incident that drains one
early), radio links that lose readings in bursts, an environment sensor's temperature and
humidity, the wearable's heart rate and steps by activity, and where the wearable sits (wrist or
pendant, any rotation). The 50 Hz accelerometer itself is synthesised by :mod:`.wearable`.

Everything is pure and seeded: values are functions of (seed, time), so a restarted simulator
reports the same numbers.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eldercare.simulators.routine import DAY, OUT, TruthRecord

LOW_BATTERY = 0.15  # the level at which a device (and the gateway) reports low battery

# Typical life of a full battery in days, by sensor kind (wearables are charged, see below).
BATTERY_LIFE_DAYS: dict[str, float] = {
    "pir": 540.0,
    "door": 730.0,
    "bed": 365.0,
    "sos": 900.0,
    "env": 400.0,
    "wearable": 30.0,  # a pendant; a wrist device is charged every night instead
}


@dataclass(frozen=True, slots=True)
class Battery:
    """A linear drain from ``level0`` at ``t0``; a ``low_battery`` incident steepens it."""

    sensor: str
    t0: float
    level0: float
    per_day: float
    low_at: float | None = None  # when it reaches LOW_BATTERY because of an incident
    replaced_at: float | None = None  # when someone put in a fresh one

    def level(self, t: float) -> float:
        if self.replaced_at is not None and t >= self.replaced_at:
            return max(0.0, 1.0 - (t - self.replaced_at) / DAY * self.per_day)
        if self.low_at is not None:
            # from the normal curve a week before, down to LOW_BATTERY at low_at, then on to empty
            start = self.low_at - 7 * DAY
            normal = max(0.0, self.level0 - (start - self.t0) / DAY * self.per_day)
            if t >= start:
                slope = (normal - LOW_BATTERY) / (7 * DAY)
                return max(0.0, min(1.0, normal - (t - start) * slope))
        return max(0.0, min(1.0, self.level0 - (t - self.t0) / DAY * self.per_day))

    def is_low(self, t: float) -> bool:
        return self.level(t) < LOW_BATTERY

    def reported(self, t: float) -> float:
        """The level as the device reports it, to 3 decimals rounded down: just under LOW_BATTERY
        it reports low at once (rounded to nearest, 0.1497 showed as 0.150 for minutes of drain)."""
        return math.floor(self.level(t) * 1000) / 1000


def battery_for(
    seed: int, sensor: str, kind: str, t0: float, truth: Sequence[TruthRecord] = ()
) -> Battery | None:
    """A sensor's battery (None for mains-powered plugs), aged at random, honouring ``low_battery`` truth."""
    life = BATTERY_LIFE_DAYS.get(kind)
    if life is None:
        return None
    r = random.Random(f"{seed}:battery:{sensor}")
    low = next((x for x in truth if x.kind == "low_battery" and x.sensor == sensor), None)
    return Battery(
        sensor=sensor,
        t0=t0,
        level0=round(r.uniform(0.45, 1.0), 3),
        per_day=round(1.0 / (life * r.uniform(0.8, 1.2)), 6),
        low_at=low.t if low else None,
        replaced_at=low.end if low else None,
    )


class Radio:
    """A Gilbert-Elliott link: mostly good, sometimes in a bad spell where most readings are lost."""

    def __init__(
        self,
        seed: int,
        name: str,
        loss_good: float = 0.002,
        loss_bad: float = 0.7,
        p_enter_bad: float = 0.0005,
        p_leave_bad: float = 0.05,
    ) -> None:
        self._r = random.Random(f"{seed}:radio:{name}")
        self.loss_good, self.loss_bad = loss_good, loss_bad
        self.p_enter_bad, self.p_leave_bad = p_enter_bad, p_leave_bad
        self.bad = False

    def delivered(self) -> bool:
        """Whether the next transmission arrives; call once per reading, in time order."""
        r = self._r.random()
        if self.bad:
            if r < self.p_leave_bad:
                self.bad = False
        elif r < self.p_enter_bad:
            self.bad = True
        return self._r.random() >= (self.loss_bad if self.bad else self.loss_good)

    def rssi(self) -> float:
        return round(self._r.gauss(-78.0 if self.bad else -62.0, 4.0), 1)


_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


@lru_cache(maxsize=4096)
def _key(key: str) -> int:
    return zlib.crc32(key.encode())


def _noise(seed: int, key: str, t: float, sd: float) -> float:
    """A normal deviate that is a pure function of (seed, key, whole second): no RNG state to keep."""
    h = _mix((seed & _M64) ^ (_key(key) << 32) ^ _mix(int(t) & _M64))
    u1 = ((h >> 11) + 1) / 9007199254740993.0  # (0, 1]
    u2 = (_mix(h) >> 11) / 9007199254740992.0
    return sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@lru_cache(maxsize=4096)
def _climate(seed: int) -> tuple[float, float, float]:
    r = random.Random(f"{seed}:env")
    return r.uniform(19.5, 24.5), r.uniform(0.8, 2.5), r.uniform(38, 60)


def env_reading(seed: int, t: float, rng: random.Random | None = None) -> tuple[float, float]:
    """Indoor temperature (°C) and relative humidity (%) at ``t``: a daily cycle plus noise.

    Without ``rng`` the noise is a pure function of (seed, t); with one it is drawn from it (faster).
    """
    base, swing, hum = _climate(seed)
    phase = 2 * math.pi * ((t % DAY) / DAY - 0.625)  # warmest mid-afternoon
    n1 = rng.gauss(0.0, 0.15) if rng else _noise(seed, "temp", t, 0.15)
    n2 = rng.gauss(0.0, 1.0) if rng else _noise(seed, "rh", t, 1.0)
    temp = base + swing * math.cos(phase) + n1
    rh = hum - 4.0 * math.cos(phase) + n2
    return round(temp, 2), round(max(5.0, min(95.0, rh)), 1)


# Resting heart rate by what the resident is doing (bpm): (mean, sd); None: no reading.
HEART_RATE: dict[str, tuple[float, float] | None] = {
    "sleep": (56, 3),
    "nap_bed": (58, 3),
    "nap_chair": (60, 3),
    "stuck_in_bed": (64, 5),
    "rest": (68, 4),
    "tv": (67, 4),
    "eat": (72, 4),
    "visit": (74, 5),
    "down": (96, 8),  # pain and fear after a fall
    "collapsed": (38, 4),  # bradycardia: the vitals check's business
    "collapsed_in_bed": (38, 4),
}
_ACTIVE = (84, 7)
STEPS_PER_MIN: dict[str, float] = {"walk": 70, "chores": 25, "out": 45, "wander_out": 60, "cook": 15}
# lying or sitting still, or on the floor: a step counter counts (almost) nothing
STILL_ACTIVITIES = frozenset(
    {"sleep", "nap_bed", "nap_chair", "stuck_in_bed", "rest", "tv", "down", "collapsed", "collapsed_in_bed"}
)
STILL_STEPS_PER_MIN = 0.3
WALK_STEPS = (15.0, 40.0)  # steps from one room to another
WORN_DAY_P = 0.85  # share of days the resident puts the wearable on
OFF_ACTIVITIES = frozenset({"sleep", "hygiene"})  # taken off for the night and to wash


@lru_cache(maxsize=4096)
def _hr_offset(seed: int, resident: str) -> float:
    return random.Random(f"{seed}:hr:{resident}").uniform(-6, 8)


def heart_rate(
    seed: int, resident: str, activity: str, t: float, rng: random.Random | None = None
) -> float | None:
    """The wearable's heart rate for a minute of ``activity`` (None: no pulse read)."""
    mean_sd = HEART_RATE.get(activity, _ACTIVE)
    if mean_sd is None:
        return None
    mean, sd = mean_sd
    noise = rng.gauss(0.0, sd) if rng else _noise(seed, f"hr:{resident}", t, sd)
    return round(mean + _hr_offset(seed, resident) + noise, 1)


def steps(
    seed: int, resident: str, activity: str, t: float, minutes: float = 1.0, rng: random.Random | None = None
) -> float:
    rate = STEPS_PER_MIN.get(activity, STILL_STEPS_PER_MIN if activity in STILL_ACTIVITIES else 3.0)
    noise = rng.gauss(0.0, 0.25) if rng else _noise(seed, f"steps:{resident}", t, 0.25)
    return float(max(0, round(rate * minutes * (1 + noise))))


def walk_steps(rng: random.Random) -> float:
    """Steps of a walk from one room to the next (added to that minute's reading)."""
    return float(round(rng.uniform(*WALK_STEPS)))


def step_readings(
    seed: int, resident: str, segments: Sequence[Any], t0: float, t1: float, every_s: float = 60.0
) -> list[tuple[float, float]]:
    """The wearable's ``steps`` readings ``(t, steps)`` over [t0, t1), as the gateway forwards them.

    One reading every ``every_s`` while the device is worn and in range: not on a day the resident
    leaves it off (1 in 7), not while asleep or washing (taken off), not while out (out of the
    gateway's range). A change of room adds a walk to that minute.
    """
    rng = random.Random(f"steps:{seed}:{resident}")
    out: list[tuple[float, float]] = []
    worn_day: dict[int, bool] = {}
    i, prev_room = 0, None
    t = math.ceil(t0 / every_s) * every_s
    while t < t1 and i < len(segments):
        while i < len(segments) and segments[i].end <= t:
            i += 1
        if i >= len(segments):
            break
        seg = segments[i]
        if seg.start > t:
            t += every_s
            continue
        d = math.floor(t / DAY)
        if d not in worn_day:
            worn_day[d] = random.Random(f"worn:{seed}:{resident}:{d}").random() < WORN_DAY_P
        moved = prev_room is not None and seg.room != prev_room
        prev_room = seg.room
        if worn_day[d] and seg.room != OUT and seg.activity not in OFF_ACTIVITIES:
            n = steps(seed, resident, seg.activity, t, rng=rng) + (walk_steps(rng) if moved else 0.0)
            out.append((t, n))
        t += every_s
    return out


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a resident wears the device and how it is rotated relative to the body frame."""

    site: str  # "wrist" or "pendant"
    rotation: tuple[tuple[float, float, float], ...]  # 3x3 rotation matrix, row-major

    @classmethod
    def draw(cls, rng: random.Random | int) -> Placement:
        r = rng if isinstance(rng, random.Random) else random.Random(f"placement:{rng}")
        site = "pendant" if r.random() < 0.5 else "wrist"
        return cls(site, random_rotation(r))


def random_rotation(r: random.Random) -> tuple[tuple[float, float, float], ...]:
    """A uniformly random rotation (Shoemake's quaternion method)."""
    u1, u2, u3 = r.random(), r.random(), r.random()
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    w, x = a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2)
    y, z = b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)
    return (
        (1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)),
        (2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)),
        (2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)),
    )
