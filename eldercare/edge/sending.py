"""The send window and the acknowledgements of the edge agent (docs/edge.md).

:class:`SendWindow` hands the broker the next messages, never more than ``broker.max_inflight``
unacknowledged. Alarms (SOS, fall) and other events go ahead of telemetry, and a fifth of the
window is kept free of telemetry so that an SOS never waits behind a backlog.

With ``outbox.ack`` "platform" (or "auto" once the platform has acknowledged anything) a message
stays in the outbox after the broker's PUBACK until ingest's retained ``.../ack`` says its seq is
stored; what is unacknowledged is handed over again after a reconnect, or when acknowledgements
stop for ``ack_timeout_s`` (doubling up to ten times that). An event the disk cannot take is sent
from memory at once under a reserved seq and stored when the disk takes it.

The window is driven by the agent's loop thread only; it owns no thread and no clock of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from eldercare.edge.config import GatewayFile
from eldercare.edge.connection import Uplink
from eldercare.edge.outbox import PRIORITY_EVENT, PRIORITY_TELEMETRY, Outbox, Outgoing

log = logging.getLogger(__name__)


class PlatformAck(msgspec.Struct, frozen=True):
    """The payload of ``.../ack`` (wire protocol v1): every message of ``epoch`` up to ``seq`` is stored."""

    v: int
    epoch: str
    seq: int


class SendWindow:
    """What is in flight, what waits for the platform's ack, and what was sent from memory."""

    def __init__(
        self,
        gw: GatewayFile,
        outbox: Outbox,
        *,
        mono: Callable[[], float],
        now_ms: Callable[[], int],
        now: float,
    ) -> None:
        self.gw = gw
        self.outbox = outbox
        self._mono = mono
        self._now_ms = now_ms
        # events the disk would not take: sent from memory, stored when it can (seq -> message)
        self.memory: dict[int, tuple[Outgoing, int]] = {}
        self.memory_sent: set[int] = set()
        self.inflight: dict[int, tuple[int, int]] = {}  # mid -> (seq, priority)
        self.acked: list[int] = []  # broker-acknowledged messages to delete (broker semantics)
        # end-to-end acknowledgement: cursors of what was handed over, per priority class
        self.sent_after: dict[int, int] = {}
        self.awaiting: set[int] = set()  # PUBACKed, waiting for the platform's ack
        self.platform_seq = -1
        self.platform_acks = gw.outbox.ack == "platform" or (
            gw.outbox.ack == "auto" and outbox.get_meta("platform_acks") == "1"
        )
        self.last_progress = now
        self.resend_s = gw.outbox.ack_timeout_s
        self.just_connected = False  # no ack progress since the last (re)connect yet
        self.resends = 0
        self.other_epoch_acks = 0  # acks of another epoch, ignored
        self.dirty = True  # something may be ready to send

    def send(self, uplink: Uplink) -> None:
        """Fill the free slots of the window: memory first, then events, then telemetry."""
        window = self.gw.broker.max_inflight
        free = window - len(self.inflight)
        if free <= 0:
            return
        in_flight = [seq for seq, _ in self.inflight.values()]
        msgs = [
            m
            for seq, (m, _) in sorted(self.memory.items())
            if seq not in self.memory_sent and seq not in in_flight
        ][:free]
        exclude = in_flight + self.acked + [m.seq for m in msgs]  # acked: not yet deleted
        msgs += self.outbox.next_batch(
            exclude, free - len(msgs), max_priority=PRIORITY_EVENT, after=self.sent_after
        )
        tele_inflight = sum(1 for _, p in self.inflight.values() if p == PRIORITY_TELEMETRY)
        tele_room = min(free - len(msgs), window - max(1, window // 5) - tele_inflight)
        if tele_room > 0:
            msgs += self.outbox.next_batch(
                exclude, tele_room, PRIORITY_TELEMETRY, after=self.sent_after, min_priority=PRIORITY_TELEMETRY
            )
        for m in msgs:
            t = uplink.event_topic if m.kind == "event" else uplink.telemetry_topic
            mid = uplink.publish(t, m.payload)
            self.inflight[mid] = (m.seq, m.priority)
            if m.seq in self.memory:
                self.memory_sent.add(m.seq)
            else:
                self.sent_after[m.priority] = max(self.sent_after.get(m.priority, -1), m.seq)
        self.dirty = False

    def delete_acked(self) -> None:
        """Delete what the broker acknowledged under broker semantics (one transaction)."""
        if self.acked:
            self.outbox.ack(self.acked)
            self.acked.clear()

    def on_puback(self, mid: int) -> None:
        """The broker has it. Delete it now (broker semantics, or an older epoch's message the
        platform will not acknowledge any more) or wait for the platform's ack."""
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return
        seq = entry[0]
        self.dirty = True  # a slot of the window is free
        if not self.platform_acks or seq < self.outbox.epoch_start:
            self.acked.append(seq)
            self.memory.pop(seq, None)
            self.memory_sent.discard(seq)
            self.outbox.release(seq)
        elif seq > self.platform_seq:
            if not self.awaiting:
                self.last_progress = self._mono()  # the ack timeout runs from the first one waiting
            self.awaiting.add(seq)

    def on_platform_ack(self, payload: bytes) -> None:
        """Ingest's ``.../ack``: delete everything of this epoch up to its seq."""
        try:
            ack = msgspec.json.decode(payload, type=PlatformAck)
        except (msgspec.MsgspecError, RecursionError) as exc:  # an unknown field nested too deep
            if payload.strip():
                log.warning("platform ack ignored, not a valid ack payload: %s", exc)
            return
        if ack.v != 1:
            log.warning("platform ack ignored: version %s", ack.v)
            return
        if not self.platform_acks:
            self.platform_acks = True  # "auto": the platform acknowledges, so wait for it from now on
            self.outbox.set_meta("platform_acks", "1")
            log.info("the platform acknowledges stored messages: deleting on its ack from now on")
        if ack.epoch != self.outbox.epoch:
            self.other_epoch_acks += 1  # an older epoch's (retained) ack covers none of this epoch's
            return
        seq = min(ack.seq, self.outbox.next_seq - 1)
        if seq <= self.platform_seq:
            return
        self.outbox.ack_through(seq)  # first: if the delete fails, the same ack is taken again
        self.platform_seq = seq
        for s in [s for s in self.memory if s <= seq]:
            del self.memory[s]
            self.memory_sent.discard(s)
        self.awaiting = {s for s in self.awaiting if s > seq}
        self.last_progress = self._mono()
        self.resend_s = self.gw.outbox.ack_timeout_s
        self.just_connected = False
        self.dirty = True

    def on_connected(self) -> None:
        """A (re)connect: the broker forgot nothing of QoS 1, but the platform may have missed some.

        What is resent now may reach no ingest worker: a broker that restarted keeps a persistent
        session's plain subscriptions but not its shared ones (seen with Mosquitto 2.0), so until
        ingest has subscribed again the broker drops the copies after its PUBACK. Hence one more
        resend soon (``ack_timeout_after_connect_s``) unless an ack moves first, so an alarm sent
        across a broker restart waits seconds for it, not ``ack_timeout_s``."""
        self.dirty = True
        if self.platform_acks:
            self.resend_all("reconnected")
            self.just_connected = True

    def resend_all(self, why: str) -> None:
        """Hand over again everything not acknowledged by the platform (not what is in flight)."""
        if self.sent_after or self.memory_sent or self.awaiting:
            log.info("sending unacknowledged messages again: %s", why)
        self.sent_after.clear()
        self.memory_sent.clear()
        self.awaiting.clear()
        self.last_progress = self._mono()
        self.dirty = True

    def check_resend(self, now: float) -> None:
        """No acknowledgement for ``resend_s``: hand everything over again, and wait longer next time
        (the first wait after a connect is the short one, and is not doubled)."""
        after_connect = self.just_connected
        wait = self.resend_s
        if after_connect:
            wait = min(wait, self.gw.outbox.ack_timeout_after_connect_s)
        if self.awaiting and now - self.last_progress >= wait:
            self.resends += 1
            self.resend_all(f"no acknowledgement from the platform for {wait:.0f} s")
            self.just_connected = False
            if not after_connect:
                self.resend_s = min(self.resend_s * 2, self.gw.outbox.ack_timeout_s * 10)

    def new_outbox(self) -> None:
        """The outbox was replaced (new file, new epoch): nothing acknowledged carries over."""
        self.acked.clear()
        self.platform_seq = -1
        self.resend_all("new outbox")

    def from_memory(self, fields: dict[str, Any], exc: Exception) -> None:
        """The disk refused an event: give it a seq (recorded in the high-water mark before use)
        and keep it in memory, sent with the next fill, until the disk takes it."""
        seq = self.outbox.reserve_seq()
        payload, prio = self.outbox.event_payload(fields, seq)
        self.memory[seq] = (Outgoing(seq, "event", prio, payload), self._now_ms())
        log.error(
            "event %s not stored (%s): sent from memory as seq %s, stored when the disk takes it",
            fields.get("kind"),
            exc,
            seq,
        )

    def store_memory(self) -> None:
        """Store events that were sent from memory, now that the disk may take them."""
        for seq, (m, created) in list(self.memory.items()):
            self.outbox.store_sent(seq, m.priority, m.payload, created)
            del self.memory[seq]
            self.memory_sent.discard(seq)
            log.info("event seq %s sent from memory is now stored", seq)
