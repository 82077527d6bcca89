"""Training the learned fall detector on simulated recordings (needs scikit-learn; run on a server).

``train(seed, out_dir)`` draws falls, hard look-alikes and hours of daily activity from
:mod:`eldercare.training.fall_data`, fits a ``HistGradientBoostingClassifier`` (shallow trees, fixed
number of rounds, no early stopping: the same seed gives the same model) on candidate features,
exports it to plain arrays (:class:`~eldercare.models.fall.TreeEnsemble`, ``np.savez``: no pickle)
and picks the decision threshold on separate validation recordings (seed + ``VALIDATION_OFFSET``,
never the evaluation's): the lowest threshold whose false alarms stay under :data:`TARGET_FA_PER_H`
(kept well below the 0.05/h goal to leave a margin for data unlike ours), overall and per placement.
The JSON beside the arrays records data, seed, versions, git revision, features, thresholds and
metrics.

How much data: the false-alarm tail is what limits the detector, and the simulator is cheap, so
training uses ~90 h of daily activity and ~2,500 falls (about 2 minutes of simulation per core);
with a third of that, sensitivity at the same false-alarm rate was ~2 points lower.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models.fall import MODEL_JSON, MODEL_NPZ, FallDetector, TreeEnsemble
from eldercare.models.fall_features import FEATURES
from eldercare.simulators.wearable import DAY_RATES_PER_HOUR, FALL_KINDS, LOOKALIKE_KINDS, PLACEMENTS
from eldercare.training.fall_data import (
    Clip,
    day_streams,
    fall_clips,
    label_candidates,
    lookalike_clips,
    soft_collapse_clips,
)

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "data"  # shipped with the detector
N_FALLS_EACH = 80  # per fall kind and placement
N_EXTRA_SOFT_EACH = 80  # soft collapses on top, per placement
N_LOOKALIKES_EACH = 60
DAY_HOURS_EACH = 30.0  # per placement
VAL_FALLS_EACH = 20
VAL_DAY_HOURS_EACH = 30.0  # the threshold sits in the tail of the scores: it needs many hours
VALIDATION_OFFSET = 1_000_003
TARGET_FA_PER_H = 0.02
GBM_PARAMS: dict[str, Any] = {
    "max_iter": 400,
    "max_depth": 3,
    "learning_rate": 0.08,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def _clips(what: str, seed: int, shard: tuple[int, int]) -> Iterator[Clip]:
    if what == "falls":
        return fall_clips(seed, N_FALLS_EACH, shard=shard)
    if what == "lookalikes":
        return lookalike_clips(seed, N_LOOKALIKES_EACH, shard=shard)
    if what == "soft":
        return soft_collapse_clips(seed, N_EXTRA_SOFT_EACH, shard=shard)
    pieces = 2 * int(DAY_HOURS_EACH)
    return (
        c for i, c in enumerate(day_streams(seed, DAY_HOURS_EACH, pieces=pieces)) if i % shard[1] == shard[0]
    )


def _rows(job: tuple[str, int, int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Candidate rows of one shard of one kind of data (runs in a worker process)."""
    what, seed, k, n = job
    xs, ys, hours = [np.zeros((0, len(FEATURES)))], [np.zeros(0, dtype=np.int64)], 0.0
    for clip in _clips(what, seed, (k, n)):
        _, x, y, _ = label_candidates(clip.session)
        xs.append(x[y >= 0])
        ys.append(y[y >= 0])
        hours += float(clip.session.t[-1] - clip.session.t[0]) / 3600 if len(clip.session.t) else 0.0
    return np.concatenate(xs), np.concatenate(ys), hours


def _collect(seed: int, workers: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = max(1, workers) * 4
    jobs = [(what, seed, k, n) for what in ("falls", "soft", "lookalikes", "days") for k in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_rows, jobs))
    else:
        parts = [_rows(j) for j in jobs]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, sum(p[2] for p in parts)


