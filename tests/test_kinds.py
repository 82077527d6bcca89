"""One registry of kinds (eldercare.kinds): every place that lists kinds agrees with it.

A new kind goes into eldercare/kinds.py; these tests then fail at each place still to be told
(a migration widening a CHECK constraint, an API schema, a label in the web client).
"""

from __future__ import annotations

import re
from typing import get_args

import psycopg

from eldercare import i18n, kinds, protocol
from eldercare.platform.schemas import AlertKind, Outcome, SimIncidentIn, SiteKind
from eldercare.platform.web import STATIC
from eldercare.simulators import routine

APP_JS = (STATIC / "app.js").read_text(encoding="utf-8")


def _check_values(conn: psycopg.Connection, table: str, column: str) -> set[str]:
    """The values a CHECK (column IN (...)) constraint of a migrated database allows."""
    rows = conn.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
        " WHERE t.relname = %s AND c.contype = 'c'",
        (table,),
    ).fetchall()
    defs = [d for (d,) in rows if re.search(rf"\b{column}\b", d)]
    assert len(defs) == 1, defs
    return set(re.findall(r"'([a-z_]+)'::text", defs[0]))


def _js_array(name: str) -> tuple[str, ...]:
    m = re.search(rf"const {name} = \[([^\]]*)\]", APP_JS)
    assert m, name
    return tuple(re.findall(r'"([a-z_]+)"', m[1]))


def test_the_database_allows_exactly_the_registered_kinds(db_conn: psycopg.Connection) -> None:
    assert _check_values(db_conn, "alerts", "kind") == set(kinds.ALERT_KINDS)
    assert _check_values(db_conn, "alerts", "outcome") == set(kinds.OUTCOMES)
    assert _check_values(db_conn, "sensors", "kind") == set(kinds.SENSOR_KINDS)
    assert _check_values(db_conn, "sites", "kind") == set(kinds.SITE_KINDS)


def test_the_api_schemas_take_their_kinds_from_the_registry() -> None:
    assert get_args(AlertKind) == kinds.ALERT_KINDS
    assert get_args(Outcome) == kinds.OUTCOMES
    assert get_args(SimIncidentIn.model_fields["kind"].annotation) == kinds.INCIDENT_KINDS
    assert get_args(SiteKind) == kinds.SITE_KINDS


def test_the_simulators_and_the_protocol_use_the_registry() -> None:
    assert routine.INCIDENT_KINDS is kinds.INCIDENT_KINDS
    assert set(kinds.CAUGHT_BY) == set(kinds.INCIDENT_KINDS)
    assert {k for caught in kinds.CAUGHT_BY.values() for k in caught} <= set(kinds.ALERT_KINDS)
    assert kinds.SENSOR_KINDS is protocol.SENSOR_KINDS


def test_the_web_client_lists_and_labels_every_kind() -> None:
    assert _js_array("KINDS") == kinds.ALERT_KINDS
    assert _js_array("SIM_KINDS") == kinds.INCIDENT_KINDS
    assert _js_array("OUTCOMES") == kinds.OUTCOMES
    for group, values in (
        ("kind", kinds.ALERT_KINDS),
        ("sim", kinds.INCIDENT_KINDS),
        ("sensor", kinds.SENSOR_KINDS),
    ):
        for v in values:
            for loc in i18n.LOCALES:
                assert f"{group}.{v}" in i18n.catalogue(loc), f"{group}.{v} needs a label in {loc}"
