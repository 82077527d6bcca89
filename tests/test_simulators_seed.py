"""Seeding a fresh migrated database, the manifest, and scoring against the alerts table."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from eldercare.cli import cli
from eldercare.platform import broker_auth
from eldercare.simulators import neighbourhood as nb
from eldercare.simulators import store
from eldercare.simulators.routine import TruthRecord
from eldercare.simulators.scenario import write_truth


@pytest.fixture
def sim_db_url(db_url: str) -> str:
    """A fresh migrated database of this test (conftest's ``db_url``)."""
    return db_url


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # table names are literals here
    assert row is not None
    return int(row[0])


def test_plan_is_deterministic_and_consistent() -> None:
    a = nb.plan(3, 25, 2, now=1_800_000_000)
    b = nb.plan(3, 25, 2, now=1_800_000_000)
    assert a == b
    assert {h.station for h in a.homes} <= {None, *(s.site for s in a.stations)}
    assert any(h.station for h in a.homes)
    usernames = [u.username for u in a.users]
    assert len(usernames) == len(set(usernames))
    assert all(h.worker in usernames and all(f in usernames for f, _ in h.family) for h in a.homes)
    m = nb.manifest(a, topic_root="x/v1", created_at=0, start=0)
    assert json.loads(json.dumps(m)) == m
    assert nb.profile_from(m["homes"][0]["profile"]) == a.homes[0].profile


def test_seed_registers_everything(sim_db_url: str) -> None:
    p = nb.plan(1, 12, 2, now=time.time(), roster_days=3)
    counts = store.seed(sim_db_url, p)
    with psycopg.connect(sim_db_url) as conn:
        assert _count(conn, "sites") == 14 == counts["sites"]
        assert _count(conn, "residents") == 12
        assert _count(conn, "gateways") == 12 + 2 * 2
        assert _count(conn, "sensors") == counts["sensors"] > 12 * 10
        assert _count(conn, "users") == len(p.users)
        assert _count(conn, "family_links") >= 12
        assert _count(conn, "care_assignments") == 12
        assert _count(conn, "escalation_tiers") == 3
        row = conn.execute(
            "SELECT count(*) FROM oncall_shifts WHERE starts_at <= now() AND ends_at > now()"
        ).fetchone()
        assert row is not None and row[0] >= 3  # someone on duty now at every provider with a roster
        h = p.homes[0]
        row = conn.execute(
            "SELECT mqtt_password_hash, broker_password_hash FROM gateways WHERE id = %s", (h.gateway.id,)
        ).fetchone()
        assert row is not None and row[0].startswith("$argon2")
        assert PasswordHasher().verify(row[0], h.gateway.password)
        assert broker_auth.verify(h.gateway.password, row[1])  # in the broker's password file
        wearable = conn.execute(
            "SELECT resident_id FROM sensors WHERE gateway_id = %s AND id = 'wearable-1'", (h.gateway.id,)
        ).fetchone()
        assert wearable == (h.resident,)
        assert conn.execute("SELECT bool_and(simulated) FROM residents").fetchone() == (True,)
        with pytest.raises(store.StoreError, match="already exist"):
            store.seed(sim_db_url, p)


def test_seed_homes_of_two(sim_db_url: str) -> None:
    p = nb.plan(2, 6, 1, now=time.time(), roster_days=1, couples=0.5)
    pairs = [h for h in p.homes if h.partner is not None]
    assert 0 < len(pairs) < 6
    counts = store.seed(sim_db_url, p)
    with psycopg.connect(sim_db_url) as conn:
        assert counts["residents"] == 6 + len(pairs) == _count(conn, "residents")
        h = pairs[0]
        assert h.partner is not None
        row = conn.execute(
            "SELECT home_site_id FROM residents WHERE id = %s", (h.partner.resident,)
        ).fetchone()
        assert row == (h.site,)
        row = conn.execute(
            "SELECT resident_id FROM sensors WHERE gateway_id = %s AND id = 'wearable-2'", (h.gateway.id,)
        ).fetchone()
        assert row == (h.partner.resident,)
        n = conn.execute(
            "SELECT count(*) FROM family_links WHERE resident_id = %s", (h.partner.resident,)
        ).fetchone()
        assert n is not None and n[0] == len(h.family)


def test_seed_refuses_an_unmigrated_database(pg_url: str) -> None:
    from psycopg import sql

    name = f"sim_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = urlsplit(pg_url)._replace(path=f"/{name}").geturl()
        with pytest.raises(store.StoreError, match="db migrate"):
            store.seed(url, nb.plan(1, 1, 0, now=time.time()))
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_cli_seed_then_score(sim_db_url: str, tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    env = {"ELDERCARE_DATABASE_URL": sim_db_url}
    res = CliRunner().invoke(
        cli,
        ["simulate", "seed", "--homes", "3", "--stations", "1", "--seed", "5", "-o", str(manifest)],
        env=env,
    )
    assert res.exit_code == 0, res.output
    m = json.loads(manifest.read_text())
    assert len(m["homes"]) == 3 and m["homes"][0]["gateway"]["mqtt_password"]
    r1, r2 = m["homes"][0]["resident"], m["homes"][1]["resident"]
    t0 = time.time() - 3600
    truth = [
        TruthRecord("fall", r1, t0, t0, t0 + 600, site=m["homes"][0]["site"]),
        TruthRecord("sos", r2, t0, t0, t0, site=m["homes"][1]["site"]),
    ]
    truth_path = tmp_path / "truth.jsonl"
    write_truth(truth_path, truth)
    with psycopg.connect(sim_db_url) as conn:
        for kind, res_id, dt, ack in (("fall", r1, 40, 100), ("fall", r2, 900, None)):
            row = conn.execute(
                "INSERT INTO alerts (kind, severity, resident_id, dedup_key, title, detected_at, opened_at,"
                " state, acknowledged_at, simulated)"
                " VALUES (%s, 'critical', %s, %s, 'Fall', %s, %s, %s, %s, true)"
                " RETURNING id",
                (
                    kind,
                    res_id,
                    f"{res_id}:{kind}",
                    datetime.fromtimestamp(t0 + dt, UTC),
                    datetime.fromtimestamp(t0 + dt, UTC),
                    "acknowledged" if ack else "open",
                    datetime.fromtimestamp(t0 + dt + ack, UTC) if ack else None,
                ),
            ).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO alert_trail (alert_id, at, action, tier) VALUES (%s, %s, 'opened', 1)",
                (row[0], datetime.fromtimestamp(t0 + dt, UTC)),
            )
            if ack:
                conn.execute(
                    "INSERT INTO alert_trail (alert_id, at, action, tier) VALUES (%s, %s, 'acknowledged', 1)",
                    (row[0], datetime.fromtimestamp(t0 + dt + ack, UTC)),
                )
    res = CliRunner().invoke(
        cli, ["simulate", "score", "--manifest", str(manifest), "--truth", str(truth_path), "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["kinds"]["fall"]["caught"] == 1 and rep["kinds"]["fall"]["delay_median_s"] == pytest.approx(
        40, abs=1
    )
    assert rep["kinds"]["sos"]["missed"] == 1
    assert rep["false_alarms"] == {"fall": 1}
    assert rep["time_to_ack"]["1"]["median_s"] == pytest.approx(100, abs=1)
    res = CliRunner().invoke(
        cli, ["simulate", "score", "--manifest", str(manifest), "--truth", str(truth_path)], env=env
    )
    assert res.exit_code == 0 and "caught" in res.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{}")
    res = CliRunner().invoke(cli, ["simulate", "score", "--manifest", str(bad), "--truth", str(bad)])
    assert res.exit_code == 2 and "not an eldercare simulation manifest" in res.output
    res = CliRunner().invoke(cli, ["simulate", "seed", "--prefix", "bad prefix!"])
    assert res.exit_code == 2 and "--prefix" in res.output


def test_cli_seed_checks_the_manifest_path_before_writing_the_neighbourhood(
    sim_db_url: str, tmp_path: Path
) -> None:
    """A manifest path that cannot be written is refused before anything is seeded (it was found
    only after the commit: the homes stayed registered, their passwords lost, the prefix taken)."""
    env = {"ELDERCARE_DATABASE_URL": sim_db_url}
    args = ["simulate", "seed", "--homes", "1", "--stations", "0"]
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "no-such-dir" / "m.json")], env=env)
    assert res.exit_code == 2, res.output
    assert "-o/--manifest" in res.output and "No such file or directory" in res.output
    assert "Traceback" not in res.output
    manifest = tmp_path / "m.json"
    res = CliRunner().invoke(cli, [*args, "-o", str(manifest)], env=env)
    assert res.exit_code == 0, res.output
    first = manifest.read_text()
    # a refused seeding (the prefix is taken) leaves an existing manifest whole, and creates none
    res = CliRunner().invoke(cli, [*args, "-o", str(manifest)], env=env)
    assert res.exit_code == 1 and "already exist" in res.output
    assert manifest.read_text() == first
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "other.json")], env=env)
    assert res.exit_code == 1 and not (tmp_path / "other.json").exists()


