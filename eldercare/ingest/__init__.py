"""Ingest: MQTT telemetry, events and status into PostgreSQL, batched, exactly once.

Module map: :mod:`.mqtt` (paho thread -> bounded queue), :mod:`.batch` (validation and COPY rows,
pure), :mod:`.store` (all ingest SQL), :mod:`.worker` (the pipeline and the process supervisor),
:mod:`.metrics` (Prometheus ``/metrics`` and ``/healthz``), :mod:`.cli` (``eldercare ingest``).
"""
