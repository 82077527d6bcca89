"""When to seal pending readings into a telemetry message: at ``max_readings`` or ``max_ms``.

Pure bookkeeping over monotonic time; the readings themselves are already on disk (outbox
``pending``), so the batch window costs latency, never safety. The trade-off between the two
bounds is measured by ``bench/edge_batching.py`` and discussed in docs/edge.md.
"""

from __future__ import annotations


class Batcher:
    """Counts pending readings and says when a batch is due."""

    def __init__(self, max_readings: int, max_ms: int, pending: int = 0, now: float = 0.0) -> None:
        self.max_readings = max_readings
        self.max_ms = max_ms
        self.count = pending
        self.first: float | None = now if pending else None

    def added(self, n: int, now: float) -> None:
        if n <= 0:
            return
        if self.count == 0:
            self.first = now
        self.count += n

    def due(self, now: float) -> bool:
        if self.count == 0 or self.first is None:
            return False
        return self.count >= self.max_readings or (now - self.first) * 1000 >= self.max_ms

    def deadline(self) -> float | None:
        """Monotonic time at which the current batch is due by age (None: nothing pending)."""
        return None if self.first is None else self.first + self.max_ms / 1000

    def sealed(self, n: int, now: float) -> None:
        self.count = max(0, self.count - n)
        # what is left arrived after the sealed part; starting its clock now bounds its wait
        self.first = now if self.count else None
