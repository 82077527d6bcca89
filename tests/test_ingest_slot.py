"""Ingest replicas with one configuration (compose ``deploy.replicas``) get distinct, stable client ids.

Each ``eldercare ingest`` holds the lowest free slot in ``ELDERCARE_INGEST_SLOT_DIR`` (a shared
volume); a replacement for a dead replica takes its slot and so resumes its persistent session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from ingest_support import IngestProcess, count, publisher, register, telemetry, wait_for

from eldercare.cli import cli
from eldercare.ingest.slot import NoFreeSlot, claim, hold

GATEWAYS = {"gw-1": "home-1", "gw-2": "home-2"}


def test_slots_are_the_lowest_free_and_exclusive(tmp_path: Path) -> None:
    d = tmp_path / "slots"  # created on first use
    a, b = claim(d), claim(d)
    assert (a.index, b.index) == (0, 1)
    a.release()
    c = claim(d)
    assert c.index == 0  # the replacement takes the freed slot, not a new one
    assert claim(d).index == 2
    assert str(os.getpid()) in c.path.read_text()


def test_all_slots_held_is_an_error(tmp_path: Path) -> None:
    held = [claim(tmp_path, limit=2) for _ in range(2)]
    with pytest.raises(NoFreeSlot, match="all 2 ingest slots"):
        claim(tmp_path, limit=2)
    assert [s.index for s in held] == [0, 1]


def test_a_given_slot_is_held_only_if_free(tmp_path: Path) -> None:
    running = claim(tmp_path)
    with pytest.raises(NoFreeSlot, match=r"slot 0 .* is held by a running worker"):
        hold(tmp_path, 0)
    assert hold(tmp_path, 3).index == 3
    running.release()
    assert hold(tmp_path, 0).index == 0


def test_retire_refuses_the_slot_of_a_running_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELDERCARE_MQTT_URL", "mqtt://127.0.0.1:9")
    monkeypatch.setenv("ELDERCARE_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    monkeypatch.setenv("ELDERCARE_INGEST_SLOT_DIR", str(tmp_path))
    running = claim(tmp_path)
    result = CliRunner().invoke(cli, ["ingest", "retire", "--index", str(running.index)])
    assert result.exit_code == 1
    assert "held by a running worker: it is not retired" in result.output


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from eldercare.ingest.slot import claim
        print(claim(Path({str(tmp_path)!r})).index, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "0"
        assert claim(tmp_path).index == 1  # held by the other process
    finally:
        proc.kill()
        proc.wait(10)
    assert claim(tmp_path).index == 0  # the kernel dropped the dead process's lock


def _client_id(proc: IngestProcess) -> str:
    m = re.search(r"ingest worker (\S+) started", proc.output())
    assert m, proc.output()
    return m.group(1)


@pytest.mark.mqtt5
def test_replicas_get_distinct_ids_and_a_replacement_resumes_the_dead_ones_session(
    db_url: str, mqtt_url: str, topic_root: str, tmp_path: Path
) -> None:
    register(db_url, GATEWAYS)
    tag = uuid.uuid4().hex[:16]
    env = {  # identical for every replica, as compose gives them
        "ELDERCARE_INGEST_CLIENT_ID": f"test-slot-{tag}-0",
        "ELDERCARE_INGEST_SHARED_GROUP": f"s{tag}",
        "ELDERCARE_INGEST_SLOT_DIR": str(tmp_path / "slots"),
    }
    procs = [IngestProcess(db_url, mqtt_url, topic_root, tmp_path, **env).start() for _ in range(2)]
    try:
        for p in procs:
            p.wait_healthy()
        assert sorted(_client_id(p) for p in procs) == [f"test-slot-{tag}-0", f"test-slot-{tag}-1"]
        dead = next(p for p in procs if _client_id(p).endswith("-0"))
        dead.kill()  # its session stays in the shared group and is handed its share meanwhile
        with publisher(mqtt_url) as pub:
            pub.publish_many([(f"{topic_root}/home-1/gw-1/telemetry", telemetry(i)) for i in range(200)])
        replacement = IngestProcess(db_url, mqtt_url, topic_root, tmp_path, **env).start()
        procs.append(replacement)
        replacement.wait_healthy()
        assert _client_id(replacement) == f"test-slot-{tag}-0"
        assert "session present: True" in replacement.output()
        wait_for(lambda: count(db_url, "SELECT count(*) FROM ingested_messages") == 200, what="200 messages")
        assert replacement.metrics()['eldercare_ingest_received_total{kind="telemetry"}'] > 0
        assert count(db_url, "SELECT count(*) FROM readings") == 200 * 10
    finally:
        for p in procs:
            p.stop()
