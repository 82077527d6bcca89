"""Real-data loading: MobiFall and WEDA-FALL (small synthetic samples written in each dataset's own
file format), the folder reader and the CLI's readable errors. No real dataset file is read here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from eldercare.simulators.wearable import synth_session
from eldercare.training import mobifall, umafall, wedafall
from eldercare.training.cli import models
from eldercare.training.datasets import load_dir
from eldercare.training.trials import PAD_BEFORE_S, DatasetError, G, pad, to_grid

HEADER = """#Acceleration force along the x y z axes (including gravity).
#timestamp(ns),x,y,z(m/s^2)
#Datetime: 05/07/2013 11:27:39
##########################################
#Activity: {code}
#Subject ID: {subject}
##########################################


@DATA
"""


def _write(root: Path, subject: int, code: str, trial: int, kinds: list[str], seed: int) -> float | None:
    """A MobiFall-format file from a simulated session at ~87 Hz (m/s^2, ns stamps); its impact time."""
    folder = "FALLS" if code in mobifall.FALLS else "ADL"
    s = synth_session(np.random.default_rng(seed), kinds, "waist", fs=87.0, gap_rate=0.0)
    path = root / f"sub{subject}" / folder / code / f"{code}_acc_{subject}_{trial}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = (1_000_000_000_000 + (s.t - s.t[0]) * 1e9).astype(np.int64)
    rows = "\n".join(f"{t}, {x:.6f}, {y:.6f}, {z:.6f}" for t, (x, y, z) in zip(ts, s.acc * G, strict=True))
    path.write_text(HEADER.format(code=code, subject=subject) + rows + "\n", encoding="utf-8")
    # the gyroscope beside it must be ignored
    path.with_name(path.name.replace("_acc_", "_gyro_")).write_text("#gyro\n@DATA\n1, 2\n", encoding="utf-8")
    falls = [lab.t_impact - s.t[0] for lab in s.labels if lab.is_fall]
    return falls[0] if falls else None


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float | None]]:
    root = tmp_path_factory.mktemp("falldata") / "mobifall"
    impacts = {
        "sub1/FALLS/FOL/FOL_acc_1_1.txt": _write(root, 1, "FOL", 1, ["stand", "fall_forward"], 1),
        "sub1/FALLS/SDL/SDL_acc_1_1.txt": _write(root, 1, "SDL", 1, ["stand", "fall_sideways"], 2),
        "sub2/ADL/WAL/WAL_acc_2_1.txt": _write(root, 2, "WAL", 1, ["walk"], 3),
        "sub2/ADL/SCH/SCH_acc_2_1.txt": _write(root, 2, "SCH", 1, ["stand", "sit_down", "sit"], 4),
    }
    return root, impacts


def test_mobifall_units_grid_labels_and_subjects(sample: tuple[Path, dict[str, float | None]]) -> None:
    root, impacts = sample
    trials = mobifall.load(root)
    assert sorted(t.source for t in trials) == sorted(impacts)
    for tr in trials:
        assert tr.dataset == "mobifall" and tr.placement == "thigh"
        assert tr.subject == f"mobifall:{tr.source.split('/')[0][3:]}"
        assert np.allclose(np.diff(tr.t), 0.02)  # the detector's 50 Hz grid
        assert abs(np.median(np.linalg.norm(tr.acc, axis=1)) - 1.0) < 0.05  # g, not m/s^2
        true = impacts[tr.source]
        assert tr.is_fall == (true is not None)
        if true is not None:
            assert tr.fall_kind in ("fall_forward", "fall_sideways")
            assert tr.t_impact is not None
            assert abs(tr.t_impact - PAD_BEFORE_S - true) < 0.3  # the largest |a| is the impact
        else:
            assert tr.fall_kind == "" and tr.t_impact is None


def test_padding_continues_the_edges() -> None:
    t = np.arange(200) / 50.0
    acc = np.column_stack([np.sin(t), np.cos(t), np.ones_like(t)])
    t2, a2, shift = pad(t, acc, before_s=4.0, after_s=6.0, head="mirror")
    assert shift == 4.0 and len(t2) == 200 + 500
    assert np.array_equal(a2[200:400], acc)
    assert np.abs(np.diff(a2, axis=0)).max() <= np.abs(np.diff(acc, axis=0)).max() + 1e-12  # no jumps


def test_to_grid_drops_repeated_stamps_and_averages_fast_devices() -> None:
    t = np.r_[np.arange(0, 2, 1 / 200.0), [1.999]]  # 200 Hz and one stamp going back
    acc = np.column_stack([np.ones_like(t), np.zeros_like(t), np.zeros_like(t)])
    tg, ag = to_grid(t, acc)
    assert np.allclose(np.diff(tg), 0.02) and np.allclose(ag[:, 0], 1.0)


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "sub3" / "ADL" / "WAL" / "WAL_acc_3_1.txt"
    p.parent.mkdir(parents=True)
    p.write_text("#x\n@DATA\n1, 0, 0, 9.8\n2, oops, 0, 9.8\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"WAL_acc_3_1.txt:4: not a number"):
        mobifall.load(tmp_path)


def test_load_dir_finds_datasets_by_folder(
    sample: tuple[Path, dict[str, float | None]], tmp_path: Path
) -> None:
    root, _ = sample
    assert len(load_dir(root.parent)) == 4  # DIR/mobifall/
    assert len(load_dir(root)) == 4  # the dataset's own folder
    with pytest.raises(DatasetError, match="no known dataset"):
        load_dir(tmp_path)


def test_cli_train_with_a_folder_without_data_is_one_readable_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(models, ["train", "fall", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert res.exit_code == 1
    assert "no known dataset found" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(models, ["crossval", "--data", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "not a folder" in res.output


def _write_weda(root: Path, subject: int, code: str, trial: int, kinds: list[str], seed: int) -> float | None:
    """A WEDA-FALL-format file (m/s^2, stamps in batches of four) and its fall mark; the impact."""
    s = synth_session(np.random.default_rng(seed), kinds, "wrist", gap_rate=0.0)
    path = root / "dataset" / "50Hz" / code / f"U{subject:02d}_R{trial:02d}_accel.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = np.repeat(s.t[::4] - s.t[0], 4)[: len(s.t)]  # the watch stamps batches, not samples
    rows = "\n".join(
        f"{t:.3f},{x:.4f},{y:.4f},{z:.4f}" for t, (x, y, z) in zip(stamps, s.acc * G, strict=True)
    )
    path.write_text(
        "accel_time_list,accel_x_list,accel_y_list,accel_z_list\n" + rows + "\n", encoding="utf-8"
    )
    path.with_name(path.name.replace("_accel", "_vertical_accel")).write_text("t,v\n0,1\n", encoding="utf-8")
    falls = [lab.t_impact - s.t[0] for lab in s.labels if lab.is_fall]
    if falls:
        marks = root / "dataset" / "fall_timestamps.csv"
        old = marks.read_text(encoding="utf-8-sig") if marks.exists() else "filename,start_time,end_time\n"
        line = f"{code}/U{subject:02d}_R{trial:02d},{falls[0] - 1.5:.1f},{falls[0] + 1.5:.1f}\n"
        marks.write_text("\ufeff" + old + line, encoding="utf-8")
    return falls[0] if falls else None


def test_weda_fall_units_retiming_labels_and_subjects(tmp_path: Path) -> None:
    root = tmp_path / "weda-fall"
    imp = _write_weda(root, 1, "F01", 1, ["walk", "fall_forward"], 5)
    _write_weda(root, 22, "D04", 1, ["stand", "sit_down", "sit", "stand_up"], 6)
    trials = {t.activity: t for t in wedafall.load(root)}
    assert set(trials) == {"F01", "D04"}
    fall, adl = trials["F01"], trials["D04"]
    assert (fall.subject, adl.subject, fall.placement) == ("weda-fall:1", "weda-fall:22", "wrist")
    assert fall.fall_kind == "fall_forward" and adl.t_impact is None and adl.fall_kind == ""
    assert imp is not None and fall.t_impact is not None
    assert abs(fall.t_impact - PAD_BEFORE_S - imp) < 0.3
    for tr in (fall, adl):
        assert np.allclose(np.diff(tr.t), 0.02)
        assert abs(np.median(np.linalg.norm(tr.acc, axis=1)) - 1.0) < 0.05
    assert {t.dataset for t in load_dir(tmp_path)} == {"weda-fall"}


def test_train_with_real_data_records_it_and_loads(
    sample: tuple[Path, dict[str, float | None]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train fall --data DIR --cache C``: real rows join the simulated ones (here a few toy rows)."""
    from eldercare.models.fall import FallDetector
    from eldercare.training import crossval, fall_train, train_fall

    root, _ = sample
    toy = crossval.trial_rows(mobifall.load(root))
    x, y = crossval.real_xy(toy)
    val = {
        "pos_x": x[y == 1],
        "pos_clip": np.arange(int((y == 1).sum())),
        "clip_placement": np.zeros(int((y == 1).sum()), dtype=np.int64),
        "neg_x": x[y == 0],
        "neg_placement": np.zeros(int((y == 0).sum()), dtype=np.int64),
        "hours": np.array([50.0, 0.0, 0.0]),
    }
    monkeypatch.setattr(
        train_fall, "training_rows", lambda seed, workers, cache, scale: {"x": x, "y": y, "hours": [1.0]}
    )
    monkeypatch.setattr(train_fall, "validation_rows", lambda seed, cache, workers, hours: val)
    monkeypatch.setattr(fall_train, "GBM_PARAMS", {**fall_train.GBM_PARAMS, "max_iter": 10})
    res = CliRunner().invoke(
        models,
        ["train", "fall", "--data", str(root.parent), "--out", str(tmp_path / "m"), "--cache", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    det = FallDetector.load(tmp_path / "m" / "fall_model.npz")
    real = det.info["data"]["real"]
    assert real["datasets"] == [["mobifall", 4]] and real["fall_trials"] == 2 and real["subjects"] == 2
    assert set(det.info["thresholds_by_placement"]) == {"wrist", "pendant", "waist"}


def test_train_on_the_simulator_only_with_cached_rows(
    sample: tuple[Path, dict[str, float | None]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train fall --cache C --sim-scale S`` without ``--data``: simulated rows only, as recorded."""
    from eldercare.models.fall import FallDetector
    from eldercare.training import crossval, fall_train, train_fall

    root, _ = sample
    toy = crossval.trial_rows(mobifall.load(root))  # stand-ins for simulated rows, for speed
    x, y = crossval.real_xy(toy)
    val = {
        "pos_x": x[y == 1],
        "pos_clip": np.arange(int((y == 1).sum())),
        "clip_placement": np.zeros(int((y == 1).sum()), dtype=np.int64),
        "neg_x": x[y == 0],
        "neg_placement": np.zeros(int((y == 0).sum()), dtype=np.int64),
        "hours": np.array([50.0, 0.0, 0.0]),
    }
    asked: list[float] = []

    def rows(seed: int, workers: int, cache: Path, scale: float) -> dict[str, Any]:
        asked.append(scale)
        return {"x": x, "y": y, "hours": [1.0]}

    monkeypatch.setattr(train_fall, "training_rows", rows)
    monkeypatch.setattr(train_fall, "validation_rows", lambda seed, cache, workers, hours: val)
    monkeypatch.setattr(fall_train, "GBM_PARAMS", {**fall_train.GBM_PARAMS, "max_iter": 10})
    res = CliRunner().invoke(
        models,
        ["train", "fall", "--out", str(tmp_path / "m"), "--cache", str(tmp_path), "--sim-scale", "0.5"],
    )
    assert res.exit_code == 0, res.output
    assert asked == [0.5]
    info = FallDetector.load(tmp_path / "m" / "fall_model.npz").info
    assert info["data"]["real"] is None and info["data"]["sim_scale"] == 0.5
    assert info["data"]["falls"]["per_kind_and_placement"] == round(fall_train.N_FALLS_EACH * 0.5)
    assert fall_train.N_FALLS_EACH == 80  # the amounts are restored after training


UMA_HEADER = """% Universidad de Malaga - ETSI de Telecomunicacion (Spain)
% ID: Subject_{subject:02d}_{kind}_{activity}_{trial}
% Age: 67
% MAC Address; Sensor_ID; Position; Device Model
%f8:95:c7:f3:ba:82; 0; RIGHTPOCKET; lge-LG-H815-5.1
%C4:BE:84:71:A5:02; 2; WAIST; SensorTag
%C4:BE:84:70:0E:80; 3; WRIST; SensorTag
%B0:B4:48:B8:77:03; 4; ANKLE; SensorTag
%C4:BE:84:70:64:8A; 1; CHEST; SensorTag

% TimeStamp; Sample No; X-Axis; Y-Axis; Z-Axis; Sensor Type; Sensor ID;
"""


def _write_uma(root: Path, subject: int, activity: str, kinds: list[str], seed: int) -> float | None:
    """A UMAFall-format file: the waist SensorTag at 20 Hz and the pocket phone at 200 Hz (g, ms
    stamps, ';' separated, interleaved with gyroscope rows and a row of bare separators)."""
    kind = "Fall" if activity in umafall.FALLS else "ADL"
    rows: list[str] = []
    impact = None
    for sid, fs in ((2, 20.0), (0, 200.0)):
        s = synth_session(np.random.default_rng(seed), kinds, "waist", fs=fs, gap_rate=0.0)
        ms = np.round((s.t - s.t[0]) * 1000).astype(int) + 100
        for n, (t, (x, y, z)) in enumerate(zip(ms, s.acc, strict=True)):
            rows.append(f"{t};{n + 1};{x:.6f};{y:.6f};{z:.6f};0;{sid}")
            rows.append(f"{t};{n + 1};0.1;0.2;0.3;1;{sid}")  # gyroscope: ignored
        falls = [lab.t_impact - s.t[0] for lab in s.labels if lab.is_fall]
        impact = falls[0] if falls else None
    rows.insert(5, ";;;;;;;")
    name = f"UMAFall_Subject_{subject:02d}_{kind}_{activity}_1_2017-04-14_23-38-23.csv"
    header = UMA_HEADER.format(subject=subject, kind=kind, activity=activity, trial=1)
    (root / name).write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return impact


def test_umafall_placements_units_labels_and_subjects(tmp_path: Path) -> None:
    root = tmp_path / "umafall"
    root.mkdir()
    imp = _write_uma(root, 2, "forwardFall", ["stand", "fall_forward"], 11)
    _write_uma(root, 14, "Sitting_GettingUpOnAChair", ["stand", "sit_down", "sit"], 12)
    mangled = root / "UMAFall_Subject_13_ADL_Bending_1_2016-06-06_16-37-56.csv"
    mangled.write_text(
        UMA_HEADER.format(subject=13, kind="ADL", activity="Bending", trial=1)
        + "194;14;0.06;1.012.598.156.929.010;0.25;0;2\n",
        encoding="utf-8",
    )
    trials = umafall.load(root, placements=("waist", "thigh"))
    assert sorted((t.subject, t.placement) for t in trials) == [
        ("umafall:14", "thigh"),
        ("umafall:14", "waist"),
        ("umafall:2", "thigh"),
        ("umafall:2", "waist"),
    ]  # the spreadsheet-mangled file is skipped; the wrist and chest have no rows here
    for tr in trials:
        assert np.allclose(np.diff(tr.t), 0.02)
        assert abs(np.median(np.linalg.norm(tr.acc, axis=1)) - 1.0) < 0.05
        if tr.subject == "umafall:2":
            assert tr.fall_kind == "fall_forward" and tr.t_impact is not None and imp is not None
            assert abs(tr.t_impact - PAD_BEFORE_S - imp) < 0.3
        else:
            assert tr.activity == "Sitting_GettingUpOnAChair" and tr.t_impact is None
    raw = {(t.subject, t.placement): fs for t, fs in umafall.load_raw(root, placements=("waist", "thigh"))}
    assert round(raw[("umafall:2", "waist")]) == 20 and round(raw[("umafall:2", "thigh")]) == 200
    assert {t.dataset for t in load_dir(tmp_path)} == {"umafall"}


def test_cli_padded_check_reports_every_padding(tmp_path: Path) -> None:
    root = tmp_path / "umafall"
    root.mkdir()
    _write_uma(root, 2, "backwardFall", ["stand", "fall_backward"], 13)
    _write_uma(root, 3, "Walking", ["walk"], 14)
    out = tmp_path / "report"
    res = CliRunner().invoke(
        models, ["padded-check", "--data", str(tmp_path), "--out", str(out), "--placement", "waist"]
    )
    assert res.exit_code == 0, res.output
    md = (out / "fall_padded_check.md").read_text(encoding="utf-8")
    assert all(f"| {w} | all | 1 | 1 |" in md for w in ("before", "after", "both"))
    res = CliRunner().invoke(models, ["padded-check", "--data", str(tmp_path / "none")])
    assert res.exit_code == 1 and "no UMAFall files" in res.output and "Traceback" not in res.output


def test_padding_before_is_quiet_standing_by_default() -> None:
    """As the independent check pads: a fall in a trial's first seconds is not seen reversed before it."""
    t = np.arange(300) / 50.0
    acc = np.tile([0.0, 0.0, 1.0], (300, 1))
    acc[60:70] = [0.0, 3.0, 1.0]  # an impact 1.2 s into the trial
    t2, a2, shift = pad(t, acc, before_s=4.0, after_s=6.0)
    before = a2[: int(shift * 50)]
    assert np.abs(np.linalg.norm(before, axis=1) - 1.0).max() < 0.05  # standing, no reversed impact
    assert np.array_equal(a2[200:500], acc) and len(t2) == 200 + 300 + 300
    with pytest.raises(ValueError, match="head must be"):
        pad(t, acc, head="zeros")


def test_raw_trials_keep_each_device_s_own_samples(tmp_path: Path) -> None:
    """The check's protocol feeds detect() the samples as recorded: MobiFall's ~87 Hz phone and
    WEDA-FALL's 50 Hz watch, not our grid, not padded; the impact stays on the raw clock."""
    mobi = tmp_path / "mobifall"
    imp_m = _write(mobi, 1, "FOL", 1, ["stand", "fall_forward"], 1)
    weda = tmp_path / "weda-fall"
    imp_w = _write_weda(weda, 1, "F01", 1, ["walk", "fall_forward"], 5)
    ((tr_m, fs_m),) = mobifall.load_raw(mobi)
    ((tr_w, fs_w),) = wedafall.load_raw(weda)
    assert abs(fs_m - 87.0) < 1.0 and abs(fs_w - 50.0) < 1.0
    assert tr_m.t[0] == 0.0 and tr_w.t[0] == 0.0  # no padding before
    assert imp_m is not None and tr_m.t_impact is not None and abs(tr_m.t_impact - imp_m) < 0.1
    assert imp_w is not None and tr_w.t_impact is not None and abs(tr_w.t_impact - imp_w) < 0.3


def test_cli_padded_check_judges_every_dataset_found(tmp_path: Path) -> None:
    _write(tmp_path / "mobifall", 1, "FOL", 1, ["stand", "fall_forward"], 1)
    _write(tmp_path / "mobifall", 2, "WAL", 1, ["walk"], 3)
    _write_weda(tmp_path / "weda-fall", 1, "F01", 1, ["walk", "fall_forward"], 5)
    out = tmp_path / "report"
    res = CliRunner().invoke(
        models, ["padded-check", "--data", str(tmp_path), "--out", str(out), "--pad", "before"]
    )
    assert res.exit_code == 0, res.output
    md = (out / "fall_padded_check.md").read_text(encoding="utf-8")
    assert "| before | dataset=mobifall | 1 | 1 |" in md and "| before | dataset=weda-fall | 1 | 0 |" in md
    assert "| before | all | 2 | 1 |" in md and "Candidate against shipped" not in md
    shipped = Path(__file__).resolve().parents[1] / "eldercare" / "models" / "data"
    res = CliRunner().invoke(
        models,
        [
            "padded-check",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
            "--pad",
            "before",
            "--model",
            str(shipped),
        ],
    )
    assert res.exit_code == 0, res.output
    md = (out / "fall_padded_check.md").read_text(encoding="utf-8")
    assert "| before | mobifall/thigh |" in md  # the shipped model against itself: nothing differs
    paired = json.loads((out / "fall_padded_check.json").read_text(encoding="utf-8"))["before"]["paired"]
    assert paired["mobifall/thigh"]["falls"]["difference"] == [0.0, 0.0, 0.0]
    assert paired["weda-fall/wrist"]["falls"]["trials"] == 1 and "daily" not in paired["weda-fall/wrist"]
    res = CliRunner().invoke(
        models, ["padded-check", "--data", str(tmp_path), "--out", str(out), "--placement", "waist"]
    )
    assert res.exit_code == 1 and "no trials at placements waist" in res.output
