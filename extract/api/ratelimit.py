"""Client-side rate limiting: one pacing rule, held in-process (`RateLimiter`) or across processes
(`extract.api.budget.SharedBudget`).

Hand-written rather than pyrate-limiter: we need exactly one blocking, thread-safe rule with a safety margin
and a shared pause, and pyrate-limiter's blocking behaviour and bucket API have changed across its major
versions; the rule below is a few lines we can reason about completely.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

from extract import cancel
from extract.errors import ConfigError

log = logging.getLogger(__name__)

# The server stamps a request later than we take its slot (connection setup, TLS, queueing), so two
# requests a full period apart on our clock can look closer together on the server's. Each slot is
# therefore re-stamped when its response arrives (`settle`: the server cannot have stamped it later), and
# this margin covers what is left (clock rates, requests that never settle) at most 2% of the throughput.
_MARGIN_FRACTION = 0.02
_MARGIN_MAX = 1.0
# Waits at least this long are said (once each): shorter ones are the ordinary pace of requests.
SAY_WAITS_FROM = 10.0


class Rate:
    """At most `capacity` requests in any `period` (+ a small margin) seconds, evenly spaced.

    Two rules, both needed: consecutive requests are at least `spacing` apart, so no window of any length
    holds more than its share (a server allowing 10 per 10 s accepts a budget of 60 per minute); and no
    `window` holds more than `capacity` requests counted from when their answers arrived, so slow answers
    do not let requests bunch up on the server's clock. Times are seconds on the caller's clock.
    """

    def __init__(self, capacity: int, period: float, margin: float | None = None) -> None:
        if capacity < 1 or period <= 0:
            raise ConfigError(
                f"rate limit of {capacity} requests per {period:g} s is not usable: allow at least one request per period"
            )
        self.capacity, self.period = capacity, period
        self.margin = min(_MARGIN_MAX, period * _MARGIN_FRACTION) if margin is None else margin
        self.window = period + self.margin
        self.spacing = self.window / capacity

    @classmethod
    def per_minute(cls, requests_per_minute: float, period: float = 60.0) -> Rate:
        """`requests_per_minute * period / 60` per `period`, rounded down so never faster than asked (the
        epsilon keeps e.g. 400/min over 3 s at 20, not 19.999...)."""
        return cls(math.floor(requests_per_minute * period / 60.0 + 1e-9), period)

    def __repr__(self) -> str:
        return f"{self.capacity} per {self.period:g} s"

    def wait(self, now: float, *, sent: int, oldest: float | None, last: float | None) -> float:
        """Seconds until the next request may go (0: now), given the `sent` requests still in the window
        (`oldest` the earliest of their stamps) and when the `last` one was granted. Never more than a
        window, even if a clock went back."""
        pace = 0.0 if last is None else last + self.spacing - now
        full = 0.0 if sent < self.capacity or oldest is None else oldest + self.window - now
        return min(self.window, max(0.0, pace, full))

    def why(self, paced: float, delay: float) -> str:
        """Why a wait of `delay` seconds, of which `paced` for this rate, is needed (for `Announcer`)."""
        if delay > paced:
            return "the API answered 429 and asked (Retry-After) that this key pause"
        return f"the request budget allows {self} for this key"


class Announcer:
    """Says each long wait once: a run that holds off for minutes says so rather than look hung."""

    def __init__(self) -> None:
        self._said = -math.inf

    def wait(self, until: float, seconds: float, why: str) -> None:
        """`why` is the reason, e.g. "a 429's Retry-After"; `until` identifies the wait (said once)."""
        if seconds >= SAY_WAITS_FROM and abs(until - self._said) > 1.0:
            self._said = until
            log.warning("waiting %.0f s before the next API request: %s", seconds, why)


class RateLimiter:
    """`Rate` for every thread of this process."""

    def __init__(self, capacity: int, period: float, *, margin: float | None = None) -> None:
        self.rate = Rate(capacity, period, margin)
        self.capacity, self.period, self.margin = capacity, period, self.rate.margin
        # slot token -> when it was taken, or when its response arrived once settled
        self._sent: dict[int, float] = {}
        self._tokens = 0
        self._last: float | None = None
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._announcer = Announcer()

    def __repr__(self) -> str:
        return f"RateLimiter(capacity={self.capacity}, period={self.period:g}, margin={self.margin:g})"

    def pause(self, seconds: float) -> None:
        """The server asked us to wait: no thread sends for `seconds`."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def acquire(self, max_pause: float = math.inf) -> int:
        """Block the calling thread until a request may be sent, count it as sent now, return its slot.
        A pause is cut to at most `max_pause` seconds from now (`RetryPolicy.retry_after_max`)."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._paused_until = min(self._paused_until, now + max_pause)
                # Settling reorders the stamps, so expire by scanning: the window holds `capacity` at most.
                for token in [token for token, at in self._sent.items() if at <= now - self.rate.window]:
                    del self._sent[token]
                oldest = min(self._sent.values(), default=None)
                paced = self.rate.wait(now, sent=len(self._sent), oldest=oldest, last=self._last)
                delay = max(self._paused_until - now, paced)
                if delay <= 0:
                    self._tokens += 1
                    self._sent[self._tokens] = self._last = now
                    return self._tokens
                self._announcer.wait(now + delay, delay, self.rate.why(paced, delay))
            # Sleep without the lock so other threads can still check; whoever wakes first takes the slot.
            cancel.sleep(delay)

    def settle(self, slot: int | None) -> None:
        """The response to `slot`'s request arrived: count the slot from now, the latest the server saw it."""
        with self._lock:
            if slot in self._sent:
                self._sent[slot] = max(self._sent[slot], time.monotonic())


class Limiter(Protocol):
    """What the client needs from a rate limit: in-process (`RateLimiter`) or shared (`SharedBudget`)."""

    def acquire(self, max_pause: float = math.inf) -> int | None:
        """Block until a request may go; honour a (server's) pause for at most `max_pause` s from now."""
        ...

    def settle(self, slot: int | None) -> None: ...

    def pause(self, seconds: float) -> None:
        """No request goes for `seconds` (already capped by the caller's RetryPolicy.retry_after_max)."""
        ...


# Process-wide because the budget is the API key's, not a client's: every client of one key in this
# process (one per flow task, heal beside a run) must draw from the same limiter, and they are built apart,
# with no common owner to hand them one. Keyed by the key's identity (`extract.api.budget.key_id`), so two keys
# never share a budget, and by the rate, so a caller asking another rate gets the rate it asked for.
_SHARED: dict[tuple[str, float, float], RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_rate_limiter(key: str, requests_per_minute: float, *, period: float = 60.0) -> RateLimiter:
    """The process-wide limiter of API key `key` (its `key_id`) at this rate, enforced over windows of
    `period` seconds (`Rate.per_minute`): 100/min over 60 s sends one request every 0.61 s; 400/min over 3 s
    is 20 per 3 s, one every 0.153 s."""
    identity = (key, float(requests_per_minute), float(period))
    with _SHARED_LOCK:
        limiter = _SHARED.get(identity)
        if limiter is None:
            rate = Rate.per_minute(requests_per_minute, period)
            limiter = _SHARED[identity] = RateLimiter(rate.capacity, rate.period)
        return limiter