def test_cli_run_refuses_bad_truth_and_scenario_paths_before_running(tmp_path: Path) -> None:
    """A --truth that cannot be written is a bad option (exit 2, one line), found before any
    connection (it was an errno message and exit 1); a --scenario file is read as a file whatever
    its name (one not ending in .toml was "no built-in scenario")."""
    now = time.time()
    manifest = tmp_path / "m.json"
    p = nb.plan(1, 1, 0, now=now)
    manifest.write_text(json.dumps(nb.manifest(p, topic_root="t/v1", created_at=now, start=now)))
    scenario = tmp_path / "mine.txt"
    scenario.write_text('name = "mine"\nhomes = 1\ndays = 2\n')
    run = ["simulate", "run", "--manifest", str(manifest), "--duration", "1", "--quiet"]
    nowhere = tmp_path / "no-such-dir" / "truth.jsonl"
    res = CliRunner().invoke(cli, [*run, "--scenario", str(scenario), "--truth", str(nowhere)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (
        f"Error: Invalid value for --truth: {nowhere}: No such file or directory"
    )
    scenario.write_text("homes = [\n")
    res = CliRunner().invoke(cli, [*run, "--scenario", str(scenario)])
    assert res.exit_code == 2 and "not valid TOML" in res.output, res.output
    res = CliRunner().invoke(cli, [*run, "--scenario", "./mine"])
    assert res.exit_code == 2 and "mine: No such file or directory" in res.output, res.output


@pytest.mark.parametrize(("kinds", "named"), [("", "''"), ("fall,,sos", "''"), ("flood", "'flood'")])
def test_cli_dataset_names_a_bad_kind_even_an_empty_one(tmp_path: Path, kinds: str, named: str) -> None:
    """``--kinds ''`` or ``fall,,sos`` said "unknown kind(s) " and a blank: the bad name is quoted,
    and the line says what is expected."""
    res = CliRunner().invoke(cli, ["simulate", "dataset", "-o", str(tmp_path / "ds"), "--kinds", kinds])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert f"unknown kind(s) {named}; expected 'all', 'none' or some of fall," in line, line
    assert not (tmp_path / "ds").exists()


def test_cli_run_help_says_homes_leaves_the_stations_out() -> None:
    """``--homes N`` runs no station at all (their gateways stay silent): the help said only
    "Only the first N homes of the manifest", and the docs nothing."""
    res = CliRunner().invoke(cli, ["simulate", "run", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "Only the first N homes of the manifest, and none of its stations." in res.output


def test_cli_score_refuses_a_truth_file_with_nothing_in_it(tmp_path: Path) -> None:
    """An empty truth file (a run that never started, the wrong file) was scored: every alert of
    the neighbourhood a false alarm, over resident-weeks made up from the alerts' own times."""
    now = time.time()
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps(nb.manifest(nb.plan(1, 1, 0, now=now), topic_root="t", created_at=now, start=now))
    )
    empty = tmp_path / "truth.jsonl"
    empty.write_text("")
    res = CliRunner().invoke(cli, ["simulate", "score", "--manifest", str(manifest), "--truth", str(empty)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (
        f"Error: Invalid value for --truth: {empty}: no incidents and no run's clock: not the truth of a run"
    )
