"""``/metrics`` for the platform: the engine's counters in this process and its queues in the database.

Counters (``_total``) count since this process started; gauges are read from the database at each
scrape, so they agree across replicas: items queued, retrying and set aside, deliveries given up.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eldercare.platform.engine.service import STATS
from eldercare.platform.repo import work as work_repo
from eldercare.platform.repo.connections import Pool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COUNTERS = {
    "work_done": "Alert work items handled by this process",
    "work_failures": "Failed attempts at an alert work item (each is retried, then set aside)",
    "work_set_aside": "Alert work items this process set aside after their last attempt",
    "escalations": "Tier changes made by this process",
    "escalation_failures": "Escalations that failed and were put off to try again",
    "rounds_failed": "Whole engine rounds that failed (database unavailable, ...) and were retried",
}
GAUGES = {
    "work_queued": "Alert work items waiting (including those retrying)",
    "work_retrying": "Alert work items that failed at least once and will be tried again",
    "work_failed": "Alert work items set aside after their last attempt (GET /api/v1/engine/failed-work)",
    "deliveries_retrying": "Webhooks and e-mails that failed and will be retried",
    "deliveries_gave_up": "Webhooks and e-mails given up after their last attempt",
    "escalations_due": "Open alerts past their acknowledgement deadline, not yet escalated",
}


def counter_lines() -> list[str]:
    """This process's engine counters, in the Prometheus text format."""
    lines: list[str] = []
    for name, text in COUNTERS.items():
        metric = f"eldercare_engine_{name}_total"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter", f"{metric} {getattr(STATS, name)}"]
    return lines


def serve_counters(host: str, port: int) -> ThreadingHTTPServer:
    """``/metrics`` with this process's counters on ``host:port``, on a thread (the engine process's)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = ("\n".join(counter_lines()) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not news

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="engine-metrics", daemon=True).start()
    return server


async def render(pool: Pool) -> str:
    """The Prometheus text exposition of the engine's counters and the database's gauges."""
    lines = counter_lines()
    async with pool.connection() as conn:
        counts = await work_repo.engine_counts(conn)
    for name, text in GAUGES.items():
        metric = f"eldercare_engine_{name}"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge", f"{metric} {int(counts[name])}"]
    return "\n".join(lines) + "\n"