def _val_scores(
    job: tuple[TreeEnsemble, str, int, int, int],
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, float]]:
    """Per placement: best score of each validation fall, scores of negatives, hours (in a worker)."""
    model, what, seed, k, n = job
    best: dict[str, list[float]] = {p: [] for p in PLACEMENTS}
    neg: dict[str, list[float]] = {p: [] for p in PLACEMENTS}
    hours = dict.fromkeys(PLACEMENTS, 0.0)
    if what == "falls":
        for c in fall_clips(seed, VAL_FALLS_EACH, shard=(k, n)):
            _, x, y, _ = label_candidates(c.session)
            best[c.placement].append(float(model.score(x[y == 1]).max()) if (y == 1).any() else 0.0)
    else:
        days = day_streams(seed, VAL_DAY_HOURS_EACH, pieces=2 * int(VAL_DAY_HOURS_EACH))
        for i, c in enumerate(days):
            if i % n != k:
                continue
            _, x, y, _ = label_candidates(c.session)
            neg[c.placement] += model.score(x[y == 0]).tolist()
            hours[c.placement] += float(c.session.t[-1] - c.session.t[0]) / 3600
    return best, neg, hours


def _pick(fall_best: np.ndarray, neg: np.ndarray, hours: float) -> tuple[float, dict[str, Any]]:
    """Lowest threshold with at most TARGET_FA_PER_H * hours negatives at or above it."""
    neg = np.sort(neg)[::-1]
    allowed = int(np.floor(TARGET_FA_PER_H * hours))
    # alarms at threshold thr = negatives scoring >= thr; keep at most `allowed` of them
    thr = float(np.nextafter(neg[allowed], 1.0)) if len(neg) > allowed else 0.5
    thr = float(np.clip(thr, 0.3, 0.995))
    fa = int((neg >= thr).sum())
    return thr, {
        "validation_falls": len(fall_best),
        "validation_day_hours": round(hours, 2),
        "validation_sensitivity": round(float(np.mean(fall_best >= thr)), 4),
        "validation_false_alarm_candidates": fa,
        "validation_false_alarms_per_hour": round(fa / max(hours, 1e-9), 4),
    }


def _threshold(
    model: TreeEnsemble, seed: int, workers: int
) -> tuple[float, dict[str, Any], dict[str, float], dict[str, Any]]:
    """The operating point on validation recordings: overall, and per placement when it is known."""
    n = max(1, workers) * 2
    jobs = [(model, what, seed + VALIDATION_OFFSET, k, n) for what in ("falls", "days") for k in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_val_scores, jobs))
    else:
        parts = [_val_scores(j) for j in jobs]
    best = {p: np.asarray([b for part in parts for b in part[0][p]]) for p in PLACEMENTS}
    neg = {p: np.asarray([v for part in parts for v in part[1][p]]) for p in PLACEMENTS}
    hours = {p: sum(part[2][p] for part in parts) for p in PLACEMENTS}
    thr, val = _pick(
        np.concatenate(list(best.values())), np.concatenate(list(neg.values())), sum(hours.values())
    )
    # ~50 validation hours per placement allow one or two alarms: too few to trust a threshold
    # below the pooled one (tried: the pendant's fell to 0.60 and tripled its false alarms on unseen
    # days). A known placement may only make the operating point stricter.
    by_place: dict[str, float] = {}
    val_by_place: dict[str, Any] = {}
    for p in PLACEMENTS:
        own, _ = _pick(best[p], neg[p], hours[p])
        by_place[p] = max(own, thr)
        fa = int((neg[p] >= by_place[p]).sum())
        val_by_place[p] = {
            "validation_falls": len(best[p]),
            "validation_day_hours": round(hours[p], 2),
            "validation_sensitivity": round(float(np.mean(best[p] >= by_place[p])), 4),
            "validation_false_alarm_candidates": fa,
            "validation_false_alarms_per_hour": round(fa / max(hours[p], 1e-9), 4),
            "own_threshold": round(own, 6),
        }
    return thr, val, by_place, val_by_place


