"""docker-compose.yml, the Dockerfile and deploy/mosquitto.conf: what issue #9 asks of the deployment.

Checked three ways: the Compose CLI's own validator (``docker compose config`` or v1's
``docker-compose config``; required under CI=true, where .ci/run installs it); the structure in
Python (services, health checks, start order, replicas, profile, no secret in the file, every
``eldercare`` command line and ``ELDERCARE_*`` variable known to the code); and the broker
configuration run in a real Mosquitto with account files rendered by the platform.
"""

from __future__ import annotations

import getpass
import os
import queue
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import paho.mqtt.client as mqtt
import pytest
import yaml
from broker_support import Client, connack, mosquitto
from compose_support import (
    COMPOSE,
    ELDERCARE_SERVICES,
    ROOT,
    SECRETS,
    env_of,
    load,
    local_broker_conf,
    mounts,
)
from edge_support import make_tls
from fix_db import in_ci
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from eldercare.cli import cli
from eldercare.config import Settings
from eldercare.embedded import free_port
from eldercare.platform import broker_auth as ba


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = compose["services"]
    return s


# The Compose CLI -------------------------------------------------------------------------------


def compose_cli() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if in_ci():
        pytest.fail("CI=true: no Compose CLI (.ci/run installs the Debian package docker-compose)")
    pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")


