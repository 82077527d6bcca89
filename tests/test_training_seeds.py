"""Seed-averaged fall models (``train fall --seeds N``): one ordinary tree ensemble whose score is the
mean log-odds of the seeds' trees, its threshold chosen on the seeds' validation days pooled.
Tiny random rows stand in for the simulator's, so this runs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eldercare.models.fall import MODEL_JSON, MODEL_NPZ, FallDetector, TreeEnsemble
from eldercare.models.fall_features import FEATURES
from eldercare.simulators.wearable import synth_session
from eldercare.training import fall_train, train_fall
from eldercare.training.sim import choose_from_rows

pytest.importorskip("sklearn")

N = len(FEATURES)


def _rows(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([41, seed])
    x = rng.normal(size=(n, N))
    y = (x[:, 0] + 0.7 * x[:, 3] - 0.4 * x[:, 5] ** 2 + 0.5 * rng.normal(size=n) > 0.9).astype(np.int64)
    return x, y


def _val(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([43, seed])
    pos = rng.normal(size=(30, N)) + np.r_[1.5, 0, 0, 1.0, np.zeros(N - 4)]
    return {
        "pos_x": pos,
        "pos_clip": np.repeat(np.arange(15), 2),
        "clip_placement": np.arange(15) % 3,
        "neg_x": rng.normal(size=(400, N)),
        "neg_placement": np.arange(400) % 3,
        "hours": np.array([40.0, 40.0, 40.0]),
    }


@pytest.fixture
def toy_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    def training_rows(seed: int, workers: int, cache: Path | None, scale: float) -> dict[str, np.ndarray]:
        x, y = _rows(seed)
        return {"x": x, "y": y, "hours": np.array([2.0])}

    monkeypatch.setattr(train_fall, "training_rows", training_rows)
    monkeypatch.setattr(train_fall, "validation_rows", lambda seed, cache, workers, hours: _val(seed))
    monkeypatch.setattr(fall_train, "GBM_PARAMS", {**fall_train.GBM_PARAMS, "max_iter": 15})


def test_mean_is_the_mean_of_the_members_log_odds_across_depths() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = _rows(0)[0]
    members = [
        TreeEnsemble.from_sklearn(
            HistGradientBoostingClassifier(
                max_iter=20, max_depth=d, early_stopping=False, random_state=s
            ).fit(*_rows(s))
        )
        for s, d in ((0, 2), (1, 3), (2, 4))
    ]
    assert [m.depth for m in members] == [2, 3, 4]
    avg = TreeEnsemble.mean(members)
    assert avg.depth == 4 and avg.leaf.shape[0] == sum(m.leaf.shape[0] for m in members)
    want = np.mean([m.raw(x) for m in members], axis=0)
    np.testing.assert_allclose(avg.raw(x), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(avg.score(x), 1 / (1 + np.exp(-want)), rtol=0, atol=1e-12)
    assert not np.allclose(avg.raw(x), members[1].raw(x))  # the members do differ


def test_deepening_the_shipped_trees_changes_no_score() -> None:
    model = FallDetector.pretrained().model
    x = np.random.default_rng(5).normal(size=(300, N)) * 2 + 1
    np.testing.assert_array_equal(model.deepened(model.depth + 2).raw(x), model.raw(x))
    np.testing.assert_allclose(TreeEnsemble.mean([model, model]).raw(x), model.raw(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="shallower"):
        model.deepened(model.depth - 1)


def test_train_fall_seeds_ships_the_average_and_it_loads_back(
    tmp_path: Path, toy_rows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eldercare.cli import cli

    fitted: dict[int, TreeEnsemble] = {}
    fit = fall_train.fit_trees

    def recorded(x: np.ndarray, y: np.ndarray, w0: np.ndarray, seed: int) -> TreeEnsemble:
        assert np.array_equal(x, _rows(seed)[0])  # each member learns from its own seed's rows
        fitted[seed] = fit(x, y, w0, seed)
        return fitted[seed]

    monkeypatch.setattr(fall_train, "fit_trees", recorded)
    out = tmp_path / "avg"
    runner = CliRunner()
    res = runner.invoke(cli, ["models", "train", "fall", "--seeds", "3", "--seed", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    det = FallDetector.load(out / MODEL_NPZ, out / MODEL_JSON)
    assert det.info["seeds"] == [4, 5, 6] and sorted(fitted) == [4, 5, 6]
    assert det.info["data"]["real"] is None

    members = [fitted[s] for s in (4, 5, 6)]
    x = np.concatenate([_rows(9)[0], _val(9)["neg_x"]])
    raws = [m.raw(x) for m in members]
    assert not np.allclose(raws[0], raws[1])  # the seeds' trees differ
    np.testing.assert_allclose(det.model.raw(x), np.mean(raws, axis=0), rtol=0, atol=1e-12)
    pooled = train_fall.pooled_validation([_val(s) for s in (4, 5, 6)])
    assert pooled["hours"].sum() == 360.0 and len(pooled["clip_placement"]) == 45
    assert det.threshold == pytest.approx(choose_from_rows(TreeEnsemble.mean(members), pooled)[0], abs=1e-6)
    alarms = int((det.scores(pooled["neg_x"]) >= det.threshold).sum())
    assert alarms <= int(fall_train.TARGET_FA_PER_H * 360.0)  # the usual rule, on all seeds' days
    assert det.info["member_thresholds"].keys() == {"4", "5", "6"}

    s = synth_session(np.random.default_rng(3), ["walk", "fall_forward", "lie", "walk"], "waist")
    in_memory = FallDetector(TreeEnsemble.mean(members), det.threshold)
    assert det.detect(s.t, s.acc) == in_memory.detect(s.t, s.acc)
    assert np.array_equal(det.scores(x) >= det.threshold, in_memory.scores(x) >= det.threshold)

    # its threshold cannot be redone from one seed's validation days
    res = runner.invoke(cli, ["models", "train", "fall", "--threshold-only", "--out", str(out)])
    assert res.exit_code != 0 and "averages several seeds" in res.output
    res = runner.invoke(
        cli, ["models", "train", "fall", "--seeds", "2", "--threshold-only", "--out", str(out)]
    )
    assert res.exit_code != 0 and "--threshold-only" in res.output


def test_many_rows_are_scored_in_blocks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from eldercare.models import fall

    model = FallDetector.pretrained().model
    x = np.random.default_rng(6).normal(size=(1000, N)) * 2 + 1
    whole = model.raw(x)
    monkeypatch.setattr(fall, "RAW_CELLS", 3 * model.feature.shape[0])  # blocks of 3 rows
    np.testing.assert_array_equal(model.raw(x), whole)
    np.testing.assert_array_equal(model.raw(x[:2]), whole[:2])
