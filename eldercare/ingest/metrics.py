"""Prometheus counters of one ingest worker, served with a health check on one small HTTP server.

``/metrics`` is the Prometheus text format; ``/healthz`` answers 200 while the worker is connected
to the broker and its last database write (or probe) succeeded, 503 with the reason otherwise.
Each worker has its own registry and port (``metrics_port + worker index``), on the HTTP host
setting (``ELDERCARE_HTTP_HOST``, 127.0.0.1 by default): a deployment that scrapes it from another
host or container sets that to the interface to listen on (docker-compose.yml: 0.0.0.0).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters, gauges and histograms of one worker, plus the state ``/healthz`` reports."""

    def __init__(self, worker: str = "0") -> None:
        self.registry = CollectorRegistry()
        labels = {"worker": worker}
        r = self.registry
        self.received = Counter("eldercare_ingest_received", "MQTT messages received", ["kind"], registry=r)
        self.stored_messages = Counter(
            "eldercare_ingest_stored_messages", "New messages committed", registry=r
        )
        self.stored_readings = Counter("eldercare_ingest_stored_readings", "Readings committed", registry=r)
        self.stored_events = Counter("eldercare_ingest_stored_events", "Events committed", registry=r)
        self.stored_statuses = Counter(
            "eldercare_ingest_stored_statuses", "Status messages committed", registry=r
        )
        self.duplicates = Counter(
            "eldercare_ingest_duplicates",
            "Messages already stored (redelivery or replay), skipped",
            registry=r,
        )
        self.dead_lettered = Counter(
            "eldercare_ingest_dead_lettered", "Messages written to dead_letters", ["field"], registry=r
        )
        self.ignored = Counter(
            "eldercare_ingest_ignored",
            "Messages under the topic root that are not data, acknowledged without a dead letter "
            "(cleared: empty payload clearing a retained topic; config: the platform's downlink; "
            "control: the platform's _-prefixed control topics)",
            ["why"],
            registry=r,
        )
        self.batches = Counter("eldercare_ingest_batches", "Batches committed", registry=r)
        self.db_errors = Counter(
            "eldercare_ingest_db_errors", "Failed batch attempts (database unavailable)", registry=r
        )
        self.batch_seconds = Histogram(
            "eldercare_ingest_batch_seconds",
            "Time to write and commit one batch",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.batch_rows = Histogram(
            "eldercare_ingest_batch_rows",
            "Rows per committed batch",
            registry=r,
            buckets=(10, 100, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000),
        )
        self.lag_seconds = Histogram(
            "eldercare_ingest_lag_seconds",
            "Receipt of a batch's oldest message to its commit",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.data_lag = Gauge(
            "eldercare_ingest_data_lag_seconds",
            "Commit time minus the newest reading time of the last batch",
            registry=r,
        )
        self.queue_depth = Gauge(
            "eldercare_ingest_queue_depth", "Messages received, not yet in a batch", registry=r
        )
        self.mqtt_connected = Gauge(
            "eldercare_ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.peer_silent = Gauge(
            "eldercare_ingest_peer_silent_seconds",
            "Seconds since another worker (by client id) was last alive, while its session may live",
            ["client_id"],
            registry=r,
        )
        self.silent_peers = Gauge(
            "eldercare_ingest_silent_peers",
            "Other workers silent for 3 heartbeats whose persistent session may still hold their "
            "share of the shared subscription (a backlog waiting for them)",
            registry=r,
        )
        self.db_up = Gauge("eldercare_ingest_db_up", "1 while the last database write succeeded", registry=r)
        self.info = Gauge("eldercare_ingest_worker_info", "Worker identity", list(labels), registry=r)
        self.info.labels(**labels).set(1)
        self.started = time.time()
        # each connection's last error (writers, the events thread, the registry reads): one
        # connection's success must not hide another's failure, nor two writers flip the state
        self._db_errors: dict[str, str] = {"": "not connected yet"}
        self.connected = False

    def set_mqtt(self, connected: bool) -> None:
        self.connected = connected
        self.mqtt_connected.set(1 if connected else 0)

    def set_peers(self, silent: dict[str, float], *, silent_after: float, session_expiry: float) -> None:
        """Peers' silence from ``ingest_workers``; one whose session has expired holds nothing."""
        self.peer_silent.clear()
        n = 0
        for client_id, seconds in silent.items():
            if seconds > session_expiry:
                continue
            self.peer_silent.labels(client_id=client_id).set(round(seconds, 1))
            if seconds > silent_after:
                n += 1
        self.silent_peers.set(n)

    def set_db(self, error: str | None, source: str = "") -> None:
        """What connection ``source`` found: an error, or None once it works (again)."""
        if error is None:
            self._db_errors.pop(source, None)
        else:
            self._db_errors[source] = error
        self.db_up.set(0 if self.db_error else 1)

    @property
    def db_error(self) -> str | None:
        """An error of any connection, or None when every one works."""
        return next(iter(self._db_errors.values()), None)

    def health(self) -> tuple[bool, dict[str, Any]]:
        mqtt_ok = self.connected
        db_ok = self.db_error is None
        body = {
            "status": "ok" if mqtt_ok and db_ok else "unavailable",
            "mqtt": "connected" if mqtt_ok else "disconnected",
            "database": "ok" if db_ok else self.db_error,
            "uptime_s": round(time.time() - self.started, 1),
        }
        return mqtt_ok and db_ok, body


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a daemon thread; ``port`` 0 picks a free one (see ``.port``)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        handler = _handler(metrics)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ingest-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, body = metrics.health()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler
