"""Webhooks and e-mail against real local servers: signed, retried with backoff, every attempt
recorded on the notification row and in the alert's trail."""

from __future__ import annotations

import asyncio
import json
import mailbox
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from platform_seed import World, seed_world
from server_support import smtp_inbox

from eldercare.config import Settings
from eldercare.platform.engine import service
from eldercare.platform.notify import delivery, webhook
from eldercare.platform.notify import email as mail
from eldercare.platform.repo import alerts as alerts_repo
from eldercare.platform.repo.connections import open_pool

NOW_MS = int(time.time() * 1000)
SECRET = "hook-secret-1"


@pytest.fixture
def world(db_url: str) -> World:
    with psycopg.connect(db_url) as conn:
        return seed_world(conn)


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()


def queue_fall(db_url: str) -> None:
    payload = {
        "v": 1, "epoch": "e-1", "seq": 1, "t": NOW_MS, "sensor": "wearable-res-1", "kind": "fall",
        "confidence": 0.9, "resident": None, "evidence": {}, "gateway": "gw-home-1", "site": "home-1",
    }  # fmt: skip
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alert_work (kind, gateway_id, site_id, payload) VALUES ('event', %s, %s, %s::jsonb)",
            ("gw-home-1", "home-1", json.dumps(payload)),
        )


class Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first ``fail_first`` POSTs, then 204; keeps what it received."""

    fail_first = 1
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        if len(type(self).received) <= type(self).fail_first:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"try later")
        else:
            self.send_response(204)
            self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("OneFailure", (Receiver,), {"received": [], "fail_first": 1})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hooks/eldercare", handler
    finally:
        srv.shutdown()
        srv.server_close()


def run(db_url: str, settings: Settings, rounds: list[float], **kw: Any) -> list[int]:
    """A fall queued, an engine round, then delivery rounds, each the given seconds after the one
    before on an injected clock (the backoff is stepped through, not slept out)."""
    queue_fall(db_url)

    async def main() -> list[int]:
        async with open_pool(db_url, min_size=1, max_size=4) as pool:
            await service.process_work(pool, email=mail.can_send(settings))
            deliverer = delivery.Deliverer(pool, settings, **kw)
            done, at = [], alerts_repo.now()
            for step in rounds:
                at += timedelta(seconds=step)
                done.append(await deliverer.deliver_due(now=at))
            return done

    return asyncio.run(main())


def test_webhook_is_signed_retried_after_a_500_and_recorded(
    db_url: str, world: World, settings: Settings, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE providers SET webhook_url = %s, webhook_secret = %s WHERE id = 'hc-1'", (url, SECRET)
        )
    # the first round fails (500); the retry waits its backoff (0.3 s) and is not due at once
    assert run(db_url, settings, [0, 0, 0.5], base_backoff_s=0.3) == [1, 0, 1]
    assert len(handler.received) == 2
    for headers, body in handler.received:
        assert webhook.verify(
            SECRET, headers["X-Eldercare-Timestamp"], body, headers["X-Eldercare-Signature"]
        )
        assert not webhook.verify(
            "wrong", headers["X-Eldercare-Timestamp"], body, headers["X-Eldercare-Signature"]
        )
    (h1, _), (h2, b2) = handler.received
    assert h1["X-Eldercare-Delivery"] == h2["X-Eldercare-Delivery"]  # one delivery, retried
    sent = json.loads(b2)
    assert sent["provider"] == "hc-1" and sent["tier"] == 1
    assert [p["username"] for p in sent["people"]] == ["worker1"]  # hc-1's people, not the family
    assert sent["alert"]["kind"] == "fall" and sent["alert"]["resident_id"] == "res-1"
    assert sent["alert"]["title"]["zh-CN"] == "疑似跌倒"
    got = rows(db_url, "SELECT target, status, attempts, delivered_at IS NOT NULL FROM notifications "
                       "WHERE channel = 'webhook'")  # fmt: skip
    assert got == [("hc-1", "delivered", 2, True)]
    trail = rows(db_url, "SELECT detail FROM alert_trail WHERE action = 'delivery' ORDER BY id")
    assert [(d[0]["attempt"], d[0]["status"]) for d in trail] == [(1, "failed"), (2, "delivered")]
    assert "HTTP 500" in trail[0][0]["error"]


def test_webhook_gives_up_after_the_last_attempt(db_url: str, world: World, settings: Settings) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE providers SET webhook_url = %s WHERE id = 'hc-1'", (dead,))
    rounds = run(
        db_url, settings, [0, 0.2, 0.3, 0.3], base_backoff_s=0.1, max_attempts=3,
        on_gave_up=service.delivery_gave_up,
    )  # fmt: skip
    assert rounds == [1, 1, 1, 0]
    ((ident, status, attempts, error),) = rows(
        db_url, "SELECT id, status, attempts, last_error FROM notifications WHERE channel = 'webhook'"
    )
    assert (status, attempts) == ("gave_up", 3) and "ConnectError" in error
    ((summary, users),) = rows(
        db_url,
        "SELECT a.summary ->> 'en', array_agg(u.username) FROM alerts a JOIN notifications n"
        " ON n.alert_id = a.id JOIN users u ON u.id = n.user_id WHERE a.kind = 'work_failed' GROUP BY 1",
    )
    assert f"webhook delivery {ident}" in summary and "ConnectError" in summary
    assert users == ["admin"]  # the operators are told


def test_a_receiver_that_never_answers_delays_no_other_delivery(
    db_url: str, world: World, settings: Settings
) -> None:
    release = threading.Event()
    arrived: dict[str, threading.Event] = {"slow": threading.Event(), "fast": threading.Event()}

    class Hooks(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            which = self.path.strip("/")
            arrived[which].set()
            if which == "slow":
                release.wait(30)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE providers SET webhook_url = %s WHERE id = 'hc-1'", (f"{base}/slow",))
        conn.execute("UPDATE providers SET webhook_url = %s WHERE id = 'hc-2'", (f"{base}/fast",))
        conn.execute(
            "INSERT INTO care_assignments (resident_id, user_id) VALUES ('res-2', %s)",
            (world.user_id("worker2"),),
        )
    queue_fall(db_url)  # res-1: hc-1's webhook, which hangs

    async def main() -> None:
        async with open_pool(db_url, min_size=1, max_size=4) as pool:
            await service.process_work(pool)
            sender = asyncio.create_task(delivery.Deliverer(pool, settings).run())
            await asyncio.to_thread(arrived["slow"].wait, 10)
            with psycopg.connect(db_url, autocommit=True) as conn:  # then res-2's SOS: hc-2's webhook
                conn.execute(
                    "INSERT INTO alert_work (kind, gateway_id, site_id, payload)"
                    " VALUES ('event', %s, %s, %s)",
                    ("gw-home-2", "home-2", json.dumps({
                        "v": 1, "epoch": "e-2", "seq": 1, "t": NOW_MS, "sensor": "sos-1", "kind": "sos",
                        "resident": "res-2", "evidence": {}, "gateway": "gw-home-2", "site": "home-2",
                    })),
                )  # fmt: skip
            await service.process_work(pool)
            fast = await asyncio.to_thread(arrived["fast"].wait, 5)
            slow_still_hanging = not release.is_set()
            release.set()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            assert fast and slow_still_hanging

    try:
        asyncio.run(main())
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def test_no_webhook_when_the_provider_has_none(db_url: str, world: World, settings: Settings) -> None:
    assert run(db_url, settings, [0]) == [0]
    assert rows(db_url, "SELECT count(*) FROM notifications WHERE channel <> 'websocket'") == [(0,)]


def test_email_reaches_each_notified_person_in_their_language(
    db_url: str, world: World, settings: Settings
) -> None:
    with smtp_inbox() as (inbox, port):
        with_mail = Settings(**{**settings.model_dump(), "smtp_url": f"smtp://127.0.0.1:{port}"})
        assert run(db_url, with_mail, [0]) == [2]
    by_rcpt = {rcpt[0]: message_from_bytes(raw) for rcpt, raw in inbox.messages}
    assert set(by_rcpt) == {"family1@example.org", "worker1@example.org"}
    subject = str(make_header(decode_header(by_rcpt["worker1@example.org"]["Subject"])))
    assert subject.startswith("[eldercare] 疑似跌倒 / Possible fall") and "Wang Fang" in subject
    body = by_rcpt["worker1@example.org"].get_payload(decode=True).decode()
    assert body.index("疑似跌倒") < body.index("Possible fall")  # zh-CN reader: Chinese first
    got = rows(
        db_url, "SELECT target, status, attempts FROM notifications WHERE channel = 'email' ORDER BY 1"
    )
    assert got == [("family1@example.org", "delivered", 1), ("worker1@example.org", "delivered", 1)]


def test_without_smtp_emails_land_in_the_outbox_for_all_to_see(
    db_url: str, world: World, settings: Settings, tmp_path: Path
) -> None:
    """The demo has no mail server: each e-mail is written to a Maildir, recorded as delivered there."""
    outbox = tmp_path / "outbox"
    assert run(db_url, settings.model_copy(update={"mail_outbox": outbox}), [0]) == [2]
    box = mailbox.Maildir(outbox, create=False)
    got = {m["To"]: m for m in box}
    assert set(got) == {"family1@example.org", "worker1@example.org"}  # the daughter too, tier 1
    body = got["family1@example.org"].get_payload(decode=True).decode()
    assert "疑似跌倒" in body and "Wang Fang" in body
    assert rows(
        db_url, "SELECT count(*) FROM notifications WHERE channel = 'email' AND status = 'delivered'"
    ) == [(2,)]


def test_no_emails_are_queued_with_nowhere_to_send_them(
    db_url: str, world: World, settings: Settings
) -> None:
    assert settings.smtp_url is None and settings.mail_outbox is None
    run(db_url, settings, [0])
    assert rows(db_url, "SELECT count(*) FROM notifications WHERE channel = 'email'") == [(0,)]


def test_the_outbox_is_created_safely_by_many_senders_at_once(tmp_path: Path) -> None:
    """Deliveries run side by side: the first e-mails into a new outbox must all land."""
    import threading
    from email.message import EmailMessage

    from eldercare.platform.notify.email import _store_blocking

    outbox, start = tmp_path / "outbox", threading.Barrier(16)
    errors: list[Exception] = []

    def send(i: int) -> None:
        msg = EmailMessage()
        msg["To"] = f"p{i}@example.org"
        msg.set_content("x")
        start.wait()
        try:
            _store_blocking(outbox, msg)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    for _round in range(20):
        threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert {m["To"] for m in mailbox.Maildir(outbox, create=False)} == {
            f"p{i}@example.org" for i in range(16)
        }
        for sub in ("tmp", "new", "cur"):  # a fresh outbox for the next round
            for f in (outbox / sub).iterdir():
                f.unlink()
            (outbox / sub).rmdir()
        outbox.rmdir()
