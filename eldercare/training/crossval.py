"""Leave-subjects-out cross-validation of the fall detector on real trials, beside its baselines.

No person is in both the training and the test part of a fold. Each fold trains the learned
detector on the simulator's rows plus the real trials of the other people, picks its threshold on
simulated validation recordings (as ``eldercare models train fall`` does), and scores the held-out
people's trials. On the same folds and trials: the model shipped before (trained on the simulator
only, so every real trial is new to it) and the classic threshold detector (2.5 g, then lying).

Per trial: a fall trial is caught when an event lies within 2 s of its impact; a daily-activity
trial is a false positive when it raises any event. Confidence intervals are 95 % percentile
intervals of a bootstrap over *people* (trials of one person are not independent).
Long streams: false alarms per hour on simulated days (device removal, hard sitting and lying down,
getting up from bed, stumbles, jumps; the simulated evaluation's seed) and sensitivity on simulated
falls of every kind, for every fold's model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models import fall_wear
from eldercare.models.fall import FallDetector, ThresholdFallDetector, TreeEnsemble
from eldercare.simulators.wearable import FALL_KINDS, PLACEMENTS
from eldercare.training import candidates as cand
from eldercare.training import fall_train
from eldercare.training.fall_data import day_streams, fall_clips
from eldercare.training.sim import (
    EVAL_DAY_HOURS_EACH,
    EVAL_SEED,
    pick_threshold,
    training_rows,
    validation_rows,
    version,
)
from eldercare.training.trials import Trial

log = logging.getLogger(__name__)

REAL_WEIGHT = 1.0  # a real candidate row counts as this many simulated ones (4 was tried: worse)
N_FOLDS = 6
N_BOOT = 2000
EVAL_FALLS_EACH = 10


@dataclass
class TrialRows:
    trial: Trial
    rows: cand.Rows
    y: np.ndarray


def trial_rows(trials: list[Trial], cache: Path | None = None) -> list[TrialRows]:
    """Candidate rows and labels of every trial; ``cache`` keeps them, keyed by the trials (who, what,
    samples) and the code that computes rows, so a run with another model need not recompute them."""
    path = None
    if cache is not None:
        h = hashlib.sha1(version(cand, fall_wear).encode())
        for tr in trials:
            h.update(f"{tr.dataset}|{tr.subject}|{tr.activity}|{tr.source}|{tr.t_impact}".encode())
            h.update(np.ascontiguousarray(tr.acc[::50]).tobytes())
        path = cache / f"real_rows_{h.hexdigest()[:12]}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            # each z[key] reads (and decompresses) the whole array again: read each once, then slice
            d = {k: z[k] for k in ("n", "times", "events", "x", "put_down", "y")}
        ends = np.cumsum(d["n"])
        starts = ends - d["n"]
        return [
            TrialRows(
                tr,
                cand.Rows(d["times"][a:b], d["events"][a:b], d["x"][a:b], d["put_down"][a:b]),
                d["y"][a:b],
            )
            for tr, a, b in zip(trials, starts, ends, strict=True)
        ]
    out = []
    for tr in trials:
        r = cand.rows(tr.t, tr.acc)
        out.append(TrialRows(tr, r, cand.labels(r, tr.t_impact)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            allow_pickle=False,
            n=np.array([len(it.y) for it in out], dtype=np.int64),
            times=np.concatenate([it.rows.times for it in out]),
            events=np.concatenate([it.rows.events for it in out]),
            x=np.concatenate([it.rows.x for it in out]),
            put_down=np.concatenate([it.rows.put_down for it in out]),
            y=np.concatenate([it.y for it in out]),
        )
    return out


def folds(trials: list[Trial], k: int = N_FOLDS) -> list[set[str]]:
    """People split into ``k`` groups: those with daily-activity trials spread first, then the rest."""
    with_adl = sorted({t.subject for t in trials if not t.is_fall})
    rest = sorted({t.subject for t in trials} - set(with_adl))
    order = with_adl + rest
    groups: list[set[str]] = [set() for _ in range(min(k, len(order)))]
    for i, s in enumerate(order):
        groups[i % len(groups)].add(s)
    return groups


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int) -> TreeEnsemble:
    """The training recipe of :func:`eldercare.training.fall_train.train` on given rows and weights."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    gbm = HistGradientBoostingClassifier(random_state=seed, **fall_train.GBM_PARAMS)
    gbm.fit(x, y, sample_weight=fall_train.sample_weights(y, w))
    return TreeEnsemble.from_sklearn(gbm)


