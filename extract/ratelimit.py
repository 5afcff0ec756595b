"""Client-side rate limiting, shared by every thread in the process.

Hand-written rather than pyrate-limiter: we need exactly one blocking, thread-safe sliding window with a
safety margin, and pyrate-limiter's blocking behaviour and bucket API have changed across its major
versions; the window below is a few lines we can reason about completely.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from extract import cancel
from extract.errors import ConfigError

# The server stamps a request later than we take its slot (connection setup, TLS, queueing), so two
# requests a full period apart on our clock can look closer together on the server's. Each slot is
# therefore re-stamped when its response arrives (`settle`: the server cannot have stamped it later), and
# this margin covers what is left (clock rates, requests that never settle) at most 2% of the throughput.
_MARGIN_FRACTION = 0.02
_MARGIN_MAX = 1.0


class RateLimiter:
    """At most `capacity` requests in any `period` (+ a small margin) seconds: a sliding window."""

    def __init__(self, capacity: int, period: float, *, margin: float | None = None) -> None:
        if capacity < 1 or period <= 0:
            raise ConfigError(
                f"rate limit of {capacity} requests per {period:g} s is not usable: allow at least one request per period"
            )
        self.capacity = capacity
        self.period = period
        self.margin = min(_MARGIN_MAX, period * _MARGIN_FRACTION) if margin is None else margin
        # slot token -> when it was taken, or when its response arrived once settled
        self._sent: dict[int, float] = {}
        self._tokens = 0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(capacity={self.capacity}, period={self.period:g}, margin={self.margin:g})"

    def pause(self, seconds: float) -> None:
        """The server asked us to wait: no thread sends for `seconds`."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def acquire(self) -> int:
        """Block the calling thread until a request may be sent, count it as sent now, return its slot."""
        window = self.period + self.margin
        while True:
            with self._lock:
                now = time.monotonic()
                # Settling reorders the stamps, so expire by scanning: the window holds `capacity` at most.
                for token in [token for token, at in self._sent.items() if at <= now - window]:
                    del self._sent[token]
                if self._paused_until > now:
                    delay = self._paused_until - now
                elif len(self._sent) < self.capacity:
                    self._tokens += 1
                    self._sent[self._tokens] = now
                    return self._tokens
                else:
                    delay = min(self._sent.values()) + window - now
            # Sleep without the lock so other threads can still check; whoever wakes first takes the slot.
            cancel.sleep(delay)

    def settle(self, slot: int | None) -> None:
        """The response to `slot`'s request arrived: count the slot from now, the latest the server saw it."""
        with self._lock:
            if slot in self._sent:
                self._sent[slot] = max(self._sent[slot], time.monotonic())


class Limiter(Protocol):
    """What the client needs from a rate limit: in-process (`RateLimiter`) or shared (`SharedBudget`)."""

    def acquire(self) -> int | None: ...

    def settle(self, slot: int | None) -> None: ...

    def pause(self, seconds: float) -> None: ...


_SHARED: dict[tuple[float, float], RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_rate_limiter(requests_per_minute: float, *, period: float = 60.0) -> RateLimiter:
    """The process-wide limiter for this rate, enforced over windows of `period` seconds.

    The window holds `requests_per_minute * period / 60` requests (rounded down, so never faster than asked):
    100/min over 60 s lets 100 go at once, then one per freed slot; 400/min over 3 s is 20 per 3 s.
    """
    key = (float(requests_per_minute), float(period))
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            # The epsilon keeps e.g. 400/min over 3 s at 20, not 19.999...
            capacity = math.floor(requests_per_minute * period / 60.0 + 1e-9)
            limiter = _SHARED[key] = RateLimiter(capacity, period)
        return limiter
