"""``/metrics`` for the platform: the engine's counters in this process and its queues in the database.

Counters (``_total``) count since this process started; gauges are read from the database at each
scrape, so they agree across replicas: items queued, retrying and set aside, deliveries given up.
"""

from __future__ import annotations

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


async def render(pool: Pool) -> str:
    """The Prometheus text exposition of the engine's counters and the database's gauges."""
    lines: list[str] = []
    for name, text in COUNTERS.items():
        metric = f"eldercare_engine_{name}_total"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter", f"{metric} {getattr(STATS, name)}"]
    async with pool.connection() as conn:
        counts = await work_repo.engine_counts(conn)
    for name, text in GAUGES.items():
        metric = f"eldercare_engine_{name}"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge", f"{metric} {int(counts[name])}"]
    return "\n".join(lines) + "\n"
