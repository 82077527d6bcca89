"""Fixtures of the edge tests, loaded with ``pytest_plugins = ["edge_fixtures"]``.

The shared broker comes from the ``mqtt_host_port`` and ``topic_root`` fixtures of
tests/conftest.py when they exist; else 127.0.0.1:1883 and a root made from the test's name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_support import Mosquitto


@pytest.fixture
def edge_broker(request: pytest.FixtureRequest) -> tuple[str, int]:
    try:
        host, port = request.getfixturevalue("mqtt_host_port")
        return str(host), int(port)
    except pytest.FixtureLookupError:
        return "127.0.0.1", 1883


@pytest.fixture
def edge_root(request: pytest.FixtureRequest) -> str:
    try:
        return str(request.getfixturevalue("topic_root"))
    except pytest.FixtureLookupError:
        name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
        return f"test-edge/{name}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto")
    m.start()
    try:
        yield m
    finally:
        m.stop()