def real_xy(items: list[TrialRows]) -> tuple[np.ndarray, np.ndarray]:
    xs = [it.rows.x[it.y >= 0] for it in items]
    ys = [it.y[it.y >= 0] for it in items]
    return np.concatenate(xs), np.concatenate(ys)


def _stream_part(job: tuple[int, int]) -> dict[str, np.ndarray]:
    """Shard k of n of the simulated long days and falls (runs in a worker process)."""
    k, n = job
    d: dict[str, np.ndarray] = {}
    for j, c in enumerate(day_streams(EVAL_SEED, EVAL_DAY_HOURS_EACH, pieces=int(EVAL_DAY_HOURS_EACH))):
        if j % n == k:
            r = cand.rows(c.session.t, c.session.acc)
            d[f"day{j}_x"], d[f"day{j}_ev"], d[f"day{j}_pd"] = r.x, r.events, r.put_down
            d[f"day{j}_meta"] = np.array(
                [PLACEMENTS.index(c.placement), (c.session.t[-1] - c.session.t[0]) / 3600]
            )
    for j, c in enumerate(fall_clips(EVAL_SEED, EVAL_FALLS_EACH)):
        if j % n == k:
            r = cand.rows(c.session.t, c.session.acc)
            imp = [lab.t_impact for lab in c.session.labels if lab.is_fall]
            d[f"fall{j}_x"], d[f"fall{j}_ev"], d[f"fall{j}_pd"] = r.x, r.events, r.put_down
            d[f"fall{j}_meta"] = np.array([PLACEMENTS.index(c.placement), imp[0] if imp else np.nan])
    return d


def _stream_rows(cache: Path | None, workers: int = 1) -> dict[str, Any]:
    """Simulated long days and falls for the streaming figures (computed once, cached)."""
    path = None if cache is None else cache / f"sim_streams_{EVAL_SEED}_{version(cand, fall_wear)}.npz"
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    else:
        n = max(1, workers) * 2
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                parts = list(pool.map(_stream_part, [(k, n) for k in range(n)]))
        else:
            parts = [_stream_part((k, n)) for k in range(n)]
        d = {k: v for p in parts for k, v in p.items()}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, allow_pickle=False, **d)

    def get(what: str) -> list[tuple[cand.Rows, np.ndarray]]:
        out, j = [], 0
        while f"{what}{j}_x" in d:
            ev = d[f"{what}{j}_ev"]
            out.append((cand.Rows(ev, ev, d[f"{what}{j}_x"], d[f"{what}{j}_pd"]), d[f"{what}{j}_meta"]))
            j += 1
        return out

    return {"days": get("day"), "falls": get("fall")}


