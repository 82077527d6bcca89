"""Decode cost of one telemetry message (50 readings by default) on the ingest hot path.

Compares ways to turn the bytes of ``eldercare/v1/{site}/{gateway}/telemetry`` into validated
Python data, all of them checking everything wire protocol v1 promises (exact keys, types,
ranges, identifier patterns, finite values, 1..10,000 readings), plus unvalidated parsers as a
floor, encoders, and the cost of building rows for ``COPY readings`` with timestamps as
``datetime`` objects, as epoch milliseconds (converted in SQL, e.g. ``COPY`` into a bigint
staging column then ``to_timestamp(ms / 1000.0)``), or as PostgreSQL binary COPY rows.

    python bench/protocol.py            # table
    python bench/protocol.py --json     # the same numbers as JSON

Figures are microseconds per message: the best and the median of ``--repeat`` runs, the cases
interleaved round-robin and the garbage collector on (as in a live process). On a shared
machine the best run is the steadier figure; compare ratios within one run.
Results are in docs/performance.md ("Protocol decode").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import struct
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
import orjson
import pydantic

from eldercare import protocol
from eldercare.protocol import EPOCH_PATTERN, ID_PATTERN, MAX_READINGS, METRIC_PATTERN, Reading, Telemetry

GATEWAY = "gw-0001"
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC

# (sensor, metric, value generator): a home with PIRs, a door, a bed, plugs, climate and a wearable.
_MIX: list[tuple[str, str, Callable[[random.Random], float]]] = [
    ("pir-kitchen", "motion", lambda r: float(r.random() < 0.3)),
    ("pir-living", "motion", lambda r: float(r.random() < 0.3)),
    ("pir-bedroom", "motion", lambda r: float(r.random() < 0.2)),
    ("pir-bathroom", "motion", lambda r: float(r.random() < 0.1)),
    ("door-front", "contact", lambda r: float(r.random() < 0.05)),
    ("bed-1", "in_bed", lambda r: float(r.random() < 0.5)),
    ("plug-kettle", "power", lambda r: round(r.uniform(0, 2200), 1)),
    ("plug-tv", "power", lambda r: round(r.uniform(0, 120), 1)),
    ("env-living", "temperature", lambda r: round(r.gauss(21.5, 1.5), 2)),
    ("env-living", "humidity", lambda r: round(r.uniform(30, 70), 1)),
    ("wearable-1", "heart_rate", lambda r: float(r.randint(55, 110))),
    ("wearable-1", "steps", lambda r: float(r.randint(0, 40))),
    ("wearable-1", "battery", lambda r: round(r.uniform(0.2, 1.0), 3)),
    ("wearable-1", "rssi", lambda r: float(r.randint(-90, -40))),
]


def make_message(n: int = 50, seed: int = 1) -> dict[str, Any]:
    """A realistic telemetry payload as plain data: mixed sensors over about one second."""
    rng = random.Random(seed)
    readings = []
    for i in range(n):
        if i == n - 1:
            sensor, metric, value = GATEWAY, "heartbeat", 3600.0 + i
        else:
            sensor, metric, gen = rng.choice(_MIX)
            value = gen(rng)
        readings.append({"t": T0 + i * 1000 // max(n, 1) + rng.randint(0, 9), "sensor": sensor,
                         "metric": metric, "value": value})  # fmt: skip
    return {"v": 1, "epoch": "3f9c2a7be41d0c55", "seq": 123_456, "readings": readings}


# Hand validation of plain data (what json.loads / orjson.loads return) ---------------------

# Python's $ also matches before a final newline: the Python forms end in \Z (as protocol does).
_PY_ID, _PY_METRIC, _PY_EPOCH = (protocol._py(x) for x in (ID_PATTERN, METRIC_PATTERN, EPOCH_PATTERN))
_ID_RE = re.compile(_PY_ID)
_METRIC_RE = re.compile(_PY_METRIC)
_EPOCH_RE = re.compile(_PY_EPOCH)
_TOP_KEYS = frozenset(("v", "epoch", "seq", "readings"))
_READING_KEYS = frozenset(("t", "sensor", "metric", "value"))
_T_LO, _T_HI = 1_000_000_000_000, 4_102_444_800_000
_good_names: set[tuple[str, str]] = set()


class Invalid(ValueError):
    pass


def validate_by_hand(msg: Any) -> dict[str, Any]:
    """Every check of protocol.Telemetry written out in Python; names checked once per distinct pair."""
    if type(msg) is not dict:
        raise Invalid("$: expected object")
    if msg.keys() != _TOP_KEYS:
        raise Invalid(f"$: keys {sorted(msg)}")
    if msg["v"] != 1 or type(msg["v"]) is not int:
        raise Invalid("v")
    epoch = msg["epoch"]
    if type(epoch) is not str or not _EPOCH_RE.match(epoch):
        raise Invalid("epoch")
    seq = msg["seq"]
    if type(seq) is not int or not 0 <= seq <= 2**63 - 1:
        raise Invalid("seq")
    readings = msg["readings"]
    if type(readings) is not list or not 1 <= len(readings) <= MAX_READINGS:
        raise Invalid("readings")
    names = set()
    for i, r in enumerate(readings):
        if type(r) is not dict or r.keys() != _READING_KEYS:
            raise Invalid(f"readings[{i}]")
        t, sensor, metric, value = r["t"], r["sensor"], r["metric"], r["value"]
        if type(t) is not int or not _T_LO <= t < _T_HI:
            raise Invalid(f"readings[{i}].t")
        if type(sensor) is not str or type(metric) is not str:
            raise Invalid(f"readings[{i}]: sensor/metric must be strings")
        tv = type(value)
        if (tv is not float and tv is not int) or not -1e15 <= value <= 1e15:  # also rejects NaN
            raise Invalid(f"readings[{i}].value")
        names.add((sensor, metric))
    for sensor, metric in names - _good_names:
        if not _ID_RE.match(sensor) or not _METRIC_RE.match(metric):
            raise Invalid(f"bad name {sensor!r}/{metric!r}")
        _good_names.add((sensor, metric))
    return msg


# pydantic: the same structure as protocol.Telemetry, strict, unknown fields forbidden ----------


class PReading(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)
    t: Annotated[int, pydantic.Field(ge=_T_LO, lt=_T_HI)]
    sensor: Annotated[str, pydantic.Field(pattern=ID_PATTERN)]
    metric: Annotated[str, pydantic.Field(pattern=METRIC_PATTERN)]
    value: Annotated[float, pydantic.Field(ge=-1e15, le=1e15, allow_inf_nan=False)]


class PTelemetry(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[1]
    epoch: Annotated[str, pydantic.Field(pattern=EPOCH_PATTERN)]  # Rust regex: $ is the very end
    seq: Annotated[int, pydantic.Field(ge=0, le=2**63 - 1)]
    readings: Annotated[list[PReading], pydantic.Field(min_length=1, max_length=MAX_READINGS)]


_PYDANTIC = pydantic.TypeAdapter(PTelemetry)


# msgspec with the identifier patterns checked per reading (the alternative to protocol's approach)


class RegexReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    t: Annotated[int, msgspec.Meta(ge=_T_LO, lt=_T_HI)]
    sensor: Annotated[str, msgspec.Meta(pattern=_PY_ID)]
    metric: Annotated[str, msgspec.Meta(pattern=_PY_METRIC)]
    value: Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class RegexTelemetry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    epoch: Annotated[str, msgspec.Meta(pattern=_PY_EPOCH)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    readings: Annotated[list[RegexReading], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]


class GcReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):  # gc=True: msgspec's default
    t: protocol.TimeMs
    sensor: protocol.ReadingSensor
    metric: protocol.ReadingMetric
    value: Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class GcTelemetry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    v: Literal[1]
    epoch: protocol.Epoch
    seq: protocol.Seq
    readings: Annotated[list[GcReading], msgspec.Meta(min_length=1, max_length=MAX_READINGS)]


_REGEX_DECODER = msgspec.json.Decoder(RegexTelemetry)
_GC_DECODER = msgspec.json.Decoder(GcTelemetry)


def _decode_gc_tracked(data: bytes) -> GcTelemetry:
    msg = _GC_DECODER.decode(data)
    protocol._check_readings(msg.readings)  # type: ignore[arg-type]
    return msg


_UNTYPED = msgspec.json.Decoder()


def _decode_cold(data: bytes) -> Telemetry:
    """protocol.decode with its cache of known-good names emptied: the first message of a gateway."""
    protocol._GOOD_SENSORS.clear()
    protocol._GOOD_METRICS.clear()
    return protocol.decode_telemetry(data)


# Rows for COPY readings (ts, value, gateway_id, sensor_id, metric) ---------------------------

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01, where PostgreSQL's binary timestamps count from
_ROW = struct.Struct(">hiqid")  # field count, ts (length, int8 µs), value (length, float8)


def rows_datetime(gw: str, readings: list[Reading]) -> list[tuple[Any, ...]]:
    return [(_UNIX + timedelta(milliseconds=r.t), r.value, gw, r.sensor, r.metric) for r in readings]


def rows_fromtimestamp(gw: str, readings: list[Reading]) -> list[tuple[Any, ...]]:
    return [(datetime.fromtimestamp(r.t / 1000, UTC), r.value, gw, r.sensor, r.metric) for r in readings]


def rows_epoch_ms(gw: str, readings: list[Reading]) -> list[tuple[Any, ...]]:
    """Timestamps left as ms; SQL converts them (to_timestamp(ms / 1000.0)) after COPY to staging."""
    return [(r.t, r.value, gw, r.sensor, r.metric) for r in readings]


def rows_epoch_ms_dicts(gw: str, readings: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["t"], r["value"], gw, r["sensor"], r["metric"]) for r in readings]


def rows_text_copy(gw: str, readings: list[Reading]) -> bytes:
    """Text COPY lines into a staging table with a bigint ms column (identifiers never need escaping)."""
    return "".join([f"{r.t}\t{r.value!r}\t{gw}\t{r.sensor}\t{r.metric}\n" for r in readings]).encode()


_tails: dict[tuple[str, str, str], bytes] = {}


def rows_binary(gw: str, readings: list[Reading]) -> bytes:
    """Binary COPY rows, timestamps as µs since 2000-01-01; text columns encoded once per triple."""
    out = []
    for r in readings:
        key = (gw, r.sensor, r.metric)
        tail = _tails.get(key)
        if tail is None:
            tail = _tails[key] = b"".join(struct.pack(">i", len(s.encode())) + s.encode() for s in key)
        out.append(_ROW.pack(5, 8, (r.t - PG_EPOCH_MS) * 1000, 8, r.value) + tail)
    return b"".join(out)


# Harness ------------------------------------------------------------------------------------


def cases(
    data: bytes, msg: dict[str, Any], struct_msg: Telemetry
) -> list[tuple[str, str, Callable[[], Any]]]:
    gw, dec = GATEWAY, protocol.decode_telemetry
    floor, valid, enc, rows = "decode, no validation (floor)", "decode + validate", "encode", "decode + rows"
    return [
        (floor, "json.loads", lambda: json.loads(data)),
        (floor, "orjson.loads", lambda: orjson.loads(data)),
        (floor, "msgspec.json.decode (untyped)", lambda: _UNTYPED.decode(data)),
        (valid, "stdlib json + hand validation", lambda: validate_by_hand(json.loads(data))),
        (valid, "orjson + hand validation", lambda: validate_by_hand(orjson.loads(data))),
        (valid, "orjson + pydantic TypeAdapter", lambda: _PYDANTIC.validate_python(orjson.loads(data))),
        (valid, "pydantic TypeAdapter.validate_json", lambda: _PYDANTIC.validate_json(data)),
        (valid, "msgspec typed, regex per reading", lambda: _REGEX_DECODER.decode(data)),
        (valid, "msgspec typed, names cold (1st msg)", lambda: _decode_cold(data)),
        (valid, "msgspec typed, readings GC-tracked", lambda: _decode_gc_tracked(data)),
        (valid, "msgspec typed = protocol.decode", lambda: dec(data)),
        (enc, "json.dumps (dict)", lambda: json.dumps(msg, separators=(",", ":")).encode()),
        (enc, "orjson.dumps (dict)", lambda: orjson.dumps(msg)),
        (enc, "msgspec = protocol.encode (struct)", lambda: protocol.encode(struct_msg)),
        (rows, "protocol.decode + datetime (epoch+timedelta)", lambda: rows_datetime(gw, dec(data).readings)),
        (
            rows,
            "protocol.decode + datetime.fromtimestamp",
            lambda: rows_fromtimestamp(gw, dec(data).readings),
        ),
        (
            rows,
            "protocol.decode + epoch ms (to_timestamp in SQL)",
            lambda: rows_epoch_ms(gw, dec(data).readings),
        ),
        (
            rows,
            "protocol.decode + text COPY lines (epoch ms)",
            lambda: rows_text_copy(gw, dec(data).readings),
        ),
        (rows, "protocol.decode + binary COPY rows (struct)", lambda: rows_binary(gw, dec(data).readings)),
        (rows, "orjson + hand + epoch ms", lambda: rows_epoch_ms_dicts(gw, _hand_readings(data))),
    ]


def _hand_readings(data: bytes) -> list[dict[str, Any]]:
    readings: list[dict[str, Any]] = validate_by_hand(orjson.loads(data))["readings"]
    return readings


def measure(
    fns: list[Callable[[], Any]], repeat: int, target_s: float, clock: Callable[[], float] = time.thread_time
) -> list[dict[str, float]]:
    """Per-call µs of each function: runs interleaved round-robin, so load spikes hit all alike.

    The default clock is this thread's CPU time: the cost of a message in CPU, which other
    processes on a busy machine do not inflate the way they inflate wall time.
    """
    timers = [timeit.Timer(fn, "gc.enable()", clock, globals={"gc": gc}) for fn in fns]  # GC on
    numbers = [max(1, int(t.autorange()[0] * target_s / 0.2)) for t in timers]
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for timer, number, out in zip(timers, numbers, runs, strict=True):
            out.append(timer.timeit(number) / number * 1e6)
    return [{"median_us": statistics.median(r), "min_us": min(r)} for r in runs]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": platform.platform(),
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "pydantic": pydantic.VERSION,
    }


def check_equivalent(data: bytes) -> None:
    """All validating variants must accept the message and reject the same bad ones."""
    good = protocol.decode_telemetry(data)
    assert validate_by_hand(json.loads(data))["readings"][0]["t"] == good.readings[0].t
    assert _PYDANTIC.validate_json(data).readings[-1].value == good.readings[-1].value
    for sensor in ("no spaces allowed", "trailing-newline\n"):
        bad = json.loads(data)
        bad["readings"][len(bad["readings"]) // 2]["sensor"] = sensor
        _all_reject(json.dumps(bad).encode())


def _all_reject(raw: bytes) -> None:
    for name, fn in (
        ("protocol", protocol.decode_telemetry),
        ("hand", lambda d: validate_by_hand(orjson.loads(d))),
        ("pydantic", _PYDANTIC.validate_json),
        ("msgspec regex", _REGEX_DECODER.decode),
    ):
        try:
            fn(raw)
        except (protocol.ProtocolError, Invalid, pydantic.ValidationError, msgspec.ValidationError):
            continue
        raise AssertionError(f"{name} accepted a bad sensor id")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=50, help="readings per message (default 50)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--seconds", type=float, default=0.2, help="length of one timed run (default 0.2)")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock, not thread CPU time")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    msg = make_message(args.readings)
    data = msgspec.json.encode(msg)
    struct_msg = protocol.decode_telemetry(data)
    check_equivalent(data)
    clock = time.perf_counter if args.wall else time.thread_time
    todo = cases(data, msg, struct_msg)
    results = []
    for (group, name, _), m in zip(
        todo, measure([fn for *_, fn in todo], args.repeat, args.seconds, clock), strict=True
    ):
        results.append({"group": group, "case": name, **m, "per_reading_us": m["min_us"] / args.readings})

    info = {
        "machine": machine(),
        "clock": "wall" if args.wall else "thread CPU time",
        "gc": "enabled",
        "repeat": args.repeat,
        "load_average": os.getloadavg()[0],
        "readings": args.readings,
        "payload_bytes": len(data),
        "results": results,
    }
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    mach = info["machine"]
    print(f"# {args.readings} readings/message, {len(data)} bytes; {mach['cpu']}, {mach['cores']} cores, "
          f"Python {mach['python']}, msgspec {mach['msgspec']}, orjson {mach['orjson']}, "
          f"pydantic {mach['pydantic']}")  # fmt: skip
    width = max(len(r["case"]) for r in results)
    print(f"# µs per message ({info['clock']}): best and median of {args.repeat} interleaved runs, GC on; "
          f"load average {info['load_average']:.1f}")  # fmt: skip
    print(f"{'group':<30} {'case':<{width}} {'best':>8} {'median':>8} {'best/reading':>12}")
    for r in results:
        print(f"{r['group']:<30} {r['case']:<{width}} {r['min_us']:8.2f} {r['median_us']:8.2f} "
              f"{r['per_reading_us']:12.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
