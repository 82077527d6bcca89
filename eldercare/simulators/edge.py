"""Edge mode: the simulated homes drive real edge agents, the same code path as a real gateway.

Each simulated gateway gets an :class:`eldercare.edge.agent.Agent` with its own outbox (SQLite,
under ``edge_dir``), its own MQTT connection, clock guard, batching, check-ins and fall detector,
fed through the simulated driver. The agents' clocks are the runner's simulated clock (``wall`` and
``mono`` follow ``sim_now``), so readings, events and status carry simulated timestamps, the same
as the readings the runner feeds them.

What the agents are fed: every routine event as a reading stamped with its simulated time,
heart rate, steps and climate as in direct mode, device health (battery, online) at each status
interval, and the wearable's 50 Hz accelerometer from :mod:`.wearable`: a session around every
``fall`` / ``collapse`` (its impact on the truth's time) and a two-minute session of ordinary
activity with look-alikes every two simulated hours at home. The agent decides what is a fall,
sends SOS and low-battery events itself, and keeps everything in its outbox through a
``gateway_outage`` (the agent is stopped and started again on the same outbox).

An agent runs threads of its own; edge mode is for up to :data:`MAX_EDGE_GATEWAYS` gateways.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from eldercare.config import Settings
from eldercare.protocol import Reading, SensorStatus
from eldercare.simulators.routine import OUT, TruthRecord
from eldercare.simulators.runner import Runner, RunOptions, _Gateway, _Home
from eldercare.simulators.scenario import Scenario

log = logging.getLogger(__name__)

MAX_EDGE_GATEWAYS = 200
ACC_EVERY_S = 2 * 3600.0  # simulated seconds between ordinary accelerometer sessions
_SENSOR_KEYS = ("id", "kind", "room", "resident")
_FALL_KINDS = ("fall_forward", "fall_backward", "fall_sideways", "fall_from_bed", "fall_from_chair")


class EdgeRunner(Runner):
    """A :class:`Runner` whose gateways are real edge agents instead of direct publishers.

    It overrides only the runner's hooks (``on_*``, ``send_*``, ``connect_all``, ``outage_*``,
    ``say_goodbye``, ``after_home_tick``): what direct mode publishes, edge mode feeds to agents.
    """

    stand_in_falls: Mapping[str, float] = MappingProxyType({})  # the agents' detectors decide

    def __init__(
        self,
        settings: Settings,
        manifest: dict[str, Any],
        opts: RunOptions,
        *,
        edge_dir: Path,
        **kw: Any,
    ) -> None:
        n = len(manifest["homes"][: opts.homes] if opts.homes else manifest["homes"])
        n += 0 if opts.homes else sum(len(s["gateways"]) for s in manifest.get("stations", []))
        if n > MAX_EDGE_GATEWAYS:
            msg = f"edge mode runs one agent per gateway; {n} is too many (at most {MAX_EDGE_GATEWAYS}):"
            msg += " use --homes"
            raise RuntimeError(msg)
        self.edge_dir = edge_dir
        self.agents: dict[str, Any] = {}
        self.creds: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        self.next_acc: dict[str, float] = {}
        self.falls_fired: dict[str, int] = {}  # per home: seeds each fall's waveform
        super().__init__(settings, manifest, opts, **kw)
        edge_dir.mkdir(parents=True, exist_ok=True)

    # the agents' clocks: simulated time, continuous -----------------------------------------------

    def sim_wall(self) -> float:
        """The runner's own simulated clock, so the agents' heartbeats and status carry the same time
        as the readings it feeds them (a clock of their own ran ahead by the time it took to connect,
        times the speed: minutes at 60x, and the platform judged each home by it)."""
        return self.sim_now

    def sim_mono(self) -> float:
        return self.sim_now - self.sim_start

    def on_gateway(self, gw: _Gateway, g: dict[str, Any]) -> None:
        # its paho client is never connected: the agent has its own
        self.creds[gw.id] = (g["mqtt_username"], g["mqtt_password"], g["sensors"])

    def _agent(self, gw: _Gateway) -> Any:
        from eldercare.edge.agent import Agent
        from eldercare.edge.config import build_gateway_file
        from eldercare.edge.drivers.simulated import SimulatedDriver, SimulatedOptions

        user, pw, sensors = self.creds[gw.id]
        url = self.settings.mqtt_url.get_secret_value() if self.settings.mqtt_url else "mqtt://127.0.0.1:1883"
        raw = {
            "site": gw.site,
            "gateway": gw.id,
            "topic_root": self.root,
            "broker": {
                "url": url,
                "username": user,
                "password": pw,
                "client_id": f"sim-edge-{self.run_tag}-{gw.id}",
                "keepalive_s": self.settings.mqtt_keepalive_s,
            },
            "outbox": {"path": str(self.edge_dir / f"{gw.id}.sqlite3"), "synchronous": "normal"},
            "status_interval_s": max(5.0, self.opts.status_every),
            "sensors": [{k: s[k] for k in _SENSOR_KEYS if s.get(k) is not None} for s in sensors],
            "drivers": [{"type": "simulated", "name": "sim"}],
        }
        gwf = build_gateway_file(raw, source=f"simulated gateway {gw.id}")
        driver = SimulatedDriver("sim", SimulatedOptions(), gwf)
        return Agent(gwf, drivers=[driver], wall=self.sim_wall, mono=self.sim_mono)

    def _all_gateways(self) -> list[_Gateway]:
        return [h.gw for h in self.homes] + [s.gw for s in self.stations]

    def connect_all(self) -> None:
        self.pool.add(self.ctl)
        self.pool.wait_connected()
        for gw in self._all_gateways():
            agent = self._agent(gw)
            agent.start()
            self.agents[gw.id] = agent
        deadline = time.monotonic() + 30
        for gw_id, agent in self.agents.items():
            if not agent.connected_once.wait(max(0.1, deadline - time.monotonic())):
                msg = f"edge agent of {gw_id} did not connect to the broker within 30 s"
                raise RuntimeError(msg)

    def _feed(self, gw: _Gateway, items: list[Any]) -> None:
        agent = self.agents.get(gw.id)
        if agent is not None and not gw.out:
            agent.driver("sim").feed_many(items)

    # what direct mode publishes, edge mode feeds ---------------------------------------------------

    def send_telemetry(self, gw: _Gateway, readings: list[Reading]) -> None:
        from eldercare.edge.drivers.base import Sample

        self._feed(gw, [Sample(r.sensor, r.metric, r.value, r.t) for r in readings])
        self.stats["readings"] += len(readings)

    def send_event(
        self,
        home: _Home,
        t: float,
        sensor: str,
        kind: str,
        conf: float,
        evidence: dict[str, Any],
        resident: str | None = None,
    ) -> None:
        """The agent raises SOS (from the press), low battery (from health) and falls (from the
        accelerometer) itself; direct mode's stand-ins are not sent."""

    def send_status(self, gw: _Gateway, t: float, sensors: dict[str, SensorStatus]) -> None:
        from eldercare.edge.drivers.base import Health

        self._feed(gw, [Health(sid, st.battery, st.online) for sid, st in sensors.items()])

    def on_truth(self, home: _Home, rec: TruthRecord) -> None:
        if rec.kind in ("fall", "collapse"):
            sensor = "wearable-2" if rec.resident == home.resident2 else "wearable-1"
            n = self.falls_fired[home.resident] = self.falls_fired.get(home.resident, 0) + 1
            chunk = self._session(
                home, rec.t, "soft_collapse" if rec.kind == "collapse" else None, sensor=sensor, nth_fall=n
            )
            self._at(float(chunk.t[-1]), "acc", (home, chunk))

    def on_effect(self, what: str, t: float, arg: Any) -> None:
        if what == "acc":
            home, chunk = arg
            self._feed(home.gw, [chunk])

    def after_home_tick(self, home: _Home) -> None:
        now = self.sim_now
        due = self.next_acc.setdefault(home.gw.id, now + random.Random(home.seed).uniform(0, ACC_EVERY_S))
        cur = home.sim._current
        if now >= due:
            self.next_acc[home.gw.id] = now + ACC_EVERY_S
            if cur is not None and cur.room != OUT and not cur.activity.startswith(("sleep", "nap")):
                self._feed(home.gw, [self._session(home, now, None, ordinary=True)])

    def _session(
        self,
        home: _Home,
        t: float,
        kind: str | None,
        ordinary: bool = False,
        sensor: str = "wearable-1",
        nth_fall: int = 0,
    ) -> Any:
        """An accelerometer chunk: ending at ``t`` (ordinary) or with its impact at ``t``.

        A fall's waveform is seeded by the home and how many falls it has had, not by the moment it
        was triggered, so the same scripted incident replays the same motion on every run.
        """
        import numpy as np

        from eldercare.edge.drivers.base import AccChunk
        from eldercare.simulators import wearable

        seed = [home.seed, 0, nth_fall] if nth_fall else [home.seed, 1, round(t)]
        rng = np.random.default_rng(seed)
        placement = "pendant" if home.seed % 2 else "wrist"
        person = wearable.Person.sample(np.random.default_rng(home.seed))
        if ordinary:
            s = wearable.synth_session(rng, wearable.day_kinds(rng, 2 / 60), placement, person=person)
            shift = t - float(s.t[-1])
        else:
            fall = kind or _FALL_KINDS[int(rng.integers(len(_FALL_KINDS)))]
            s = wearable.synth_session(
                rng, [*wearable.day_kinds(rng, 1 / 60), fall], placement, person=person
            )
            impact = next(lab.t_impact for lab in s.labels if lab.kind == fall)
            shift = t - impact
        return AccChunk(sensor, s.t + shift, s.acc)

    def outage_started(self, home: _Home) -> None:
        agent = self.agents.pop(home.gw.id, None)
        if agent is not None:
            agent.stop()

    def outage_ended(self, home: _Home, t: float) -> None:
        agent = self._agent(home.gw)  # same outbox: same epoch, seq goes on, nothing lost
        agent.start()
        self.agents[home.gw.id] = agent

    def say_goodbye(self) -> None:
        for gw_id, agent in list(self.agents.items()):
            try:
                agent.stop()
            except Exception:
                log.exception("edge agent of %s stopped with an error", gw_id)
        self.agents.clear()


def run_edge(
    settings: Settings,
    manifest: dict[str, Any],
    opts: RunOptions,
    *,
    edge_dir: Path,
    truth_path: Path | None = None,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    if truth_path is None:
        return EdgeRunner(settings, manifest, opts, edge_dir=edge_dir, scenario=scenario).run()
    with truth_path.open("w", encoding="utf-8") as out:
        return EdgeRunner(settings, manifest, opts, edge_dir=edge_dir, truth_out=out, scenario=scenario).run()
