"""Loader of UMAFall (Universidad de Malaga fall and ADL dataset, second version, 2017/2018).

Each trial was recorded at once by five devices: a smartphone in the right trouser pocket (~200 Hz)
and four TI SensorTags (MPU-9250, ~20 Hz) on the waist, chest, wrist and ankle. 19 people aged
14-68 (four of them 51-68) emulated three kinds of fall onto a mattress (forward, backward, lateral)
and twelve daily activities (walking, jogging, stairs, bending, hopping, sitting down and getting up,
lying down on a bed, clapping, raising hands, a phone call, opening a door). Files:
``UMAFall_Subject_<ID>_<ADL|Fall>_<activity>_<N>_<date>.csv``; a ``%`` header names each device
(``%MAC; Sensor_ID; Position; Model``), then rows ``TimeStamp(ms); Sample No; X; Y; Z; Sensor Type;
Sensor ID`` with acceleration (type 0) in g. One trial per file *and placement* is loaded, so a
person's waist and wrist recordings of the same fall are two trials of the same subject.

Citation: E. Casilari, J. A. Santoyo-Ramon, J. M. Cano-Garcia, "UMAFall: A Multisensor Dataset for
the Research on Automatic Fall Detection", Procedia Computer Science 110:32-39, 2017; data:
https://figshare.com/articles/dataset/UMA_ADL_FALL_Dataset_zip/4214283. Licence and use:
docs/models.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eldercare.training.trials import DatasetError, Trial, impact_time, to_grid, trial

NAME = "umafall"
# the dataset's positions -> the placement names used in reports (the pocket phone is the thigh's)
PLACEMENTS: dict[str, str] = {
    "WAIST": "waist",
    "CHEST": "chest",
    "WRIST": "wrist",
    "RIGHTPOCKET": "thigh",
}
DEFAULT_PLACEMENTS: tuple[str, ...] = ("waist", "chest", "wrist")
FALLS: dict[str, str] = {
    "forwardFall": "fall_forward",
    "backwardFall": "fall_backward",
    "lateralFall": "fall_sideways",
}
ADLS: tuple[str, ...] = (
    "Aplausing",
    "Bending",
    "GoDownstairs",
    "GoUpstairs",
    "HandsUp",
    "Hopping",
    "Jogging",
    "LyingDown_OnABed",
    "MakingACall",
    "OpeningDoor",
    "Sitting_GettingUpOnAChair",
    "Walking",
)
_FILE = re.compile(
    r"^UMAFall_Subject_(?P<subject>\d+)_(?P<type>ADL|Fall)_(?P<activity>.+?)_(?P<trial>\d+)_"
    r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}\.csv$"
)
_DEVICE = re.compile(r"^%\s*[0-9A-Fa-f:]{17}\s*;\s*(?P<id>\d+)\s*;\s*(?P<pos>[A-Z]+)\s*;")
# 20 of the 746 files (2016) went through a spreadsheet: digit grouping ("1.012.598.156") and
# decimal commas ("-6,10E+10") in their values. Such a file is skipped whole.
_MANGLED = re.compile(r"\d\.\d+\.\d|\d,\d")
ACCELEROMETER = 0
MIN_SAMPLES = 20


def read_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One UMAFall ``.csv``: {dataset position: (t in s from the device's first sample, acc in g)};
    empty for a file whose numbers were mangled by a spreadsheet (see :data:`_MANGLED`)."""
    ids: dict[int, str] = {}
    rows: list[list[float]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("%"):
                m = _DEVICE.match(line)
                if m:
                    ids[int(m["id"])] = m["pos"]
                continue
            parts = [p for p in line.split(";") if p.strip()]
            if not parts:  # a row of bare separators (some files have them)
                continue
            if len(parts) != 7:
                msg = f"{path}:{lineno}: expected 'time; n; x; y; z; type; id', got {line[:60]!r}"
                raise DatasetError(msg)
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                if _MANGLED.search(line):
                    return {}  # a file saved through a spreadsheet: its numbers cannot be trusted
                msg = f"{path}:{lineno}: not a number in {line[:60]!r}"
                raise DatasetError(msg) from None
    if not ids:
        msg = f"{path}: no device lines ('%MAC; Sensor_ID; Position; Model') in the header"
        raise DatasetError(msg)
    if not rows:
        msg = f"{path}: no data rows"
        raise DatasetError(msg)
    d = np.asarray(rows)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sid, pos in ids.items():
        m = (d[:, 5] == ACCELEROMETER) & (d[:, 6] == sid)
        if m.sum() < MIN_SAMPLES:
            continue
        t = d[m, 0] / 1000.0
        order = np.argsort(t, kind="stable")
        out[pos] = (t[order] - t[order][0], d[m][order][:, 2:5])
    return out


class Recording(NamedTuple):
    """One device's recording of one file, as :func:`read_file` returns it, with what the file's name says."""

    subject: str
    activity: str
    is_fall: bool
    placement: str
    source: str  # the file under the dataset folder, "#" its dataset position
    t: np.ndarray
    acc: np.ndarray

    def as_trial(self, t: np.ndarray, acc: np.ndarray, padded: bool = False) -> Trial:
        """The recording as a trial on ``t, acc``; a fall's impact is their largest |a| (UMAFall does
        not mark it)."""
        return trial(
            NAME,
            self.subject,
            self.placement,
            self.activity,
            FALLS[self.activity] if self.is_fall else "",
            t,
            acc,
            t_impact=impact_time(t, acc) if self.is_fall else None,
            source=self.source,
            padded=padded,
        )


def recordings(root: Path, placements: tuple[str, ...] = DEFAULT_PLACEMENTS) -> Iterator[Recording]:
    """Every known activity's recording at ``placements`` under ``root``, in file and position order."""
    paths = sorted(root.rglob("UMAFall_Subject_*.csv"))
    if not paths:
        msg = f"{root}: no UMAFall files (UMAFall_Subject_<ID>_<ADL|Fall>_<activity>_<N>_<date>.csv)"
        raise DatasetError(msg)
    for path in paths:
        m = _FILE.match(path.name)
        if not m:
            continue
        activity, is_fall = m["activity"], m["type"] == "Fall"
        if (is_fall and activity not in FALLS) or (not is_fall and activity not in ADLS):
            continue
        for pos, (t, acc) in sorted(read_file(path).items()):
            placement = PLACEMENTS.get(pos)
            if placement is not None and placement in placements:
                source = f"{path.relative_to(root)}#{pos}"
                yield Recording(m["subject"], activity, is_fall, placement, source, t, acc)


def load(root: Path, padded: bool = True, placements: tuple[str, ...] = DEFAULT_PLACEMENTS) -> list[Trial]:
    """Every trial under ``root`` (the folder holding the ``UMAFall_Subject_*.csv`` files), one per
    file and placement in ``placements``, on the detector's grid. A fall's ``t_impact`` is the largest
    |a| of that device's recording (UMAFall does not mark the impact)."""
    return [
        rec.as_trial(*to_grid(rec.t, rec.acc), padded=padded) for rec in recordings(Path(root), placements)
    ]


def load_raw(root: Path, placements: tuple[str, ...] = DEFAULT_PLACEMENTS) -> list[tuple[Trial, float]]:
    """Trials at the devices' own rate and times (not on the grid, not padded), with each one's
    median sampling rate: what a wearable would hand ``FallDetector.detect`` as recorded."""
    out: list[tuple[Trial, float]] = []
    for rec in recordings(Path(root), placements):
        keep = np.concatenate([[True], np.diff(rec.t) > 0])
        t, acc = rec.t[keep], rec.acc[keep]
        out.append((rec.as_trial(t, acc), 1.0 / float(np.median(np.diff(t)))))
    return out
