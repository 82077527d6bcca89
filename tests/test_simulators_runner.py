"""Direct mode against the real Mosquitto: valid protocol, seq per gateway, triggers, bounded memory.

No fixed sleeps: a test triggers once the runner has answered on its control topic (so it is up
and subscribed), and reads what it collected once a message published after the run has arrived
(the broker had the runner's messages, all acknowledged, before it, and delivers in order).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fix_db import unique_tag
from paho.mqtt.enums import CallbackAPIVersion

from eldercare import protocol
from eldercare.config import Settings
from eldercare.scoring import score
from eldercare.sim_control import NoRunnerError, send_trigger
from eldercare.simulators import neighbourhood as nb
from eldercare.simulators.routine import DAY, DEFAULT_START, HOUR
from eldercare.simulators.runner import Runner, RunOptions, _rss_mb
from eldercare.simulators.scenario import read_clock, read_truth

# A weekday evening: the residents are at home, so a triggered SOS is pressed at once (at a time
# when a resident is out, the simulator presses it after they come home, long after a short run).
EVENING = DEFAULT_START + 2 * DAY + 19.5 * HOUR


@pytest.fixture
def sim_root(topic_root: str) -> str:
    return topic_root


@pytest.fixture
def broker(mqtt_host_port: tuple[str, int], mqtt_url: str) -> tuple[str, int, str]:
    return mqtt_host_port[0], mqtt_host_port[1], mqtt_url


def _settings(root: str, broker: tuple[str, int, str]) -> Settings:
    return Settings(mqtt_url=broker[2], mqtt_topic_root=root)  # type: ignore[arg-type]


class Collector:
    """Subscribes to everything under the root and keeps (topic, payload)."""

    def __init__(self, root: str, broker: tuple[str, int, str]) -> None:
        self.root, self.broker = root, broker
        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.got: dict[str, threading.Event] = defaultdict(threading.Event)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{unique_tag()}")
        self.c.on_connect = lambda c, *_: c.subscribe(f"{root}/#", qos=1)
        self.c.on_subscribe = lambda *_: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect(broker[0], broker[1])
        self.c.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.got[m.topic].set()

    def close(self) -> None:
        """Stop collecting once everything published before now has arrived: a marker sent after
        the run comes after the run's messages, which the broker had all acknowledged."""
        marker = f"{self.root}/_sim/end-{unique_tag()}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2)
        c.connect(self.broker[0], self.broker[1])
        c.loop_start()
        try:
            c.publish(marker, b"end", qos=1).wait_for_publish(10)
        finally:
            c.disconnect()
            c.loop_stop()
        assert self.got[marker].wait(30), "the marker published after the run never arrived"
        self.c.disconnect()
        self.c.loop_stop()


