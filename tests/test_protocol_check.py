"""What an independent gateway, written from docs/protocol.md alone, found the platform doing
differently from the document (the outside protocol check). Store tests against the real
PostgreSQL, as in test_ack_edges.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ingest_support import count, register
from test_ack_edges import GW, ROOT, tele

from eldercare.ingest.batch import Batch, Inbound, Registry, Validator
from eldercare.ingest.store import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    register(db_url, GW)
    s = Store(db_url)
    yield s
    s.close()


def write(store: Store, *msgs: tuple[str, bytes]) -> dict[tuple[str, str, str], int]:
    reg = Registry(store.load_registry())
    v = Validator(ROOT, reg)
    b = Batch()
    for kind, payload in msgs:
        b.add(v.check(Inbound(f"{ROOT}/home-1/gw-1/{kind}", payload)))
    return store.write(b, reg).acks


@pytest.mark.parametrize(
    "spoil",
    [
        lambda b: b.replace(b'"value":2.0', b'"value":NaN'),  # Python's json.dumps by default
        lambda b: b.replace(b'"value":2.0', b'"value":-Infinity'),
        lambda b: b"\xef\xbb\xbf" + b,  # a byte-order mark
    ],
    ids=["NaN", "Infinity", "BOM"],
)
def test_a_numbered_message_that_is_not_quite_json_is_acknowledged_as_refused(
    store: Store, db_url: str, spoil: Callable[[bytes], bytes]
) -> None:
    """Section 9: the ack covers what was refused as a dead letter (re-sending cannot help). A
    message with a NaN was dead-lettered but left out of the watermark, so a gateway using acks
    kept it, re-sent it forever, and every later message's ``low`` held the watermark below it."""
    assert write(store, ("telemetry", tele(1, low=1)))[("home-1", "gw-1", "epoch-edge-0001")] == 1
    bad = spoil(tele(2, low=1))
    assert write(store, ("telemetry", bad), ("telemetry", tele(3, low=2))) == {
        ("home-1", "gw-1", "epoch-edge-0001"): 3
    }
    assert count(db_url, "SELECT count(*) FROM dead_letters WHERE reason LIKE '$: not valid JSON%%'") == 1
