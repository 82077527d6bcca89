"""Listings a console polls are audited once per answer, not once per poll.

``docs/security.md`` promises that the audit log records who listed which alerts (and residents).
A console polling ``GET /alerts`` every few seconds gets the same answer again and again: writing
it each time made every read a write (a row per poll, ~175 rows/s at 50 consoles) for no new fact.
So a listing is written when its answer differs from the last one written for the same user and
route, or when :data:`REPEAT_S` has passed since: who saw which alerts stays in the log, how often
they looked does not. The memory is per process (each ``--workers`` process and replica writes its
own first sighting) and bounded.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from starlette.requests import Request

REPEAT_S = 600.0  # the same answer is written again after this long (who was still looking)
MAX_KEYS = 20_000  # (user, route) pairs remembered; the oldest are forgotten first


class Listings:
    """The last audited answer per (user, route): pure memory, the clock injectable."""

    def __init__(
        self,
        *,
        repeat_s: float = REPEAT_S,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repeat_s, self.max_keys, self.clock = repeat_s, max_keys, clock
        self._last: OrderedDict[tuple[int, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, user_id: int, query: str, ids: Iterable[object]) -> bool:
        """Whether this answer to ``query`` (route and parameters) must be written; if so, it is
        remembered as written."""
        digest = hashlib.blake2b(repr(list(ids)).encode(), digest_size=16).digest()
        now, key = self.clock(), (user_id, query)
        with self._lock:
            last = self._last.get(key)
            if last is not None and last[0] == digest and now - last[1] < self.repeat_s:
                self._last.move_to_end(key)
                return False
            self._last[key] = (digest, now)
            self._last.move_to_end(key)
            while len(self._last) > self.max_keys:
                self._last.popitem(last=False)
            return True


def listings(request: Request) -> Listings:
    """This app's memory of audited listings (one per app: tests build many apps in one process)."""
    found = getattr(request.app.state, "audited_listings", None)
    if found is None:
        found = request.app.state.audited_listings = Listings()
    return found  # type: ignore[no-any-return]
