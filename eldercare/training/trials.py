"""One labelled real recording (a *trial*) and the signal handling every dataset loader shares.

A trial is what a laboratory protocol records once: one person, one activity (a fall or a daily
activity), one device placement. Loaders turn each dataset's own files into :class:`Trial` objects
with time in seconds, acceleration in g on the detector's 50 Hz grid, and, for a fall, the time of
its impact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eldercare.models.fall_features import FS

G = 9.80665  # m/s^2 per g
PAD_BEFORE_S = 10.0
PAD_AFTER_S = 30.0
EDGE_S = 3.0  # long enough that the repeated edge keeps its slow micro-motion (breathing)


class DatasetError(ValueError):
    """A dataset folder or file is missing or not in the expected format."""


@dataclass(frozen=True)
class Trial:
    """A real recording: who, where the device was worn, what happened, and the samples.

    ``subject`` is unique across datasets (``"mobifall:7"``); ``activity`` is the dataset's own code;
    ``fall_kind`` is one of the detector's fall kinds (``fall_forward`` ...) or ``""`` for daily
    activity; ``t_impact`` is the fall's impact time (s, on ``t``) or ``None``.
    """

    dataset: str
    subject: str
    placement: str
    activity: str
    fall_kind: str
    t: np.ndarray
    acc: np.ndarray
    t_impact: float | None = None
    source: str = ""

    @property
    def is_fall(self) -> bool:
        return self.t_impact is not None


def to_grid(t: np.ndarray, acc: np.ndarray, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Irregular samples -> a regular ``fs`` grid from the first sample (per-axis interpolation).

    Repeated or backwards time stamps (phones log them) are dropped first. A device faster than
    ``fs`` is first averaged over a box of one grid step, as the detector's own resampler does.
    """
    t = np.asarray(t, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    keep = np.concatenate([[True], np.diff(t) > 0]) & np.isfinite(acc).all(axis=1)
    t, acc = t[keep], acc[keep]
    if len(t) < 2:
        raise DatasetError("a recording needs at least two samples")
    step = float(np.median(np.diff(t)))
    k = max(1, round((1.0 / fs) / step))
    if k > 1:  # box filter over ~one grid step before picking grid points
        kernel = np.ones(k)
        norm = np.convolve(np.ones(len(t)), kernel, mode="same")  # fewer samples at the edges
        acc = np.stack([np.convolve(acc[:, i], kernel, mode="same") / norm for i in range(3)], axis=1)
    grid = np.arange(t[0], t[-1], 1.0 / fs)
    out = np.stack([np.interp(grid, t, acc[:, i]) for i in range(3)], axis=1)
    return grid - grid[0], out


def pad(
    t: np.ndarray, acc: np.ndarray, before_s: float = PAD_BEFORE_S, after_s: float = PAD_AFTER_S
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lengthen a short trial with its own edges, so the detector sees the seconds it needs.

    Laboratory trials are a few seconds long, but the detector judges a fall on up to ten seconds
    after the impact. The first and last three seconds of the real signal are repeated, mirrored back and
    forth so nothing jumps, ``before_s`` before and ``after_s`` after: whatever the person was doing
    at the edges (standing, lying with its breathing and small moves) goes on. Returns (t, acc,
    shift): the trial's own samples now start at ``shift`` seconds.
    """
    n_edge = max(2, min(len(t) // 2, int(EDGE_S * FS)))

    def tile(seg: np.ndarray, n: int) -> np.ndarray:
        both = np.concatenate([seg, seg[::-1]])
        reps = int(np.ceil(n / len(both))) + 1
        return np.tile(both, (reps, 1))[:n]

    nb, na = int(before_s * FS), int(after_s * FS)
    head = tile(acc[:n_edge], nb)[::-1]
    tail = tile(acc[-n_edge:][::-1], na)
    out = np.concatenate([head, acc, tail])
    return np.arange(len(out)) / FS, out, nb / FS


def impact_time(t: np.ndarray, acc: np.ndarray) -> float:
    """The time of the largest |a| of a fall trial: the impact (datasets rarely mark it)."""
    return float(t[int(np.argmax(np.linalg.norm(acc, axis=1)))])
