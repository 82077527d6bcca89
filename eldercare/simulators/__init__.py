"""Simulated residents, homes, stations and devices: datasets, seeding, live runs, scoring.

``routine`` (residents' days as home event streams, incidents, truth), ``sensors`` (batteries,
radios, climate, pulse, placement), ``wearable`` (50 Hz accelerometer), ``scenario`` (TOML files,
truth as JSON lines), ``dataset`` (labelled data on disk), ``neighbourhood`` and ``store`` (seeding
the platform), ``runner`` / ``edge`` / ``mqttpool`` / ``control`` (live runs and triggers),
``score`` (truth against alerts), ``cli`` (``eldercare simulate``). See ``docs/simulators.md``.
"""
