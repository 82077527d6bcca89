"""docker-compose.yml read the way Compose reads it, for tests/test_compose*.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "ELDERCARE_SECRET_KEY": "9f3c1a7e5b2d8046c1e9a3f7b5d20864ce1f",  # production refuses weak keys
    "ELDERCARE_BROKER_INGEST_PASSWORD": "ingest-secret",
    "ELDERCARE_BROKER_PLATFORM_PASSWORD": "platform-secret",
    "ELDERCARE_BROKER_SIMULATOR_PASSWORD": "simulator-secret",
}
ELDERCARE_SERVICES = {"migrate", "ingest", "platform", "maintain", "simulator"}
VAR = re.compile(r"\$\$|\$\{(\w+)(?::?[-?][^}]*)?\}")


def load() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved here
    return doc


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the test secrets; $$ is a $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group(1) in SECRETS:
            return SECRETS[m.group(1)]
        default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", m.group(0))
        assert default, f"{m.group(0)} has neither a test value nor a default"
        return default.group(1)

    return VAR.sub(sub, value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (a named volume, or a ./path of the repository)."""
    out = {}
    for v in service.get("volumes", []):
        source, target, *_ = v.split(":")
        out[target] = source
    return out


def local_broker_conf(
    text: str, broker: dict[str, Any], ports: dict[int, int], paths: dict[str, Path]
) -> str:
    """A broker config of the compose file for this machine: listeners on 127.0.0.1 at spare
    ports, the container's paths (``paths`` and the files compose mounts) mapped to local ones."""
    for inside, outside in ports.items():
        text = re.sub(
            rf"^listener {inside}( 127\.0\.0\.1)?$", f"listener {outside} 127.0.0.1", text, flags=re.M
        )
    for target, source in mounts(broker).items():
        if source.startswith("./"):
            text = text.replace(target, str(ROOT / source))
    for target, local in paths.items():
        text = text.replace(target, str(local))
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if "/mosquitto/" in line], "a container path compose does not mount"
    return text
