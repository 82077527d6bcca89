"""`eldercare simulate dataset`: the documented layout, readable back, labels where the truth says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from eldercare.cli import cli
from eldercare.simulators.scenario import read_truth


def test_dataset_layout_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "dataset",
            "--days",
            "10",
            "--homes",
            "2",
            "-o",
            str(out),
            "--seed",
            "4",
            "--kinds",
            "fall,collapse,sos",
            "--first-day",
            "7",
            "--acc-minutes",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == 1 and meta["homes"] == 2 and meta["days"] == 10
    homes = [json.loads(line) for line in (out / "homes.jsonl").read_text().splitlines()]
    assert [h["home"] for h in homes] == [0, 1]
    truth = read_truth(out / "truth.jsonl")
    assert sorted(t.kind for t in truth) == ["collapse", "collapse", "fall", "fall", "sos", "sos"]
    assert meta["incidents"] == 6
    for h in homes:
        lines = (out / h["events"]).read_text().splitlines()
        events = [json.loads(x) for x in lines]
        assert [e["t"] for e in events] == sorted(e["t"] for e in events)
        assert {e["sensor"] for e in events} <= {s["id"] for s in h["sensors"]}
        sos = [e for e in events if e["kind"] == "sos"]
        assert [e["t"] for e in sos] == [t.t for t in truth if t.kind == "sos" and t.site == h["site"]]
    falls = [t for t in truth if t.kind in ("fall", "collapse")]
    sessions = sorted((out / "acc").glob("*.npz"))
    assert len(sessions) == len(falls) + 2  # one per fall or collapse, one ordinary session per home
    found = 0
    for p in sessions:
        with np.load(p) as z:
            assert z["acc"].shape == (len(z["t"]), 3) and z["acc"].dtype == np.float32
            assert str(z["placement"]) in ("wrist", "pendant")
            if str(z["session"]) in ("fall", "collapse"):
                impacts = z["label_t"][z["is_fall"]]
                assert any(abs(impacts - t.t).min() < 1e-3 for t in falls)
                assert z["t"][0] < impacts[0] < z["t"][-1]
                found += 1
    assert found == len(falls)


def test_dataset_csv_and_no_incidents(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "dataset",
            "--days",
            "2",
            "--homes",
            "1",
            "-o",
            str(out),
            "--kinds",
            "none",
            "--format",
            "csv",
            "--acc-minutes",
            "-1",
        ],
    )
    assert res.exit_code == 0, res.output
    home = json.loads((out / "homes.jsonl").read_text())
    with (out / home["events"]).open() as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"t", "sensor", "kind", "room", "value"}
    assert (out / "truth.jsonl").read_text() == ""
    assert not (out / "acc").exists()


def test_dataset_bad_kind(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["simulate", "dataset", "-o", str(tmp_path), "--kinds", "fall,meteor"])
    assert res.exit_code == 2 and "meteor" in res.output
