"""Loader of MobiFall v2.0 (BMI lab, Technological Educational Institute of Crete).

A Samsung Galaxy S3 in a trouser pocket, ~87 Hz (irregular), in m/s^2 with gravity; 24 people
(ages 22-47) performed four kinds of fall three times each, nine of them also daily activities.
Files: ``sub<ID>/{FALLS,ADL}/<CODE>/<CODE>_acc_<ID>_<TRIAL>.txt``, a ``#`` header, ``@DATA``, then
``timestamp_ns, x, y, z`` rows. Only the accelerometer files are read.

Citation: G. Vavoulas, M. Pediaditis, C. Chatzaki, E. G. Spanakis, M. Tsiknakis, "The MobiFall
Dataset: Fall Detection and Classification with a Smartphone", International Journal of Monitoring
and Surveillance Technologies Research 2(1), 44-56, 2014. Licence and use: docs/models.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from eldercare.training.trials import (
    DatasetError,
    G,
    Trial,
    impact_time,
    increasing,
    median_rate,
    to_grid,
    trial,
)

NAME = "mobifall"
PLACEMENT = "thigh"  # trouser pocket
FALLS: dict[str, str] = {
    "FOL": "fall_forward",  # forward, hands dampen the fall, lying
    "FKL": "fall_forward",  # forward, first impact on the knees
    "BSC": "fall_backward",  # backward while trying to sit on a chair
    "SDL": "fall_sideways",  # sideways, bending the legs
}
ADLS: tuple[str, ...] = ("STD", "WAL", "JOG", "JUM", "STU", "STN", "SCH", "CSI", "CSO")
_FILE = re.compile(r"^(?P<code>[A-Z]{3})_acc_(?P<subject>\d+)_(?P<trial>\d+)\.txt$")


def read_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``*_acc_*.txt``: (t in s from the first sample, acc in g), as recorded (irregular)."""
    rows: list[list[float]] = []
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not in_data:
                in_data = line.startswith("@DATA")
                continue
            if not line:
                continue
            parts = line.split(",")
            if len(parts) != 4:
                msg = f"{path}:{lineno}: expected 'timestamp_ns, x, y, z', got {line[:60]!r}"
                raise DatasetError(msg)
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                msg = f"{path}:{lineno}: not a number in {line[:60]!r}"
                raise DatasetError(msg) from None
    if len(rows) < 2:
        msg = f"{path}: no @DATA rows"
        raise DatasetError(msg)
    d = np.asarray(rows)
    return (d[:, 0] - d[0, 0]) / 1e9, d[:, 1:] / G


def load(root: Path, padded: bool = True, grid: bool = True) -> list[Trial]:
    """Every accelerometer trial under ``root`` (the folder holding ``sub1`` ...), in path order.

    Falls carry ``t_impact`` at the largest |a| of the trial (MobiFall does not mark the impact).
    With ``padded``, trials are lengthened with their own edges (:func:`~eldercare.training.trials.pad`);
    ``grid=False`` keeps the phone's own irregular samples (and implies no padding).
    """
    root = Path(root)
    paths = sorted(root.glob("sub*/*/*/*_acc_*.txt"))
    if not paths:
        msg = f"{root}: no MobiFall files (sub<ID>/FALLS|ADL/<CODE>/<CODE>_acc_<ID>_<N>.txt)"
        raise DatasetError(msg)
    out: list[Trial] = []
    for path in paths:
        m = _FILE.match(path.name)
        if not m or (m["code"] not in FALLS and m["code"] not in ADLS):
            continue
        code = m["code"]
        t, acc = to_grid(*read_file(path)) if grid else increasing(*read_file(path))
        t_imp = impact_time(t, acc) if code in FALLS else None
        fall_kind, source = FALLS.get(code, ""), str(path.relative_to(root))
        out.append(
            trial(
                NAME, m["subject"], PLACEMENT, code, fall_kind, t, acc, t_imp, source, padded=padded and grid
            )
        )
    return out


def load_raw(root: Path) -> list[tuple[Trial, float]]:
    """Trials as the phone recorded them (its own ~87 Hz, not on the grid, not padded), each with its
    median sampling rate: what the independent check's protocol hands ``FallDetector.detect``."""
    return [(tr, median_rate(tr.t)) for tr in load(root, grid=False)]
