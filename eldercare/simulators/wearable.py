"""Synthetic tri-axial accelerometer streams from a body-worn device: daily activity, falls, look-alikes.

Pure and seeded: every function takes a :class:`numpy.random.Generator` and returns arrays, so the
same seed gives the same stream. No clock, no I/O. The fall model trains on it, the evaluation scores
on it (with seeds training never saw) and the virtual wearable of the simulators replays it.

Physics, in short. A segment describes, sample by sample at an internal rate of ``2 * fs``, the
world-frame linear acceleration of the device (g; x forward, y left, z up) and the posture of the
body as a rotation vector. The device reads *specific force* in its own frame::

    reading = R_device(t)^T (a_linear + z_up)          # 1 g "up" at rest, ~0 g in free fall

``R_device`` is the body posture, then (wrist, pendant) the arm or cord's own rotation, then a fixed
random mounting rotation, so only orientation-free quantities (|a|, angles between gravity
directions) carry over between devices. A fall is: a pre-fall activity, a falling phase in which |a|
sinks below 1 g (deep for a trip or a faint, shallow for a soft collapse) while the body rotates,
an impact whose peak and duration depend on the surface and on which part lands first, then lying
(breathing, small moves, sometimes attempts to get up). The look-alikes share one or two of these
phases but not all: a jump has flight and impact but the wearer stays upright and active; sitting
down hard ends still but after a short drop onto a soft surface; lying down hard (flopping back from
the bed's edge) turns the trunk as far as a fall but about the hips, so a waist device hardly
descends and a pendant or wrist swings through a quarter circle, and the mattress stops it softly
(:func:`_flop_back`; its motion is the second derivative of where the device is); sitting up hard from lying
in bed swings the trunk through as many degrees as a fall and bounces on the mattress, but ends
seated and breathing; a stumble recovers; a device taken off (a handling burst, then placed, dropped
or tossed onto a table or nightstand) is still with no breathing at all.

The sensor model samples at ``fs`` with timing jitter, low-passes, adds noise, per-axis bias and
scale error, quantises, clips each axis at +-``range_g`` and drops packets (gaps, sometimes NaN rows).

Public API: :func:`synth_session` (a chosen sequence of segment kinds), :func:`synth_day` (hours of
daily activity with look-alikes at stated rates, optionally with falls) and :data:`FALL_KINDS`,
:data:`LOOKALIKE_KINDS`, :data:`ADL_KINDS`, :data:`PLACEMENTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

FALL_KINDS: tuple[str, ...] = (
    "fall_forward",
    "fall_backward",
    "fall_sideways",
    "fall_from_bed",
    "fall_from_chair",
    "soft_collapse",
)
LOOKALIKE_KINDS: tuple[str, ...] = (
    "jump",
    "sit_down_hard",
    "lie_down_hard",
    "stumble",
    "device_off",
    "get_up_hard",
)
ADL_KINDS: tuple[str, ...] = (
    "walk",
    "stand",
    "sit_down",
    "sit",
    "stand_up",
    "lie_down",
    "lie",
    "get_up",
    "stairs_up",
    "stairs_down",
    "bend",
    "jog",
)
PLACEMENTS: tuple[str, ...] = ("wrist", "pendant", "waist")

Z = np.array([0.0, 0.0, 1.0])


class WearableError(ValueError):
    """A session was asked for with an unknown kind or placement."""


@dataclass(frozen=True)
class FallLabel:
    """A marked moment of a session: a fall's impact or a look-alike's main peak."""

    t_impact: float
    kind: str

    @property
    def is_fall(self) -> bool:
        return self.kind in FALL_KINDS


class Session(NamedTuple):
    """Sample times (s), readings (n, 3) in g, and the marked moments in time order."""

    t: np.ndarray
    acc: np.ndarray
    labels: list[FallLabel]


@dataclass
class Person:
    """Who wears the device: gait and movement vigour differ between people."""

    step_hz: float
    gait_g: float
    vigour: float
    breathing_g: float
    tremor_g: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Person:
        return cls(
            step_hz=float(rng.uniform(1.3, 2.0)),
            gait_g=float(rng.uniform(0.12, 0.35)),
            vigour=float(rng.uniform(0.6, 1.4)),
            breathing_g=float(rng.uniform(0.002, 0.012)),
            tremor_g=float(rng.uniform(0.0, 0.01)),
        )


@dataclass
class Segment:
    """One stretch of a session at the internal rate: linear acceleration, posture, activity level."""

    lin: np.ndarray  # (n, 3) world-frame linear acceleration, g
    pos: np.ndarray  # (n, 3) body posture rotation vector, rad
    act: np.ndarray  # (n,) 0 = still, 1 = ordinary movement, >1 vigorous (drives arm and cord motion)
    attached: bool = True  # False: the device lies on a table, not on the body
    marks: list[tuple[int, str]] = field(default_factory=list)  # (sample index, kind)


@dataclass
class _State:
    posture: np.ndarray  # current posture rotvec
    pclass: str  # "up", "sit", "lie", "floor"
    person: Person
    fs: float  # internal rate
    placement: str = "waist"  # where the device sits: a motion about the hips moves each differently


# ---------------------------------------------------------------------------------------------
# small vectorised helpers


def rotate(v: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (n, 3) by rotation vectors (n, 3) or (3,) (Rodrigues, vectorised)."""
    rv = np.broadcast_to(rotvec, v.shape)
    theta = np.linalg.norm(rv, axis=-1, keepdims=True)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = rv / safe
    cos, sin = np.cos(theta), np.sin(theta)
    kxv = np.cross(k, v)
    kdv = np.sum(k * v, axis=-1, keepdims=True)
    out = v * cos + kxv * sin + k * kdv * (1.0 - cos)
    return np.where(theta > 1e-12, out, v)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _ramp(n: int, shape: str = "cos") -> np.ndarray:
    """0 -> 1 over n samples: smooth (cos) or accelerating (fall, like a toppling body)."""
    if n <= 0:
        return np.zeros(0)
    x = np.linspace(0.0, 1.0, n)
    if shape == "fall":
        return x**2
    return 0.5 - 0.5 * np.cos(np.pi * x)


