"""The independent check's protocol, replayed on real trials we may use: raw trial + quiet standing.

The independent evaluation runs ``FallDetector.pretrained().detect(t, acc)`` once per laboratory
trial, on the device's own samples (its rate and range), after padding the trial with 30 s of quiet
standing; a fall trial counts as caught when an event lies within 2 s of its impact, a daily-activity
trial as a false positive when it raises any event. This module does the same on the real trials
(at their native rate, not on our 50 Hz grid, not lengthened with their own edges as
:func:`~eldercare.training.trials.pad` does for training), with the padding before, after or on both
sides, so a difference between what training sees and what the check feeds shows up here.

Quiet standing is the trial's own first second's gravity direction (the person stands before the
protocol starts) at 1 g, with white sensor noise and the slow sway of a standing body (a few mg below
1 Hz); ``sway=False`` pads with noise alone (a device that would look "as still as a table").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models.fall import ThresholdFallDetector, _Detector
from eldercare.training import crossval, mobifall, trials, umafall, wedafall
from eldercare.training.trials import DatasetError, Trial

PAD_S = 30.0
WHERE = ("before", "after", "both")


def quiet_standing(
    up: np.ndarray, seconds: float, fs: float, rng: np.random.Generator, sway: bool = True
) -> np.ndarray:
    """``seconds`` of a person standing still (:func:`~eldercare.training.trials.quiet_standing`)."""
    return trials.quiet_standing(up, max(1, round(seconds * fs)), fs, rng, sway)


def padded(
    trial: Trial, fs: float, where: str, rng: np.random.Generator, sway: bool = True
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(t, acc, impact time) of a raw trial padded with quiet standing ``where`` (before/after/both)."""
    if where not in WHERE:
        msg = f"where must be one of {WHERE}, got {where!r}"
        raise ValueError(msg)
    t, acc = np.asarray(trial.t, dtype=np.float64), np.asarray(trial.acc, dtype=np.float64)
    first = t <= t[0] + 1.0
    up = np.nanmean(acc[first], axis=0)
    dt = 1.0 / fs
    parts_t, parts_a = [], []
    shift = 0.0
    if where in ("before", "both"):
        pre = quiet_standing(up, PAD_S, fs, rng, sway)
        parts_t.append(t[0] - dt * np.arange(len(pre), 0, -1))
        parts_a.append(pre)
    parts_t.append(t)
    parts_a.append(acc)
    if where in ("after", "both"):
        post = quiet_standing(up, PAD_S, fs, rng, sway)
        parts_t.append(t[-1] + dt * np.arange(1, len(post) + 1))
        parts_a.append(post)
    tt = np.concatenate(parts_t)
    shift = -float(tt[0])
    imp = None if trial.t_impact is None else float(trial.t_impact) + shift
    return tt + shift, np.concatenate(parts_a), imp


def run(
    raw: list[tuple[Trial, float]],
    detectors: dict[str, _Detector],
    where: str = "before",
    seed: int = 0,
    sway: bool = True,
) -> dict[str, Any]:
    """Per-trial decisions of every detector on padded raw trials; summary with per-person intervals."""
    rng = np.random.default_rng(seed)
    results: list[dict[str, Any]] = []
    for tr, fs in raw:
        t, acc, imp = padded(tr, fs, where, rng, sway)
        r = crossval.trial_record(tr, fs=round(fs, 1))
        for name, det in detectors.items():
            ev = np.array([e.t for e in det.detect(t, acc)])
            r[name] = crossval.judged(ev, imp)
            if imp is not None and len(ev):
                r[f"{name}_offset_s"] = round(float(ev[np.argmin(np.abs(ev - imp))] - imp), 2)
        results.append(r)
    models = list(detectors)
    return {
        "where": where,
        "sway": sway,
        "pad_s": PAD_S,
        "models": models,
        "summary": crossval.summary(results, models, seed),
        "trials": results,
    }


def paired(
    results: list[dict[str, Any]], base: str, other: str, seed: int = 0, n_boot: int = 2000
) -> dict[str, Any]:
    """``other`` against ``base`` on the same trials, per dataset and placement (and ``all``).

    For falls caught and quiet daily trials: each model's count and the difference of shares
    (other - base) with a 95 % interval from a *paired* bootstrap over people (the same people drawn
    for both models, so what they share cancels out). Why: two retrainings of one recipe differ by
    more than a trial or two per group, so a difference only counts when people would repeat it.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[dict[str, Any]]] = {"all": []}
    for r in results:
        groups["all"].append(r)
        groups.setdefault(f"{r['dataset']}/{r['placement']}", []).append(r)
    out: dict[str, Any] = {}
    for g, rs in sorted(groups.items()):
        row: dict[str, Any] = {}
        for what, is_fall in (("falls", True), ("daily", False)):
            part = [r for r in rs if r["is_fall"] == is_fall]
            subs = sorted({r["subject"] for r in part})
            index = {s: i for i, s in enumerate(subs)}
            n, a, b = (np.zeros(len(subs)) for _ in range(3))
            for r in part:
                i = index[r["subject"]]
                n[i] += 1
                a[i] += r[base] if is_fall else not r[base]  # caught, or quiet
                b[i] += r[other] if is_fall else not r[other]
            if not part:
                continue
            idx = rng.integers(0, len(subs), size=(n_boot, len(subs)))
            diff = (b[idx].sum(axis=1) - a[idx].sum(axis=1)) / np.maximum(n[idx].sum(axis=1), 1)
            lo, hi = np.percentile(diff, [2.5, 97.5])
            row[what] = {
                "trials": int(n.sum()),
                "people": len(subs),
                base: int(a.sum()),
                other: int(b.sum()),
                "difference": [
                    round(float((b.sum() - a.sum()) / n.sum()), 4),
                    round(float(lo), 4),
                    round(float(hi), 4),
                ],
            }
        out[g] = row
    return out


def load_raw_dir(
    root: Path, placements: tuple[str, ...] = umafall.DEFAULT_PLACEMENTS
) -> list[tuple[Trial, float]]:
    """Raw trials (at each device's own rate) of every dataset found under ``root`` as ``umafall/``,
    ``mobifall/`` or ``weda-fall/`` (or a UMAFall folder itself), keeping only ``placements``
    (MobiFall's pocket phone is ``thigh``, WEDA-FALL's watch ``wrist``). Raises ``DatasetError`` when
    none is found."""
    root = Path(root)
    raw: list[tuple[Trial, float]] = []
    subs = {umafall.NAME: umafall, mobifall.NAME: mobifall, wedafall.NAME: wedafall}
    found = [name for name in subs if (root / name).is_dir()]
    if not found:
        raw = umafall.load_raw(root, placements=placements)  # the UMAFall folder itself
    for name in found:
        mod = subs[name]
        if mod is umafall:
            raw += umafall.load_raw(root / name, placements=placements)
        elif mod.PLACEMENT in placements:
            raw += mod.load_raw(root / name)
    if not raw:
        msg = f"{root}: no trials at placements {', '.join(placements)} (looked for {', '.join(subs)})"
        raise DatasetError(msg)
    return raw


def default_detectors(candidate: _Detector | None = None) -> dict[str, _Detector]:
    """The shipped model, the 2.5 g threshold baseline and, when given, a candidate model."""
    from eldercare.models.fall import FallDetector

    out: dict[str, _Detector] = {"shipped": FallDetector.pretrained(), "threshold": ThresholdFallDetector()}
    if candidate is not None:
        out["candidate"] = candidate
    return out
