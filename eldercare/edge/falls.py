"""The edge's fall streaming: :class:`FallWatch` over :mod:`eldercare.models.fall`, imported lazily
and never fatal.

``FallDetector.pretrained()`` ships as plain arrays (``fall_model.npz``) and infers with numpy
alone, so the gateway needs neither scikit-learn nor skops. Should the shipped model be missing
or unreadable, or its module need a library the gateway lacks, the agent logs a warning and
runs :class:`~eldercare.models.fall.ThresholdFallDetector` instead: a weaker detector beats none.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from eldercare.edge.config import FallConfig

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


class FallWatch:
    """Each wearable's recent accelerometer samples and its own streaming fall detector.

    The agent hands it every chunk as it arrives (:meth:`push`) and asks it for the evidence
    window of a fall it reports (:meth:`evidence`); what a suspected fall leads to (a check-in,
    an event) stays with the agent. Times are the agent's monotonic clock: a sample's moment is
    its chunk's arrival less how far before the chunk's last sample it was taken.
    """

    def __init__(self, cfg: FallConfig, factory: Callable[[], StreamLike] | None = None) -> None:
        self.cfg = cfg
        self._factory = factory
        self._buffers: dict[str, deque[tuple[np.ndarray, np.ndarray, float]]] = {}
        self._streams: dict[str, StreamLike | None] = {}

    def push(self, sensor: str, t: np.ndarray, acc: np.ndarray, now: float) -> list[tuple[float, float]]:
        """Keep the chunk and run it through the sensor's detector: each fall found as
        (monotonic time of the impact, confidence). A detector that fails skips the chunk."""
        t_end = float(t[-1])
        buf = self._buffers.setdefault(sensor, deque())
        buf.append((np.asarray(t, dtype=np.float64), np.asarray(acc, dtype=np.float32), now))
        while buf and buf[0][2] < now - self.cfg.buffer_s:
            buf.popleft()
        stream = self._stream_for(sensor)
        if stream is None:
            return []
        try:
            found = stream.push(t, acc)
        except Exception:
            log.exception("fall detector failed on %s; chunk skipped", sensor)
            return []
        return [(now - (t_end - float(ev.t)), float(ev.confidence)) for ev in found]

    def _stream_for(self, sensor: str) -> StreamLike | None:
        if sensor not in self._streams:
            try:
                if self._factory is not None:
                    self._streams[sensor] = self._factory()
                else:
                    stream, name = open_stream(self.cfg.detector)
                    self._streams[sensor] = stream
                    log.info("fall detector for %s: %s", sensor, name)
            except Exception:
                log.exception("no fall detector for %s", sensor)
                self._streams[sensor] = None
        return self._streams[sensor]

    def evidence(
        self, sensor: str, impact_mono: float, ms_at: Callable[[float], int | None]
    ) -> dict[str, Any]:
        """Raw samples around the impact as compact integer milli-g arrays (``ms_at`` turns a
        monotonic time into the gateway's clock)."""
        lo, hi = impact_mono - self.cfg.evidence_before_s, impact_mono + self.cfg.evidence_after_s
        monos, accs = [], []
        for t, acc, arrival in self._buffers.get(sensor, ()):
            m = arrival - (t[-1] - t)
            keep = (m >= lo) & (m <= hi)
            if keep.any():
                monos.append(m[keep])
                accs.append(acc[keep])
        if not monos:
            return {}
        m = np.concatenate(monos)
        a = np.concatenate(accs)
        hz = (len(m) - 1) / (m[-1] - m[0]) if len(m) > 1 and m[-1] > m[0] else 0.0
        mg = np.round(a * 1000).astype(np.int32)
        return {
            "t0": ms_at(float(m[0])),
            "hz": round(float(hz), 2),
            "unit": "mg",
            "x": mg[:, 0].tolist(),
            "y": mg[:, 1].tolist(),
            "z": mg[:, 2].tolist(),
        }
