"""Shared fixtures: real PostgreSQL and MQTT, or embedded ones on a bare machine (never mocks).

Fixtures (see fix_db.py and fix_mqtt.py): ``pg_url``, ``db_url``, ``db_conn``, ``settings``,
``mqtt_url``, ``mqtt_host_port``, ``mqtt_is_v5``, ``topic_root``. ``ELDERCARE_TEST_SERVERS`` chooses
the servers: ``real`` (both must answer before any test runs; the default with ``CI=true``),
``embedded`` (started by the run; what .ci/run's second pass uses, in a network namespace where
nothing listens) or ``auto`` (real if they answer, else embedded; the default otherwise).
Markers ``mqtt5``, ``timescale`` and ``browser`` skip, with a reason, where the servers or the
machine lack the feature (in CI only ``timescale`` may skip).
"""

from __future__ import annotations

import os
import shutil

import pytest

# The plugins' helpers are imported inside the functions below: importing them here, before pytest
# loads them as plugins, would stop it from rewriting their asserts (a warning, i.e. an error).
pytest_plugins = ["fix_db", "fix_mqtt"]

NO_MQTT5 = "embedded amqtt broker has no MQTT v5 (shared subscriptions)"
NO_TIMESCALE = "timescaledb extension not installed in this PostgreSQL"


def chromium_path() -> str | None:
    for name in (os.environ.get("ELDERCARE_TEST_CHROMIUM", ""), "chromium", "chromium-browser"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """With the real servers required, fail at once (not test by test) when one is missing."""
    from fix_db import pg_unreachable, real_pg_url, real_required_by, servers_mode
    from fix_mqtt import host_port, mqtt_connack, real_mqtt_url

    try:
        mode = servers_mode()
    except ValueError as exc:
        pytest.exit(str(exc), returncode=4)
    if mode != "real" or hasattr(session.config, "workerinput"):
        return
    problems = []
    why = pg_unreachable(real_pg_url())
    if why is not None:
        problems.append(f"PostgreSQL {real_pg_url()}: {why}")
    host, port = host_port(real_mqtt_url())
    why = mqtt_connack(host, port, v5=False)
    if why is not None:
        problems.append(f"MQTT broker {host}:{port}: {why}")
    if problems:
        pytest.exit(f"{real_required_by()} needs the real servers: " + "; ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _needs(request: pytest.FixtureRequest) -> None:
    """Skip (outside CI) or fail (in CI) a test whose marker asks for what is not here."""
    from fix_db import in_ci

    node = request.node
    if node.get_closest_marker("mqtt5") and not request.getfixturevalue("mqtt_is_v5"):
        if in_ci():
            pytest.fail("CI=true: the broker does not speak MQTT v5")
        pytest.skip(NO_MQTT5)
    if node.get_closest_marker("timescale") and not request.getfixturevalue("timescale_available"):
        pytest.skip(NO_TIMESCALE)
    if node.get_closest_marker("browser"):
        if chromium_path() is None:
            if in_ci():
                pytest.fail("CI=true: chromium is not installed (apt-get install chromium)")
            pytest.skip("chromium is not installed (apt-get install chromium)")
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            if in_ci():
                raise
            pytest.skip("playwright is not installed (pip install -e '.[dev]')")
