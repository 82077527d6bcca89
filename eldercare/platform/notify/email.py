"""E-mail notifications through the configured SMTP server (``smtp://host:port``), or into a
Maildir outbox (``mail_outbox``) where there is none, as in the demo.

smtplib is blocking, so each message is sent in a worker thread. ``smtps://`` uses implicit TLS,
``smtp://...?starttls=1`` upgrades; user and password may be given in the URL.
"""

from __future__ import annotations

import asyncio
import mailbox
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from eldercare import i18n
from eldercare.platform.notify import NotifyError

if TYPE_CHECKING:
    from eldercare.config import Settings

TIMEOUT_S = 15.0


def can_send(settings: Settings) -> bool:
    """Whether e-mails have somewhere to go: an SMTP server, or the outbox directory."""
    return settings.smtp_url is not None or settings.mail_outbox is not None


def compose(*, sender: str, to: str, alert: dict[str, Any], tier: int, locale: str) -> EmailMessage:
    """A message in every language of the catalogue, the reader's own first."""
    title, summary = alert["title"], alert["summary"]
    who = alert.get("resident_name") or alert.get("site_id") or ""
    own = i18n.supported(locale) or i18n.DEFAULT_LOCALE
    langs = [own, *(loc for loc in i18n.LOCALES if loc != own)]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"[eldercare] {' / '.join(title[lang] for lang in langs)}: {who}"
    msg["X-Eldercare-Alert"] = str(alert["id"])
    lines = []
    for lang in langs:
        lines += [
            f"{title[lang]}: {who}",
            summary[lang],
            f"{i18n.t('email.severity', lang)}: {i18n.t('sev.' + alert['severity'], lang)}",
            f"{i18n.t('email.tier', lang)}: {tier}",
            "",
        ]
    lines.append(f"alert #{alert['id']} ({alert['kind']})")
    msg.set_content("\n".join(lines))
    return msg


def _send_blocking(url: str, msg: EmailMessage) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        msg_ = f"smtp_url must look like smtp://host:port, not {parts.scheme}://..."
        raise NotifyError(msg_)
    implicit_tls = parts.scheme == "smtps"
    port = parts.port or (465 if implicit_tls else 25)
    cls = smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP
    try:
        with cls(parts.hostname, port, timeout=TIMEOUT_S) as smtp:
            if parse_qs(parts.query).get("starttls") == ["1"]:
                smtp.starttls()
            if parts.username:
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        text = f"SMTP {parts.hostname}:{port}: {type(exc).__name__}: {exc}"
        raise NotifyError(text) from exc


async def send(url: str, msg: EmailMessage) -> None:
    """Send once; raises :class:`NotifyError` when the server refuses or cannot be reached."""
    await asyncio.to_thread(_send_blocking, url, msg)


def _store_blocking(outbox: Path, msg: EmailMessage) -> str:
    try:
        # the folders first, each creation idempotent: Maildir(create=True) makes the top folder, then
        # tmp/new/cur, and a second sender in between finds the top but no tmp/ and fails
        for sub in ("tmp", "new", "cur"):
            (outbox / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        box = mailbox.Maildir(outbox, create=False)
        key = box.add(msg)
    except OSError as exc:
        text = f"outbox {outbox}: {type(exc).__name__}: {exc}"
        raise NotifyError(text) from exc
    return str(outbox / "new" / key)


async def store(outbox: Path, msg: EmailMessage) -> str:
    """Write the message into the Maildir ``outbox`` (any mail reader opens it); returns its file."""
    return await asyncio.to_thread(_store_blocking, outbox, msg)
