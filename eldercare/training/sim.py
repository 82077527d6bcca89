"""Simulated recordings beside the real ones: what laboratory trials lack (soft collapses, long days).

Candidate rows are computed once and cached as ``.npz`` (plain arrays) under a cache folder, keyed
by what was drawn, because the cross-validation scores many models on the same rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from eldercare.simulators.wearable import PLACEMENTS
from eldercare.training import fall_train
from eldercare.training.fall_data import day_streams, fall_clips, label_candidates

log = logging.getLogger(__name__)

EVAL_SEED = 20261129  # the simulated evaluation's seed (eldercare.training.evaluate_fall)
EVAL_DAY_HOURS_EACH = 8.0


def version(*more: ModuleType) -> str:
    """A short hash of the code that draws and describes simulated rows (and of ``more`` modules):
    part of a cache file's name, so rows drawn by older code are never reused."""
    import hashlib
    import inspect

    from eldercare.models import fall_features
    from eldercare.simulators import wearable
    from eldercare.training import fall_data

    h = hashlib.sha1()
    for mod in (wearable, fall_data, fall_features, *more):
        h.update(inspect.getsource(mod).encode())
    amounts = {k: v for k, v in vars(fall_train).items() if k.isupper() and isinstance(v, int | float)}
    h.update(repr(sorted(amounts.items())).encode())  # how much training draws, not how it fits
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


AMOUNTS = ("N_FALLS_EACH", "N_EXTRA_SOFT_EACH", "N_LOOKALIKES_EACH", "DAY_HOURS_EACH")


@contextlib.contextmanager
def scaled(scale: float) -> Iterator[None]:
    """Temporarily draw ``scale`` times the simulated training amounts of ``fall_train`` (the
    workers are forked inside, so they see the same amounts)."""
    old = {k: getattr(fall_train, k) for k in AMOUNTS}
    try:
        for k, v in old.items():
            setattr(fall_train, k, type(v)(max(1, round(v * scale))))
        yield
    finally:
        for k, v in old.items():
            setattr(fall_train, k, v)


def training_rows(
    seed: int, workers: int, cache: Path | None = None, scale: float = 1.0
) -> dict[str, np.ndarray]:
    """The simulated training rows of :mod:`eldercare.training.fall_train` (falls, look-alikes, days),
    at ``scale`` times its amounts."""
    with scaled(scale):

        def make() -> dict[str, np.ndarray]:
            x, y, hours = fall_train._collect(seed, workers)
            return {"x": x, "y": y, "hours": np.array([hours])}

        return _cached(None if cache is None else cache / f"sim_train_{seed}_{version()}.npz", make)


def _val_part(job: tuple[int, float, int, int]) -> dict[str, Any]:
    """One shard of the validation rows (runs in a worker process)."""
    vseed, hours_each, k, n = job
    pos, clip_of, place_pos = [], [], []
    for i, c in enumerate(fall_clips(vseed, fall_train.VAL_FALLS_EACH, shard=(k, n))):
        _, x, y, _ = label_candidates(c.session)
        pos.append(x[y == 1])
        clip_of += [i] * int((y == 1).sum())
        place_pos.append(PLACEMENTS.index(c.placement))
    neg, place_neg, hours = [], [], np.zeros(len(PLACEMENTS))
    for j, c in enumerate(day_streams(vseed, hours_each, pieces=2 * int(hours_each))):
        if j % n != k:
            continue
        _, x, y, _ = label_candidates(c.session)
        neg.append(x[y == 0])
        place_neg += [PLACEMENTS.index(c.placement)] * int((y == 0).sum())
        hours[PLACEMENTS.index(c.placement)] += float(c.session.t[-1] - c.session.t[0]) / 3600
    return {
        "pos": pos,
        "clip_of": clip_of,
        "place_pos": place_pos,
        "neg": neg,
        "place_neg": place_neg,
        "hours": hours,
    }


def validation_rows(
    seed: int, cache: Path | None = None, workers: int = 1, hours_each: float = fall_train.VAL_DAY_HOURS_EACH
) -> dict[str, np.ndarray]:
    """Validation falls (positive rows with the clip they came from) and days (negative rows, hours).

    Drawn as :func:`eldercare.training.fall_train._threshold` draws them (seed + validation offset);
    ``hours_each`` of days per placement.
    """
    vseed = seed + fall_train.VALIDATION_OFFSET

    def make() -> dict[str, np.ndarray]:
        n = max(1, workers) * 2
        jobs = [(vseed, hours_each, k, n) for k in range(n)]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                parts = list(pool.map(_val_part, jobs))
        else:
            parts = [_val_part(j) for j in jobs]
        pos, clip_of, place_pos, offset = [], [], [], 0
        for p in parts:
            pos += p["pos"]
            clip_of += [offset + i for i in p["clip_of"]]
            place_pos += p["place_pos"]
            offset += len(p["place_pos"])
        return {
            "pos_x": np.concatenate(pos),
            "pos_clip": np.asarray(clip_of, dtype=np.int64),
            "clip_placement": np.asarray(place_pos, dtype=np.int64),
            "neg_x": np.concatenate([x for p in parts for x in p["neg"]]),
            "neg_placement": np.asarray([v for p in parts for v in p["place_neg"]], dtype=np.int64),
            "hours": np.sum([p["hours"] for p in parts], axis=0),
        }

    name = f"sim_val_{seed}_{hours_each:g}h_{version()}.npz"
    return _cached(None if cache is None else cache / name, make)


def pick_threshold(score: Any, val: dict[str, np.ndarray]) -> tuple[float, dict[str, Any]]:
    """The pooled operating point :mod:`eldercare.training.fall_train` would choose on these rows."""
    p = score(val["pos_x"])
    best = np.zeros(len(val["clip_placement"]))
    np.maximum.at(best, val["pos_clip"], p)
    return fall_train._pick(best, score(val["neg_x"]), float(val["hours"].sum()))


def choose_from_rows(
    model: Any, val: dict[str, np.ndarray]
) -> tuple[float, dict[str, Any], dict[str, float], dict[str, Any]]:
    """The operating points of :func:`eldercare.training.fall_train._threshold`, on cached rows:
    pooled, and per placement never below the pooled one."""
    p_pos, p_neg = model.score(val["pos_x"]), model.score(val["neg_x"])
    best = np.zeros(len(val["clip_placement"]))
    np.maximum.at(best, val["pos_clip"], p_pos)
    thr, info = fall_train._pick(best, p_neg, float(val["hours"].sum()))
    by_place: dict[str, float] = {}
    info_by_place: dict[str, Any] = {}
    for i, place in enumerate(PLACEMENTS):
        b, n, h = best[val["clip_placement"] == i], p_neg[val["neg_placement"] == i], float(val["hours"][i])
        own = fall_train._pick(b, n, h)[0] if len(b) and len(n) and h > 0 else thr  # nothing to go on
        by_place[place] = max(own, thr)
        fa = int((n >= by_place[place]).sum())
        info_by_place[place] = {
            "validation_falls": len(b),
            "validation_day_hours": round(h, 2),
            "validation_sensitivity": round(float(np.mean(b >= by_place[place])), 4) if len(b) else None,
            "validation_false_alarm_candidates": fa,
            "validation_false_alarms_per_hour": round(fa / max(h, 1e-9), 4),
            "own_threshold": round(own, 6),
        }
    return thr, info, by_place, info_by_place