def run_compose(
    tmp_path: Path, *args: str, secrets: dict[str, str] = SECRETS
) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"  # a developer's .env must not hide a missing secret
    empty.write_text("")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **secrets}
    return subprocess.run(
        [*compose_cli(), "--env-file", str(empty), "-f", str(COMPOSE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_cli_validates_the_file(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr
    services = run_compose(tmp_path, "--profile", "simulator", "config", "--services")
    assert set(services.stdout.split()) == {
        "db",
        "broker",
        "migrate",
        "ingest",
        "platform",
        "maintain",
        "simulator",
    }


def test_compose_cli_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    result = run_compose(tmp_path, "config", "-q", secrets={})
    assert result.returncode != 0
    assert re.search(r"set \w+ in \.env", result.stderr), result.stderr


# Structure -------------------------------------------------------------------------------------


def test_the_services_the_issue_asks_for(services: dict[str, Any]) -> None:
    assert set(services) == {"db", "broker", "migrate", "ingest", "platform", "maintain", "simulator"}
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["broker"]["image"].startswith("eclipse-mosquitto:2")
    for name in ELDERCARE_SERVICES:  # one image, built from the one Dockerfile
        assert services[name]["build"] == ".", name
        assert services[name]["image"] == "${DEPLOY_IMAGE:-eldercare:latest}", name
        assert services[name]["init"] is True, name  # SIGTERM reaches Python, zombies are reaped
    assert (ROOT / "Dockerfile").is_file()


def test_every_long_running_service_has_a_health_check(services: dict[str, Any]) -> None:
    for name, s in services.items():
        if s.get("restart") == "no":
            continue  # one-shot: waited for with service_completed_successfully
        check = s.get("healthcheck")
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"} and not check.get("disable"), name
        for key in ("interval", "timeout", "retries"):
            assert key in check, (name, key)


def test_start_order_waits_for_health_not_for_start(services: dict[str, Any]) -> None:
    for name, s in services.items():
        deps = s.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for dep, cond in deps.items():
            want = (
                "service_completed_successfully"
                if services[dep].get("restart") == "no"
                else "service_healthy"
            )
            assert cond == {"condition": want}, (name, dep)
            assert want != "service_healthy" or "healthcheck" in services[dep], (name, dep)
    for name in ("ingest", "platform"):
        assert set(services[name]["depends_on"]) >= {"db", "broker", "migrate"}, name
    assert "migrate" in services["broker"]["depends_on"]  # the account files exist before it starts


def test_ingest_runs_two_replicas_with_distinct_stable_client_ids(services: dict[str, Any]) -> None:
    ingest = services["ingest"]
    assert ingest["deploy"]["replicas"] == 2
    assert "container_name" not in ingest and "ports" not in ingest and "hostname" not in ingest
    env = env_of(ingest)
    slot_dir = env["ELDERCARE_INGEST_SLOT_DIR"]
    assert mounts(ingest)[slot_dir] == "ingest-slots"  # one volume shared by the replicas
    assert env["ELDERCARE_INGEST_CLIENT_ID"][-1].isdigit()  # slot k adds k to the trailing number
    port = env.get("ELDERCARE_METRICS_PORT", "9108")
    assert f"127.0.0.1:{port}/healthz" in " ".join(ingest["healthcheck"]["test"])
    assert int(ingest["stop_grace_period"].rstrip("s")) >= 15  # SIGTERM commits what is in hand


def test_simulator_is_a_profile_and_nothing_else_is(services: dict[str, Any]) -> None:
    assert services["simulator"]["profiles"] == ["simulator"]
    assert [n for n, s in services.items() if "profiles" in s] == ["simulator"]


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, s in compose["services"].items():
        for target, source in mounts(s).items():
            if source.startswith("./"):
                assert (ROOT / source).is_file(), (name, source)
            else:
                used.add(source)
            assert target.startswith("/"), (name, target)
    assert used == declared


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for name, s in compose["services"].items():
        for key, value in s.get("environment", {}).items():
            value = str(value)
            if re.search(r"PASSWORD$|SECRET|_KEY$|TOKEN", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), (
                    f"{name}.{key} must come from the environment"
                )
            url = urlsplit(value) if "://" in value else None
            if url is not None and "@" in url.netloc:
                password = url.netloc.split("@")[0].partition(":")[2]
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", password), (
                    f"{name}.{key} has a password in the file"
                )
    for word in ("eldercare:eldercare@", "change-me", "POSTGRES_PASSWORD: eldercare"):
        assert word not in text


def test_every_eldercare_variable_is_a_setting(services: dict[str, Any]) -> None:
    known = {f"ELDERCARE_{f.upper()}" for f in Settings.model_fields}
    for name, s in services.items():
        unknown = {k for k in s.get("environment", {}) if k.startswith("ELDERCARE_")} - known
        assert not unknown, f"{name}: eldercare refuses unknown settings {unknown}"


def test_file_variables_named_eldercare_are_settings_with_their_defaults() -> None:
    """An operator may source .env into a shell where eldercare refuses unknown ELDERCARE_* names,
    and a ${ELDERCARE_X:-default} that drifted from the code would silently change behaviour."""
    text = "\n".join(
        p.read_text() for p in (COMPOSE, ROOT / "deploy" / "compose.tls.yml", ROOT / "deploy" / "env.example")
    )
    fields = Settings.model_fields
    for var in set(re.findall(r"\b(ELDERCARE_\w+)", text)):
        assert var.removeprefix("ELDERCARE_").lower() in fields, f"{var} is no setting: name it DEPLOY_..."
    defaults = re.findall(r"\$\{ELDERCARE_(\w+):-([^}]*)\}", COMPOSE.read_text())
    for name, default in defaults:
        assert str(fields[name.lower()].default) == default, name
    assert len(defaults) >= 5


def test_each_service_settings_load_in_production(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in [v for v in os.environ if v.startswith("ELDERCARE_")]:
        monkeypatch.delenv(var)
    for name in ELDERCARE_SERVICES:
        s = Settings(
            **{
                k.removeprefix("ELDERCARE_").lower(): v
                for k, v in env_of(services[name]).items()
                if k.startswith("ELDERCARE_")
            }
        )
        assert s.environment == "production" and not s.uses_embedded_db, name
        if name in {"ingest", "platform", "simulator"}:
            assert s.mqtt_url is not None, name


def test_services_connect_to_the_broker_with_their_own_accounts(services: dict[str, Any]) -> None:
    users = {"ingest": ba.INGEST_USER, "platform": ba.PLATFORM_USER, "simulator": ba.SIMULATOR_USER}
    for name, user in users.items():
        url = urlsplit(env_of(services[name])["ELDERCARE_MQTT_URL"])
        assert (url.username, url.hostname) == (user, "broker"), name
        assert url.password == SECRETS[f"ELDERCARE_BROKER_{name.upper()}_PASSWORD"], name


def test_platform_writes_the_account_files_where_the_broker_reads_them(services: dict[str, Any]) -> None:
    broker = services["broker"]
    assert mounts(broker)[broker["command"][-1]] == "./deploy/mosquitto-reload.sh"  # runs mosquitto
    src = broker["environment"]["BROKER_AUTH_SRC"]
    volume = mounts(broker)[src]
    assert broker["volumes"][[v.split(":")[1] for v in broker["volumes"]].index(src)].endswith(":ro")
    for name in ("migrate", "platform", "simulator"):  # the writers (`eldercare broker sync`)
        env = env_of(services[name])
        files = [
            Path(env[f"ELDERCARE_BROKER_{k}"]) for k in ("PASSWORD_FILE", "ACL_FILE", "RELOAD_STAMP_FILE")
        ]
        # deploy/mosquitto-reload.sh reads these three names from its source directory
        assert [f.name for f in files] == ["passwd", "acl", "reload.stamp"], name
        assert {str(f.parent) for f in files} == {str(f.parent) for f in files[:1]}
        assert mounts(services[name])[str(files[0].parent)] == volume, name
    assert "ELDERCARE_BROKER_PASSWORD_FILE" not in services["ingest"]["environment"]  # ingest writes nothing


def _eldercare_commands(service: dict[str, Any]) -> list[list[str]]:
    """The eldercare command lines a service runs, with the shell's variables filled in."""
    command = service["command"]
    if command[0] != "sh":
        return [command]
    script = command[-1]
    env = env_of(service) | {"m": "/tmp/manifest.json"}
    script = re.sub(r"\$\$(\w+)|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], script)
    out = []
    for part in re.split(r"&&|\|\||;|\{|\}", script):
        words = shlex.split(part)
        words = words[1:] if words[:1] == ["exec"] else words
        if words[:1] == ["eldercare"]:
            out.append(words)
    assert out, script
    return out


def test_every_eldercare_command_line_parses(services: dict[str, Any]) -> None:
    """The commands, options and values compose passes exist in the CLI (parsed, not run)."""
    seen = set()
    for name in ELDERCARE_SERVICES:
        lines = _eldercare_commands(services[name])
        check = services[name].get("healthcheck", {}).get("test", ["CMD", "-"])[1:]
        assert check[0] != "eldercare", (
            f"{name}: a health check without the entry point misses Docker secrets"
        )
        if check[0] == "/usr/local/bin/docker-entrypoint.sh":
            lines.append(check[1:])
        for line in lines:
            cmd: click.Command = cli
            args, path = line[1:], ["eldercare"]
            while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
                sub = cmd.get_command(click.Context(cmd), args[0])
                assert sub is not None, f"{name}: no command {' '.join([*path, args[0]])}"
                path.append(args.pop(0))
                cmd = sub
            cmd.make_context(" ".join(path), list(args))  # raises on an unknown option or a bad value
            seen.add(" ".join(path))
    assert {"eldercare db migrate", "eldercare broker sync", "eldercare ingest", "eldercare serve"} <= seen
    assert {
        "eldercare db maintain",
        "eldercare db status",
        "eldercare simulate seed",
        "eldercare simulate run",
    } <= seen


# Dockerfile and entry point --------------------------------------------------------------------


def test_dockerfile_installs_the_server_extra_and_runs_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split()[0] for line in text.splitlines() if line and not line[0].isspace() and line[0] != "#"
    ]
    assert instructions[0] == "FROM" and "python:3.11" in text
    assert "'.[server]'" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in {"root", "0"}
    assert instructions.index("USER") > max(i for i, x in enumerate(instructions) if x == "RUN")
    assert 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' in text
    assert "COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in text
    entry = ROOT / "deploy" / "docker-entrypoint.sh"
    assert entry.is_file() and os.access(entry, os.X_OK)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".env", "tests"} <= set(ignored)


def test_volumes_of_eldercare_services_are_owned_by_its_user(services: dict[str, Any]) -> None:
    """A named volume starts with the ownership of the image's directory it is mounted on: one the
    Dockerfile does not create for the eldercare user would be root's, and unwritable."""
    text = (ROOT / "Dockerfile").read_text()
    created = re.search(r"install -d -o eldercare -g eldercare[^\n]*\n([^\n]*)", text)
    assert created
    dirs = set((created.group(0)).split()) - {"install", "-d", "-o", "-g", "eldercare", "-m", "0750", "\\"}
    for name in ELDERCARE_SERVICES:
        for target, source in mounts(services[name]).items():
            if not source.startswith("./"):
                assert target in dirs, f"{name}: {target} is not created for the eldercare user"


def test_env_example_names_every_required_variable() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = set(re.findall(r"^(\w+)=", (ROOT / "deploy" / "env.example").read_text(), re.M))
    assert required == set(SECRETS)
    assert required <= example


def test_entrypoint_turns_docker_secrets_into_settings(tmp_path: Path) -> None:
    (tmp_path / "ELDERCARE_SECRET_KEY").write_text("from-a-secret\n")
    (tmp_path / "ELDERCARE_DB_POOL_MAX").write_text("7")
    (tmp_path / "not-a-setting").write_text("x")
    env = {"PATH": os.environ["PATH"], "SECRETS_DIR": str(tmp_path), "ELDERCARE_DB_POOL_MAX": "3"}
    out = subprocess.run(
        ["sh", str(ROOT / "deploy" / "docker-entrypoint.sh"), "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "ELDERCARE_SECRET_KEY=from-a-secret" in out  # the trailing newline is dropped
    assert "ELDERCARE_DB_POOL_MAX=3" in out  # the environment wins
    assert not any(line.startswith("not-a-setting") for line in out)


# The broker configuration in a real Mosquitto --------------------------------------------------


ROOT_TOPIC = "eldercare/v1"
TLS_CONF = ROOT / "deploy" / "mosquitto-tls.conf"


def anonymous(port: int, ca: Path | None = None) -> tuple[ReasonCode, ReasonCode | None]:
    """CONNACK of a client without username, and the PUBACK of one publish if it got in."""
    return connect(port, None, None, ca)


def connect(
    port: int, username: str | None, password: str | None, ca: Path | None = None
) -> tuple[ReasonCode, ReasonCode | None]:
    """CONNACK of a client (TLS when ``ca``), and the PUBACK of one publish to gw-a's telemetry."""
    acks: queue.Queue[ReasonCode] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username is not None:
        c.username_pw_set(username, password)
    if ca is not None:
        c.tls_set(ca_certs=str(ca))
    c.on_connect = lambda _c, _u, _f, rc, _p: acks.put(rc)
    c.on_publish = lambda _c, _u, _mid, rc, _p: acks.put(rc)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        rc = acks.get(timeout=5)
        if rc.is_failure:
            return rc, None
        c.publish(f"{ROOT_TOPIC}/home-1/gw-a/telemetry", b"hello", qos=1)
        return rc, acks.get(timeout=5)
    finally:
        c.disconnect()
        c.loop_stop()


def broker_conf_with_accounts(
    text: str,
    services: dict[str, Any],
    tmp_path: Path,
    ports: dict[int, int],
    extra: dict[str, Path] | None = None,
) -> Path:
    """The config for this machine with account files rendered by the platform (ingest; gateways
    gw-a at home-1 and gw-b at home-2) where the reload script would install them."""
    auth = tmp_path / "auth"
    auth.mkdir()
    root = ROOT_TOPIC
    rendered = ba.render(
        [
            ba.ingest_account(ba.mosquitto_hash("ingest-pw"), root),
            ba.gateway_account(
                username="gw-a",
                site="home-1",
                gateway="gw-a",
                password_hash=ba.mosquitto_hash("a-pw"),
                root=root,
            ),
            ba.gateway_account(
                username="gw-b",
                site="home-2",
                gateway="gw-b",
                password_hash=ba.mosquitto_hash("b-pw"),
                root=root,
            ),
        ]
    )
    (auth / "passwd").write_text(rendered.passwords)
    (auth / "acl").write_text(rendered.acl)
    for f in auth.iterdir():
        f.chmod(0o600)
    broker = services["broker"]
    paths = {broker["environment"]["BROKER_AUTH_DIR"]: auth, "/mosquitto/data/": tmp_path, **(extra or {})}
    text = local_broker_conf(text, broker, ports, paths)
    if os.geteuid() == 0:
        text += f"user {getpass.getuser()}\n"  # else it switches to "mosquitto" and cannot read tmp_path
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    return conf


def test_broker_config_refuses_anonymous_and_confines_each_gateway(
    services: dict[str, Any], tmp_path: Path
) -> None:
    conf_text = (ROOT / "deploy" / "mosquitto.conf").read_text()
    settings = dict(re.findall(r"^(\w+) (.+)$", conf_text, re.M))
    assert settings["per_listener_settings"] == "true"
    # the public listener: accounts only, the files deploy/mosquitto-reload.sh installs
    public = conf_text.split("listener 1883", 1)[1].split("listener ", 1)[0]
    assert "allow_anonymous false" in public
    auth_dir = services["broker"]["environment"]["BROKER_AUTH_DIR"]
    assert f"password_file {auth_dir}/passwd" in public and f"acl_file {auth_dir}/acl" in public
    health = conf_text.split("listener 1880 127.0.0.1", 1)[1]
    assert "allow_anonymous true" in health and "acl_file" in health
    assert "1880" in services["broker"]["healthcheck"]["test"]

    port, hport = free_port(), free_port()
    conf = broker_conf_with_accounts(conf_text, services, tmp_path, {1883: port, 1880: hport})
    root = ROOT_TOPIC
    with mosquitto(conf, port, tmp_path / "mosquitto.log"):
        rc, _ = anonymous(port)
        assert rc.is_failure and rc.getName() == "Not authorized"
        assert connack(port, "gw-a", "wrong").is_failure
        ingest = Client(port, ba.INGEST_USER, "ingest-pw")
        gw_a = Client(port, "gw-a", "a-pw")
        try:
            ingest.subscribe(f"$share/ingest/{root}/+/+/telemetry")
            assert not gw_a.publish(f"{root}/home-1/gw-a/telemetry", b"own").is_failure
            assert gw_a.publish(f"{root}/home-2/gw-b/telemetry", b"forged").value == 0x87
            assert ingest.received() == [(f"{root}/home-1/gw-a/telemetry", b"own")]
            # the health listener: anonymous may connect, publish nothing
            rc, puback = anonymous(hport)
            assert not rc.is_failure and puback is not None and puback.value == 0x87
            assert ingest.received(0.3) == []
        finally:
            gw_a.close()
            ingest.close()


def test_tls_config_is_the_plain_one_plus_an_authenticated_8883_listener(
    services: dict[str, Any], tmp_path: Path
) -> None:
    base = (ROOT / "deploy" / "mosquitto.conf").read_text()
    tls_text = TLS_CONF.read_text()
    body = base[base.index("per_listener_settings") :]
    assert body in tls_text, "deploy/mosquitto-tls.conf must repeat deploy/mosquitto.conf"
    tls = make_tls(tmp_path / "tls")
    certs = {"/mosquitto/certs/server.crt": tls["cert"], "/mosquitto/certs/server.key": tls["key"]}
    port, hport, sport = free_port(), free_port(), free_port()
    conf = broker_conf_with_accounts(
        tls_text, services, tmp_path, {1883: port, 1880: hport, 8883: sport}, certs
    )
    with mosquitto(conf, sport, tmp_path / "mosquitto.log"):
        rc, puback = connect(sport, "gw-a", "a-pw", tls["ca"])
        assert not rc.is_failure and puback is not None and not puback.is_failure
        rc, puback = connect(sport, "gw-b", "b-pw", tls["ca"])  # gw-b may not write gw-a's topic
        assert not rc.is_failure and puback is not None and puback.value == 0x87
        rc, _ = anonymous(sport, tls["ca"])
        assert rc.is_failure and rc.getName() == "Not authorized"
        assert connect(port, "gw-a", "a-pw")[0].value == 0  # the plain listener is still there


def test_compose_cli_validates_the_tls_override(tmp_path: Path) -> None:
    args = ["-f", str(ROOT / "deploy" / "compose.tls.yml"), "config"]
    missing = run_compose(tmp_path, *args, "-q")
    assert missing.returncode != 0 and "DEPLOY_TLS_DIR" in missing.stderr
    result = run_compose(tmp_path, *args, secrets=SECRETS | {"DEPLOY_TLS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    broker = yaml.safe_load(result.stdout)["services"]["broker"]
    volumes = {}  # v1 prints "source:target:mode", v2 a mapping
    for v in broker["volumes"]:
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        volumes[target] = source
    assert Path(volumes["/mosquitto/config/mosquitto.conf"]) == TLS_CONF
    assert Path(volumes["/mosquitto/certs"]) == tmp_path
