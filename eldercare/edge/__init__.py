"""The edge agent: the gateway box in a home or elder station.

Readings from the drivers go to an on-disk outbox first, then to the platform over MQTT;
the wearable's 50 Hz stream is checked for falls here and stays here unless configured.
See ``docs/edge.md``. Only core dependencies plus ``paho-mqtt`` may be imported below.
"""
