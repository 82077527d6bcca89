"""The alert engine: pure rules (``rules``, ``escalation``) and the background service that applies them."""