def _smooth_noise(rng: np.random.Generator, n: int, fs: float, cutoff_hz: float, dims: int = 3) -> np.ndarray:
    """Band-limited noise with unit standard deviation (white noise through a moving average)."""
    if n == 0:
        return np.zeros((0, dims))
    w = max(1, int(fs / max(cutoff_hz, 1e-3)))
    if w >= 4:
        # cheaper and as smooth: independent knots every w/2 samples, joined by cubic-ish easing
        step = max(2, w // 2)
        knots = rng.normal(size=(n // step + 2, dims))
        pos = np.arange(n) / step
        i = pos.astype(np.int64)
        f = pos - i
        f = (f * f * (3 - 2 * f))[:, None]
        return knots[i] * (1 - f) + knots[i + 1] * f
    x = rng.normal(size=(n + w, dims))
    c = np.cumsum(x, axis=0)
    y = (c[w:] - c[:-w]) / np.sqrt(w)
    return y[:n]


def _pulse(n: int, fs: float, t0: float, dur: float, amp: float) -> np.ndarray:
    """A half-sine pulse of height ``amp`` starting at ``t0`` s lasting ``dur`` s, on n samples."""
    t = np.arange(n) / fs
    x = (t - t0) / max(dur, 1e-3)
    return np.where((x >= 0) & (x <= 1), amp * np.sin(np.pi * np.clip(x, 0, 1)), 0.0)


def _impact(rng: np.random.Generator, n: int, fs: float, t0: float, peak: float, dur: float) -> np.ndarray:
    """World-frame linear acceleration of an impact: upward push of the floor, rebound, ringing.

    ``peak`` is the total reading magnitude wanted at the top (g), so the push is ``peak - 1``.
    """
    lin = np.zeros((n, 3))
    push = max(peak - 1.0, 0.0)
    lin[:, 2] += _pulse(n, fs, t0, dur, push)
    # the first contact is rarely vertical: a sideways share, and a short harder spike on hard floors
    side = rng.normal(0, 0.35, size=2) * push
    lin[:, :2] += _pulse(n, fs, t0, dur, 1.0)[:, None] * side[None, :]
    t = np.arange(n) / fs
    after = t - (t0 + dur)
    f = rng.uniform(6, 14)
    ring = np.where(after > 0, np.exp(-after * rng.uniform(8, 20)) * np.sin(2 * np.pi * f * after), 0.0)
    lin += ring[:, None] * rng.normal(0, 0.25 * push + 0.05, size=3)[None, :]
    return lin


def _dip(n: int, fs: float, t0: float, dur: float, depth: float) -> np.ndarray:
    """Vertical linear acceleration that makes |reading| sink to ``depth`` g (a drop), as (n,)."""
    t = np.arange(n) / fs
    x = np.clip((t - t0) / max(dur, 1e-3), 0, 1)
    inside = (t >= t0) & (t <= t0 + dur)
    shape = np.where(inside, np.sin(np.pi * x) ** 0.6, 0.0)
    return -(1.0 - depth) * shape


# ---------------------------------------------------------------------------------------------
# postures (rotation vectors of the trunk; wrist and cord motion is added per placement)


def _upright(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.normal(0, 0.05), rng.normal(0, 0.08), 0.0])


def _sitting(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.normal(0, 0.08), -rng.uniform(0.15, 0.5), 0.0])


def _lying(rng: np.random.Generator, how: str = "any") -> np.ndarray:
    """Lying: forward (prone), backward (supine), side; a little roll and yaw of the trunk."""
    if how == "any":
        how = str(rng.choice(["forward", "backward", "side"]))
    tilt = rng.uniform(1.3, 1.75)
    if how == "forward":
        base = np.array([0.0, tilt, 0.0])
    elif how == "backward":
        base = np.array([0.0, -tilt, 0.0])
    else:
        base = np.array([tilt * rng.choice([-1.0, 1.0]), 0.0, 0.0])
    return base + rng.normal(0, 0.15, size=3)


def _hold(st: _State, n: int, act: float = 0.0) -> Segment:
    return Segment(np.zeros((n, 3)), np.repeat(st.posture[None, :], n, axis=0), np.full(n, act))


def _transition(st: _State, n: int, target: np.ndarray, shape: str = "cos") -> np.ndarray:
    r = _ramp(n, shape)[:, None]
    return st.posture[None, :] * (1 - r) + target[None, :] * r


def _breathing(rng: np.random.Generator, st: _State, n: int) -> np.ndarray:
    """Chest and belly move a few mg at 0.2-0.4 Hz while lying or sitting still."""
    t = np.arange(n) / st.fs
    f = rng.uniform(0.2, 0.4)
    lin = np.zeros((n, 3))
    lin[:, 0] = st.person.breathing_g * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    lin += st.person.tremor_g * _smooth_noise(rng, n, st.fs, 6.0)
    return lin


# ---------------------------------------------------------------------------------------------
# activities of daily living


def _seconds(rng: np.random.Generator, lo: float, hi: float, st: _State) -> int:
    return max(2, int(rng.uniform(lo, hi) * st.fs))


def _walk(rng: np.random.Generator, st: _State, dur: float | None = None, stairs: str = "") -> Segment:
    p = st.person
    n = _seconds(rng, 8, 40, st) if dur is None else max(2, int(dur * st.fs))
    t = np.arange(n) / st.fs
    f = p.step_hz * rng.uniform(0.9, 1.1) * (0.8 if stairs else 1.0)
    amp = p.gait_g * rng.uniform(0.8, 1.2) * (1.3 if stairs == "down" else 1.0)
    ph = rng.uniform(0, 2 * np.pi)
    lin = np.zeros((n, 3))
    # heel strikes: sharp upward peaks twice per stride, plus harmonics and mediolateral sway
    step = np.sin(2 * np.pi * f * t + ph)
    lin[:, 2] = amp * (step + 0.4 * np.maximum(step, 0) ** 4 * rng.uniform(0.5, 2.0))
    lin[:, 0] = 0.5 * amp * np.sin(2 * np.pi * f * t + ph + 1.2)
    lin[:, 1] = 0.3 * amp * np.sin(np.pi * f * t + ph)
    lin += 0.03 * _smooth_noise(rng, n, st.fs, 5.0)
    target = _upright(rng) + (np.array([0, 0.15, 0]) if stairs == "up" else 0)
    pos = _transition(st, n, target) if st.pclass == "up" else np.repeat(target[None], n, 0)
    st.posture = target
    return Segment(lin, pos, np.full(n, 1.0 if not stairs else 1.3))


def _jog(rng: np.random.Generator, st: _State) -> Segment:
    n = _seconds(rng, 5, 20, st)
    t = np.arange(n) / st.fs
    f = rng.uniform(2.3, 2.9)
    ph = (f * t) % 1.0
    flight = rng.uniform(0.25, 0.4)
    lin = np.zeros((n, 3))
    peak = rng.uniform(1.5, 3.2)
    # flight: near free fall; stance: a loading peak
    stance = ph >= flight
    x = np.where(stance, (ph - flight) / (1 - flight), 0)
    lin[:, 2] = np.where(stance, peak * np.sin(np.pi * x) ** 2, -rng.uniform(0.6, 0.9))
    lin[:, 0] = 0.3 * np.sin(2 * np.pi * f * t)
    lin += 0.05 * _smooth_noise(rng, n, st.fs, 8.0)
    st.posture = _upright(rng)
    return Segment(lin, np.repeat(st.posture[None], n, 0), np.full(n, 2.0))


def _jump(rng: np.random.Generator, st: _State) -> Segment:
    """One to three jumps in place: push-off, flight (free fall), landing peak, still upright."""
    reps = int(rng.integers(1, 4))
    n_each = int(rng.uniform(1.2, 2.0) * st.fs)
    n = n_each * reps + int(2 * st.fs)
    lin = np.zeros((n, 3))
    marks = []
    for k in range(reps):
        t0 = k * n_each / st.fs + 0.5
        flight = rng.uniform(0.2, 0.45)
        lin[:, 2] += _pulse(n, st.fs, t0, 0.25, rng.uniform(0.6, 1.5))
        lin[:, 2] += _dip(n, st.fs, t0 + 0.25, flight, rng.uniform(0.0, 0.25))
        t_land = t0 + 0.25 + flight
        lin += _impact(
            rng, n, st.fs, t_land, rng.uniform(2.5, 6.0) * st.person.vigour, rng.uniform(0.04, 0.12)
        )
        marks.append((int((t_land + 0.04) * st.fs), "jump"))
    st.posture = _upright(rng)
    seg = Segment(lin, np.repeat(st.posture[None], n, 0), np.full(n, 1.5), marks=marks)
    return seg


def _stand(rng: np.random.Generator, st: _State) -> Segment:
    n = _seconds(rng, 5, 60, st)
    target = _upright(rng)
    seg = Segment(0.02 * _smooth_noise(rng, n, st.fs, 1.0), _transition(st, n, target), np.full(n, 0.3))
    st.posture = target
    return seg


def _sit_down(rng: np.random.Generator, st: _State, hard: bool = False) -> Segment:
    n = int(rng.uniform(1.5, 3.0) * st.fs) + int(2 * st.fs)
    drop = rng.uniform(0.25, 0.45) if hard else rng.uniform(0.5, 1.0)
    lin = np.zeros((n, 3))
    lin[:, 2] += _dip(n, st.fs, 0.3, drop, rng.uniform(0.45, 0.75) if hard else rng.uniform(0.75, 0.92))
    peak = rng.uniform(2.0, 3.8) if hard else rng.uniform(1.1, 1.6)
    t_imp = 0.3 + drop
    lin += _impact(rng, n, st.fs, t_imp, peak, rng.uniform(0.08, 0.2))
    target = _sitting(rng)
    lean = np.array([0.0, rng.uniform(0.2, 0.6), 0.0])  # trunk leans forward while going down
    r = _ramp(n)[:, None]
    bump = np.sin(np.pi * np.clip(np.arange(n) / (t_imp * st.fs + 1), 0, 1))[:, None]
    pos = st.posture[None] * (1 - r) + target[None] * r + lean[None] * bump
    st.posture, st.pclass = target, "sit"
    marks = [(int((t_imp + 0.05) * st.fs), "sit_down_hard")] if hard else []
    return Segment(lin, pos, np.full(n, 0.8), marks=marks)


def _sit(rng: np.random.Generator, st: _State) -> Segment:
    n = _seconds(rng, 10, 120, st)
    lin = _breathing(rng, st, n) + 0.01 * _smooth_noise(rng, n, st.fs, 1.0)
    target = _sitting(rng)
    seg = Segment(lin, _transition(st, n, target), np.full(n, rng.uniform(0.1, 0.6)))
    st.posture = target
    return seg


def _stand_up(rng: np.random.Generator, st: _State) -> Segment:
    n = int(rng.uniform(1.5, 3.0) * st.fs)
    lin = np.zeros((n, 3))
    lin[:, 2] += _pulse(n, st.fs, 0.3, 0.6, rng.uniform(0.15, 0.4))
    lin[:, 2] += _dip(n, st.fs, 0.9, 0.4, rng.uniform(0.8, 0.95))
    target = _upright(rng)
    lean = np.array([0.0, rng.uniform(0.3, 0.7), 0.0])
    pos = _transition(st, n, target) + lean[None] * np.sin(np.pi * np.linspace(0, 1, n))[:, None]
    st.posture, st.pclass = target, "up"
    return Segment(lin, pos, np.full(n, 0.8))


def _lie_down(rng: np.random.Generator, st: _State, hard: bool = False) -> Segment:
    """From sitting on the bed's edge to lying; hard: flopping back onto the mattress.

    Ordinary ones too often let go for the last few tenths of a second and land on the mattress
    (1.3-2.6 g), then settle in: real people lying down on a bed read 1.3 g or more in most trials,
    and a detector that never saw it took the landing for a fall. The hard one is a turn about the
    hips (:func:`_flop_back`), not a fall's sink."""
    n_move = int((rng.uniform(0.5, 1.0) if hard else rng.uniform(2.0, 4.0)) * st.fs)
    n = n_move + int(rng.uniform(3, 6) * st.fs)
    lin = np.zeros((n, 3))
    marks = []
    if hard:
        # the same draws from ``rng`` as before this was a turn about the hips, so every other event
        # of a session or a day is drawn as it was; the flop's own details come from ``sub``
        u = float(rng.uniform(0.45, 0.85))
        sub = np.random.default_rng(int(u * 2**52))
        peak_u, land_u = float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.0, 1.0))
        _impact(rng, n, st.fs, 0.0, 2.0, 0.1)  # drawn and set aside: the landing below is damped
        t_c = 0.3 + n_move / st.fs  # the back meets the mattress 0.8-1.3 s after the turn starts
    else:
        lin += (
            0.03 * _smooth_noise(rng, n, st.fs, 2.0) * np.r_[np.ones(n_move), np.zeros(n - n_move)][:, None]
        )
        if rng.random() < 0.5:  # the trunk lets go the last few tenths and lands on the mattress
            dur = n_move / st.fs
            sink = rng.uniform(0.3, 0.6)
            lin[:, 2] += _dip(n, st.fs, dur - sink, sink, rng.uniform(0.55, 0.85))
            lin += _impact(rng, n, st.fs, dur, rng.uniform(1.3, 2.6), rng.uniform(0.1, 0.25))
    target = _lying(rng, str(rng.choice(["backward", "side", "side"])))
    if hard:
        flop_lin, pos, t_peak = _flop_back(sub, st, target, n, t_c, peak_u, land_u)
        lin += flop_lin
        marks.append((int(t_peak * st.fs), "lie_down_hard"))
    else:
        pos = np.concatenate([_transition(st, n_move, target, "cos"), np.repeat(target[None], n - n_move, 0)])
    lin[n_move:] += _breathing(rng, st, n - n_move)
    act = np.r_[np.full(n_move, 0.8), np.full(n - n_move, 0.05)]
    if hard:
        act[: int(t_c * st.fs)] = 0.8
    if rng.random() < 0.5:  # settling in: pillow, blanket, a shift of the hips
        k = min(n - n_move, int(rng.uniform(1.0, 4.0) * st.fs))
        lin[n_move : n_move + k] += rng.uniform(0.03, 0.08) * _smooth_noise(rng, k, st.fs, 2.0)
        act[n_move : n_move + k] = 0.6
    st.posture, st.pclass = target, "lie"
    return Segment(lin, pos, act, marks=marks)


