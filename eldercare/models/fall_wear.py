"""Is the wearable on a body? A device lying on a table is still in a way no person is.

A worn device, even on someone lying motionless, moves a little all the time: breathing lifts the
chest and belly by a few mg at 0.2-0.4 Hz, the pulse and small shifts of weight add more. A device
taken off and put on a table or nightstand reads gravity and its own sensor noise, nothing else.
Sensor noise is white, so it is measured from the differences between successive samples; the slow
motion is what remains in the variance of one-second means beyond what that noise explains. A
stretch whose slow motion is below :data:`MICRO_MOTION_G` (orientation-free: summed over the axes)
and whose mean is ~1 g is *not worn*.

Pure numpy; no state. The fall detectors use it to refuse an "impact, then lying still" that is a
device put down (:func:`still_as_a_table`), and a gateway may use :func:`not_worn` for its status.
"""

from __future__ import annotations

import numpy as np

from eldercare.models.fall_features import FS

BLOCK_S = 1.0
MICRO_MOTION_G = 0.001  # slow motion of a worn, motionless body is ~1.5-8 mg (breathing alone)
GRAVITY_TOL_G = 0.08
NOT_WORN_AFTER_S = 60.0  # still that long before a gateway says "not worn"
MIN_S = 5.0
POST_SKIP_S = 2.5  # after an impact, the device settles on the table (or the person on the floor)


def micro_motion_g(acc: np.ndarray, fs: float = FS) -> float:
    """Slow motion (g) of a stretch on a regular grid: one-second means' spread beyond sensor noise.

    NaN rows (gaps) are ignored; returns NaN when fewer than :data:`MIN_S` seconds are usable.
    """
    acc = np.asarray(acc, dtype=np.float64)
    b = max(2, round(BLOCK_S * fs))
    n_blocks = len(acc) // b
    if n_blocks * b < MIN_S * fs:
        return float("nan")
    blocks = acc[: n_blocks * b].reshape(n_blocks, b, 3)
    ok = np.isfinite(blocks).all(axis=2)
    full = ok.all(axis=1)
    if full.sum() < MIN_S / BLOCK_S:
        return float("nan")
    blocks = blocks[full]
    means = blocks.mean(axis=1)
    lf_var = float(means.var(axis=0, ddof=1).sum())
    noise_var = float(
        (np.diff(blocks, axis=1).var(axis=(0, 1)) / 2.0).sum()
    )  # white noise: var(diff) = 2 s^2
    return float(np.sqrt(max(0.0, lf_var - noise_var / b)))


def still_as_a_table(acc: np.ndarray, fs: float = FS) -> bool:
    """True when a stretch is ~1 g and moves less than any worn device does."""
    acc = np.asarray(acc, dtype=np.float64)
    good = acc[np.isfinite(acc).all(axis=1)]
    if len(good) == 0:
        return False
    g = float(np.linalg.norm(good.mean(axis=0)))
    mm = micro_motion_g(acc, fs)
    return bool(np.isfinite(mm) and abs(g - 1.0) <= GRAVITY_TOL_G and mm < MICRO_MOTION_G)


def put_down_after(window: np.ndarray, impact_i: int, fs: float = FS) -> bool:
    """For a candidate's window whose impact is sample ``impact_i``: table-still from 2.5 s after it."""
    return still_as_a_table(np.asarray(window)[impact_i + int(POST_SKIP_S * fs) :], fs)


def not_worn(acc: np.ndarray, fs: float = FS, after_s: float = NOT_WORN_AFTER_S) -> bool:
    """The wearer's status: the last ``after_s`` seconds of ``acc`` (on a ``fs`` grid) are table-still.

    Needs at least ``after_s`` seconds; shorter input is "worn" (no evidence either way).
    """
    acc = np.asarray(acc, dtype=np.float64)
    n = int(after_s * fs)
    if len(acc) < n:
        return False
    return still_as_a_table(acc[-n:], fs)


class WearTracker:
    """Streaming wear state for a gateway's status: push samples, read :attr:`not_worn`.

    Keeps only the last :data:`NOT_WORN_AFTER_S` seconds (bounded memory); samples are interpolated
    onto a 50 Hz grid when the state is read.
    """

    def __init__(self, after_s: float = NOT_WORN_AFTER_S) -> None:
        self.after_s = float(after_s)
        self._t = np.zeros(0)
        self._a = np.zeros((0, 3))

    def push(self, t: np.ndarray, acc: np.ndarray) -> bool:
        """Add samples (s, g); returns the state after them (True: not worn)."""
        self.add(t, acc)
        return self.not_worn

    def add(self, t: np.ndarray, acc: np.ndarray) -> None:
        """Add samples (s, g) without judging them (a gateway judges every few seconds, not per chunk)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        acc = np.asarray(acc, dtype=np.float64).reshape(-1, 3)
        self._t = np.concatenate([self._t, t])
        self._a = np.concatenate([self._a, acc])
        if len(self._t):
            keep = self._t > self._t[-1] - self.after_s - 1.0
            self._t, self._a = self._t[keep], self._a[keep]

    @property
    def not_worn(self) -> bool:
        if len(self._t) < 2 or self._t[-1] - self._t[0] < self.after_s:
            return False
        ok = np.isfinite(self._a).all(axis=1)
        t, a = self._t[ok], self._a[ok]
        if len(t) < 2:
            return False
        grid = self._t[-1] - self.after_s + np.arange(1, int(self.after_s * FS) + 1) / FS
        return still_as_a_table(np.column_stack([np.interp(grid, t, a[:, i]) for i in range(3)]))
