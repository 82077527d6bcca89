"""Mosquitto's password hash and the generated password/ACL files (pure parts, no broker)."""

from __future__ import annotations

import base64
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from fix_db import in_ci

from eldercare import broker_hash
from eldercare.platform import broker_auth as ba

HASH = re.compile(r"^\$7\$101\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)$")
ROOT = "eldercare/v1"


def mosquitto_passwd() -> str:
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        if in_ci():
            pytest.fail("CI=true: mosquitto_passwd is missing (apt-get install mosquitto)")
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return exe


def test_hash_has_mosquitto_passwd_format_and_verifies_both_ways(tmp_path: Path) -> None:
    ours = ba.mosquitto_hash("s3cret-pw")
    m = HASH.match(ours)
    assert m is not None, ours
    assert len(base64.b64decode(m[1])) == broker_hash.SALT_BYTES and len(base64.b64decode(m[2])) == 64
    assert ba.verify("s3cret-pw", ours) and not ba.verify("s3cret-pW", ours)
    assert ba.mosquitto_hash("s3cret-pw") != ours  # a new salt every time
    # the real tool writes the same shape, and our check accepts its hash
    pwfile = tmp_path / "pw"
    subprocess.run([mosquitto_passwd(), "-c", "-b", str(pwfile), "gw-1", "s3cret-pw"], check=True)
    user, theirs = pwfile.read_text().strip().split(":", 1)
    assert user == "gw-1" and HASH.match(theirs), theirs
    assert ba.verify("s3cret-pw", theirs) and not ba.verify("other", theirs)
    # same salt, same password: byte-identical to mosquitto_passwd's line
    salt = base64.b64decode(theirs.split("$")[3])
    assert ba.mosquitto_hash("s3cret-pw", salt=salt) == theirs


def test_verify_refuses_other_formats() -> None:
    assert not ba.verify("x", "$argon2id$v=19$m=65536,t=3,p=4$abc$def")
    assert not ba.verify("x", "")
    assert not ba.verify("x", "$6$abc$def")


def _gw(name: str, site: str = "home-1", pw: str = "pw") -> ba.Account:
    return ba.gateway_account(
        username=name, site=site, gateway=name, password_hash=ba.mosquitto_hash(pw), root=ROOT
    )


def test_render_grants_each_gateway_only_its_own_topics() -> None:
    out = ba.render([ba.ingest_account(ba.mosquitto_hash("i"), ROOT), _gw("gw-b", "home-2"), _gw("gw-a")])
    assert out.users == ["eldercare-ingest", "gw-a", "gw-b"]
    assert [line.split(":")[0] for line in out.passwords.splitlines()] == out.users
    # nothing before the first "user" line: anonymous clients get no topic at all
    first = next(line for line in out.acl.splitlines() if line and not line.startswith("#"))
    assert first == "user eldercare-ingest"
    block_a = out.acl.split("user gw-a\n")[1].split("\n\n")[0].splitlines()
    assert block_a == [
        "topic read eldercare/v1/home-1/gw-a/config",
        "topic read eldercare/v1/home-1/gw-a/ack",
        "topic write eldercare/v1/home-1/gw-a/telemetry",
        "topic write eldercare/v1/home-1/gw-a/event",
        "topic write eldercare/v1/home-1/gw-a/status",
    ]
    ingest_block, gateway_blocks = out.acl.split("user gw-a\n", 1)
    assert "topic read eldercare/v1/#" in ingest_block and "#" not in gateway_blocks
    ingest = out.acl.split("user eldercare-ingest\n")[1].split("\n\n")[0].splitlines()
    assert [line for line in ingest if line.startswith("topic write")] == ["topic write eldercare/v1/+/+/ack"]


def test_render_skips_unusable_and_colliding_accounts() -> None:
    platform = ba.platform_account(ba.mosquitto_hash("p"), ROOT)
    squatter = ba.gateway_account(
        username=ba.PLATFORM_USER,
        site="home-1",
        gateway=ba.PLATFORM_USER,
        password_hash=ba.mosquitto_hash("x"),
        root=ROOT,
    )
    legacy = ba.Account("gw-old", "$argon2id$v=19$m=65536,t=3,p=4$abc$def")
    out = ba.render([platform, squatter, _gw("gw:colon"), legacy, _gw("gw-ok")])
    assert out.users == [ba.PLATFORM_USER, "gw-ok"]
    assert set(out.skipped) == {ba.PLATFORM_USER, "gw:colon", "gw-old"}
    assert "gw:colon" not in out.passwords and "gw-old" not in out.acl
    assert out.passwords.count(ba.PLATFORM_USER) == 1  # the service account kept its own hash
    assert out.passwords.startswith(f"{ba.PLATFORM_USER}:{platform.password_hash}\n")


def test_write_atomic_replaces_with_private_mode_and_reports_changes(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "passwd"
    assert ba.write_atomic(path, "a:1\n") is True
    assert path.read_text() == "a:1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    inode = path.stat().st_ino
    assert ba.write_atomic(path, "a:1\n") is False and path.stat().st_ino == inode  # untouched
    assert ba.write_atomic(path, "a:2\n") is True and path.stat().st_ino != inode  # renamed over
    assert sorted(p.name for p in path.parent.iterdir()) == ["passwd"]  # no temporary left


def test_service_hash_is_kept_while_the_password_is_unchanged() -> None:
    old = ba.mosquitto_hash("svc")
    assert ba.reuse_or_hash("svc", old) == old
    new = ba.reuse_or_hash("svc2", old)
    assert new != old and ba.verify("svc2", new)
    assert ba.verify("svc", ba.reuse_or_hash("svc", None))


def test_signal_pid_file_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ba.BrokerAuthError, match=r"no-such\.pid"):
        ba.signal_pid_file(tmp_path / "no-such.pid")
    bad = tmp_path / "bad.pid"
    bad.write_text("not a pid\n")
    with pytest.raises(ba.BrokerAuthError, match=r"bad\.pid"):
        ba.signal_pid_file(bad)


def test_pattern_style_gives_every_gateway_the_same_rights_in_five_lines() -> None:
    gateways = [ba.Account(f"gw-{i}", ba.mosquitto_hash("pw")) for i in range(3)]
    out = ba.render([ba.ingest_account(ba.mosquitto_hash("i"), ROOT), *gateways], ba.gateway_patterns(ROOT))
    assert out.users == ["eldercare-ingest", "gw-0", "gw-1", "gw-2"]
    assert out.acl.count("user ") == 1  # the ingest block only
    assert [line for line in out.acl.splitlines() if line.startswith("pattern")] == [
        "pattern read eldercare/v1/+/%u/config",
        "pattern read eldercare/v1/+/%u/ack",
        "pattern write eldercare/v1/+/%u/telemetry",
        "pattern write eldercare/v1/+/%u/event",
        "pattern write eldercare/v1/+/%u/status",
    ]
