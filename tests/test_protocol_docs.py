"""docs/protocol.md and docs/schemas/ agree with the code that validates messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from eldercare import protocol as p

DOCS = Path(__file__).resolve().parent.parent / "docs"
SCHEMAS = DOCS / "schemas"
TEXT = (DOCS / "protocol.md").read_text(encoding="utf-8")
EXAMPLE = re.compile(r"<!-- example: (?P<kind>[a-z]+) -->\s*```json\n(?P<body>.*?)\n```", re.S)
EXAMPLES = [(m.group("kind"), m.group("body")) for m in EXAMPLE.finditer(TEXT)]


def schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    return loaded


def validator(kind: str) -> jsonschema.Draft202012Validator:
    s = schema(kind)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker())


def test_every_kind_has_an_example() -> None:
    assert {kind for kind, _ in EXAMPLES} == set(p.KINDS)
    assert TEXT.count("<!-- example:") == len(EXAMPLES)  # no marker without a json block after it


@pytest.mark.parametrize(("kind", "body"), EXAMPLES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(EXAMPLES)])
def test_example_validates_against_schema_and_decoder(kind: str, body: str) -> None:
    doc = json.loads(body)
    validator(kind).validate(doc)
    msg = p.decode(kind, body.encode())
    assert isinstance(msg, p.KINDS[kind])


@pytest.mark.parametrize("kind", sorted(p.KINDS))
def test_committed_schema_equals_generated(kind: str) -> None:
    assert schema(kind) == json.loads(json.dumps(p.json_schemas()[kind])), (
        f"docs/schemas/{kind}.schema.json is stale: "
        "run python -m eldercare.protocol --write-schemas docs/schemas"
    )


def test_no_extra_schema_files() -> None:
    assert {f.name for f in SCHEMAS.glob("*.json")} == {f"{k}.schema.json" for k in p.KINDS}


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("telemetry", {"v": 1, "epoch": "3f9c2a7be41d0c55", "seq": 1, "readings": []}),
        ("telemetry", {"v": 2, "epoch": "3f9c2a7be41d0c55", "seq": 1, "readings": []}),
        (
            "event",
            {
                "v": 1,
                "epoch": "3f9c2a7be41d0c55",
                "seq": 1,
                "t": 1767225600000,
                "sensor": "a b",
                "kind": "sos",
            },
        ),
        (
            "event",
            {"v": 1, "epoch": "3f9c2a7be41d0c55", "seq": 1, "t": 1767225600, "sensor": "ab", "kind": "sos"},
        ),
        ("status", {"v": 1, "t": 1767225600000, "state": "online", "extra": 1}),
        ("config", {"v": 1, "revision": 1, "sensors": [{"id": "a", "kind": "camera"}]}),
    ],
)
def test_schema_and_decoder_reject_the_same_mistakes(kind: str, bad: dict[str, Any]) -> None:
    assert list(validator(kind).iter_errors(bad))
    with pytest.raises(p.ProtocolError):
        p.decode(kind, json.dumps(bad).encode())


def test_schemas_use_portable_patterns() -> None:
    text = "".join((SCHEMAS / f"{k}.schema.json").read_text(encoding="utf-8") for k in p.KINDS)
    assert "\\\\Z" not in text  # Python-only anchor must not leak into ECMA-262 patterns
    assert json.dumps(p.ID_PATTERN) in text


def _table_after(marker: str) -> str:
    start = TEXT.index(marker)
    return TEXT[start : TEXT.index("\n\n", TEXT.index("| ---", start))]


def test_metrics_table_lists_every_metric() -> None:
    table = _table_after("<!-- metrics-table -->")
    documented = set(re.findall(r"`([a-z0-9_]+)`", table))
    assert documented >= set(p.METRICS)


def test_event_kinds_table_lists_every_kind() -> None:
    table = _table_after("<!-- event-kinds -->")
    rows = {line.split("|")[1].strip(" `") for line in table.splitlines()[3:]}  # marker, header, ---
    assert rows == set(p.EVENT_KINDS)


def test_documented_limits_match_code() -> None:
    assert p.ID_PATTERN in TEXT and p.METRIC_PATTERN in TEXT and p.EPOCH_PATTERN in TEXT
    assert f"{p.MAX_READINGS:,}" in TEXT
    assert str(p.T_MIN_MS) in TEXT and str(p.T_MAX_MS) in TEXT
    assert "256 KiB" in TEXT and p.MAX_PAYLOAD_BYTES == 256 * 1024
    assert p.REVISION_MAX == 2**31 - 1 and TEXT.count("integer 0 .. 2^31-1") == 2


def _table_fields(section: str) -> set[str]:
    """The field names of the first table after a section's heading."""
    body = TEXT.split(section, 1)[1]
    table = re.search(r"^\| field .*?(?=\n\n)", body, re.S | re.M)
    assert table is not None, f"no field table under {section}"
    return set(re.findall(r"^\| `([a-z_]+)` \|", table.group(0), re.M))