def _git_revision() -> str:
    """The commit the training code came from (``+dirty`` with uncommitted changes), or ``unknown``."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "eldercare/models",
                "eldercare/simulators",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def sample_weights(y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Row weights: falls are rare among candidates, so they are weighted up (to a third of the
    negatives' total) and the trees spend their splits on them; ``w`` are per-row weights before."""
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    pos = float(w[y == 1].sum())
    return w * np.where(y == 1, float(w[y == 0].sum()) / max(pos, 1.0) / 3.0, 1.0)


def fit_trees(x: np.ndarray, y: np.ndarray, w0: np.ndarray, seed: int) -> TreeEnsemble:
    """Fit the trees on candidate rows (``w0``: each row's weight before falls are weighted up) and
    export them, checking the export against scikit-learn's probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    gbm = HistGradientBoostingClassifier(random_state=seed, **GBM_PARAMS)
    gbm.fit(x, y, sample_weight=sample_weights(y, w0))
    model = TreeEnsemble.from_sklearn(gbm)
    agree = float(np.max(np.abs(model.score(x) - gbm.predict_proba(x)[:, 1])))
    if agree > 1e-6:
        msg = f"exported trees disagree with scikit-learn by {agree}"
        raise RuntimeError(msg)
    return model


def with_extra(
    collected: tuple[np.ndarray, np.ndarray, float],
    extra: tuple[np.ndarray, np.ndarray, float, dict[str, Any]] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated rows plus real ones (``extra``): features, labels and each row's weight."""
    x, y, _ = collected
    w0 = np.ones(len(y))
    if extra is None:
        return x, y, w0
    return (
        np.concatenate([x, extra[0]]),
        np.concatenate([y, extra[1]]),
        np.concatenate([w0, np.full(len(extra[1]), float(extra[2]))]),
    )


def train(
    seed: int = 0,
    out_dir: Path | None = None,
    workers: int = 2,
    extra: tuple[np.ndarray, np.ndarray, float, dict[str, Any]] | None = None,
    collected: tuple[np.ndarray, np.ndarray, float] | None = None,
    choose: Callable[[TreeEnsemble], tuple[float, dict[str, Any], dict[str, float], dict[str, Any]]]
    | None = None,
) -> dict[str, Any]:
    """Train, export and record the fall model; returns the training record.

    ``extra`` adds rows from real recordings: (features, labels, weight of each row against a
    simulated one, what they are for the record). The threshold is still chosen on simulated
    validation recordings (real trials are too short to measure false alarms per hour).
    ``collected`` (the simulated rows, as :func:`_collect` returns them) and ``choose`` (the
    operating points, as :func:`_threshold` returns them) let a caller reuse rows it already drew.
    """
    started = time.perf_counter()
    collected = collected if collected is not None else _collect(seed, workers)
    x, y, w0 = with_extra(collected, extra)
    log.info("training rows: %s (%s falls), %.1f h of signal", len(y), int(y.sum()), collected[2])
    model = fit_trees(x, y, w0, seed)
    fit_s = time.perf_counter() - started
    chosen = choose(model) if choose is not None else _threshold(model, seed, workers)
    record = make_record(model, chosen, (x, y, collected[2]), seed, extra, workers, started, fit_s)
    save(model, record, out_dir)
    return record