def wait_for_runner(settings: Settings, root: str, timeout: float = 60) -> None:
    """Until the runner answers a (refused) trigger: its loop runs and its control topic is subscribed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            send_trigger(settings, root, {"resident": "nobody", "kind": "fall"}, timeout=1.0)
        except NoRunnerError as exc:
            if "refused" in str(exc):
                return
            assert time.monotonic() < deadline, f"the runner did not answer within {timeout:.0f} s: {exc}"


def _manifest(homes: int, stations: int = 0, seed: int = 1) -> dict[str, Any]:
    p = nb.plan(seed, homes, stations, now=time.time(), roster_days=1)
    return nb.manifest(p, topic_root="unused", created_at=time.time(), start=time.time())


def _publish(broker: tuple[str, int, str], topic: str, payloads: list[bytes]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker[0], broker[1])
    c.loop_start()
    for p in payloads:
        c.publish(topic, p, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _clear_retained(broker: tuple[str, int, str], topics: set[str]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker[0], broker[1])
    c.loop_start()
    for t in topics:
        c.publish(t, b"", qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_direct_mode_publishes_valid_protocol(
    sim_root: str, broker: tuple[str, int, str], tmp_path: Path
) -> None:
    m = _manifest(5, stations=1)
    col = Collector(sim_root, broker)
    truth = tmp_path / "truth.jsonl"
    opts = RunOptions(
        speed=1800, duration=6.0, status_every=600, live=False, false_fall_rate=0, sim_start=EVENING
    )
    result: dict[str, Any] = {}
    with truth.open("w") as out:
        runner = Runner(_settings(sim_root, broker), m, opts, truth_out=out)
        th = threading.Thread(target=lambda: result.update(runner.run()))
        th.start()
        wait_for_runner(_settings(sim_root, broker), sim_root)
        answer = send_trigger(
            _settings(sim_root, broker), sim_root, {"resident": m["homes"][2]["resident"], "kind": "sos"}
        )
        assert answer["ok"] and answer["truth"]["kind"] == "sos"
        # with the run's clock, so the platform can score the run in its simulated time
        assert answer["clock"]["speed"] == 1800 and answer["clock"]["sim_start"] == EVENING
        out_answer = send_trigger(
            _settings(sim_root, broker),
            sim_root,
            {"resident": m["homes"][3]["resident"], "kind": "gateway_outage", "duration_s": 600},
        )
        assert out_answer["ok"]
        # a morning without getting up plays out at the next planned wake, after this run's end
        late = send_trigger(
            _settings(sim_root, broker), sim_root, {"resident": m["homes"][4]["resident"], "kind": "no_wake"}
        )
        assert late["ok"] and late["truth"]["t"] > late["clock"]["sim_now"] + 3 * HOUR
        with pytest.raises(NoRunnerError, match="refused"):  # said once no run that has them answers
            send_trigger(
                _settings(sim_root, broker), sim_root, {"resident": "nobody", "kind": "fall"}, timeout=1
            )
        # bytes no tester meant (deep nesting raised RecursionError in the runner's loop): refused
        _publish(broker, f"{sim_root}/_sim/control", [b"[" * 100_000, b"\xff", b"[]"])
        again = send_trigger(
            _settings(sim_root, broker), sim_root, {"resident": m["homes"][2]["resident"], "kind": "sos"}
        )
        assert again["ok"], "the runner still takes triggers"
        th.join(30)
    col.close()
    assert result["messages"] > 50 and result["readings"] > 100
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    kinds: dict[str, int] = defaultdict(int)
    offline_wills: set[str] = set()
    retained_topics = set()
    for name, payload, _ in col.messages:
        if "/_sim/" in name:
            continue
        parts = protocol.parse_topic(name, sim_root)
        msg = protocol.decode(parts.kind, payload)
        kinds[parts.kind] += 1
        if isinstance(msg, protocol.Telemetry):
            assert 1 <= len(msg.readings) <= 50
            seqs[(parts.gateway, msg.epoch)].append(msg.seq)
            assert {r.metric for r in msg.readings} <= set(protocol.METRICS)
        elif isinstance(msg, protocol.Event):
            seqs[(parts.gateway, msg.epoch)].append(msg.seq)
            if msg.kind == "sos":
                assert msg.resident == m["homes"][2]["resident"]
        elif isinstance(msg, protocol.Status):
            retained_topics.add(name)
            if msg.state == "offline":
                offline_wills.add(parts.gateway)
    assert kinds["telemetry"] and kinds["status"] and kinds["event"]
    for key, s in seqs.items():
        distinct = sorted(set(s))
        assert distinct == list(range(len(distinct))), key  # every message, seq from 0 without gaps
        # QoS 1 is at least once: a message whose PUBACK a dropped connection lost is sent again after
        # the reconnect (ingest drops the copy); a handful, never a resend storm
        assert len(s) - len(distinct) <= max(3, len(s) // 20), (key, len(s) - len(distinct))
    assert {g for g, _ in seqs} >= {h["gateway"]["id"] for h in m["homes"]}
    station_gws = {g["id"] for s in m["stations"] for g in s["gateways"]}
    assert station_gws <= {protocol.parse_topic(n, sim_root).gateway for n in retained_topics}
    assert m["homes"][3]["gateway"]["id"] in offline_wills  # the Will fired on the outage
    recs = read_truth(truth)
    assert sorted(r.kind for r in recs) == ["gateway_outage", "no_wake", "sos", "sos"]
    clock = read_clock(truth)
    assert clock is not None and clock["speed"] == 1800 and clock["sim_now"] > clock["sim_start"] + 3600
    # written when triggered, so a score of this run shows it under way rather than leaving it out
    report = score(recs, [], residents=len(m["homes"]), clock=clock)
    assert report.kinds["no_wake"].under_way == 1 and report.kinds["no_wake"].missed == 0
    # the clock is also written while the run goes on (every 5 s), so a live run can be scored
    clocks = [json.loads(x)["run"] for x in truth.read_text().splitlines() if x.startswith('{"run"')]
    assert len(clocks) >= 3 and clocks[0]["sim_now"] < clocks[1]["sim_now"] < clocks[-1]["sim_now"]
    _clear_retained(broker, retained_topics)


@contextmanager
def _live(settings: Settings, m: dict[str, Any], broker: tuple[str, int, str]) -> Iterator[Runner]:
    """A runner of ``m`` at x60 in the evening, up and answering triggers; stopped and its retained
    statuses cleared after."""
    opts = RunOptions(speed=60, duration=30.0, live=False, false_fall_rate=0, sim_start=EVENING)
    runner = Runner(settings, m, opts)
    th = threading.Thread(target=runner.run)
    th.start()
    try:
        wait_for_runner(settings, settings.mqtt_topic_root)
        yield runner
    finally:
        runner.stop()
        th.join(30)
        root = settings.mqtt_topic_root
        _clear_retained(
            broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", root) for h in m["homes"]}
        )


def test_a_trigger_that_changes_nothing_is_refused_with_the_reason(
    sim_root: str, broker: tuple[str, int, str]
) -> None:
    """After a collapse for good nothing more happens to the resident: the runner answered a fall
    with "ok" and a truth of null (the CLI printed "null", the tester API's score then failed)."""
    m = _manifest(2)
    who = m["homes"][0]["resident"]
    settings = _settings(sim_root, broker)
    with _live(settings, m, broker):
        assert send_trigger(settings, sim_root, {"resident": who, "kind": "collapse"})["truth"]
        with pytest.raises(NoRunnerError, match=f"fall: ignored: {who} collapsed for good"):
            send_trigger(settings, sim_root, {"resident": who, "kind": "fall"})
        # a device still breaks in that home
        assert send_trigger(settings, sim_root, {"resident": who, "kind": "low_battery"})["truth"]
        # twice the same morning in bed: one event in the plan, it was two in the truth (both "caught")
        other = m["homes"][1]["resident"]
        assert send_trigger(settings, sim_root, {"resident": other, "kind": "no_wake"})["truth"]
        with pytest.raises(NoRunnerError, match=f"no_wake: ignored: {other} has one already, which lasts"):
            send_trigger(settings, sim_root, {"resident": other, "kind": "no_wake"})
        for _ in range(2):  # presses are each real
            assert send_trigger(settings, sim_root, {"resident": other, "kind": "sos"})["truth"]


def test_a_malformed_trigger_is_refused_in_its_own_terms(sim_root: str, broker: tuple[str, int, str]) -> None:
    """What a tool publishing on the control topic gets wrong (the API says the platform can): a
    missing kind was refused as "'kind'", a list as "unhashable type: 'list'"."""
    m = _manifest(1)
    who = m["homes"][0]["resident"]
    settings = _settings(sim_root, broker)
    with _live(settings, m, broker):
        for req, said in (
            ({"resident": who}, "a trigger needs 'kind' as a string, got None"),
            ({"resident": who, "kind": "fall", "duration_s": "long"}, "duration_s must be a number"),
            ({"resident": [who], "kind": "fall"}, "a trigger needs 'resident' as a string"),
            ({"resident": who, "kind": "device_offline", "sensor": ["x"]}, "sensor must be a string"),
        ):
            with pytest.raises(NoRunnerError, match=re.escape(said)):
                send_trigger(settings, sim_root, req)


def test_trigger_without_a_runner_says_so(sim_root: str, broker: tuple[str, int, str]) -> None:
    with pytest.raises(NoRunnerError, match="no running simulation"):
        send_trigger(_settings(sim_root, broker), sim_root, {"resident": "r", "kind": "sos"}, timeout=1.0)


def test_two_runs_of_one_neighbourhood_on_one_broker_keep_their_connections(
    sim_root: str, broker: tuple[str, int, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Two testers (or two tests) run the same manifest under their own topic roots on one broker:
    each gateway's connection must not take over its twin's (the broker drops the older client of a
    client id, and both would reconnect in turn for the whole run)."""
    m = _manifest(2)
    roots = (sim_root, sim_root.replace("/eldercare/v1", "-twin/eldercare/v1"))
    opts = RunOptions(speed=600, duration=4.0, status_every=3600, live=False, sim_start=EVENING)
    runners = [Runner(_settings(root, broker), m, opts) for root in roots]
    threads = [threading.Thread(target=r.run) for r in runners]
    with caplog.at_level("WARNING", logger="eldercare.simulators"):
        for th, root in zip(threads, roots, strict=True):
            th.start()
            wait_for_runner(_settings(root, broker), root)
        for th in threads:
            th.join(30)
    assert not any(th.is_alive() for th in threads)
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage() or "closed" in r.getMessage()]
    assert lost == [], lost[:4]
    assert all(r.stats["messages"] > 0 for r in runners)
    for root in roots:
        _clear_retained(
            broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", root) for h in m["homes"]}
        )


@pytest.mark.slow
def test_thousand_homes_bounded_memory(sim_root: str, broker: tuple[str, int, str]) -> None:
    m = _manifest(1000, stations=0, seed=9)
    opts = RunOptions(speed=600, duration=10.0, status_every=3600, live=False)
    # this worker's RSS holds whatever earlier tests left: bound what the runner itself adds
    before_mb = _rss_mb()
    runner = Runner(_settings(sim_root, broker), m, opts)
    stats = runner.run()
    # how fast is the bench's business (bench/simulate_run.py); here: it ran, and memory stayed flat
    assert stats["sim_seconds"] > 600
    assert stats["readings"] > 1000 * stats["sim_seconds"] / 60 * 0.5  # heart rate: one a minute at home
    assert stats["rss_growth_mb"] < 40, stats  # measured: ~1 MB at x60, ~10 MB at x3600
    # a runner of 1,000 homes alone is ~90 MB in all (docs/simulators.md), Python included
    assert stats["rss_mb"] - before_mb < 150, (before_mb, stats)
    _clear_retained(
        broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    )
    print(json.dumps(stats))


@pytest.mark.slow
def test_edge_mode_runs_real_agents(sim_root: str, broker: tuple[str, int, str], tmp_path: Path) -> None:
    from eldercare.simulators.edge import EdgeRunner

    m = _manifest(2, stations=0, seed=3)
    col = Collector(sim_root, broker)
    opts = RunOptions(speed=60, duration=8.0, status_every=60, live=False, sim_start=EVENING)
    runner = EdgeRunner(_settings(sim_root, broker), m, opts, edge_dir=tmp_path / "edge")
    result: dict[str, Any] = {}
    th = threading.Thread(target=lambda: result.update(runner.run()))
    th.start()
    wait_for_runner(_settings(sim_root, broker), sim_root)
    answer = send_trigger(
        _settings(sim_root, broker), sim_root, {"resident": m["homes"][1]["resident"], "kind": "sos"}
    )
    assert answer["ok"]
    th.join(60)
    col.close()
    assert result["readings"] > 0
    kinds: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for name, payload, _ in col.messages:
        if "/_sim/" in name:
            continue
        parts = protocol.parse_topic(name, sim_root)
        kinds[(parts.gateway, parts.kind)].append(protocol.decode(parts.kind, payload))
    for h in m["homes"]:
        gw = h["gateway"]["id"]
        assert kinds[(gw, "telemetry")] and kinds[(gw, "status")]
        assert (tmp_path / "edge" / f"{gw}.sqlite3").exists()  # the agent's own outbox
    sos = [e for e in kinds[(m["homes"][1]["gateway"]["id"], "event")] if e.kind == "sos"]
    assert len(sos) == 1
    retained = {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    _clear_retained(broker, retained)


def test_scenario_incidents_are_scheduled_relative_to_the_run(
    sim_root: str, broker: tuple[str, int, str]
) -> None:
    from eldercare.simulators.routine import DAY, HOUR
    from eldercare.simulators.scenario import loads

    m = _manifest(2)
    sc = loads(
        'homes = 2\ndays = 3\n[[incident]]\nkind = "sos"\nhome = 1\nday = 1\ntime = "10:00"\n'
        '[[incident]]\nkind = "sos"\nhome = 0\nday = 0\ntime = "00:00"\n'
    )
    start = 1_800_000_000.0 + 5 * HOUR  # 05:00 on some day: day 0's midnight incident is already past
    runner = Runner(_settings(sim_root, broker), m, RunOptions(sim_start=start, live=False), scenario=sc)
    day0 = start - start % DAY
    pending = {h.index: [(t, inc.kind) for t, _, inc in h.sim._pending] for h in runner.homes}
    assert pending == {0: [], 1: [(day0 + DAY + 10 * HOUR, "sos")]}


def test_a_scenario_of_more_homes_than_the_run_says_what_is_left_out_and_truth_is_kept(
    sim_root: str, broker: tuple[str, int, str], tmp_path: Path
) -> None:
    """every-incident has nine homes: run against a manifest of two, seven homes' incidents vanished;
    the run after it overwrote its truth file."""
    from click.testing import CliRunner

    from eldercare.cli import cli

    m = _manifest(2)
    (tmp_path / "m.json").write_text(json.dumps(m))
    env = {"ELDERCARE_MQTT_URL": broker[2], "ELDERCARE_MQTT_TOPIC_ROOT": sim_root}
    args = ["simulate", "run", "--manifest", str(tmp_path / "m.json"), "--quiet", "--duration", "0"]
    res = CliRunner().invoke(cli, [*args, "--scenario", "every-incident"], env=env)
    assert res.exit_code == 0, res.output
    said = "scenario every-incident: 9 homes, this run 2: the incidents of homes 2..8 are left out"
    assert said in res.output, res.output
    # a second run keeps the first one's truth (it was overwritten: that run could not be scored)
    first = (tmp_path / "truth.jsonl").read_text()
    assert '{"run"' in first
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    kept = list(tmp_path.glob("truth-*.jsonl"))
    assert len(kept) == 1 and kept[0].read_text() == first, res.output
    assert f"is kept as {kept[0]}" in res.output
    _clear_retained(
        broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    )


def test_the_trigger_command_names_either_resident_of_a_home_of_two(
    sim_root: str, broker: tuple[str, int, str], tmp_path: Path
) -> None:
    """The docs say triggers name either resident; the command knew only the first of each home."""
    from click.testing import CliRunner

    from eldercare.cli import cli

    p = nb.plan(4, 1, 0, now=time.time(), roster_days=1, couples=1.0)
    m = nb.manifest(p, topic_root="unused", created_at=time.time(), start=time.time())
    partner = m["homes"][0]["partner"]["resident"]
    (tmp_path / "m.json").write_text(json.dumps(m))
    settings = _settings(sim_root, broker)
    runner = Runner(settings, m, RunOptions(speed=60, duration=30.0, live=False, sim_start=EVENING))
    th = threading.Thread(target=runner.run)
    th.start()
    env = {"ELDERCARE_MQTT_URL": broker[2], "ELDERCARE_MQTT_TOPIC_ROOT": sim_root}
    try:
        wait_for_runner(settings, sim_root)
        for who, expected in ((partner, partner), ("0", m["homes"][0]["resident"])):
            args = ["simulate", "trigger", "--manifest", str(tmp_path / "m.json"), "--resident", who]
            res = CliRunner().invoke(cli, [*args, "--kind", "sos"], env=env)
            assert res.exit_code == 0, res.output
            assert json.loads(res.output)["resident"] == expected
    finally:
        runner.stop()
        th.join(30)
    _clear_retained(
        broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    )


def test_stations_see_the_residents_who_attend(sim_root: str, broker: tuple[str, int, str]) -> None:

    m = _manifest(30, stations=1, seed=2)
    goer = next(h for h in m["homes"] if h["station"])
    wday = goer["profile"]["station_days"][0]
    monday = DEFAULT_START + 50 * 7 * DAY  # a Monday in December 2026
    start = monday + wday * DAY + 11 * HOUR

    class Recording(Runner):
        sent: list[tuple[str, list[Any]]] = []  # noqa: RUF012

        def send_telemetry(self, gw: Any, readings: list[Any]) -> None:
            self.sent.append((gw.id, readings))

    runner = Recording(
        _settings(sim_root, broker), m, RunOptions(sim_start=start, speed=60, live=False), wall_start=0.0
    )
    for k in range(1, 40):
        runner.step(k * 0.5)
    site = m["stations"][0]["site"]
    attending = [h for h in m["homes"] if h["station"] == site and wday in h["profile"]["station_days"]]
    assert runner.present[site] == len(attending) >= 1
    station_gws = {g["id"] for g in m["stations"][0]["gateways"]}
    motion = [r for gw, rs in runner.sent if gw in station_gws for r in rs if r.metric == "motion"]
    assert len(motion) > 10


def test_a_home_of_two_live(sim_root: str, broker: tuple[str, int, str]) -> None:
    p = nb.plan(4, 3, 0, now=time.time(), roster_days=1, couples=1.0)
    m = nb.manifest(p, topic_root="unused", created_at=time.time(), start=time.time())
    home = m["homes"][0]
    assert home["partner"]["resident"] == home["resident"] + "-2"
    assert {"bed-2", "sos-2", "wearable-2"} <= {s["id"] for s in home["gateway"]["sensors"]}
    col = Collector(sim_root, broker)
    runner = Runner(
        _settings(sim_root, broker),
        m,
        RunOptions(speed=600, duration=5.0, live=False, false_fall_rate=0, sim_start=EVENING),
    )
    result: dict[str, Any] = {}
    th = threading.Thread(target=lambda: result.update(runner.run()))
    th.start()
    wait_for_runner(_settings(sim_root, broker), sim_root)
    answer = send_trigger(
        _settings(sim_root, broker), sim_root, {"resident": home["partner"]["resident"], "kind": "sos"}
    )
    assert answer["ok"] and answer["truth"]["resident"] == home["partner"]["resident"]
    th.join(30)
    col.close()
    sensors_seen: set[str] = set()
    sos = []
    for name, payload, _ in col.messages:
        if "/_sim/" in name:
            continue
        parts = protocol.parse_topic(name, sim_root)
        msg = protocol.decode(parts.kind, payload)
        if parts.gateway != home["gateway"]["id"]:
            continue
        if isinstance(msg, protocol.Telemetry):
            sensors_seen |= {r.sensor for r in msg.readings}
        elif isinstance(msg, protocol.Event) and msg.kind == "sos":
            sos.append(msg)
    assert [(e.sensor, e.resident) for e in sos] == [("sos-2", home["partner"]["resident"])]
    assert "sos-2" in sensors_seen
    _clear_retained(
        broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    )


def test_two_neighbourhoods_under_one_root_each_answer_their_own_triggers(
    sim_root: str, broker: tuple[str, int, str]
) -> None:
    """Two runs of different neighbourhoods under one topic root both hear every trigger: the one
    without the resident answered "no resident ... in this run" and, when it answered first, the
    trigger reported a refusal (exit 1) of an incident the other run had put in its truth."""
    settings = _settings(sim_root, broker)
    now = time.time()
    plans = [nb.plan(1, 1, 0, prefix=prefix, now=now, roster_days=1) for prefix in ("sima", "simb")]
    mine, other = (nb.manifest(p, topic_root="unused", created_at=now, start=now) for p in plans)
    with _live(settings, mine, broker) as first, _live(settings, other, broker):
        who = other["homes"][0]["resident"]
        for _ in range(6):  # either run may answer first; each press is its own
            assert (
                send_trigger(settings, sim_root, {"resident": who, "kind": "sos"})["truth"]["resident"] == who
            )
        assert first.stats["triggers"] == 0
        with pytest.raises(NoRunnerError, match="refused: no resident 'nobody' in this run"):
            send_trigger(settings, sim_root, {"resident": "nobody", "kind": "sos"}, timeout=1.0)


def test_a_scenarios_radio_faults_apply_to_a_live_run_and_its_profiles_are_said_to_not(
    sim_root: str, broker: tuple[str, int, str], tmp_path: Path
) -> None:
    """``drop_rate`` and ``spurious_rate`` of a scenario (fault injection, docs: "Scenario files")
    were ignored in silence by ``run --scenario``: the live homes lost nothing and saw no spurious
    motion. Now both residents of a home get them; [[profile]] overrides are said not to apply."""
    from click.testing import CliRunner

    from eldercare.cli import cli
    from eldercare.simulators.scenario import loads

    now = time.time()
    m = nb.manifest(
        nb.plan(3, 1, 0, now=now, roster_days=1, couples=1.0), topic_root="u", created_at=now, start=now
    )
    start = DEFAULT_START + 20 * DAY + 5 * HOUR
    settings = _settings(sim_root, broker)

    def events(scenario: str | None) -> tuple[int, int, int]:
        sc = loads(scenario) if scenario else None
        (home,) = Runner(settings, m, RunOptions(sim_start=start, live=False), scenario=sc).homes
        assert home.sim2 is not None
        ev1, ev2 = home.sim.pop_until(start + DAY), home.sim2.pop_until(start + DAY)
        return len(ev1), len(ev2), sum(1 for e in ev1 if e.kind == "pir")

    plain = events(None)
    lossy = events("homes = 1\ndrop_rate = 0.5\n")
    noisy = events("homes = 1\nspurious_rate = 200.0\n")
    assert lossy[0] < 0.7 * plain[0] and lossy[1] < 0.7 * plain[1], (plain, lossy)
    assert noisy[2] > plain[2] + 500, (plain, noisy)
    scenario = tmp_path / "mine.toml"
    scenario.write_text('name = "mine"\nhomes = 1\n[[profile]]\nhome = 0\nwake_h = 6.5\n')
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(m))
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "run",
            "--manifest",
            str(manifest),
            "--scenario",
            str(scenario),
            "--duration",
            "0",
            "--quiet",
        ],
        env={"ELDERCARE_MQTT_URL": broker[2], "ELDERCARE_MQTT_TOPIC_ROOT": sim_root},
    )
    assert res.exit_code == 0, res.output
    assert "scenario mine: its [[profile]] overrides are not applied in a live run" in res.output
    _clear_retained(
        broker, {protocol.topic(h["site"], h["gateway"]["id"], "status", sim_root) for h in m["homes"]}
    )


def test_device_incidents_name_the_gateways_sensors_and_only_batteries_run_low(
    sim_root: str, broker: tuple[str, int, str], tmp_path: Path
) -> None:
    """A seeded home's wearable-1 and env-1 were "no sensor in this home" to a trigger (though the
    run reports their batteries and can silence them), a low battery of a mains-powered plug was
    taken into the truth though nothing could ever report it, and a scenario naming a sensor the
    home lacks stopped the run (and a dataset) with a traceback when its day came."""
    from click.testing import CliRunner

    from eldercare.cli import cli
    from eldercare.simulators.routine import SimulationError
    from eldercare.simulators.scenario import loads

    m = _manifest(1)
    who = m["homes"][0]["resident"]
    settings = _settings(sim_root, broker)
    with _live(settings, m, broker):
        for sensor in ("wearable-1", "env-1"):
            answer = send_trigger(
                settings, sim_root, {"resident": who, "kind": "low_battery", "sensor": sensor}
            )
            assert answer["truth"]["sensor"] == sensor
        answer = send_trigger(
            settings, sim_root, {"resident": who, "kind": "device_offline", "sensor": "wearable-1"}
        )
        assert answer["truth"]["sensor"] == "wearable-1"
        with pytest.raises(NoRunnerError, match="plug-tv is mains-powered"):
            send_trigger(settings, sim_root, {"resident": who, "kind": "low_battery", "sensor": "plug-tv"})
    bad = 'name = "bad"\nhomes = 1\ndays = 3\n[[incident]]\nkind = "device_offline"\nhome = 0\nday = 2\n'
    bad += 'sensor = "nope"\n'
    with pytest.raises(SimulationError, match="bad: home 0: device_offline: no sensor 'nope' in this home"):
        Runner(settings, m, RunOptions(sim_start=EVENING, live=False), scenario=loads(bad))
    scenario = tmp_path / "bad.toml"
    scenario.write_text(bad)
    res = CliRunner().invoke(
        cli, ["simulate", "dataset", "--scenario", str(scenario), "-o", str(tmp_path / "ds")]
    )
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (
        "Error: Invalid value for --scenario: bad: home 0: device_offline: no sensor 'nope' in this home"
    )
