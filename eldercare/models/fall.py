"""Fall detection from a body-worn tri-axial accelerometer (g, ~50 Hz, any length, any rotation).

Usage, batch::

    from eldercare.models.fall import FallDetector
    det = FallDetector.pretrained()          # the model shipped in eldercare/models/data, no network
    events = det.detect(t, acc)              # t: (n,) s; acc: (n, 3) g -> [FallEvent(t, confidence)]

and streaming, on a gateway (numpy only, bounded memory)::

    stream = det.stream()                    # a StreamingFallDetector
    for t_chunk, acc_chunk in source:
        for ev in stream.push(t_chunk, acc_chunk):
            publish(ev)                      # emitted ~10 s after the impact (the post window)
    rest = stream.flush()                    # end of data: judge the last candidates on what is there

``detect`` is ``push`` of the whole array followed by ``flush``, so the two forms give the same events
for the same samples however they are chunked. A :class:`StreamingFallDetector` holds at most ~16 s
of signal.

How it decides: see :mod:`eldercare.models.fall_features` for resampling, candidate impacts and the
orientation-free features of the phases of a fall. A gradient-boosted tree ensemble (trained with
scikit-learn by ``eldercare models train fall``, exported to plain arrays in ``fall_model.npz``) turns
the features into a probability; candidates at or above the model's threshold become events (placed at
the largest |a| within 1.5 s after the candidate, the impact), and an event suppresses further ones for
:attr:`FallDetector.refractory_s` seconds (one fall, one alert;
the bounces and the attempts to get up that follow are not new falls). Inference needs numpy only.

Operating point. The shipped threshold was chosen on validation recordings (never the evaluation's)
for all placements together, so it holds when nothing is known about how the device is worn. A caller
that knows it (for example from the sensor's settings) may pass ``placement="wrist" | "pendant" | "waist"`` to
:meth:`FallDetector.pretrained` to use the threshold chosen on that placement's validation days alone.

:class:`ThresholdFallDetector` is the classic baseline kept for comparison: an impact peak above
~2.5 g, then the gravity direction turned by more than 60 degrees (lying) and little movement.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eldercare.models.fall_features import (
    DT,
    FEATURE_BATCH,
    FEATURES,
    PRE_N,
    Resampler,
    features,
    iter_windows,
)
from eldercare.models.fall_wear import put_down_after

log = logging.getLogger(__name__)

MODEL_NPZ = "fall_model.npz"
MODEL_JSON = "fall_model.json"
SNAP_N = 75  # 1.5 s at 50 Hz
RAW_CELLS = 1 << 21  # rows x trees scored at once (each int64 array of that size: 16 MB)


class FallModelError(Exception):
    """The shipped or given fall model is missing, unreadable or does not match this code."""


@dataclass(frozen=True)
class FallEvent:
    """A detected fall: impact time (s, on the caller's clock) and confidence (0..1)."""

    t: float
    confidence: float
    kind: str = "fall"
    features: dict[str, float] = field(default_factory=dict, compare=False, repr=False)


class _Scorer(Protocol):
    def score(self, x: np.ndarray) -> np.ndarray: ...


class TreeEnsemble:
    """Gradient-boosted trees as plain arrays: complete binary trees of equal depth.

    ``feature`` and ``threshold`` have shape (trees, 2**depth - 1) in breadth-first order; ``leaf``
    has shape (trees, 2**depth) and already includes the learning rate. A sample goes right when
    ``x[feature] > threshold``, the raw score is ``bias`` plus the sum of leaves and the probability
    its logistic. ``float32_x`` says whether features are first rounded to float32, as scikit-learn's
    ``GradientBoostingClassifier`` does (its ``HistGradientBoostingClassifier`` compares float64).
    """

    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        leaf: np.ndarray,
        bias: float,
        float32_x: bool = True,
    ) -> None:
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.leaf = np.asarray(leaf, dtype=np.float64)
        self.bias = float(bias)
        self.float32_x = bool(float32_x)
        self.depth = int(np.log2(self.leaf.shape[1]))
        if self.feature.shape != self.threshold.shape or self.feature.shape[1] != 2**self.depth - 1:
            msg = "tree arrays have inconsistent shapes"
            raise FallModelError(msg)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of each row; rows are scored in blocks of at most ~2 M row x tree cells, so
        memory stays bounded however many rows or trees (an average of seeds has thousands)."""
        x = np.asarray(x, dtype=np.float32 if self.float32_x else np.float64).astype(np.float64)
        step = max(1, RAW_CELLS // max(1, self.feature.shape[0]))
        if len(x) <= step:
            return self._raw(x)
        return np.concatenate([self._raw(x[i : i + step]) for i in range(0, len(x), step)])

    def _raw(self, x: np.ndarray) -> np.ndarray:
        n_trees = self.feature.shape[0]
        pos = np.zeros((len(x), n_trees), dtype=np.int64)
        trees = np.arange(n_trees)[None, :]
        for _ in range(self.depth):
            f = self.feature[trees, pos]
            go_right = np.take_along_axis(x, f, axis=1) > self.threshold[trees, pos]
            pos = 2 * pos + 1 + go_right
        leaves = self.leaf[trees, pos - (2**self.depth - 1)]
        return self.bias + leaves.sum(axis=1)

    def score(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.raw(x)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "feature": self.feature.astype(np.int16),
            "threshold": self.threshold,
            "leaf": self.leaf,
            "bias": np.array([self.bias]),
            "float32_x": np.array([int(self.float32_x)], dtype=np.int8),
        }

    def deepened(self, depth: int) -> TreeEnsemble:
        """The same trees as complete trees of ``depth`` (>= own): each leaf becomes a node sending
        everything left (threshold +inf) whose children both carry its value; scores do not change."""
        if depth < self.depth:
            msg = f"cannot make trees of depth {self.depth} shallower ({depth})"
            raise ValueError(msg)
        feature, threshold, leaf = self.feature, self.threshold, self.leaf
        for _ in range(depth - self.depth):
            n_trees, n_leaf = leaf.shape
            feature = np.concatenate([feature, np.zeros((n_trees, n_leaf), dtype=np.int64)], axis=1)
            threshold = np.concatenate([threshold, np.full((n_trees, n_leaf), np.inf)], axis=1)
            leaf = np.repeat(leaf, 2, axis=1)  # leaf j at position n_int + j has children 2j, 2j + 1
        return TreeEnsemble(feature, threshold, leaf, self.bias, self.float32_x)

    @classmethod
    def mean(cls, members: list[TreeEnsemble]) -> TreeEnsemble:
        """One ensemble whose raw score (log-odds) is the mean of the members' raw scores.

        Why: models of one recipe trained on different simulated draws disagree on many real trials;
        their average is steadier than any one of them. The result is an ordinary ``TreeEnsemble``
        (all members' trees, leaves divided by their number, biases averaged), saved and loaded like
        any other model.
        """
        if not members:
            msg = "nothing to average"
            raise ValueError(msg)
        if len({m.float32_x for m in members}) != 1:
            msg = "members round their features differently (float32_x); they cannot be averaged"
            raise FallModelError(msg)
        n, depth = len(members), max(m.depth for m in members)
        deep = [m.deepened(depth) for m in members]
        return cls(
            np.concatenate([m.feature for m in deep]),
            np.concatenate([m.threshold for m in deep]),
            np.concatenate([m.leaf for m in deep]) / n,
            float(np.mean([m.bias for m in members])),
            members[0].float32_x,
        )

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """Export a fitted binary ``GradientBoostingClassifier`` (log-loss) or
        ``HistGradientBoostingClassifier`` (numeric features, no missing values) to arrays."""
        if hasattr(model, "_predictors"):  # HistGradientBoostingClassifier
            trees: list[tuple[np.ndarray, ...]] = []
            for (pred,) in model._predictors:
                nd = pred.nodes
                if nd["is_categorical"].any():
                    msg = "categorical splits cannot be exported"
                    raise FallModelError(msg)
                trees.append(
                    (
                        nd["left"],
                        nd["right"],
                        nd["is_leaf"].astype(bool),
                        nd["feature_idx"],
                        nd["num_threshold"],
                        nd["value"],
                    )
                )
            bias = float(np.ravel(model._baseline_prediction)[0])
            return cls(*_complete_trees(trees, 1.0), bias, float32_x=False)
        gbm_trees: list[tuple[np.ndarray, ...]] = []
        for est in model.estimators_:
            tr = est[0].tree_
            left = tr.children_left
            gbm_trees.append(
                (left, tr.children_right, left == -1, tr.feature, tr.threshold, tr.value[:, 0, 0])
            )
        prior = model.init_.class_prior_[1]
        bias = float(np.log(prior / (1 - prior)))
        return cls(*_complete_trees(gbm_trees, float(model.learning_rate)), bias, float32_x=True)


def _complete_trees(
    trees: list[tuple[np.ndarray, ...]], scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, is_leaf, feature, threshold, value) node arrays -> complete trees of equal depth.

    A leaf above full depth routes everything left (threshold +inf) and is copied into both children.
    """

    def depth_of(left: np.ndarray, right: np.ndarray, is_leaf: np.ndarray) -> int:
        best, stack = 0, [(0, 0)]
        while stack:
            node, d = stack.pop()
            if is_leaf[node]:
                best = max(best, d)
            else:
                stack += [(int(left[node]), d + 1), (int(right[node]), d + 1)]
        return best

    depth = max(depth_of(t[0], t[1], t[2]) for t in trees)
    n_int, n_leaf = 2**depth - 1, 2**depth
    feat = np.zeros((len(trees), n_int), dtype=np.int64)
    thr = np.full((len(trees), n_int), np.inf)
    leaf = np.zeros((len(trees), n_leaf))
    for i, (left, right, is_leaf, feature, threshold, value) in enumerate(trees):
        stack = [(0, 0, 0)]  # (node, position, level)
        while stack:
            node, pos, level = stack.pop()
            if level == depth:
                leaf[i, pos - n_int] = scale * float(value[node])
                continue
            if is_leaf[node]:
                feat[i, pos], thr[i, pos] = 0, np.inf
                stack += [(node, 2 * pos + 1, level + 1), (node, 2 * pos + 2, level + 1)]
            else:
                feat[i, pos], thr[i, pos] = int(feature[node]), float(threshold[node])
                stack += [
                    (int(left[node]), 2 * pos + 1, level + 1),
                    (int(right[node]), 2 * pos + 2, level + 1),
                ]
    return feat, thr, leaf


class StreamingFallDetector:
    """Push chunks of samples, get fall events once ~10 s after their impact has been seen."""

    def __init__(
        self,
        scorer: _Scorer,
        threshold: float,
        refractory_s: float,
        keep_features: bool,
        wear_check: bool = False,
    ) -> None:
        self._scorer = scorer
        self._threshold = threshold
        self._refractory = refractory_s
        self._keep = keep_features
        self._wear_check = wear_check
        self._resampler = Resampler()
        self._stage: list[Any] = [None]
        self._last_event_t = -np.inf

    def push(self, t: np.ndarray, acc: np.ndarray) -> list[FallEvent]:
        return self._run([(np.asarray(t), np.asarray(acc))], flush=False)

    def flush(self) -> list[FallEvent]:
        """End of data: judge the remaining candidates on the signal seen so far."""
        return self._run([], flush=True)

    def _run(self, chunks: list[tuple[np.ndarray, np.ndarray]], flush: bool) -> list[FallEvent]:
        events: list[FallEvent] = []
        for t0, ks, win in iter_windows(self._resampler, chunks, flush, self._stage):
            for s in range(0, len(ks), FEATURE_BATCH):
                x = features(win[s : s + FEATURE_BATCH])
                p = self._scorer.score(x)
                for j in np.flatnonzero(p >= self._threshold):
                    off = _impact_offset(win[s + j])
                    te = float(t0 + (ks[s + j] + off) * DT)
                    if te - self._last_event_t < self._refractory:
                        continue
                    if self._wear_check and put_down_after(win[s + j], PRE_N + off):
                        continue  # a device put down on a table, not a person lying on the floor
                    self._last_event_t = te
                    feats = dict(zip(FEATURES, map(float, x[j]), strict=True)) if self._keep else {}
                    events.append(FallEvent(te, float(p[j]), features=feats))
        return events


def _impact_offset(window: np.ndarray) -> int:
    """Grid steps from a fall candidate to the largest |a| in the 1.5 s after it.

    A step or a stumble just before a fall sees the fall in its own post-impact window and may
    score high; the event is then placed at the actual impact, which follows within 1.5 s.
    """
    seg = window[PRE_N : PRE_N + SNAP_N + 1]
    mag = np.sqrt(np.sum(seg**2, axis=1))
    mag = np.where(np.isfinite(mag), mag, -np.inf)
    return int(np.argmax(mag))


class _Detector:
    refractory_s = 10.0
    wear_check = False

    def __init__(self, scorer: _Scorer, threshold: float, keep_features: bool) -> None:
        self._scorer = scorer
        self.threshold = float(threshold)
        self.keep_features = keep_features

    def stream(self) -> StreamingFallDetector:
        return StreamingFallDetector(
            self._scorer, self.threshold, self.refractory_s, self.keep_features, self.wear_check
        )

    def detect(self, t: np.ndarray, acc: np.ndarray) -> list[FallEvent]:
        """Falls in a whole recording, in time order. Empty or short input gives ``[]``."""
        s = self.stream()
        return s.push(t, acc) + s.flush()

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Confidence for rows of :data:`~eldercare.models.fall_features.FEATURES` values."""
        return self._scorer.score(x)


class FallDetector(_Detector):
    """Learned fall detector (tree ensemble on phase features); see the module docstring.

    ``wear_check`` (on by default): a candidate after which the device is as still as a table (no
    breathing, no pulse; :mod:`eldercare.models.fall_wear`) is a wearable taken off and put down,
    not a fall, and raises nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from eldercare.simulators.wearable import synth_session
    >>> s = synth_session(np.random.default_rng(7), ["walk", "fall_backward"], "waist")
    >>> [abs(e.t - s.labels[0].t_impact) < 0.1 for e in FallDetector.pretrained().detect(s.t, s.acc)]
    [True]
    """

    def __init__(
        self,
        model: TreeEnsemble,
        threshold: float,
        info: dict[str, Any] | None = None,
        keep_features: bool = False,
    ) -> None:
        super().__init__(model, threshold, keep_features)
        self.wear_check = True
        self.model = model
        self.info = info or {}
        self.placement: str | None = None

    @classmethod
    def pretrained(
        cls, threshold: float | None = None, keep_features: bool = False, placement: str | None = None
    ) -> FallDetector:
        """The model shipped in the package (``eldercare/models/data``); never touches the network.

        ``placement`` (``wrist``, ``pendant``, ``waist``), when known, selects that placement's
        operating point; ``None`` keeps the one for any placement. An explicit ``threshold`` wins.
        """
        data = resources.files("eldercare.models").joinpath("data")
        with (
            resources.as_file(data.joinpath(MODEL_NPZ)) as npz,
            resources.as_file(data.joinpath(MODEL_JSON)) as js,
        ):
            return cls.load(npz, js, threshold=threshold, keep_features=keep_features, placement=placement)

    @classmethod
    def load(
        cls,
        npz_path: Path,
        json_path: Path | None = None,
        threshold: float | None = None,
        keep_features: bool = False,
        placement: str | None = None,
    ) -> FallDetector:
        """Load arrays (``allow_pickle=False``) and the training record beside them."""
        npz_path = Path(npz_path)
        json_path = Path(json_path) if json_path else npz_path.with_suffix(".json")
        try:
            with np.load(npz_path, allow_pickle=False) as z:
                f32 = bool(z["float32_x"][0]) if "float32_x" in z.files else True
                model = TreeEnsemble(z["feature"], z["threshold"], z["leaf"], float(z["bias"][0]), f32)
            info = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, KeyError, ValueError) as exc:
            msg = f"cannot load fall model from {npz_path}: {exc}"
            raise FallModelError(msg) from exc
        trained_on = list(info.get("features", []))
        # features are only ever appended, so a model trained on the first ones reads its columns
        if not trained_on or trained_on != list(FEATURES[: len(trained_on)]):
            msg = f"{npz_path} was trained on other features; retrain with 'eldercare models train fall'"
            raise FallModelError(msg)
        by_place = info.get("thresholds_by_placement", {})
        if placement is not None and placement not in by_place:
            known = ", ".join(sorted(by_place)) or "none"
            msg = f"no operating point for placement {placement!r} in {json_path.name} (known: {known})"
            raise ValueError(msg)
        if threshold is not None:
            thr = float(threshold)
        elif placement is not None:
            thr = float(by_place[placement])
        else:
            thr = float(info["threshold"])
        det = cls(model, thr, info, keep_features)
        det.placement = placement
        return det


class _ThresholdScorer:
    def __init__(self, peak_g: float, angle_deg: float, still_g: float) -> None:
        self.peak_g, self.angle_deg, self.still_g = peak_g, angle_deg, still_g
        self._i = {name: FEATURES.index(name) for name in ("peak_g", "posture_change_deg", "post_std_g")}

    def score(self, x: np.ndarray) -> np.ndarray:
        ok = (
            (x[:, self._i["peak_g"]] >= self.peak_g)
            & (x[:, self._i["posture_change_deg"]] >= self.angle_deg)
            & (x[:, self._i["post_std_g"]] <= self.still_g)
        )
        return ok.astype(np.float64)


class ThresholdFallDetector(_Detector):
    """Classic baseline: impact above ``peak_g``, then gravity turned by ``angle_deg`` and stillness.

    Confidence is 1.0 for every event (a rule has no graded belief).
    """

    def __init__(
        self, peak_g: float = 2.5, angle_deg: float = 60.0, still_g: float = 0.1, keep_features: bool = False
    ) -> None:
        super().__init__(_ThresholdScorer(peak_g, angle_deg, still_g), 0.5, keep_features)