@pytest.mark.parametrize(("section", "kind"), [("## 5. Telemetry", "telemetry"), ("## 6. Event", "event")])
def test_every_field_of_the_code_is_in_the_docs_table(section: str, kind: str) -> None:
    """An outsider writing a gateway from the docs alone sees every field, ``low`` included."""
    assert _table_fields(section) == set(p.KINDS[kind].__struct_fields__)


def test_ack_section_states_the_rules_a_gateway_needs() -> None:
    ack = TEXT.split("### Acknowledgements: what is stored (optional)", 1)[1].split("## 10.", 1)[0]
    for rule in ("retained", "same epoch", "another epoch", "`low`", "Re-sends", "timeout", "low - 1"):
        assert rule in ack, f"the ack section does not say {rule!r}"
    assert "ack.schema.json" in ack
    # the ack example is the Ack struct, field for field
    body = next(b for k, b in EXAMPLES if k == "ack")
    assert set(json.loads(body)) == set(p.Ack.__struct_fields__)


def test_a_low_above_its_seq_is_rejected_by_the_decoder_as_the_docs_say() -> None:
    """The schema cannot compare two fields; the decoder does, with the reason the docs name."""
    bad = {
        "v": 1,
        "epoch": "3f9c2a7be41d0c55",
        "seq": 4,
        "t": 1767225600000,
        "sensor": "ab",
        "kind": "sos",
        "low": 5,
    }
    with pytest.raises(p.ProtocolError) as err:
        p.decode("event", json.dumps(bad).encode())
    assert err.value.field == "low" and "`low: ...`" in TEXT


GAP = re.compile(r"<!-- schema-gap: (?P<kind>[a-z]+) -->\s*```json\n(?P<body>.*?)\n```", re.S)
GAPS = [(m.group("kind"), m.group("body")) for m in GAP.finditer(TEXT)]


@pytest.mark.parametrize(("kind", "body"), GAPS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(GAPS)])
def test_what_the_docs_say_the_schemas_cannot_check_passes_them_and_is_refused(kind: str, body: str) -> None:
    """Section 12 lists mistakes a schema check lets through; each example is one of them."""
    assert TEXT.count("<!-- schema-gap:") == len(GAPS) >= 4
    validator(kind).validate(json.loads(body))
    with pytest.raises(p.ProtocolError):
        p.decode(kind, body.encode())


def test_numbers_beyond_a_float_and_nan_are_refused_as_the_docs_say() -> None:
    event = b'{"v":1,"epoch":"3f9c2a7be41d0c55","seq":1,"t":1767225600000,"sensor":"s","kind":"sos",'
    assert "numbers beyond a 64-bit float (`1e400`)" in TEXT
    for evidence in (b'{"a":1e400}', b'{"a":[-1e400]}', b'{"a":NaN}', b'{"a":Infinity}'):
        with pytest.raises(p.ProtocolError):
            p.decode("event", event + b'"evidence":' + evidence + b"}")
    assert p.decode("event", event + b'"evidence":{"a":1e308,"b":123456789012345678901234567890}}')
