"""``eldercare models train fall [--data DIR] [--cache C]``: the fall model from the simulator
(plus real trials with ``--data``), reusing cached simulated rows.

Real trials bring what the simulator cannot know (how real people fall and move); the simulator
still brings what laboratory trials lack (soft collapses, falls from bed, hours of daily life for
the false-alarm tail and the threshold).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models.fall import MODEL_JSON, TreeEnsemble
from eldercare.training import fall_train
from eldercare.training.crossval import REAL_WEIGHT, real_xy, trial_rows
from eldercare.training.datasets import load_dir
from eldercare.training.sim import choose_from_rows, pick_threshold, scaled, training_rows, validation_rows


def real_rows(data_dir: Path, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Candidate rows of every real trial under ``data_dir`` (kept in ``cache``, shared with
    :mod:`eldercare.training.crossval`), and what they are for the record."""
    trials = load_dir(data_dir)
    x, y = real_xy(trial_rows(trials, cache))
    info = {
        "datasets": sorted(Counter(t.dataset for t in trials).items()),
        "subjects": len({t.subject for t in trials}),
        "fall_trials": sum(t.is_fall for t in trials),
        "adl_trials": sum(not t.is_fall for t in trials),
        "placements": sorted({t.placement for t in trials}),
        "candidate_rows": len(y),
        "positive_rows": int(y.sum()),
        "row_weight": REAL_WEIGHT,
    }
    return x, y, info


def train(
    data_dir: Path | None,
    seed: int = 0,
    out_dir: Path | None = None,
    workers: int = 2,
    cache: Path | None = None,
    sim_scale: float = 1.0,
    val_hours_each: float = fall_train.VAL_DAY_HOURS_EACH,
) -> dict[str, Any]:
    """Train on the simulator, plus every real trial under ``data_dir`` when it is given.

    ``cache`` keeps (and reuses) the simulated rows, the same ones :mod:`eldercare.training.crossval`
    draws; ``sim_scale`` draws that share of the simulated training amounts and ``val_hours_each``
    hours of simulated validation days per placement (less: faster, a noisier threshold). Without
    any of them and without ``data_dir`` this is exactly :func:`eldercare.training.fall_train.train`.
    """
    extra = None
    if data_dir is not None:
        x, y, info = real_rows(data_dir, cache)
        extra = (x, y, REAL_WEIGHT, info)
    if cache is None and sim_scale == 1.0 and val_hours_each == fall_train.VAL_DAY_HOURS_EACH:
        return fall_train.train(seed=seed, out_dir=out_dir, workers=workers, extra=extra)
    rows = training_rows(seed, workers, cache, sim_scale)
    val = validation_rows(seed, cache, workers, val_hours_each)
    with scaled(sim_scale):  # the record states the amounts actually drawn
        record = fall_train.train(
            seed=seed,
            out_dir=out_dir,
            workers=workers,
            extra=extra,
            collected=(rows["x"], rows["y"], float(rows["hours"][0])),
            choose=lambda model: choose_from_rows(model, val),
        )
    record["data"]["sim_scale"] = sim_scale
    record["data"]["validation_hours_per_placement"] = val_hours_each
    out = Path(out_dir) if out_dir else fall_train.DEFAULT_DIR
    (out / MODEL_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def pooled_validation(vals: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Validation rows of several seeds as one set (each seed's fall clips kept apart)."""
    clips, offset = [], 0
    for v in vals:
        clips.append(v["pos_clip"] + offset)
        offset += len(v["clip_placement"])
    return {
        "pos_x": np.concatenate([v["pos_x"] for v in vals]),
        "pos_clip": np.concatenate(clips),
        "clip_placement": np.concatenate([v["clip_placement"] for v in vals]),
        "neg_x": np.concatenate([v["neg_x"] for v in vals]),
        "neg_placement": np.concatenate([v["neg_placement"] for v in vals]),
        "hours": np.sum([v["hours"] for v in vals], axis=0),
    }


def train_seeds(
    data_dir: Path | None,
    seeds: list[int],
    out_dir: Path | None = None,
    workers: int = 2,
    cache: Path | None = None,
    sim_scale: float = 1.0,
    val_hours_each: float = fall_train.VAL_DAY_HOURS_EACH,
) -> dict[str, Any]:
    """The recipe trained once per seed, shipped as one model: the mean log-odds of the seeds' trees.

    Why: one retraining of the recipe differs from another in hundreds of real decisions and in its
    threshold (which hangs on one validation candidate when ~40 hours allow no alarm); the average of
    the draws is steadier. Each seed's trees learn from that seed's simulated rows (plus every real
    row under ``data_dir``, when given); the threshold is chosen by the usual rule on all seeds'
    validation days pooled (more hours at the same false-alarm budget).
    """
    started = time.perf_counter()
    extra = None
    if data_dir is not None:
        xr, yr, info = real_rows(data_dir, cache)
        extra = (xr, yr, REAL_WEIGHT, info)
    members: list[TreeEnsemble] = []
    xs, ys, hours = [], [], 0.0
    for s in seeds:
        rows = training_rows(s, workers, cache, sim_scale)
        x, y, w0 = fall_train.with_extra((rows["x"], rows["y"], float(rows["hours"][0])), extra)
        members.append(fall_train.fit_trees(x, y, w0, s))
        xs.append(rows["x"])
        ys.append(rows["y"])
        hours += float(rows["hours"][0])
    fit_s = time.perf_counter() - started
    val = pooled_validation([validation_rows(s, cache, workers, val_hours_each) for s in seeds])
    model = TreeEnsemble.mean(members)
    all_rows = fall_train.with_extra((np.concatenate(xs), np.concatenate(ys), hours), extra)
    with scaled(sim_scale):  # the record states the amounts actually drawn (per seed)
        record = fall_train.make_record(
            model,
            choose_from_rows(model, val),
            (all_rows[0], all_rows[1], hours),
            seeds[0],
            extra,
            workers,
            started,
            fit_s,
        )
    record["seeds"] = list(seeds)
    record["model"] += (
        f"; the mean log-odds of {len(seeds)} seeds' trees (seeds {', '.join(map(str, seeds))})"
    )
    record["member_thresholds"] = {
        str(s): round(pick_threshold(m.score, val)[0], 6) for s, m in zip(seeds, members, strict=True)
    }
    record["data"]["sim_scale"] = sim_scale
    record["data"]["validation_hours_per_placement"] = val_hours_each
    record["data"]["validation_seeds"] = [s + fall_train.VALIDATION_OFFSET for s in seeds]
    fall_train.save(model, record, out_dir)
    return record
