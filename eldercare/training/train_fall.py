"""``eldercare models train fall [--data DIR] [--cache C]``: the fall model from the simulator
(plus real trials with ``--data``), reusing cached simulated rows.

Real trials bring what the simulator cannot know (how real people fall and move); the simulator
still brings what laboratory trials lack (soft collapses, falls from bed, hours of daily life for
the false-alarm tail and the threshold).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models.fall import MODEL_JSON
from eldercare.training import fall_train
from eldercare.training.crossval import REAL_WEIGHT, real_xy, trial_rows
from eldercare.training.datasets import load_dir
from eldercare.training.sim import choose_from_rows, scaled, training_rows, validation_rows


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
