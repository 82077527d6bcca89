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


def trial(
    dataset: str,
    number: int | str,
    placement: str,
    activity: str,
    fall_kind: str,
    t: np.ndarray,
    acc: np.ndarray,
    t_impact: float | None,
    source: str,
    *,
    padded: bool = False,
) -> Trial:
    """The :class:`Trial` of person ``number`` of ``dataset`` (subject ``"mobifall:7"``), as every loader
    builds it; with ``padded``, lengthened by :func:`pad`, its impact moved with its samples."""
    if padded:
        t, acc, shift = pad(t, acc)
        t_impact = None if t_impact is None else t_impact + shift
    return Trial(
        dataset=dataset,
        subject=f"{dataset}:{int(number)}",
        placement=placement,
        activity=activity,
        fall_kind=fall_kind,
        t=t,
        acc=acc,
        t_impact=t_impact,
        source=source,
    )


def increasing(t: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples as recorded, without repeated or backwards time stamps (phones log them)."""
    t = np.asarray(t, dtype=np.float64)
    acc = np.asarray(acc, dtype=np.float64)
    keep = np.concatenate([[True], np.diff(t) > 0])
    return t[keep], acc[keep]


def median_rate(t: np.ndarray) -> float:
    """A recording's sampling rate (Hz) from its median step."""
    return 1.0 / float(np.median(np.diff(t)))


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
    t: np.ndarray,
    acc: np.ndarray,
    before_s: float = PAD_BEFORE_S,
    after_s: float = PAD_AFTER_S,
    head: str = "standing",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lengthen a short trial, so the detector sees the seconds it needs around an impact.

    Laboratory trials are a few seconds long, but the detector judges a fall on up to four seconds
    before and ten seconds after the impact. After the trial, its last three seconds are repeated,
    mirrored back and forth so nothing jumps: whatever the person was doing at the end (lying with its
    breathing and small moves) goes on for ``after_s``. Before it, ``head="standing"`` puts
    ``before_s`` of quiet standing (the trial's first second's gravity direction with sensor noise and
    slow sway), as the independent check pads its trials and as a protocol starts; ``head="mirror"``
    repeats the first three seconds mirrored instead (which, when a fall comes in the first seconds,
    shows the fall itself, reversed, in the seconds before it). Returns (t, acc, shift): the trial's
    own samples now start at ``shift`` seconds.
    """
    n_edge = max(2, min(len(t) // 2, int(EDGE_S * FS)))

    def tile(seg: np.ndarray, n: int) -> np.ndarray:
        both = np.concatenate([seg, seg[::-1]])
        reps = int(np.ceil(n / len(both))) + 1
        return np.tile(both, (reps, 1))[:n]

    nb, na = int(before_s * FS), int(after_s * FS)
    if head == "standing":
        first = acc[: max(2, int(FS))]
        rng = np.random.default_rng([len(acc), int(abs(first).sum() * 1000) % 2**31])
        before = quiet_standing(np.nanmean(first, axis=0), nb, FS, rng)
    elif head == "mirror":
        before = tile(acc[:n_edge], nb)[::-1]
    else:
        msg = f"head must be 'standing' or 'mirror', got {head!r}"
        raise ValueError(msg)
    tail = tile(acc[-n_edge:][::-1], na)
    out = np.concatenate([before, acc, tail])
    return np.arange(len(out)) / FS, out, nb / FS


NOISE_G = 0.004  # white noise of quiet standing (g per axis)
SWAY_G = 0.006  # slow sway and breathing of a standing body (g)


def quiet_standing(
    up: np.ndarray, n: int, fs: float, rng: np.random.Generator, sway: bool = True
) -> np.ndarray:
    """``n`` samples of a person standing still, as a device reading ``up`` (g) at rest would see it:
    1 g along ``up``, white sensor noise and (``sway``) slow sway and breathing below 1 Hz."""
    u = np.asarray(up, dtype=np.float64)
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    n = max(1, int(n))
    out = np.tile(u, (n, 1)) + rng.normal(0.0, NOISE_G, (n, 3))
    if sway:
        tt = np.arange(n) / fs
        for f in (0.25, 0.4, 0.9):
            phase = rng.uniform(0, 2 * np.pi, 3)
            out += (SWAY_G / 3) * np.sin(2 * np.pi * f * tt[:, None] + phase[None, :])
    return out


def impact_time(t: np.ndarray, acc: np.ndarray) -> float:
    """The time of the largest |a| of a fall trial: the impact (datasets rarely mark it)."""
    return float(t[int(np.argmax(np.linalg.norm(acc, axis=1)))])
