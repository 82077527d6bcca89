"""The supported-turn features: a controlled lying down onto a bed against a fall, on synthetic signals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eldercare.models.fall import FallDetector, FallModelError
from eldercare.models.fall_features import FEATURES, FS, candidate_features

TURN = FEATURES.index("pre_supported_turn_deg")
LEFT = FEATURES.index("pre_supported_left_deg")
PEAK = FEATURES.index("peak_g")


def _gravity(theta: np.ndarray) -> np.ndarray:
    """Device reading of gravity with the trunk tilted ``theta`` (rad) from upright, about one axis."""
    return np.column_stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)])


def _bump(t: np.ndarray, t0: float, dur: float, push: float) -> np.ndarray:
    x = (t - t0) / dur
    return np.where((x >= 0) & (x <= 1), push * np.sin(np.pi * np.clip(x, 0, 1)), 0.0)


def _dip(t: np.ndarray, t0: float, dur: float, depth: float) -> np.ndarray:
    x = (t - t0) / dur
    return np.where((x >= 0) & (x <= 1), -(1 - depth) * np.sin(np.pi * np.clip(x, 0, 1)) ** 0.6, 0.0)


def _recording(controlled: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Seated still, then to lying (90 degrees), a 2 g landing on a mattress, then lying still.

    Controlled: the trunk turns over 2.5 s with |a| at 1 g and lets go only for the last 0.4 s.
    A fall: standing, the turn comes in the last 0.8 s with the sink (down to 0.4 g)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 20, 1 / FS)
    t_imp = 8.0
    start = 0.3 if controlled else 0.0  # seated trunk leans back a little; standing is upright
    move = 2.5 if controlled else 0.8
    x = np.clip((t - (t_imp - move)) / move, 0, 1)
    ramp = 0.5 - 0.5 * np.cos(np.pi * x) if controlled else x**2
    sink = 0.4 if controlled else move
    up = 1.0 + _dip(t, t_imp - sink, sink, 0.7 if controlled else 0.4) + _bump(t, t_imp, 0.15, 1.0)
    acc = _gravity(start + (np.pi / 2 - start) * ramp) * up[:, None]  # world "up" seen by the device
    acc += rng.normal(0, 0.004, size=acc.shape)
    return t, acc, t_imp


def _at_impact(t: np.ndarray, acc: np.ndarray, t_imp: float) -> np.ndarray:
    ts, x = candidate_features(t, acc)
    near = np.abs(ts - t_imp) < 0.3
    assert near.any(), ts
    return x[np.flatnonzero(near)[np.argmax(x[near, PEAK])]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_controlled_lying_down_turns_before_the_landing(seed: int) -> None:
    t, acc, t_imp = _recording(controlled=True, seed=seed)
    f = _at_impact(t, acc, t_imp)
    assert f[PEAK] > 1.6
    assert f[TURN] > 45  # most of the turn made while held up
    assert f[LEFT] < 20  # little left for the landing


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fall_turns_with_the_sink(seed: int) -> None:
    t, acc, t_imp = _recording(controlled=False, seed=seed)
    f = _at_impact(t, acc, t_imp)
    assert f[PEAK] > 1.6
    assert f[TURN] < 15
    assert f[LEFT] > 70


def test_features_do_not_depend_on_how_the_device_is_worn() -> None:
    from eldercare.simulators.wearable import random_rotation

    t, acc, t_imp = _recording(controlled=True)
    r = random_rotation(np.random.default_rng(5))
    f0 = _at_impact(t, acc, t_imp)
    f1 = _at_impact(t, acc @ r.T, t_imp)
    assert abs(f0[TURN] - f1[TURN]) < 0.5 and abs(f0[LEFT] - f1[LEFT]) < 0.5


def test_no_supported_block_means_no_controlled_turn() -> None:
    """A wearer moving hard for the 2 s before the candidate: nothing held up, all the turn left."""
    t = np.arange(0, 20, 1 / FS)
    shake = np.where((t > 5.5) & (t < 8.0), 0.5 * np.sign(np.sin(2 * np.pi * 3 * t)), 0.0)
    up = 1.0 + shake + _bump(t, 8.0, 0.1, 2.0)
    acc = _gravity(np.where(t < 8.0, 0.0, np.pi / 2)) * up[:, None]
    f = _at_impact(t, acc, 8.0)
    assert f[TURN] == pytest.approx(0.0, abs=1e-6)
    assert f[LEFT] > 80


def _copy_model(tmp_path: Path, features: list[str]) -> Path:
    from importlib import resources

    data = resources.files("eldercare.models").joinpath("data")
    npz = tmp_path / "fall_model.npz"
    npz.write_bytes(data.joinpath("fall_model.npz").read_bytes())
    info = json.loads(data.joinpath("fall_model.json").read_text(encoding="utf-8"))
    info["features"] = features
    (tmp_path / "fall_model.json").write_text(json.dumps(info), encoding="utf-8")
    return npz


def test_a_model_of_the_earlier_features_still_loads(tmp_path: Path) -> None:
    """Features are only appended: a model trained on a prefix of them reads its own columns."""
    shipped = FallDetector.pretrained()
    n = len(shipped.info["features"])
    assert shipped.info["features"] == list(FEATURES[:n])
    det = FallDetector.load(_copy_model(tmp_path, list(FEATURES[:n])))
    t, acc, _ = _recording(controlled=False)
    assert [e.t for e in det.detect(t, acc)] == [e.t for e in shipped.detect(t, acc)]


@pytest.mark.parametrize("features", [[], ["peak_g", "pre_min_g", "not_a_feature"], list(FEATURES[1:])])
def test_a_model_of_other_features_is_refused(tmp_path: Path, features: list[str]) -> None:
    with pytest.raises(FallModelError, match="other features"):
        FallDetector.load(_copy_model(tmp_path, features))
