"""``eldercare demo`` end to end: simulated homes through real edge agents, the broker, ingest, the
alert engine and the API; the scripted SOS becomes an alert and the incidents are scored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from eldercare.embedded import free_port


@pytest.mark.slow
def test_demo_runs_the_chain_and_scores_the_incidents(
    db_url: str, mqtt_url: str, mqtt_is_v5: bool, topic_root: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env |= {
        "ELDERCARE_DATABASE_URL": db_url,
        "ELDERCARE_MQTT_URL": mqtt_url,
        "ELDERCARE_MQTT_PROTOCOL": "5" if mqtt_is_v5 else "3.1.1",
        "ELDERCARE_MQTT_TOPIC_ROOT": topic_root,
        "ELDERCARE_DATA_DIR": str(tmp_path / "data"),
        "ELDERCARE_HTTP_PORT": str(free_port()),
        "ELDERCARE_METRICS_PORT": "0",
    }
    out = subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "demo", "--duration", "75", "--homes", "3"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "eldercare is running: http://" in out.stdout
    assert "incident fired: fall at home 0" in out.stdout
    with psycopg.connect(db_url) as conn:
        kinds = {k for (k,) in conn.execute("SELECT kind FROM alerts WHERE simulated")}
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()
    # The SOS path is deterministic (button -> edge -> broker -> ingest -> engine). Whether the
    # simulated fall is caught depends on the detector (about 0.93 sensitivity, lower on the wrist),
    # so it is scored by the demo, not asserted here.
    assert "sos" in kinds, (kinds, out.stdout[-1500:])
    assert "fall" in out.stdout.split("incident", 1)[-1]  # the score table lists the fired fall
    assert readings is not None and readings[0] > 100
