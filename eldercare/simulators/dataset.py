"""Labelled datasets on disk: home event streams with incidents, accelerometer sessions with falls.

The layout is documented in ``docs/simulators.md`` (section "Datasets"); in short::

    DIR/dataset.json           what was generated: format version, seed, start, days, homes, counts
    DIR/homes.jsonl            one line per home: site, resident, seed, profile, sensors
    DIR/truth.jsonl            one TruthRecord per line (every incident of every home)
    DIR/events/<site>.jsonl    {"t", "sensor", "kind", "room", "value"} per line, in time order
      (or .csv with the header t,sensor,kind,room,value)
    DIR/acc/<site>-<n>.npz     t (s, epoch), acc (n x 3, g), label_t, label_kind, is_fall, placement

Accelerometer sessions come from :mod:`.wearable`: for every ``fall`` / ``collapse`` of a home a
session whose impact is shifted to the truth's time, plus one session of ordinary activity with
look-alikes (jumps, sitting down hard, stumbles, the device taken off) per home.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eldercare.simulators.routine import HomeRun
from eldercare.simulators.scenario import Scenario, home_ids, home_seed, write_truth

FORMAT_VERSION = 1
_FALL_KINDS = ("fall_forward", "fall_backward", "fall_sideways", "fall_from_bed", "fall_from_chair")


def _write_events(run: HomeRun, path: Path, fmt: str) -> None:
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("t", "sensor", "kind", "room", "value"))
            for (t, kind, room, value), sensor in zip(run.events, run.sensor_ids, strict=True):
                w.writerow((f"{t:.3f}", sensor, kind, room, value))
    else:
        with path.open("w", encoding="utf-8") as f:
            for (t, kind, room, value), sensor in zip(run.events, run.sensor_ids, strict=True):
                f.write(
                    json.dumps({"t": t, "sensor": sensor, "kind": kind, "room": room, "value": value}) + "\n"
                )


def _acc_sessions(run: HomeRun, site: str, home: int, seed: int, out: Path, minutes: float) -> int:
    """Write this home's accelerometer sessions; returns how many."""
    import numpy as np

    from eldercare.simulators import wearable

    rng = np.random.default_rng(home_seed(seed, home))
    placement = str(rng.choice(("wrist", "pendant")))
    person = wearable.Person.sample(rng)
    n = 0

    def save(session: Any, kind: str) -> None:
        nonlocal n
        labels = session.labels
        np.savez_compressed(
            out / f"{site}-{n}.npz",
            t=session.t.astype("float64"),
            acc=session.acc.astype("float32"),
            label_t=np.array([lab.t_impact for lab in labels], dtype="float64"),
            label_kind=np.array([lab.kind for lab in labels], dtype="U32"),
            is_fall=np.array([lab.is_fall for lab in labels], dtype=bool),
            placement=np.array(placement),
            session=np.array(kind),
        )
        n += 1

    r = random.Random(f"{seed}:acc:{home}")
    for truth in run.truth:
        if truth.kind not in ("fall", "collapse"):
            continue
        kind = "soft_collapse" if truth.kind == "collapse" else r.choice(_FALL_KINDS)
        kinds = [*wearable.day_kinds(rng, 4 / 60), kind]
        s = wearable.synth_session(rng, kinds, placement, person=person)
        impact = next(lab.t_impact for lab in s.labels if lab.kind == kind)
        shift = truth.t - impact
        s = s._replace(
            t=s.t + shift,
            labels=[dataclasses.replace(lab, t_impact=lab.t_impact + shift) for lab in s.labels],
        )
        save(s, truth.kind)
    if minutes > 0:
        day = int(r.uniform(0, max(1, (run.end - run.start) // 86_400)))
        t0 = run.start + day * 86_400 + r.uniform(9, 16) * 3600
        kinds = wearable.day_kinds(rng, minutes / 60)
        save(wearable.synth_session(rng, kinds, placement, person=person, t0=t0), "daily")
    return n


def write_dataset(
    scenario: Scenario,
    out: Path,
    *,
    fmt: str = "jsonl",
    acc_minutes: float = 30.0,
    progress: Callable[[int, HomeRun], None] | None = None,
) -> dict[str, Any]:
    """Simulate every home of ``scenario`` (one at a time) and write the dataset; returns the summary."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"format must be jsonl or csv, not {fmt!r}")
    (out / "events").mkdir(parents=True, exist_ok=True)
    if acc_minutes >= 0:
        (out / "acc").mkdir(exist_ok=True)
    truth_all = []
    n_events = n_acc = 0
    with (out / "homes.jsonl").open("w", encoding="utf-8") as homes:
        for home in range(scenario.homes):
            run = scenario.simulate(home)
            ids = home_ids(scenario.prefix, home)
            homes.write(
                json.dumps(
                    {
                        **ids,
                        "home": home,
                        "seed": run.seed,
                        "events": f"events/{ids['site']}.{fmt}",
                        "profile": dataclasses.asdict(run.profile),
                        "partner": dataclasses.asdict(run.partner) if run.partner else None,
                        "sensors": [dataclasses.asdict(s) for s in run.sensors],
                    }
                )
                + "\n"
            )
            _write_events(run, out / "events" / f"{ids['site']}.{fmt}", fmt)
            n_events += len(run.events)
            truth_all += run.truth
            if acc_minutes >= 0:
                n_acc += _acc_sessions(run, ids["site"], home, scenario.seed, out / "acc", acc_minutes)
            if progress:
                progress(home, run)
    write_truth(out / "truth.jsonl", truth_all)
    summary = {
        "format": FORMAT_VERSION,
        "name": scenario.name,
        "seed": scenario.seed,
        "start": scenario.start,
        "days": scenario.days,
        "homes": scenario.homes,
        "events": n_events,
        "incidents": len(truth_all),
        "acc_sessions": n_acc,
        "event_format": fmt,
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
