"""The edge's access to :mod:`eldercare.models.fall`, imported lazily and never fatal.

``FallDetector.pretrained()`` ships as plain arrays (``fall_model.npz``) and infers with numpy
alone, so the gateway needs neither scikit-learn nor skops. Should the shipped model be missing
or unreadable, or its module need a library the gateway lacks, the agent logs a warning and
runs :class:`~eldercare.models.fall.ThresholdFallDetector` instead: a weaker detector beats none.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class FallEventLike(Protocol):
    t: float
    confidence: float


class StreamLike(Protocol):
    def push(self, t: np.ndarray, acc: np.ndarray) -> list[Any]: ...


class WearLike(Protocol):
    after_s: float

    def add(self, t: np.ndarray, acc: np.ndarray) -> None: ...

    @property
    def not_worn(self) -> bool: ...


def open_wear_tracker() -> WearLike | None:
    """The wear check for a wearable's ``wear`` status (numpy only); None, logged, if unavailable."""
    try:
        from eldercare.models.fall_wear import WearTracker
    except ImportError as exc:
        log.warning("wear check unavailable (%s); wearables report no wear state", exc)
        return None
    return WearTracker()


def open_stream(kind: str = "auto") -> tuple[StreamLike, str]:
    """A streaming fall detector and the name of what it runs (``pretrained`` or ``threshold``)."""
    try:
        from eldercare.models import fall
    except ImportError as exc:  # a library the gateway lacks (e.g. scikit-learn at import time)
        msg = f"eldercare.models.fall cannot be imported ({exc}); edge fall detection is off"
        raise RuntimeError(msg) from exc
    if kind in ("auto", "pretrained"):
        try:
            return fall.FallDetector.pretrained().stream(), "pretrained"
        except (ImportError, OSError, ValueError, getattr(fall, "FallModelError", OSError)) as exc:
            if kind == "pretrained":
                raise
            log.warning("pretrained fall model unavailable (%s); using the threshold detector", exc)
    return fall.ThresholdFallDetector().stream(), "threshold"