def _streams(score: Any, thr: float, wear: bool, streams: dict[str, Any]) -> dict[str, Any]:
    alarms, hours = 0, 0.0
    for r, meta in streams["days"]:
        alarms += len(cand.decide(r, score(r.x) if len(r.x) else np.zeros(0), thr, wear))
        hours += float(meta[1])
    hit = n = 0
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_kind = len(PLACEMENTS) * EVAL_FALLS_EACH  # fall_clips yields kind by kind, placement by placement
    for j, (r, meta) in enumerate(streams["falls"]):
        if not np.isfinite(meta[1]):
            continue
        n += 1
        ok = cand.caught(cand.decide(r, score(r.x) if len(r.x) else np.zeros(0), thr, wear), float(meta[1]))
        hit += ok
        kind = FALL_KINDS[j // per_kind] if j // per_kind < len(FALL_KINDS) else "other"
        by_kind[kind][0] += ok
        by_kind[kind][1] += 1
    return {
        "false_alarms": alarms,
        "hours": round(hours, 2),
        "false_alarms_per_hour": round(alarms / max(hours, 1e-9), 4),
        "sim_fall_sensitivity": round(hit / max(n, 1), 4),
        "sim_falls": n,
        "sim_fall_sensitivity_by_kind": {k: round(a / b, 4) for k, (a, b) in sorted(by_kind.items())},
    }


def _boot_ci(per_subject: dict[str, tuple[int, int]], rng: np.random.Generator) -> tuple[float, float, float]:
    """Share of successes and its 95 % interval, resampling people."""
    subs = sorted(per_subject)
    k = np.array([per_subject[s][0] for s in subs], dtype=float)
    n = np.array([per_subject[s][1] for s in subs], dtype=float)
    if n.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    idx = rng.integers(0, len(subs), size=(N_BOOT, len(subs)))
    shares = k[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1)
    lo, hi = np.percentile(shares, [2.5, 97.5])
    return float(k.sum() / n.sum()), float(lo), float(hi)


def summary(results: list[dict[str, Any]], models: list[str], seed: int) -> dict[str, Any]:
    """Sensitivity and specificity per model, per dataset, placement, fall kind and activity."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        groups["all"].append(r)
        groups[f"dataset={r['dataset']}"].append(r)
        groups[f"placement={r['placement']}"].append(r)
        groups[f"fall_kind={r['fall_kind']}" if r["is_fall"] else f"adl={r['activity']}"].append(r)
        if r["is_fall"]:
            groups[f"fall_activity={r['activity']}"].append(r)
    out: dict[str, Any] = {}
    for g, rs in sorted(groups.items()):
        row: dict[str, Any] = {
            "falls": sum(r["is_fall"] for r in rs),
            "adl": sum(not r["is_fall"] for r in rs),
        }
        for m in models:
            falls: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            adl: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for r in rs:
                bucket = falls if r["is_fall"] else adl
                bucket[r["subject"]][0] += int(r[m] if r["is_fall"] else not r[m])
                bucket[r["subject"]][1] += 1
            sens = _boot_ci({s: (a, b) for s, (a, b) in falls.items()}, rng)
            spec = _boot_ci({s: (a, b) for s, (a, b) in adl.items()}, rng)
            row[m] = {"sensitivity": [round(v, 4) for v in sens], "specificity": [round(v, 4) for v in spec]}
        out[g] = row
    return out


Scorer = tuple[Any, float, bool]  # score(rows) -> probabilities, threshold, wear check


def _judge(it: TrialRows, fold: int, scorers: dict[str, Scorer]) -> dict[str, Any]:
    """One held-out trial's decision under every model: caught (a fall) or raised an alarm (not)."""
    tr = it.trial
    r = trial_record(tr, fold=fold)
    for m, (score, th, wear) in scorers.items():
        p = score(it.rows.x) if len(it.y) else np.zeros(0)
        r[m] = judged(cand.decide(it.rows, p, th, wear), tr.t_impact)
    return r


def trial_record(tr: Trial, **extra: Any) -> dict[str, Any]:
    """A trial's line in a report (who, where, what), before each model's decision on it."""
    return {
        "dataset": tr.dataset,
        "subject": tr.subject,
        "placement": tr.placement,
        "activity": tr.activity,
        "fall_kind": tr.fall_kind,
        "is_fall": tr.is_fall,
        "source": tr.source,
        **extra,
    }


def judged(events: np.ndarray, t_impact: float | None) -> bool:
    """A model's decision on one trial from its events' times: a fall trial (``t_impact``) caught, or a
    daily-activity trial raising an alarm."""
    return cand.caught(events, t_impact) if t_impact is not None else bool(len(events))


def _describe(det: FallDetector) -> dict[str, Any]:
    """What a judged model is, from its record."""
    info = det.info
    return {
        "threshold": det.threshold,
        "generator": info.get("data", {}).get("generator"),
        "git_revision": info.get("git_revision"),
        "validation": info.get("validation"),
    }


def run(
    trials: list[Trial],
    seed: int = 0,
    k: int = N_FOLDS,
    workers: int = 1,
    cache: Path | None = None,
    real_weight: float = REAL_WEIGHT,
    sim_scale: float = 1.0,
    val_hours_each: float = fall_train.VAL_DAY_HOURS_EACH,
    candidate: FallDetector | None = None,
    learn: bool = True,
) -> dict[str, Any]:
    """Cross-validate; returns per-trial decisions, the summary and the long-stream figures.

    ``sim_scale`` draws that share of the simulated training amounts and ``val_hours_each`` hours of
    simulated validation days per placement (less: faster, a noisier threshold). ``candidate`` is a
    trained model (e.g. a new simulator-only one) judged beside the shipped one on every trial and
    stream, with and without its wear check; it saw no real trial, so no fold is needed for it.
    ``learn=False`` skips the folds' real + sim models (only the fixed models are judged).
    """
    started = time.perf_counter()
    items = trial_rows(trials, cache)
    log.info("real trials: %d, candidate rows: %d", len(items), sum(len(it.y) for it in items))
    if learn:
        sim = training_rows(seed, workers, cache, sim_scale)
        val = validation_rows(seed, cache, workers, val_hours_each)
    streams = _stream_rows(cache, workers)
    shipped = FallDetector.pretrained()
    base = ThresholdFallDetector()
    fixed: dict[str, Scorer] = {
        "shipped": (shipped.scores, shipped.threshold, False),
        "shipped_with_wear_check": (shipped.scores, shipped.threshold, True),
        "threshold": (base.scores, 0.5, False),
    }
    if candidate is not None:
        fixed["candidate"] = (candidate.scores, candidate.threshold, True)
        fixed["candidate_no_wear_check"] = (candidate.scores, candidate.threshold, False)
    models = (["learned", "learned_no_wear_check"] if learn else []) + list(fixed)
    results: list[dict[str, Any]] = []
    fold_info: list[dict[str, Any]] = []
    groups = folds(trials, k) if learn else [{t.subject for t in trials}]
    for f, test in enumerate(groups):
        if not learn:
            for it in items:
                results.append(_judge(it, f, fixed))
            continue
        train_items = [it for it in items if it.trial.subject not in test]
        rx, ry = real_xy(train_items)
        x = np.concatenate([sim["x"], rx])
        y = np.concatenate([sim["y"], ry])
        w = np.concatenate([np.ones(len(sim["y"])), np.full(len(ry), real_weight)])
        model = fit(x, y, w, seed)
        thr, vinfo = pick_threshold(model.score, val)
        scorers = {
            "learned": (model.score, thr, True),
            "learned_no_wear_check": (model.score, thr, False),
            **fixed,
        }
        for it in items:
            if it.trial.subject in test:
                results.append(_judge(it, f, scorers))
        fold_info.append(
            {
                "fold": f,
                "test_subjects": sorted(test),
                "threshold": round(thr, 4),
                "real_train_rows": len(ry),
                "streams": _streams(model.score, thr, True, streams),
                "streams_no_wear_check": _streams(model.score, thr, False, streams),
                **{k2: v for k2, v in vinfo.items() if k2.startswith("validation_")},
            }
        )
        log.info("fold %d: %s", f, fold_info[-1])
    learned_fa = [fi["streams"]["false_alarms_per_hour"] for fi in fold_info]
    learned_sens = [fi["streams"]["sim_fall_sensitivity"] for fi in fold_info]
    stream_figs = {m: _streams(score, th, wear, streams) for m, (score, th, wear) in fixed.items()}
    return {
        "method": __doc__,
        "seed": seed,
        "folds": fold_info,
        "models": models,
        "summary": summary(results, models, seed),
        "streams": {
            **stream_figs,
            "learned_mean_fa_per_hour": round(float(np.mean(learned_fa)), 4) if learned_fa else None,
            "learned_mean_sim_sensitivity": round(float(np.mean(learned_sens)), 4) if learned_sens else None,
        },
        "candidate": None if candidate is None else _describe(candidate),
        "trials": results,
        "real_weight": real_weight,
        "sim_scale": sim_scale,
        "val_hours_each": val_hours_each,
        "seconds": round(time.perf_counter() - started, 1),
    }