def make_record(
    model: TreeEnsemble,
    chosen: tuple[float, dict[str, Any], dict[str, float], dict[str, Any]],
    rows: tuple[np.ndarray, np.ndarray, float],
    seed: int,
    extra: tuple[np.ndarray, np.ndarray, float, dict[str, Any]] | None,
    workers: int,
    started: float,
    fit_s: float,
) -> dict[str, Any]:
    """The training record written beside the arrays (``rows``: the training rows and hours)."""
    import sklearn

    thr, val, thr_by_place, val_by_place = chosen
    x, y, hours = rows
    train_p = model.score(x)
    return {
        "model": "gradient-boosted trees on candidate-impact features (eldercare.models.fall); "
        "scikit-learn HistGradientBoostingClassifier exported to arrays",
        "format": "numpy .npz arrays (allow_pickle=False), see TreeEnsemble",
        "seed": seed,
        "features": list(FEATURES),
        "threshold": round(thr, 6),
        "thresholds_by_placement": {p: round(v, 6) for p, v in thr_by_place.items()},
        "target_false_alarms_per_hour": TARGET_FA_PER_H,
        "gbm_params": GBM_PARAMS,
        "data": {
            "generator": "eldercare.simulators.wearable"
            + (
                " plus real recordings (see 'real')"
                if extra is not None
                else " (simulated, no real recordings)"
            ),
            "falls": {
                "kinds": list(FALL_KINDS),
                "per_kind_and_placement": N_FALLS_EACH,
                "extra_soft_collapses_per_placement": N_EXTRA_SOFT_EACH,
            },
            "lookalikes": {"kinds": list(LOOKALIKE_KINDS), "per_kind_and_placement": N_LOOKALIKES_EACH},
            "daily_activity_hours_per_placement": DAY_HOURS_EACH,
            "daily_rates_per_hour": DAY_RATES_PER_HOUR,
            "placements": list(PLACEMENTS),
            "candidate_rows": len(y),
            "positive_rows": int(y.sum()),
            "signal_hours": round(hours, 2),
            "rng": f"numpy default_rng([seed, purpose, index]); validation: seed + {VALIDATION_OFFSET}",
            "real": extra[3] if extra is not None else None,
        },
        "train_metrics": {
            "row_accuracy_at_threshold": round(float(np.mean((train_p >= thr) == (y == 1))), 4),
            "fall_rows_recall_at_threshold": round(float(np.mean(train_p[y == 1] >= thr)), 4),
            "negative_rows_flagged_at_threshold": int(np.sum(train_p[y == 0] >= thr)),
        },
        "validation": val,
        "validation_by_placement": val_by_place,
        "git_revision": _git_revision(),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "train_seconds": round(time.perf_counter() - started, 1),
        "data_and_fit_seconds": round(fit_s, 1),
        "workers": workers,
    }


def save(model: TreeEnsemble, record: dict[str, Any], out_dir: Path | None = None) -> None:
    """Write ``fall_model.npz`` and ``.json`` (the package's folder by default) and load them back."""
    out_dir = Path(out_dir) if out_dir else DEFAULT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / MODEL_NPZ, allow_pickle=False, **model.to_arrays())
    (out_dir / MODEL_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    FallDetector.load(out_dir / MODEL_NPZ, out_dir / MODEL_JSON)  # it loads back


def rethreshold(model_dir: Path | None = None, workers: int = 2) -> dict[str, Any]:
    """Redo only the validation step for a trained model (same seed), updating its record.

    Training is deterministic, so this equals retraining when only the validation amounts changed.
    """
    model_dir = Path(model_dir) if model_dir else DEFAULT_DIR
    det = FallDetector.load(model_dir / MODEL_NPZ, model_dir / MODEL_JSON)
    if len(det.info.get("seeds", [det.info.get("seed")])) > 1:
        msg = f"{model_dir} averages several seeds' trees; retrain it with 'train fall --seeds' instead"
        raise ValueError(msg)
    thr, val, thr_by_place, val_by_place = _threshold(det.model, int(det.info["seed"]), workers)
    record = dict(det.info)
    record["threshold"] = round(thr, 6)
    record["thresholds_by_placement"] = {p: round(v, 6) for p, v in thr_by_place.items()}
    record["target_false_alarms_per_hour"] = TARGET_FA_PER_H
    record["validation"] = val
    record["validation_by_placement"] = val_by_place
    (model_dir / MODEL_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
