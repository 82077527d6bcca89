"""Candidate rows of real trials and simulated clips, and the detector's decision replayed on scores.

Features are computed once per recording; a model is then judged by scoring the rows, which is what
:class:`~eldercare.models.fall.StreamingFallDetector` does (same features, same event placement at the
largest |a| in the 1.5 s after a candidate, same refractory period), without recomputing them for
every fold and every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eldercare.models.fall import FallDetector, _impact_offset
from eldercare.models.fall_features import (
    DT,
    FEATURE_BATCH,
    FEATURES,
    PRE_N,
    Resampler,
    features,
    iter_windows,
)
from eldercare.models.fall_wear import put_down_after

MATCH_S = 2.0  # a real trial's impact is the largest |a|: allow a little more than the 1.5 s on simulated
EPISODE_S = 60.0
AMBIGUOUS_BEFORE_S = 3.0  # a real fall's first contact (knees, hands) comes shortly before its peak


@dataclass
class Rows:
    """Candidates of one recording: times (s), event times (s, placed at the impact), features, and
    whether the device lay as still as a table after it (the learned detector's wear check)."""

    times: np.ndarray
    events: np.ndarray
    x: np.ndarray
    put_down: np.ndarray


def rows(t: np.ndarray, acc: np.ndarray) -> Rows:
    times: list[np.ndarray] = []
    events: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    down: list[np.ndarray] = []
    for t0, ks, win in iter_windows(Resampler(), [(t, acc)], flush=True):
        for s in range(0, len(ks), FEATURE_BATCH):
            w = win[s : s + FEATURE_BATCH]
            off = np.array([_impact_offset(v) for v in w], dtype=np.int64)
            times.append(t0 + ks[s : s + FEATURE_BATCH] * DT)
            events.append(t0 + (ks[s : s + FEATURE_BATCH] + off) * DT)
            feats.append(features(w))
            down.append(
                np.array([put_down_after(v, PRE_N + o) for v, o in zip(w, off, strict=True)], dtype=bool)
            )
    if not times:
        return Rows(np.zeros(0), np.zeros(0), np.zeros((0, len(FEATURES))), np.zeros(0, dtype=bool))
    return Rows(np.concatenate(times), np.concatenate(events), np.concatenate(feats), np.concatenate(down))


def labels(r: Rows, t_impact: float | None) -> np.ndarray:
    """1 = the fall's impact, 0 = not a fall, -1 = ignore (the seconds around and after a fall)."""
    y = np.zeros(len(r.times), dtype=np.int64)
    if t_impact is None:
        return y
    d = r.times - t_impact
    y[(d >= -AMBIGUOUS_BEFORE_S) & (d <= EPISODE_S)] = -1
    y[np.abs(r.events - t_impact) <= MATCH_S] = 1
    return y


def decide(
    r: Rows,
    p: np.ndarray,
    threshold: float,
    wear_check: bool = False,
    refractory_s: float = FallDetector.refractory_s,
) -> np.ndarray:
    """Event times the detector emits for these candidates at ``threshold`` (time order)."""
    out: list[float] = []
    last = -np.inf
    for te, pj, down in zip(r.events, p, r.put_down, strict=True):
        if pj >= threshold and te - last >= refractory_s and not (wear_check and down):
            out.append(float(te))
            last = float(te)
    return np.asarray(out)


def caught(events: np.ndarray, t_impact: float) -> bool:
    return bool(np.any(np.abs(events - t_impact) <= MATCH_S))
