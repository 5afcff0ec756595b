"""Retry policy as data: the one description of how hard the client tries before it gives up.

Only `extract.api.client` acts on it, so no request is ever retried at two layers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from extract.errors import InvalidBodyError


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, for how long, and how long to wait between them (all times in seconds).

    `deadline` bounds one logical request's own backoff from its first attempt: no backoff wait is scheduled
    that would end after it. A wait the server asked for (Retry-After, at most `retry_after_max`) is obeyed
    even past it; `max_attempts` bounds how many such waits there are. `attempt_deadline` bounds one attempt from sending to the last body byte, so
    a body trickling in never trips the read timeout yet still ends (a transient failure, retried).
    `retry_after_max` caps a server's Retry-After, both this client's wait and the pause it shares through
    the request budget. `jitter` is the largest random amount added to each exponential backoff.
    """

    max_attempts: int = 8
    deadline: float = 600.0
    attempt_deadline: float = 300.0
    retry_after_max: float = 900.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    # Transport errors cover connect errors, read timeouts and connections closed mid-body;
    # InvalidBodyError covers bodies that arrived truncated or garbled.
    retry_exceptions: tuple[type[BaseException], ...] = (httpx.TransportError, InvalidBodyError)

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (1 for the second attempt) when the server gave no Retry-After."""
        exponential = self.backoff_initial * 2.0 ** (retry - 1)
        return min(self.backoff_max, exponential + random.uniform(0.0, self.jitter))


DEFAULT_RETRY_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Limits:
    """How much one answer and one window may hold before the server is deemed broken.

    Sizes are per response: `max_wire_bytes` as received (compressed), `max_body_bytes` once gzip or
    deflate is undone; a 100,000-sample page is about 10-15 MB of JSON. Pages are per window: after
    `max_empty_pages` pages in a row with no sample and a cursor for more, or more pages than the window can
    hold at `max_samples_per_second` samples per second of its length (every point together, e.g. 10,000
    points sampled every second), the window fails and the next run retries it.
    """

    max_wire_bytes: int = 256 * 2**20
    max_body_bytes: int = 256 * 2**20
    max_empty_pages: int = 3
    max_samples_per_second: float = 10_000.0

    def max_pages(self, seconds: float, page_size: int) -> int:
        """The most pages a window of `seconds` may take at `page_size` samples a page (a few spare)."""
        return math.ceil(max(seconds, 0.0) * self.max_samples_per_second / page_size) + 10


DEFAULT_LIMITS = Limits()


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a Retry-After header: delay-seconds or an HTTP date.

    Fractional seconds are accepted (some servers and our simulator send them). A date in the past means
    no wait. Anything unparseable gives None, so the caller falls back to its own backoff.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
