"""Simulated recordings beside the real ones: what laboratory trials lack (soft collapses, long days).

Candidate rows are computed once and cached as ``.npz`` (plain arrays) under a cache folder, keyed
by what was drawn, because the cross-validation scores many models on the same rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from eldercare.models import fall_train
from eldercare.models.fall_data import day_streams, fall_clips, label_candidates
from eldercare.simulators.wearable import PLACEMENTS

log = logging.getLogger(__name__)

EVAL_SEED = 20261129  # the simulated evaluation's seed (eldercare.models.evaluate_fall)
EVAL_DAY_HOURS_EACH = 8.0


def version(*more: ModuleType) -> str:
    """A short hash of the code that draws and describes simulated rows (and of ``more`` modules):
    part of a cache file's name, so rows drawn by older code are never reused."""
    import hashlib
    import inspect

    from eldercare.models import fall_data, fall_features
    from eldercare.simulators import wearable

    h = hashlib.sha1()
    for mod in (wearable, fall_data, fall_features, fall_train, *more):
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()[:10]


def _cached(path: Path | None, make: Any) -> dict[str, np.ndarray]:
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    out = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, allow_pickle=False, **out)
    return out


def training_rows(seed: int, workers: int, cache: Path | None = None) -> dict[str, np.ndarray]:
    """The simulated training rows of :mod:`eldercare.models.fall_train` (falls, look-alikes, days)."""

    def make() -> dict[str, np.ndarray]:
        x, y, hours = fall_train._collect(seed, workers)
        return {"x": x, "y": y, "hours": np.array([hours])}

    return _cached(None if cache is None else cache / f"sim_train_{seed}_{version()}.npz", make)


def validation_rows(seed: int, cache: Path | None = None) -> dict[str, np.ndarray]:
    """Validation falls (positive rows with the clip they came from) and days (negative rows, hours).

    Drawn as :func:`eldercare.models.fall_train._threshold` draws them (seed + validation offset).
    """
    vseed = seed + fall_train.VALIDATION_OFFSET

    def make() -> dict[str, np.ndarray]:
        pos, clip_of, place_pos = [], [], []
        for i, c in enumerate(fall_clips(vseed, fall_train.VAL_FALLS_EACH)):
            _, x, y, _ = label_candidates(c.session)
            pos.append(x[y == 1])
            clip_of += [i] * int((y == 1).sum())
            place_pos.append(PLACEMENTS.index(c.placement))
        neg, place_neg, hours = [], [], np.zeros(len(PLACEMENTS))
        days = day_streams(
            vseed, fall_train.VAL_DAY_HOURS_EACH, pieces=2 * int(fall_train.VAL_DAY_HOURS_EACH)
        )
        for c in days:
            _, x, y, _ = label_candidates(c.session)
            neg.append(x[y == 0])
            place_neg += [PLACEMENTS.index(c.placement)] * int((y == 0).sum())
            hours[PLACEMENTS.index(c.placement)] += float(c.session.t[-1] - c.session.t[0]) / 3600
        return {
            "pos_x": np.concatenate(pos),
            "pos_clip": np.asarray(clip_of, dtype=np.int64),
            "clip_placement": np.asarray(place_pos, dtype=np.int64),
            "neg_x": np.concatenate(neg),
            "neg_placement": np.asarray(place_neg, dtype=np.int64),
            "hours": hours,
        }

    return _cached(None if cache is None else cache / f"sim_val_{seed}_{version()}.npz", make)


def pick_threshold(score: Any, val: dict[str, np.ndarray]) -> tuple[float, dict[str, Any]]:
    """The pooled operating point :mod:`eldercare.models.fall_train` would choose on these rows."""
    p = score(val["pos_x"])
    best = np.zeros(len(val["clip_placement"]))
    np.maximum.at(best, val["pos_clip"], p)
    return fall_train._pick(best, score(val["neg_x"]), float(val["hours"].sum()))
