"""Evaluation of the fall detector against the threshold baseline, on recordings training never saw.

``run(out_dir, seed)`` writes ``fall_report.md``, ``fall_report.json`` and ``fall_*.png`` (PNG plots
need matplotlib; without it the report says so). Measured, per fall kind and placement, for the
learned detector and the classic threshold detector:

- sensitivity: a fall counts as caught when an event lies within 1.5 s of its impact;
- detection delay: when the streaming detector (pushed 0.5 s chunks) emits the event, after impact;
- false alarms per hour of daily activity: long simulated days with look-alikes at stated rates
  (:data:`eldercare.simulators.wearable.DAY_RATES_PER_HOUR`), per placement;
- share of hard look-alike clips (jumps, sitting or lying down hard, stumbles, device put on a
  table) that raise an alarm;
- false alarms per hour on *real* recordings when a pip package ships some (see :func:`real_clips`);
- speed, as seconds of signal per second of CPU for ``detect`` on one core.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import logging
import pickle
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eldercare.models.fall import FallDetector, ThresholdFallDetector, _Detector
from eldercare.simulators.wearable import DAY_RATES_PER_HOUR, FALL_KINDS, LOOKALIKE_KINDS, PLACEMENTS
from eldercare.training.fall_data import (
    MATCH_AFTER_S,
    MATCH_BEFORE_S,
    day_streams,
    fall_clips,
    lookalike_clips,
)

log = logging.getLogger(__name__)

DEFAULT_SEED = 20261129
N_FALLS_EACH = 40
N_LOOKALIKES_EACH = 30
DAY_HOURS_EACH = 16.0
CHUNK_S = 0.5
TARGET_SENSITIVITY = 0.95
TARGET_FA_PER_H = 0.05


def _delay(det: _Detector, t: np.ndarray, acc: np.ndarray, t_impact: float) -> float | None:
    """Seconds from impact until the streaming detector emits the matching event (0.5 s chunks)."""
    stream = det.stream()
    edges = np.searchsorted(t, np.arange(t[0], t[-1] + CHUNK_S, CHUNK_S))
    for a, b in itertools.pairwise(edges):
        for ev in stream.push(t[a:b], acc[a:b]):
            if -MATCH_BEFORE_S <= ev.t - t_impact <= MATCH_AFTER_S:
                return float(t[b - 1] - t_impact)
    for ev in stream.flush():
        if -MATCH_BEFORE_S <= ev.t - t_impact <= MATCH_AFTER_S:
            return float(t[-1] - t_impact)
    return None


Dets = dict[str, dict[str, _Detector]]  # name -> placement -> detector


def _falls(dets: Dets, seed: int, n_each: int) -> dict[str, Any]:
    hits: dict[str, dict[tuple[str, str], list[int]]] = {name: defaultdict(list) for name in dets}
    delays: dict[str, list[float]] = {name: [] for name in dets}
    confidences: list[float] = []
    for i, clip in enumerate(fall_clips(seed, n_each, truncate_p=0.0)):
        s = clip.session
        t_imp = next(lab.t_impact for lab in s.labels if lab.kind == clip.kind)
        for name, per_place in dets.items():
            det = per_place[clip.placement]
            events = det.detect(s.t, s.acc)
            match = [e for e in events if -MATCH_BEFORE_S <= e.t - t_imp <= MATCH_AFTER_S]
            hits[name][(clip.kind, clip.placement)].append(int(bool(match)))
            if match and name == "model":
                confidences.append(match[0].confidence)
            if match and i % 5 == 0:  # a fifth of the falls, every kind: streaming is slower to replay
                d = _delay(det, s.t, s.acc, t_imp)
                if d is not None:
                    delays[name].append(d)
    out: dict[str, Any] = {}
    for name in dets:
        table = {f"{k}/{p}": float(np.mean(v)) for (k, p), v in sorted(hits[name].items())}
        by_kind = {
            k: float(np.mean([x for (kk, _), v in hits[name].items() if kk == k for x in v]))
            for k in FALL_KINDS
        }
        by_place = {
            p: float(np.mean([x for (_, pp), v in hits[name].items() if pp == p for x in v]))
            for p in PLACEMENTS
        }
        allv = [x for v in hits[name].values() for x in v]
        dl = np.asarray(delays[name]) if delays[name] else np.zeros(1)
        out[name] = {
            "n_falls": len(allv),
            "sensitivity": float(np.mean(allv)),
            "by_kind": by_kind,
            "by_placement": by_place,
            "by_kind_and_placement": table,
            "delay_s": {
                "median": float(np.median(dl)),
                "p90": float(np.percentile(dl, 90)),
                "max": float(dl.max()),
            },
        }
    out["model"]["matched_confidences"] = confidences
    return out


def _lookalikes(dets: Dets, seed: int, n_each: int) -> dict[str, Any]:
    alarms: dict[str, dict[tuple[str, str], list[int]]] = {name: defaultdict(list) for name in dets}
    for clip in lookalike_clips(seed, n_each, truncate_p=0.0):
        for name, by_place in dets.items():
            det = by_place[clip.placement]
            alarms[name][(clip.kind, clip.placement)].append(
                int(bool(det.detect(clip.session.t, clip.session.acc)))
            )
    out: dict[str, Any] = {}
    for name in dets:
        out[name] = {
            "alarm_share_by_kind": {
                k: float(np.mean([x for (kk, _), v in alarms[name].items() if kk == k for x in v]))
                for k in LOOKALIKE_KINDS
            },
            "alarm_share_by_kind_and_placement": {
                f"{k}/{p}": float(np.mean(v)) for (k, p), v in sorted(alarms[name].items())
            },
        }
    return out


def _days(dets: Dets, seed: int, hours_each: float) -> dict[str, Any]:
    count: dict[str, dict[str, int]] = {name: defaultdict(int) for name in dets}
    cause: dict[str, dict[str, int]] = {name: defaultdict(int) for name in dets}
    cause_place: dict[str, dict[str, int]] = {name: defaultdict(int) for name in dets}
    occurred: dict[str, int] = defaultdict(int)
    hours: dict[str, float] = defaultdict(float)
    cpu = 0.0
    pieces = max(1, int(hours_each * 2))  # half-hour pieces: many different people, less variance
    for clip in day_streams(seed, hours_each, pieces=pieces):
        s = clip.session
        hours[clip.placement] += float(s.t[-1] - s.t[0]) / 3600
        marks = np.asarray([lab.t_impact for lab in s.labels])
        for lab in s.labels:
            occurred[lab.kind] += 1
        for name, by_place in dets.items():
            det = by_place[clip.placement]
            t0 = time.process_time()
            events = det.detect(s.t, s.acc)
            if name == "model":
                cpu += time.process_time() - t0
            for e in events:
                count[name][clip.placement] += 1
                near = np.flatnonzero(np.abs(marks - e.t) <= 2.0) if len(marks) else np.zeros(0, int)
                why = s.labels[near[0]].kind if len(near) else "ordinary activity"
                cause[name][why] += 1
                cause_place[name][f"{why}/{clip.placement}"] += 1
    total_h = sum(hours.values())
    out: dict[str, Any] = {
        "hours": {p: round(h, 2) for p, h in hours.items()},
        "total_hours": round(total_h, 2),
        "lookalikes_occurred": dict(occurred),
    }
    for name in dets:
        n = sum(count[name].values())
        out[name] = {
            "false_alarms": n,
            "per_hour": n / total_h,
            "per_hour_by_placement": {p: count[name][p] / hours[p] for p in hours},
            "by_cause": dict(cause[name]),
            "per_hour_by_cause": {k: v / total_h for k, v in cause[name].items()},
            "by_cause_and_placement": dict(cause_place[name]),
        }
    out["speed_x_realtime"] = total_h * 3600 / max(cpu, 1e-9)
    return out


# ---------------------------------------------------------------------------------------------
# real recordings shipped inside pip packages


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and strings only; refuses any other class."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        msg = f"refusing to load {module}.{name}"
        raise pickle.UnpicklingError(msg)


def real_clips() -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Real accelerometer recordings without falls that ship inside an installed pip package.

    Looked for: seglearn's ``watch_dataset.npy`` (wrist smartwatch, 50 Hz, g; shoulder exercises by
    study participants, no falls). It is a pickled dict inside a ``.npy``; it is read with an
    unpickler that only builds numpy arrays and plain containers. Returns a description and clips
    ``(t, acc)``; no clips when nothing is installed.
    """
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        return "none installed (looked for seglearn's watch dataset)", []
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "watch_dataset.npy"
    if not path.exists():
        return "none installed (seglearn found without its watch dataset)", []
    raw = path.read_bytes()
    buf = io.BytesIO(raw)
    np.lib.format.read_magic(buf)
    np.lib.format.read_array_header_1_0(buf)
    data = _ArraysOnly(buf).load().item()
    clips = []
    for x in data["X"]:
        acc = np.asarray(x, dtype=np.float64)[:, :3]
        clips.append((np.arange(len(acc)) / 50.0, acc))
    desc = (
        "seglearn 'watch' dataset (Burns et al. 2018, arXiv:1802.01489): wrist smartwatch, 50 Hz, "
        "in g, shoulder-exercise sets by study participants, no falls"
    )
    return desc, clips


