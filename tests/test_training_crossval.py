"""Leave-subjects-out cross-validation: nobody in both parts of a fold, every trial judged once by
every model, intervals over people, and the report. Tiny simulated stand-ins for real trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eldercare.simulators.wearable import synth_session
from eldercare.training import crossval as cv
from eldercare.training import fall_train
from eldercare.training.candidates import Rows, decide
from eldercare.training.report import markdown, write
from eldercare.training.trials import Trial, pad


def _trial(subject: int, kinds: list[str], seed: int) -> Trial:
    s = synth_session(np.random.default_rng([77, seed]), kinds, "waist", gap_rate=0.0)
    t, acc, shift = pad(s.t - s.t[0], s.acc)
    imp = [lab.t_impact - s.t[0] + shift for lab in s.labels if lab.is_fall]
    return Trial(
        "toy", f"toy:{subject}", "waist", kinds[-1], kinds[-1] if imp else "", t, acc, imp[0] if imp else None
    )


def test_folds_keep_people_apart() -> None:
    trials = [_trial(s, ["stand", "walk"], s) for s in range(7)] + [_trial(9, ["stand", "jump"], 9)]
    groups = cv.folds(trials, k=3)
    assert set().union(*groups) == {t.subject for t in trials}
    assert sum(len(g) for g in groups) == len({t.subject for t in trials})  # each person in one fold


def test_decide_follows_the_detector_rules() -> None:
    ev = np.array([10.0, 12.0, 25.0, 40.0])
    r = Rows(ev, ev, np.zeros((4, 1)), np.array([False, False, False, True]))
    p = np.array([0.9, 0.95, 0.2, 0.99])
    assert decide(r, p, 0.5).tolist() == [10.0, 40.0]  # 12 s is within 10 s of the first event
    assert decide(r, p, 0.5, wear_check=True).tolist() == [10.0]  # put down after 40 s


def test_bootstrap_interval_over_people() -> None:
    est, lo, hi = cv._boot_ci({"a": (9, 10), "b": (10, 10), "c": (5, 10)}, np.random.default_rng(0))
    assert est == pytest.approx(24 / 30) and lo < est < hi and lo >= 0.5 and hi <= 1.0


def test_crossval_runs_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Simulated rows replaced by rows of other toy trials, so this runs in seconds."""
    other = cv.trial_rows(
        [_trial(50 + i, ["walk", k], 900 + i) for i, k in enumerate(["fall_forward", "jump"] * 3)]
    )
    x, y = cv.real_xy(other)
    val = {
        "pos_x": x[y == 1],
        "pos_clip": np.arange(int((y == 1).sum())),
        "clip_placement": np.zeros(int((y == 1).sum()), dtype=np.int64),
        "neg_x": x[y == 0],
        "hours": np.array([100.0, 0.0, 0.0]),
    }
    streams = {
        "days": [(it.rows, np.array([0, 0.5])) for it in other if not it.trial.is_fall],
        "falls": [(it.rows, np.array([0, it.trial.t_impact])) for it in other if it.trial.is_fall],
    }
    monkeypatch.setattr(cv, "training_rows", lambda seed, workers, cache, scale: {"x": x, "y": y})
    monkeypatch.setattr(cv, "validation_rows", lambda seed, cache, workers, hours: val)
    monkeypatch.setattr(cv, "_stream_rows", lambda cache, workers: streams)
    monkeypatch.setattr(fall_train, "GBM_PARAMS", {**fall_train.GBM_PARAMS, "max_iter": 15})
    monkeypatch.setattr(cv, "N_BOOT", 50)
    trials = [
        _trial(s, ["walk", kind], 10 * s + i)
        for s in range(4)
        for i, kind in enumerate(["fall_forward", "fall_sideways", "sit_down_hard", "walk"])
    ]
    res = cv.run(trials, seed=3, k=2, workers=1, cache=None)
    assert len(res["trials"]) == len(trials)  # every trial judged once, in the fold that held it out
    for r in res["trials"]:
        assert r["subject"] in res["folds"][r["fold"]]["test_subjects"]
        assert {"learned", "learned_no_wear_check", "shipped", "threshold"} <= set(r)
    assert res["summary"]["all"]["falls"] == 8 and res["summary"]["all"]["adl"] == 8
    assert res["streams"]["threshold"]["sim_falls"] == 3
    md = write(res, tmp_path / "report")
    text = md.read_text(encoding="utf-8")
    assert "leave-subjects-out" in text and "dataset=toy" in text
    assert (tmp_path / "report" / "fall_crossval.json").exists()


def test_crossval_judges_a_given_model_without_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model M --no-learned``: no fold is trained; every trial is judged by M beside the others."""
    from eldercare.models.fall import FallDetector

    other = cv.trial_rows(
        [_trial(60 + i, ["walk", k], 950 + i) for i, k in enumerate(["fall_forward", "jump"])]
    )
    streams = {
        "days": [(it.rows, np.array([0, 0.5])) for it in other if not it.trial.is_fall],
        "falls": [(it.rows, np.array([0, it.trial.t_impact])) for it in other if it.trial.is_fall],
    }

    def no_training(*args: object) -> None:
        raise AssertionError("no fold may be trained")

    monkeypatch.setattr(cv, "training_rows", no_training)
    monkeypatch.setattr(cv, "fit", no_training)
    monkeypatch.setattr(cv, "_stream_rows", lambda cache, workers: streams)
    monkeypatch.setattr(cv, "N_BOOT", 50)
    trials = [
        _trial(s, ["walk", k], 20 * s + i) for s in range(3) for i, k in enumerate(["fall_forward", "walk"])
    ]
    strict = FallDetector.pretrained(threshold=2.0)  # never alarms: its figures must show it
    res = cv.run(trials, seed=3, workers=1, candidate=strict, learn=False)
    assert res["folds"] == [] and len(res["trials"]) == len(trials)
    assert all(r["candidate"] is False for r in res["trials"])
    assert res["summary"]["all"]["candidate"]["sensitivity"][0] == 0.0
    assert res["summary"]["all"]["candidate"]["specificity"][0] == 1.0
    assert (
        res["streams"]["candidate"]["false_alarms"] == 0
        and res["streams"]["learned_mean_fa_per_hour"] is None
    )
    assert res["candidate"]["threshold"] == 2.0
    assert "leave-subjects-out" in markdown(res)


def test_scaled_amounts_are_restored_and_change_the_cache_key() -> None:
    from eldercare.training import sim

    before = fall_train.N_FALLS_EACH, fall_train.DAY_HOURS_EACH, sim.version()
    with sim.scaled(0.25):
        assert round(before[0] * 0.25) == fall_train.N_FALLS_EACH
        assert sim.version() != before[2]
    assert (fall_train.N_FALLS_EACH, fall_train.DAY_HOURS_EACH, sim.version()) == before


def test_cached_trial_rows_come_back_equal_and_read_once(tmp_path: Path) -> None:
    trials = [_trial(s, ["walk", k], 30 + s) for s, k in enumerate(["fall_forward", "walk", "sit_down_hard"])]
    fresh = cv.trial_rows(trials, tmp_path)
    cached = cv.trial_rows(trials, tmp_path)
    for a, b in zip(fresh, cached, strict=True):
        assert a.trial is b.trial and np.array_equal(a.rows.x, b.rows.x) and np.array_equal(a.y, b.y)
        assert np.array_equal(a.rows.events, b.rows.events)
    # every trial's rows are slices of one array read once (a copy per trial filled 14 GB on 4,393 trials)
    assert len({id(it.rows.x.base) for it in cached}) == 1
