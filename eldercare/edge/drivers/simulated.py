"""A driver with no hardware: fed from Python, or generating a synthetic home by itself.

Three ways in, any combination:

* ``feed(item)`` / ``feed_many(items)`` from any thread: what tests and the simulators' edge
  mode use (they push :class:`~eldercare.edge.drivers.base.Sample`, ``AccChunk``, ``Action``
  and ``Health`` items);
* ``synthetic = true``: every sensor of the gateway's config produces plausible readings at a
  steady rate (PIR and door events, plug power, climate, heart rate, and a 50 Hz wearable
  stream in chunks); the footprint bench runs on this;
* ``counter = {sensor = "...", rate_hz = 100}``: one reading per tick whose value counts 0, 1,
  2, ...; tests use it to prove that no reading is lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
import numpy as np

from eldercare.edge.drivers.base import AccChunk, Driver, Health, Item, Sample, Sink

log = logging.getLogger(__name__)


class CounterOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sensor: str = "counter-1"
    metric: str = "steps"
    rate_hz: Annotated[float, msgspec.Meta(gt=0, le=10_000)] = 100.0
    limit: int | None = None  # stop after this many readings


class SimulatedOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    synthetic: bool = False
    seed: int = 0
    event_period_s: Annotated[float, msgspec.Meta(gt=0)] = 20.0  # mean s between a sensor's readings
    wearable_hz: Annotated[float, msgspec.Meta(gt=0, le=200)] = 50.0
    chunk_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 1.0
    counter: CounterOptions | None = None


class SimulatedDriver(Driver):
    """Feeds the agent from Python code and/or a synthetic home."""

    Options = SimulatedOptions

    def __init__(self, name: str, options: Any, gateway: Any) -> None:
        super().__init__(name, options, gateway)
        self.opts: SimulatedOptions = options  # type: ignore[assignment]
        self._sink: Sink | None = None
        self._early: list[Item] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.prompts: list[tuple[str, str | None, str]] = []
        self.sample_hz: dict[str, float] = {}

    # feeding from Python -------------------------------------------------------------------

    def feed(self, item: Item) -> None:
        if self._sink is None:
            self._early.append(item)
        else:
            self._sink.put(item)

    def feed_many(self, items: Iterable[Item]) -> None:
        for item in items:
            self.feed(item)

    # driver interface ----------------------------------------------------------------------

    def start(self, sink: Sink) -> None:
        self._sink = sink
        for item in self._early:
            sink.put(item)
        self._early.clear()
        if self.opts.counter is not None:
            self._spawn(self._run_counter, self.opts.counter)
        if self.opts.synthetic:
            self._spawn(self._run_synthetic)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def apply_config(self, config: Any) -> None:
        self.sample_hz = {s.id: s.sample_hz for s in config.sensors if s.sample_hz}

    def prompt(self, wearable: str, resident: str | None, text: str) -> None:
        self.prompts.append((wearable, resident, text))
        log.info("prompt to %s (%s): %s", resident or "resident", wearable, text)

    def _spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=f"driver-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)

    # generators ----------------------------------------------------------------------------

    def _run_counter(self, c: CounterOptions) -> None:
        assert self._sink is not None
        period, n = 1.0 / c.rate_hz, 0
        start = time.monotonic()
        while not self._stop.is_set() and (c.limit is None or n < c.limit):
            self._sink.put(Sample(c.sensor, c.metric, float(n)))
            n += 1
            delay = start + n * period - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def _run_synthetic(self) -> None:
        """A home: fixed sensors at random intervals, wearables streaming in chunks."""
        assert self._sink is not None
        rng = random.Random(self.opts.seed)
        nprng = np.random.default_rng(self.opts.seed)
        sensors = self.gateway.initial_config().sensors
        now = time.monotonic()
        fixed = {
            s.id: now + rng.expovariate(1 / self.opts.event_period_s) for s in sensors if s.kind != "wearable"
        }
        kinds = {s.id: s.kind for s in sensors}
        wearables = [s.id for s in sensors if s.kind == "wearable"]
        next_chunk = now + self.opts.chunk_s
        t_stream: dict[str, float] = {}
        battery_at = now
        while not self._stop.is_set():
            now = time.monotonic()
            for sid, due in fixed.items():
                if due <= now:
                    for item in _synthetic_reading(sid, kinds[sid], rng):
                        self._sink.put(item)
                    fixed[sid] = now + rng.expovariate(1 / self.opts.event_period_s)
            if now >= next_chunk:
                for wid in wearables:
                    # the remote config's sample_hz for this wearable, applied without a restart
                    hz = self.sample_hz.get(wid, self.opts.wearable_hz)
                    n = max(1, round(self.opts.chunk_s * hz))
                    t = t_stream.get(wid, 0.0) + np.arange(n) / hz
                    t_stream[wid] = float(t[-1]) + 1 / hz
                    acc = nprng.normal(0.0, 0.03, (n, 3))
                    acc[:, 2] += 1.0
                    self._sink.put(AccChunk(wid, t, acc))
                    if rng.random() < self.opts.chunk_s / 60:
                        self._sink.put(Sample(wid, "heart_rate", round(rng.gauss(70, 4), 1)))
                next_chunk += self.opts.chunk_s
            if now >= battery_at:
                for sid in kinds:
                    self._sink.put(Health(sid, battery=round(rng.uniform(0.5, 1.0), 2), online=True))
                battery_at = now + 600
            wake = min([next_chunk, battery_at, *fixed.values()])
            self._stop.wait(max(0.0, wake - time.monotonic()))


def _synthetic_reading(sensor: str, kind: str, rng: random.Random) -> list[Sample]:
    if kind == "pir":
        return [Sample(sensor, "motion", 1.0)]
    if kind == "door":
        return [Sample(sensor, "contact", 1.0), Sample(sensor, "contact", 0.0)]
    if kind == "bed":
        return [Sample(sensor, "in_bed", float(rng.random() < 0.5))]
    if kind == "plug":
        return [Sample(sensor, "power", round(rng.choice([0.0, 2.5, 95.0, 1800.0]), 1))]
    if kind == "env":
        return [
            Sample(sensor, "temperature", round(rng.gauss(22, 1), 2)),
            Sample(sensor, "humidity", round(rng.gauss(45, 3), 1)),
        ]
    if kind == "vitals":
        return [Sample(sensor, "heart_rate", round(rng.gauss(70, 5), 1))]
    return []  # sos buttons are pressed by people, not by the clock


DRIVER = SimulatedDriver