def _real(dets: Dets) -> dict[str, Any]:
    desc, clips = real_clips()
    out: dict[str, Any] = {"source": desc, "clips": len(clips)}
    if not clips:
        return out
    hours = sum(float(t[-1] - t[0]) for t, _ in clips) / 3600
    out["hours"] = round(hours, 3)
    for name, by_place in dets.items():
        det = by_place["wrist"]  # a smartwatch
        n = sum(len(det.detect(t, a)) for t, a in clips)
        out[name] = {"false_alarms": n, "per_hour": n / hours}
    return out


# ---------------------------------------------------------------------------------------------
# report


def _plots(out_dir: Path, res: dict[str, Any]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    fig, ax = plt.subplots(figsize=(9, 4))
    kinds = list(FALL_KINDS)
    xs = np.arange(len(kinds))
    for off, name in ((-0.2, "model"), (0.2, "threshold")):
        ax.bar(xs + off, [res["falls"][name]["by_kind"][k] for k in kinds], 0.4, label=name)
    ax.axhline(TARGET_SENSITIVITY, color="k", ls="--", lw=0.8, label="target 0.95")
    ax.set_xticks(xs, [k.replace("_", " ") for k in kinds], fontsize=8)
    ax.set_ylabel("sensitivity")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Falls caught per kind (simulated, unseen seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "fall_sensitivity.png", dpi=100)
    plt.close(fig)
    files.append("fall_sensitivity.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    places = list(res["days"]["hours"])
    xs = np.arange(len(places))
    for off, name in ((-0.2, "model"), (0.2, "threshold")):
        ax.bar(xs + off, [res["days"][name]["per_hour_by_placement"][p] for p in places], 0.4, label=name)
    ax.axhline(TARGET_FA_PER_H, color="k", ls="--", lw=0.8, label="target 0.05/h")
    ax.set_xticks(xs, places)
    ax.set_ylabel("false alarms per hour")
    ax.legend(fontsize=8)
    ax.set_title("False alarms in daily activity with look-alikes")
    fig.tight_layout()
    fig.savefig(out_dir / "fall_false_alarms.png", dpi=100)
    plt.close(fig)
    files.append("fall_false_alarms.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(res["falls"]["model"]["matched_confidences"], bins=30, range=(0, 1))
    ax.axvline(res["threshold"], color="r", ls="--", label=f"threshold {res['threshold']:.2f}")
    ax.set_xlabel("confidence of caught falls")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "fall_confidence.png", dpi=100)
    plt.close(fig)
    files.append("fall_confidence.png")
    return files


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _markdown(res: dict[str, Any], pngs: list[str]) -> str:
    f, d, lk, real = res["falls"], res["days"], res["lookalikes"], res["real"]
    placed = "model_placed" in f
    lines = [
        "## Fall detection: evaluation",
        "",
        f"Seed {res['seed']} (training used seed {res['train_seed']}, its threshold was chosen on seed "
        f"{res['train_seed']} + 1000003; no recording is shared). Model threshold {res['threshold']:.3f} "
        "(any placement). All numbers below come from simulated recordings "
        "(`eldercare.simulators.wearable`) unless marked real.",
        "",
        "| | learned model | threshold baseline | target |",
        "| --- | --- | --- | --- |",
        f"| sensitivity, all falls ({f['model']['n_falls']}) | {_pct(f['model']['sensitivity'])} "
        f"| {_pct(f['threshold']['sensitivity'])} | >= 95% |",
        f"| false alarms per hour of daily activity ({d['total_hours']} h) | {d['model']['per_hour']:.3f} "
        f"| {d['threshold']['per_hour']:.3f} | <= 0.05 |",
        f"| detection delay after impact, median / p90 (s) | {f['model']['delay_s']['median']:.1f} / "
        f"{f['model']['delay_s']['p90']:.1f} | {f['threshold']['delay_s']['median']:.1f} / "
        f"{f['threshold']['delay_s']['p90']:.1f} | |",
    ]
    if real.get("clips"):
        lines.append(
            f"| false alarms per hour, **real** recordings ({real['hours']} h) "
            f"| {real['model']['per_hour']:.3f} | {real['threshold']['per_hour']:.3f} | <= 0.05 |"
        )
    lines += [
        f"| speed (s of signal per s of CPU, one core) | {d['speed_x_realtime']:,.0f}x | | >= 1000x |",
        "",
        "Per placement: sensitivity and false alarms per hour of daily activity "
        + (
            "(model at the any-placement threshold; model at the threshold chosen for that placement, "
            "used when the caller passes `placement=`; baseline):"
            if placed
            else "(model; baseline):"
        ),
        "",
        "| placement | sensitivity | false alarms / h | hours |",
        "| --- | --- | --- | --- |",
    ]
    names = ["model", "model_placed", "threshold"] if placed else ["model", "threshold"]
    for p in PLACEMENTS:
        sens = " / ".join(_pct(f[n]["by_placement"][p]) for n in names)
        fa = " / ".join(f"{d[n]['per_hour_by_placement'][p]:.3f}" for n in names)
        lines.append(f"| {p} | {sens} | {fa} | {d['hours'][p]} |")
    if placed:
        lines += [
            f"| all | {' / '.join(_pct(f[n]['sensitivity']) for n in names)} "
            "| " + " / ".join(f"{d[n]['per_hour']:.3f}" for n in names) + f" | {d['total_hours']} |",
            "",
            "Thresholds per placement: "
            + ", ".join(f"{p} {v:.3f}" for p, v in res["thresholds_by_placement"].items())
            + ".",
        ]
    lines += [
        "",
        "Sensitivity per fall kind and placement (model / baseline):",
        "",
        "| kind | " + " | ".join(PLACEMENTS) + " | all |",
        "| --- | " + " | ".join("---" for _ in PLACEMENTS) + " | --- |",
    ]
    for k in FALL_KINDS:
        cells = [
            f"{_pct(f['model']['by_kind_and_placement'][f'{k}/{p}'])} / "
            f"{_pct(f['threshold']['by_kind_and_placement'][f'{k}/{p}'])}"
            for p in PLACEMENTS
        ]
        lines.append(
            f"| {k} | "
            + " | ".join(cells)
            + f" | {_pct(f['model']['by_kind'][k])} / {_pct(f['threshold']['by_kind'][k])} |"
        )
    causes = sorted({c for n in names for c in d[n]["by_cause"]})
    lines += [
        "",
        f"False alarms in {d['total_hours']} h of daily activity by what was happening within 2 s "
        "(count and per hour; " + "; ".join(names) + "), and how often it happened in those days:",
        "",
        "| activity | " + " | ".join(names) + " | occurrences |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for c in causes or ["(none)"]:
        cells = [
            f"{d[n]['by_cause'].get(c, 0)} ({d[n]['by_cause'].get(c, 0) / d['total_hours']:.3f}/h)"
            for n in names
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {d['lookalikes_occurred'].get(c, '')} |")
    lines += [
        "",
        "Look-alike rates per hour in these days (stated by the generator): "
        + ", ".join(f"{k} {v}" for k, v in DAY_RATES_PER_HOUR.items())
        + ".",
        "",
        "Share of look-alike clips raising an alarm (model / baseline): "
        + ", ".join(
            f"{k} {_pct(lk['model']['alarm_share_by_kind'][k])} / "
            f"{_pct(lk['threshold']['alarm_share_by_kind'][k])}"
            for k in LOOKALIKE_KINDS
        )
        + ".",
        "",
        f"Real recordings: {real['source']}.",
        "",
    ]
    lines += [f"![{p}]({p})" for p in pngs] or ["(PNG plots skipped: matplotlib is not installed.)"]
    return "\n".join(lines) + "\n"


def run(
    out_dir: Path,
    seed: int = DEFAULT_SEED,
    *,
    n_falls_each: int = N_FALLS_EACH,
    n_lookalikes_each: int = N_LOOKALIKES_EACH,
    day_hours_each: float = DAY_HOURS_EACH,
) -> dict[str, Any]:
    """Evaluate both detectors; write the report into ``out_dir``; return the results."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = FallDetector.pretrained()
    train_seed = int(model.info.get("seed", -1))
    if seed == train_seed:
        log.warning("evaluating with the training seed %s: numbers will be optimistic", seed)
    base = ThresholdFallDetector()
    dets: Dets = {
        "model": dict.fromkeys(PLACEMENTS, model),
        "threshold": dict.fromkeys(PLACEMENTS, base),
    }
    by_place = model.info.get("thresholds_by_placement", {})
    if set(PLACEMENTS) <= set(by_place):  # the operating point for a known placement
        dets["model_placed"] = {p: FallDetector.pretrained(placement=p) for p in PLACEMENTS}
    started = time.perf_counter()
    res: dict[str, Any] = {
        "seed": seed,
        "train_seed": train_seed,
        "threshold": model.threshold,
        "thresholds_by_placement": by_place,
    }
    res["falls"] = _falls(dets, seed, n_falls_each)
    res["lookalikes"] = _lookalikes(dets, seed, n_lookalikes_each)
    res["days"] = _days(dets, seed, day_hours_each)
    res["real"] = _real(dets)
    res["targets"] = {
        "sensitivity": TARGET_SENSITIVITY,
        "false_alarms_per_hour": TARGET_FA_PER_H,
        "measured_sensitivity": round(res["falls"]["model"]["sensitivity"], 4),
        "measured_false_alarms_per_hour": round(res["days"]["model"]["per_hour"], 4),
        "met": bool(
            res["falls"]["model"]["sensitivity"] >= TARGET_SENSITIVITY
            and res["days"]["model"]["per_hour"] <= TARGET_FA_PER_H
        ),
    }
    res["seconds"] = round(time.perf_counter() - started, 1)
    pngs = _plots(out_dir, res)
    (out_dir / "fall_report.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    (out_dir / "fall_report.md").write_text(_markdown(res, pngs), encoding="utf-8")
    return res


def iter_report_files(out_dir: Path) -> Iterator[Path]:
    yield from sorted(Path(out_dir).glob("fall_*"))