#: Height of the device above the hip joints (m) when flopping back from the bed's edge, by placement:
#: a belt clip sits just above them, a pendant or chest tag on the sternum, a wrist goes along with the
#: shoulders and upper arm (its own swing is added by :func:`_placement_motion`).
FLOP_LEVER_M: dict[str, tuple[float, float]] = {
    "waist": (0.05, 0.12),
    "pendant": (0.35, 0.50),
    "wrist": (0.25, 0.55),
}
#: Peak (g) of the mattress's push under the pelvis as the trunk lands (before the lever's share).
FLOP_LANDING_G: tuple[float, float] = (1.2, 1.75)


def _flop_back(
    rng: np.random.Generator,
    st: _State,
    target: np.ndarray,
    n: int,
    t_c: float,
    peak_u: float,
    land_u: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Flopping back from sitting on the bed's edge: the trunk turns about the hips, the pelvis stays.

    The trunk topples (its turn accelerates, as a body leaning past its balance does, braked by the
    belly muscles) until the back meets the mattress at ``t_c`` s, sinks into it 8-15 degrees and
    comes back, over 0.2-0.4 s. The device's linear acceleration is the second derivative of where
    it is: ``lever`` m above the hips, turned with the trunk, plus the pelvis sinking a few cm into
    the mattress. So a device far from the hips (pendant, wrist) swings through a quarter circle and
    is stopped by the mattress, while a waist device, near the axis, barely moves until the mattress
    pushes the back and pelvis up (about 1.3-1.9 g, damped): no free fall and no drop at the waist, where
    a fall sinks the whole body. ``peak_u`` and ``land_u`` (0-1) set the landing's height and length.
    Returns (linear acceleration in g, posture rotvecs, time of the landing's peak in s).
    """
    fs = st.fs
    t = np.arange(n) / fs
    lo, hi = FLOP_LEVER_M.get(st.placement, FLOP_LEVER_M["waist"])
    lever = rng.uniform(lo, hi)
    omega = rng.uniform(1.2, 2.6)  # the trunk's turn at contact, rad/s (the upper back: 0.5-1.2 m/s)
    sink_m = rng.uniform(0.02, 0.05)  # the pelvis into the mattress
    give_m = rng.uniform(0.06, 0.12)  # the mattress under the upper back (~0.45 m from the hips)
    land_s = 0.2 + 0.2 * land_u
    tau = np.clip(t / t_c, 0.0, 1.0)
    # lowered part: starts and ends at rest; let-go part: accelerates from rest (a body leaning past
    # its balance), so the back meets the mattress at speed
    turn = max(float(np.linalg.norm(target - st.posture)), 0.5)
    free = min(omega * t_c / (3.0 * turn), 1.0)
    s = (1.0 - free) * (6 * tau**5 - 15 * tau**4 + 10 * tau**3) + free * tau**3
    w_c = 3.0 * free / t_c  # d s / dt at contact
    # into the mattress at that speed, stopped where the mattress has given ``give_m`` under the back
    # (a quarter-wave of speed), then back up over the rest of the landing as the springs return
    over = give_m / 0.45 / turn
    t_stop = over * np.pi / (2.0 * w_c)
    t_back = t_stop + land_s  # the springs return slower than they gave
    x = t - t_c
    s = s + np.where(
        x <= 0,
        0.0,
        np.where(
            x <= t_stop,
            over * np.sin(np.pi * np.clip(x, 0, None) / (2.0 * t_stop)),
            over * (0.5 + 0.5 * np.cos(np.pi * np.clip((x - t_stop) / t_back, 0.0, 1.0))),
        ),
    )
    pos = st.posture[None] + (target - st.posture)[None] * s[:, None]
    where = rotate(np.repeat(np.array([[0.0, 0.0, lever]]), n, 0), pos)
    where[:, 2] -= sink_m * np.minimum(s, 1.0)
    lin = np.gradient(np.gradient(where, 1.0 / fs, axis=0), 1.0 / fs, axis=0) / 9.81
    # the mattress pushes the pelvis and lower back up as the trunk lands: a damped half-sine, in full
    # near the pelvis and about half as much on the chest (whose own stop is in ``lin`` already), then a
    # little give-and-return of the springs
    push = FLOP_LANDING_G[0] - 1.0 + (FLOP_LANDING_G[1] - FLOP_LANDING_G[0]) * peak_u
    push *= 1.0 - lever
    lin[:, 2] += _pulse(n, fs, t_c, land_s, push)
    after = t - (t_c + land_s)
    wobble = np.where(
        after > 0, np.exp(-after / 0.15) * np.sin(2 * np.pi * rng.uniform(2.0, 4.0) * after), 0.0
    )
    lin[:, 2] -= 0.15 * push * wobble
    return lin, pos, t_c + land_s / 2.0


def _lie(rng: np.random.Generator, st: _State) -> Segment:
    """In bed: breathing, now and then turning over."""
    n = _seconds(rng, 30, 600, st)
    lin = _breathing(rng, st, n)
    pos = np.repeat(st.posture[None], n, 0)
    act = np.full(n, 0.03)
    for _ in range(int(rng.poisson(n / st.fs / 300))):
        i = int(rng.integers(0, n))
        m = int(rng.uniform(1.5, 4) * st.fs)
        new = _lying(rng, str(rng.choice(["backward", "side"])))
        j = min(n, i + m)
        pos[i:j] = pos[i][None] + (new - pos[i])[None] * _ramp(j - i)[:, None]
        pos[j:] = new
        lin[i:j] += 0.08 * _smooth_noise(rng, j - i, st.fs, 3.0)
        act[i:j] = 0.8
        st.posture = new
    return Segment(lin, pos, act)


def _get_up(rng: np.random.Generator, st: _State) -> Segment:
    n = int(rng.uniform(2.0, 5.0) * st.fs)
    target = _sitting(rng)
    lin = 0.05 * _smooth_noise(rng, n, st.fs, 2.0)
    seg = Segment(lin, _transition(st, n, target), np.full(n, 0.8))
    st.posture, st.pclass = target, "sit"
    return seg


def _get_up_hard(rng: np.random.Generator, st: _State) -> Segment:
    """Sitting up hard from lying in bed: a fast swing of the trunk, a push off the mattress, and
    landing seated on the bed's edge with a bounce; then sitting, breathing."""
    n_move = int(rng.uniform(0.6, 1.2) * st.fs)
    n = n_move + int(rng.uniform(3, 8) * st.fs)
    target = _sitting(rng)
    lin = np.zeros((n, 3))
    dur = n_move / st.fs
    lin[:, 2] += _pulse(n, st.fs, 0.05, dur * 0.5, rng.uniform(0.3, 0.9))  # push off the mattress
    t_imp = dur * rng.uniform(0.8, 1.0)
    lin += _impact(rng, n, st.fs, t_imp, rng.uniform(1.5, 3.0), rng.uniform(0.1, 0.25))  # the bounce
    lin += 0.05 * _smooth_noise(rng, n, st.fs, 3.0) * np.r_[np.ones(n_move), np.zeros(n - n_move)][:, None]
    lin[n_move:] += _breathing(rng, st, n - n_move)
    pos = np.concatenate([_transition(st, n_move, target, "cos"), np.repeat(target[None], n - n_move, 0)])
    st.posture, st.pclass = target, "sit"
    act = np.r_[np.full(n_move, 1.2), np.full(n - n_move, 0.3)]
    return Segment(lin, pos, act, marks=[(int((t_imp + 0.05) * st.fs), "get_up_hard")])


def _floor_rise(rng: np.random.Generator, st: _State) -> Segment:
    """Getting up from the floor after a fall: slow, several stages, often with help."""
    n = int(rng.uniform(5, 15) * st.fs)
    target = _upright(rng)
    lin = 0.08 * _smooth_noise(rng, n, st.fs, 2.0)
    seg = Segment(lin, _transition(st, n, target), np.full(n, 1.0))
    st.posture, st.pclass = target, "up"
    return seg


def _bend(rng: np.random.Generator, st: _State) -> Segment:
    """Bending to pick something up: the trunk pitches 50-100 degrees forward and back."""
    n = int(rng.uniform(3, 6) * st.fs)
    angle = rng.uniform(0.9, 1.7)
    bump = np.sin(np.pi * np.linspace(0, 1, n)) ** 0.5
    pos = st.posture[None] + np.array([0.0, angle, 0.0])[None] * bump[:, None]
    lin = 0.06 * _smooth_noise(rng, n, st.fs, 2.0)
    return Segment(lin, pos, np.full(n, 0.8))


def _stumble(rng: np.random.Generator, st: _State) -> Segment:
    """A trip that is caught: short drop, a hard recovery step, the trunk tilts and comes back."""
    pre = _walk(rng, st, dur=rng.uniform(2, 5))
    n = int(rng.uniform(1.5, 2.5) * st.fs)
    lin = np.zeros((n, 3))
    lin[:, 2] += _dip(n, st.fs, 0.1, rng.uniform(0.15, 0.35), rng.uniform(0.3, 0.75))
    t_imp = 0.1 + 0.35
    lin += _impact(rng, n, st.fs, t_imp, rng.uniform(2.0, 4.5), rng.uniform(0.05, 0.12))
    tilt = np.array([rng.normal(0, 0.2), rng.uniform(0.3, 0.7), 0.0])
    pos = st.posture[None] + tilt[None] * np.sin(np.pi * np.linspace(0, 1, n))[:, None]
    post = _walk(rng, st, dur=rng.uniform(4, 10))
    mid = Segment(lin, pos, np.full(n, 1.5), marks=[(int((t_imp + 0.04) * st.fs), "stumble")])
    return _concat([pre, mid, post])


def _device_off(rng: np.random.Generator, st: _State) -> Segment:
    """Taking the device off and putting it on a table (sometimes dropped from a few cm); later put on."""
    n_h = int(rng.uniform(3, 8) * st.fs)
    handling = Segment(
        0.2 * _smooth_noise(rng, n_h, st.fs, 3.0),
        st.posture[None] + np.cumsum(0.06 * _smooth_noise(rng, n_h, st.fs, 2.0), axis=0),
        np.full(n_h, 1.5),
    )
    n_p = int(rng.uniform(1.5, 3) * st.fs)
    lin = np.zeros((n_p, 3))
    lin[:, 2] += _dip(n_p, st.fs, 0.2, rng.uniform(0.2, 0.5), rng.uniform(0.5, 0.9))
    how = rng.choice(["placed", "dropped", "tossed"], p=[0.5, 0.35, 0.15])
    dropped = how != "placed"
    t_imp = 0.7
    if how == "tossed":  # thrown onto a nightstand or table: short flight, hard landing, a bounce
        lin[:, 2] = _dip(n_p, st.fs, 0.3, 0.35, rng.uniform(0.05, 0.3))
        peak = rng.uniform(3.0, 7.0)
        lin += 0.3 * _impact(rng, n_p, st.fs, t_imp + rng.uniform(0.1, 0.25), peak, 0.02)
    else:
        peak = rng.uniform(2.0, 5.0) if dropped else rng.uniform(1.1, 2.0)
    lin += _impact(rng, n_p, st.fs, t_imp, peak, rng.uniform(0.01, 0.04) if dropped else 0.06)
    table = np.array(
        [np.pi * rng.integers(0, 2), 0.0, rng.uniform(-np.pi, np.pi)]
    )  # flat, face up or down, any heading
    place = Segment(
        lin, _transition(_State(handling.pos[-1], "up", st.person, st.fs), n_p, table), np.full(n_p, 0.5)
    )
    place.marks = [(int((t_imp + 0.03) * st.fs), "device_off")]
    n_t = _seconds(rng, 20, 600, st)
    on_table = Segment(np.zeros((n_t, 3)), np.repeat(table[None], n_t, 0), np.zeros(n_t), attached=False)
    place.attached = False
    n_b = int(rng.uniform(3, 8) * st.fs)
    back = Segment(
        0.2 * _smooth_noise(rng, n_b, st.fs, 3.0),
        table[None] + (st.posture - table)[None] * _ramp(n_b)[:, None],
        np.full(n_b, 1.5),
        attached=False,
    )
    return _concat([handling, place, on_table, back])


# ---------------------------------------------------------------------------------------------
# falls


def _post_fall(rng: np.random.Generator, st: _State, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lying after a fall: still (breathing) or moving, sometimes trying to get up and sinking back."""
    lin = _breathing(rng, st, n)
    pos = np.repeat(st.posture[None], n, 0)
    act = np.full(n, 0.05)
    mode = rng.choice(["still", "moving", "attempts"], p=[0.45, 0.3, 0.25])
    if mode == "moving":
        lin += rng.uniform(0.02, 0.08) * _smooth_noise(rng, n, st.fs, 2.0)
        pos += np.cumsum(0.002 * _smooth_noise(rng, n, st.fs, 1.0), axis=0)
        act[:] = 0.4
    elif mode == "attempts":
        t = int(rng.uniform(3, 10) * st.fs)
        while t < n - st.fs:
            m = int(rng.uniform(2, 6) * st.fs)
            j = min(n, t + m)
            up = _sitting(rng) if rng.random() < 0.6 else _upright(rng) * 0 + np.array([0, 0.8, 0])
            bump = np.sin(np.pi * np.linspace(0, 1, j - t))[:, None]
            pos[t:j] = pos[t:j] + (up - st.posture)[None] * bump * rng.uniform(0.3, 0.8)
            lin[t:j] += rng.uniform(0.05, 0.2) * _smooth_noise(rng, j - t, st.fs, 3.0)
            act[t:j] = 1.0
            t = j + int(rng.uniform(3, 15) * st.fs)
    return lin, pos, act


def _fall(rng: np.random.Generator, st: _State, kind: str, placement: str) -> Segment:
    fs = st.fs
    soft = kind == "soft_collapse"
    if kind == "fall_from_bed":
        fall_s, depth = rng.uniform(0.2, 0.4), rng.uniform(0.0, 0.5)
        peak, imp_dur = rng.uniform(2.0, 5.5), rng.uniform(0.04, 0.12)
        end = _lying(rng, str(rng.choice(["forward", "side", "backward"])))
    elif kind == "fall_from_chair":
        fall_s, depth = rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.55)
        peak, imp_dur = rng.uniform(2.3, 6.5), rng.uniform(0.04, 0.12)
        end = _lying(rng, str(rng.choice(["forward", "side"])))
    elif soft:
        fall_s, depth = rng.uniform(1.0, 2.5), rng.uniform(0.6, 0.85)
        peak, imp_dur = rng.uniform(1.5, 2.5), rng.uniform(0.08, 0.2)
        end = _lying(rng)
    else:
        fall_s, depth = rng.uniform(0.4, 0.9), rng.uniform(0.0, 0.6)
        peak, imp_dur = rng.uniform(3.0, 9.0), rng.uniform(0.03, 0.12)
        end = _lying(rng, kind.removeprefix("fall_").replace("sideways", "side"))
    if placement == "wrist" and not soft:
        peak *= rng.uniform(1.0, 1.6)  # the hands often land first
    if rng.random() < 0.2 and not soft:  # a carpet or a grab at furniture on the way down
        peak = 1.0 + (peak - 1.0) * rng.uniform(0.4, 0.7)
        imp_dur *= 1.5
    n_post = int(rng.uniform(15, 60) * fs)
    t0 = 0.3
    n = int((t0 + fall_s + 0.5) * fs) + n_post
    lin = np.zeros((n, 3))
    if soft:
        # knees give way: a first sink, a catch on the knees, then tipping over onto the floor
        k = rng.uniform(0.35, 0.6)
        lin[:, 2] += _dip(n, fs, t0, fall_s * k, depth)
        lin += _impact(rng, n, fs, t0 + fall_s * k, rng.uniform(1.2, 1.6), 0.15)
        lin[:, 2] += _dip(n, fs, t0 + fall_s * k + 0.15, fall_s * (1 - k) - 0.15, rng.uniform(0.65, 0.9))
    else:
        lin[:, 2] += _dip(n, fs, t0, fall_s, depth)
    t_imp = t0 + fall_s
    lin += _impact(rng, n, fs, t_imp, peak, imp_dur)
    if not soft and rng.random() < 0.5:  # a second contact: hip then shoulder or head
        lin += _impact(
            rng, n, fs, t_imp + rng.uniform(0.1, 0.3), 1 + (peak - 1) * rng.uniform(0.2, 0.6), 0.05
        )
    # the body rotates toward the floor while falling; it keeps toppling a little after contact
    n_rot = int((t0 + fall_s) * fs)
    start = st.posture.copy()
    st.posture = end
    pos = np.empty((n, 3))
    pos[:n_rot] = start[None] + (end - start)[None] * _ramp(n_rot, "fall")[:, None]
    pos[n_rot:] = end
    lp, pp, ap = _post_fall(rng, st, n - n_rot)
    lin[n_rot:] += lp
    pos[n_rot:] = pp
    act = np.r_[np.full(n_rot, 1.5), ap]
    st.pclass = "floor"
    mark = int(np.argmax(np.linalg.norm(lin + Z, axis=1)))
    return Segment(lin, pos, act, marks=[(mark, kind)])


# ---------------------------------------------------------------------------------------------
# composing a session


_NEEDS: dict[str, str] = {
    "walk": "up",
    "stand": "up",
    "stairs_up": "up",
    "stairs_down": "up",
    "bend": "up",
    "jog": "up",
    "jump": "up",
    "stumble": "up",
    "sit_down": "up",
    "sit_down_hard": "up",
    "sit": "sit",
    "stand_up": "sit",
    "lie_down": "sit",
    "lie_down_hard": "sit",
    "get_up": "lie",
    "get_up_hard": "lie",
    "lie": "lie",
    "fall_forward": "up",
    "fall_backward": "up",
    "fall_sideways": "up",
    "soft_collapse": "up",
    "fall_from_chair": "sit",
    "fall_from_bed": "lie",
    "device_off": "any",
}

_MAKERS: dict[str, Callable[[np.random.Generator, _State], Segment]] = {
    "walk": _walk,
    "stand": _stand,
    "stairs_up": lambda r, s: _walk(r, s, stairs="up"),
    "stairs_down": lambda r, s: _walk(r, s, stairs="down"),
    "bend": _bend,
    "jog": _jog,
    "jump": _jump,
    "stumble": _stumble,
    "sit_down": _sit_down,
    "sit_down_hard": lambda r, s: _sit_down(r, s, hard=True),
    "sit": _sit,
    "stand_up": _stand_up,
    "lie_down": _lie_down,
    "lie_down_hard": lambda r, s: _lie_down(r, s, hard=True),
    "get_up": _get_up,
    "get_up_hard": _get_up_hard,
    "lie": _lie,
    "device_off": _device_off,
}


def _route(rng: np.random.Generator, st: _State, need: str) -> list[Segment]:
    """Transitions that bring the body from its present posture class to the one a segment needs."""
    out: list[Segment] = []
    for _ in range(4):
        have = st.pclass
        if need in ("any", have):
            break
        if have == "floor":
            out.append(_floor_rise(rng, st))
        elif have == "up":
            out.append(_sit_down(rng, st))
            if need == "lie" and rng.random() < 0.7:  # sitting on the bed's edge a moment first
                out.append(_hold(st, int(rng.uniform(0.5, 20) * st.fs), 0.2))
        elif have == "sit":
            out.append(_stand_up(rng, st) if need == "up" else _lie_down(rng, st))
        elif have == "lie":
            out.append(_get_up(rng, st))
    return out


def _concat(segs: Sequence[Segment]) -> Segment:
    marks: list[tuple[int, str]] = []
    off = 0
    for s in segs:
        marks += [(off + i, k) for i, k in s.marks]
        off += len(s.act)
    att = np.concatenate([_attached_mask(s) for s in segs]) if segs else np.zeros(0, bool)
    seg = Segment(
        np.concatenate([s.lin for s in segs]) if segs else np.zeros((0, 3)),
        np.concatenate([s.pos for s in segs]) if segs else np.zeros((0, 3)),
        np.concatenate([s.act for s in segs]) if segs else np.zeros(0),
        marks=marks,
    )
    seg.attached = bool(att.all()) if len(att) else True
    seg._att = att  # type: ignore[attr-defined]
    return seg


def _attached_mask(seg: Segment) -> np.ndarray:
    att = getattr(seg, "_att", None)
    return att if att is not None else np.full(len(seg.act), seg.attached)


def _placement_motion(
    rng: np.random.Generator, placement: str, act: np.ndarray, fs: float
) -> tuple[np.ndarray, np.ndarray]:
    """Extra rotation and linear acceleration of the device relative to the trunk.

    Wrist: arm swing and gestures, scaled by activity. Pendant: the cord swings. Waist: nothing.
    """
    n = len(act)
    if placement == "waist":
        return np.zeros((n, 3)), np.zeros((n, 3))
    a = np.convolve(act, np.ones(int(fs)) / int(fs), mode="same")[:, None]
    if placement == "pendant":
        rot = 0.12 * a * _smooth_noise(rng, n, fs, 1.5)
        lin = 0.04 * a * _smooth_noise(rng, n, fs, 4.0)
        return rot, lin
    t = np.arange(n) / fs
    swing = np.zeros((n, 3))
    swing[:, 1] = rng.uniform(0.25, 0.6) * np.sin(2 * np.pi * rng.uniform(0.7, 1.0) * t)
    rot = a * swing + 0.6 * np.minimum(a, 1.2) * _smooth_noise(rng, n, fs, 0.3)
    rot += rng.normal(0, 0.8, size=3)[None]  # how the forearm is held by default
    lin = 0.12 * a * _smooth_noise(rng, n, fs, 3.0)
    return rot, lin


def render(
    rng: np.random.Generator,
    seg: Segment,
    placement: str,
    fs: float = 50.0,
    *,
    range_g: float = 8.0,
    noise_g: float | None = None,
    jitter_s: float | None = None,
    gap_rate: float | None = None,
    t0: float = 0.0,
) -> Session:
    """Turn a body-level segment (at ``2 * fs``) into what a device at ``placement`` records at ``fs``."""
    if placement not in PLACEMENTS:
        msg = f"unknown placement {placement!r}; expected one of {', '.join(PLACEMENTS)}"
        raise WearableError(msg)
    fs_in = 2.0 * fs
    n = len(seg.act)
    att = _attached_mask(seg)
    rot_extra, lin_extra = _placement_motion(rng, placement, seg.act, fs_in)
    lin_extra[~att] = 0.0
    rot_extra[~att] = 0.0
    specific = seg.lin + lin_extra + Z[None]
    body = rotate(specific, -seg.pos)
    dev = rotate(body, -rot_extra)
    mount = random_rotation(rng)
    dev = dev @ mount  # reading in the device's own axes: mount^T applied row-wise
    # the sensor: anti-alias average of pairs, then samples at jittered instants
    smooth = np.vstack([dev[:1], 0.5 * (dev[1:] + dev[:-1])])
    t_in = t0 + np.arange(n) / fs_in
    n_out = n // 2
    jitter = rng.uniform(0.0, 0.004) if jitter_s is None else jitter_s
    t = t0 + np.arange(n_out) / fs + rng.normal(0.0, jitter, n_out)
    t = np.maximum.accumulate(np.clip(t, t0, t_in[-1] if n else t0))
    acc = np.column_stack([np.interp(t, t_in, smooth[:, k]) for k in range(3)])
    sigma = rng.uniform(0.003, 0.015) if noise_g is None else noise_g
    acc = acc * rng.uniform(0.97, 1.03, size=3)[None] + rng.normal(0, 0.02, size=3)[None]
    acc += rng.normal(0.0, sigma, size=acc.shape)
    acc = np.round(acc * 256.0) / 256.0
    acc = np.clip(acc, -range_g, range_g)
    # packet loss: short runs dropped, now and then a NaN row
    keep = np.ones(n_out, bool)
    rate = rng.uniform(0.0, 0.002) if gap_rate is None else gap_rate
    for s in np.flatnonzero(rng.random(n_out) < rate):
        keep[s : s + int(rng.integers(2, 40))] = False
    nan_rows = rng.random(n_out) < rate / 4
    acc[nan_rows] = np.nan
    labels = sorted(
        (FallLabel(float(t_in[min(i, n - 1)]), k) for i, k in seg.marks), key=lambda lab: lab.t_impact
    )
    return Session(t[keep], acc[keep], labels)


def _build(
    rng: np.random.Generator, kinds: Sequence[str], person: Person, fs_in: float, placement: str
) -> Segment:
    st = _State(_upright(rng), "up", person, fs_in, placement)
    segs: list[Segment] = []
    for kind in kinds:
        if kind not in _NEEDS:
            msg = f"unknown segment kind {kind!r}"
            raise WearableError(msg)
        segs += _route(rng, st, _NEEDS[kind])
        if kind in FALL_KINDS:
            segs.append(_fall(rng, st, kind, placement))
        else:
            segs.append(_MAKERS[kind](rng, st))
    return _concat(segs)


def synth_session(
    rng: np.random.Generator,
    kinds: Sequence[str],
    placement: str = "waist",
    fs: float = 50.0,
    *,
    person: Person | None = None,
    t0: float = 0.0,
    **sensor: float,
) -> Session:
    """A session made of the given segment kinds in order (transitions inserted as needed).

    Falls include the lying afterwards (15-60 s). ``sensor`` passes ``range_g``, ``noise_g``,
    ``jitter_s``, ``gap_rate`` to the sensor model; unset ones are drawn at random.

    >>> s = synth_session(np.random.default_rng(1), ["walk", "fall_forward"], "pendant")
    >>> s.acc.shape[1], [lab.kind for lab in s.labels]
    (3, ['fall_forward'])
    """
    person = person or Person.sample(rng)
    seg = _build(rng, kinds, person, 2.0 * fs, placement)
    return render(rng, seg, placement, fs, t0=t0, **sensor)  # type: ignore[arg-type]


#: Look-alikes and transitions per hour of daytime activity in :func:`synth_day` (stated, not measured:
#: deliberately more hard look-alikes than an ordinary day of an older person holds).
DAY_RATES_PER_HOUR: dict[str, float] = {
    "sit_down_hard": 1.0,
    "lie_down_hard": 0.3,
    "stumble": 0.5,
    "jump": 0.3,
    "jog": 0.2,
    "device_off": 0.25,
    "get_up_hard": 0.3,
    "bend": 3.0,
    "stairs_up": 1.0,
    "stairs_down": 1.0,
}


def day_kinds(rng: np.random.Generator, hours: float, falls: Sequence[str] = ()) -> list[str]:
    """A plausible sequence of segment kinds filling about ``hours`` of daytime activity."""
    base = ["walk", "stand", "sit", "walk", "sit", "lie", "walk", "sit"]
    specials = [k for k, r in DAY_RATES_PER_HOUR.items() for _ in range(int(rng.poisson(r * hours)))]
    specials += list(falls)
    # ordinary activity takes ~90 s a segment on average; enough of it to fill the hours
    n_base = max(1, int(hours * 3600 / 64))
    kinds = [str(rng.choice(base)) for _ in range(n_base)]
    for k in specials:
        kinds.insert(int(rng.integers(0, len(kinds) + 1)), k)
    return kinds


def synth_day(
    rng: np.random.Generator,
    hours: float,
    placement: str = "waist",
    fs: float = 50.0,
    *,
    falls: Sequence[str] = (),
    chunk_hours: float = 1.0,
    **sensor: float,
) -> Session:
    """Hours of daily activity by one person, with look-alikes at :data:`DAY_RATES_PER_HOUR`.

    Built in chunks of about ``chunk_hours`` (one sensor mounting each) to keep memory low; the
    returned stream is continuous in time. Falls, if given, are spread over the chunks.
    """
    person = Person.sample(rng)
    ts: list[np.ndarray] = []
    accs: list[np.ndarray] = []
    labels: list[FallLabel] = []
    n_chunks = max(1, int(np.ceil(hours / chunk_hours)))
    fall_chunks = [list(falls[i::n_chunks]) for i in range(n_chunks)]
    t_next = 0.0
    for c in range(n_chunks):
        h = min(chunk_hours, hours - c * chunk_hours)
        kinds = day_kinds(rng, h, fall_chunks[c])
        seg = _build(rng, kinds, person, 2.0 * fs, placement)
        s = render(rng, seg, placement, fs, t0=t_next, **sensor)  # type: ignore[arg-type]
        ts.append(s.t)
        accs.append(s.acc)
        labels += s.labels
        t_next = t_next + len(seg.act) / (2.0 * fs)
    return Session(np.concatenate(ts), np.concatenate(accs), labels)
