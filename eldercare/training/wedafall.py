"""Loader of WEDA-FALL (Wrist Elderly Daily Activity and Fall dataset, Instituto Superior Tecnico).

A Fitbit Sense smartwatch on the wrist, 50 Hz, m/s^2 with gravity. 14 younger people (20-46)
performed eight kinds of fall onto a mattress and eleven daily activities, three times each; 11 people
aged 77-95 performed daily activities only (walking, stairs, sitting down and getting up, hitting a
table, clapping, opening a door). Files: ``dataset/50Hz/<CODE>/U<ID>_R<N>_accel.csv`` with a header
``accel_time_list, accel_x_list, accel_y_list, accel_z_list``; ``dataset/fall_timestamps.csv`` gives
each fall's start and end (s). The watch stamps samples in batches of about four (the same time to a
few ms, then a jump), so samples are re-timed evenly between the first and last stamp.

Citation: J. Marques, P. Moreno, "Online Fall Detection Using Wrist Devices", Sensors 23(3), 1146,
2023; data: https://github.com/joaojtmarques/WEDA-FALL. Licence and use: docs/models.md.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from eldercare.training.trials import DatasetError, G, Trial, median_rate, to_grid, trial

NAME = "weda-fall"
PLACEMENT = "wrist"
FALLS: dict[str, str] = {
    "F01": "fall_forward",  # slip while walking
    "F02": "fall_sideways",  # slip while walking
    "F03": "fall_backward",  # slip while walking
    "F04": "fall_forward",  # trip while walking
    "F05": "fall_backward",  # trying to sit down
    "F06": "fall_from_chair",  # forward from sitting: fainting or falling asleep
    "F07": "fall_from_chair",  # backward from sitting
    "F08": "fall_from_chair",  # sideways from sitting
}
ADLS: tuple[str, ...] = tuple(f"D{i:02d}" for i in range(1, 12))
_FILE = re.compile(r"^U(?P<subject>\d+)_R(?P<trial>\d+)_accel\.csv$")


def read_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``*_accel.csv``: (t in s, re-timed evenly; acc in g)."""
    try:
        d = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except ValueError as exc:
        msg = f"{path}: not 'time, x, y, z' numbers ({exc})"
        raise DatasetError(msg) from None
    if d.shape[1] != 4 or len(d) < 2:
        msg = f"{path}: expected at least two rows of 'time, x, y, z', got shape {d.shape}"
        raise DatasetError(msg)
    t = np.linspace(d[0, 0], d[-1, 0], len(d))  # batches of equal stamps -> even sampling
    return t - t[0], d[:, 1:] / G


def fall_windows(root: Path) -> dict[str, tuple[float, float]]:
    """``F01/U01_R01`` -> (start, end) s of the fall, from ``fall_timestamps.csv``."""
    path = root / "dataset" / "fall_timestamps.csv"
    if not path.exists():
        msg = f"{path}: missing (WEDA-FALL marks each fall's start and end there)"
        raise DatasetError(msg)
    out: dict[str, tuple[float, float]] = {}
    with path.open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            out[row["filename"].strip()] = (float(row["start_time"]), float(row["end_time"]))
    return out


def load(root: Path, padded: bool = True, grid: bool = True) -> list[Trial]:
    """Every 50 Hz accelerometer trial under ``root`` (the folder holding ``dataset/``).

    A fall's ``t_impact`` is the largest |a| within its marked start..end; a fall without a mark
    is skipped (it cannot be scored). ``grid=False`` keeps the watch's own (re-timed) samples and
    implies no padding.
    """
    root = Path(root)
    paths = sorted((root / "dataset" / "50Hz").glob("*/U*_R*_accel.csv"))
    if not paths:
        msg = f"{root}: no WEDA-FALL files (dataset/50Hz/<CODE>/U<ID>_R<N>_accel.csv)"
        raise DatasetError(msg)
    marks = fall_windows(root)
    out: list[Trial] = []
    for path in paths:
        m = _FILE.match(path.name)
        code = path.parent.name
        if not m or (code not in FALLS and code not in ADLS):
            continue
        t, acc = to_grid(*read_file(path)) if grid else read_file(path)
        t_imp: float | None = None
        if code in FALLS:
            win = marks.get(f"{code}/{path.stem.removesuffix('_accel')}")
            if win is None:
                continue
            inside = (t >= win[0]) & (t <= win[1])
            if not inside.any():
                continue
            mag = np.where(inside, np.linalg.norm(acc, axis=1), -np.inf)
            t_imp = float(t[int(np.argmax(mag))])
        fall_kind, source = FALLS.get(code, ""), str(path.relative_to(root))
        out.append(
            trial(
                NAME, m["subject"], PLACEMENT, code, fall_kind, t, acc, t_imp, source, padded=padded and grid
            )
        )
    return out


def load_raw(root: Path) -> list[tuple[Trial, float]]:
    """Trials at the watch's own 50 Hz (re-timed evenly, not padded), each with its rate: what the
    independent check's protocol hands ``FallDetector.detect``."""
    return [(tr, median_rate(tr.t)) for tr in load(root, grid=False)]
