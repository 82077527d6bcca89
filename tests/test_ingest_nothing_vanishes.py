"""Property: whatever arrives under the topic root, every message is stored, counted as a duplicate,
dead-lettered or ignored with a reason, and the database agrees with the count (issue 18)."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_support import count, now_ms, register

from eldercare.ingest.batch import Batch, Ignored, Inbound, Registry, Validator
from eldercare.ingest.store import Store

ROOT = "eldercare/v1"
EXAMPLES = int(os.environ.get("ELDERCARE_FUZZ_EXAMPLES", "25"))

topics = st.sampled_from(
    [
        "home-1/gw-1/{kind}",  # right
        "home-2/gw-1/{kind}",  # the gateway's wrong site
        "home-9/gw-9/{kind}",  # an unknown gateway
        "home-1/gw-1/Telemetry",
        "home-1/gw-1/{kind}/extra",
        "home-1/gw-1/readings",
        "home-1/gw-1/config",
        "_sim/control",
    ]
)
readings = st.lists(
    st.fixed_dictionaries(
        {
            "sensor": st.sampled_from(["pir-1", "pir-2", "gw-1", "sos-new"]),
            "metric": st.sampled_from(["motion", "power"]),
            "value": st.sampled_from([0.0, 1.0, 2.5]),
        }
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["telemetry", "event", "status", "junk", "empty"]))
    seq = draw(st.integers(0, 5))  # few ids: duplicates, identical or not, are common
    t = now_ms()
    body: Any
    if kind == "telemetry":
        body = {
            "v": 1,
            "epoch": "epoch-fuzz-01",
            "seq": seq,
            "readings": [{"t": t, **r} for r in draw(readings)],
        }
    elif kind == "event":
        body = {
            "v": 1,
            "epoch": "epoch-fuzz-01",
            "seq": seq,
            "t": t,
            "sensor": draw(st.sampled_from(["sos-1", "sos-new"])),
            "kind": draw(st.sampled_from(["sos", "fall", "meteor"])),
            "resident": draw(st.sampled_from([None, "res-1", "res-2", "res-nobody"])),
            "evidence": draw(st.sampled_from([{}, {"a": "LONE-SURROGATE"}, {"n": [[[1]]]}])),
        }
    elif kind == "status":
        body = {"v": 1, "t": t - seq, "state": draw(st.sampled_from(["online", "offline", "meh"]))}
    payload = {"junk": b"\x00\xffnot json", "empty": b""}.get(kind)
    if payload is None:
        # a lone surrogate cannot be encoded from Python: write its escape into the bytes
        payload = msgspec.json.encode(body).replace(b'"LONE-SURROGATE"', b'"\\ud800"')
    topic_kind = kind if kind in ("telemetry", "event", "status") else "telemetry"
    return f"{ROOT}/" + draw(topics).format(kind=topic_kind), payload


@pytest.fixture(scope="module")
def world(pg_url: str, template_db: str) -> Any:
    from fix_db import cloned_database

    with cloned_database(pg_url, template_db) as url:
        register(url, {"gw-1": "home-1", "gw-2": "home-2"})
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO residents (id, name, home_site_id) VALUES ('res-1', 'One', 'home-1'),"
                " ('res-2', 'Two', 'home-2')"
            )
        store = Store(url)
        yield url, store
        store.close()


def _dead_keys(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {k for (k,) in conn.execute("SELECT dedup_key FROM dead_letters WHERE dedup_key IS NOT NULL")}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(message(), min_size=1, max_size=12))
def test_every_message_is_stored_counted_dead_lettered_or_ignored(
    world: tuple[str, Store], messages: list[tuple[str, bytes]]
) -> None:
    url, store = world
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    batch = Batch()
    for topic, payload in messages:
        batch.add(v.check(Inbound(topic, payload)))
    assert len(batch) == len(messages)
    assert all(i.reason for i in batch.ignored) and all(r.reason for r in batch.rejected)
    assert all(isinstance(i, Ignored) for i in batch.ignored)
    before = {t: count(url, f"SELECT count(*) FROM {t}") for t in ("ingested_messages", "dead_letters")}
    keyed_before = _dead_keys(url)
    r = store.write(batch, reg)
    assert r.messages + r.duplicates + len(r.dead) == len(batch.accepted) + len(batch.rejected)
    assert count(url, "SELECT count(*) FROM ingested_messages") - before["ingested_messages"] == r.messages
    # a dead letter with a key (a status, a retained message: the broker replays it) is one row
    # however often it comes, in this batch or before; every other one is a row of its own
    keys = {d.dedup_key for d in r.dead if d.dedup_key is not None}
    new_rows = sum(d.dedup_key is None for d in r.dead) + len(keys - keyed_before)
    assert count(url, "SELECT count(*) FROM dead_letters") - before["dead_letters"] == new_rows
    assert keys <= _dead_keys(url)
    for d in r.dead:  # every reason names a field, then the rule
        field, _, rule = d.reason.partition(": ")
        assert field and rule and "internal error" not in d.reason, d.reason
