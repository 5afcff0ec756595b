"""Fault injection: which deterministic failure, if any, hits a numbered request."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal, get_args

# Answers of a shape the ACE IoT API never sends (see `Faults.odd_shape`).
OddShape = Literal[
    "points_items_text",
    "points_pages_text",
    "points_pages_huge",
    "weather_data_numbers",
    "weather_value_huge",
]
ODD_SHAPES: tuple[OddShape, ...] = get_args(OddShape)
LostCursor = Literal["null", "empty"]


@dataclass(frozen=True)
class Faults:
    """Deterministic failures, all off by default.

    The server numbers every request that passes authentication (1-based, across all endpoints), so a
    test can name exactly which requests fail. At most one transport fault applies to a request, picked
    in this order: `rate_limit`, `status_429_every`, `status_500_every`, `drop_connection_every`,
    `truncate_every`, `trickle_every`, `gzip_bomb_every`, `endless_every`. A request that `rate_limit` rejects
    still takes a number, but it does not use a slot of the sliding window. `drop_connection_every` and
    `truncate_every` cut whatever body the request would have received, error bodies included;
    `trickle_every` sends that body one byte every `trickle_delay` seconds. `gzip_bomb_every` answers 200
    with a gzip body inflating to `gzip_bomb_bytes` zeros; `endless_every` a chunked timeseries page that
    never ends (until the client hangs up or the server stops). `latency` delays every response (401s too).

    Content faults: `cursor_ttl`, `bad_value_fraction`; `lost_cursor` ("null" or "empty") serves every
    timeseries page that has more with `has_more: true` and that next_cursor; `empty_pages` serves every
    timeseries page with no sample, `has_more: true` and a fresh cursor, forever; `repeat_across_pages`
    starts every timeseries page but the first with the last sample of the page before it (as an
    offset-paged server does when a sample arrives between two requests); `odd_shape` answers
    configured_points or weather in a shape the API never sends: items as strings, `"pages": "x"`, a
    400-digit page count, `{"data": [1, 2]}`, or a 400-digit temperature.

    Durations are in seconds. A rate-limited 429 carries Retry-After = the time until a slot frees (to the
    millisecond); `retry_after_http_date` turns either kind of Retry-After into an HTTP date.
    """

    status_429_every: int = 0
    retry_after: float = 1.0
    retry_after_http_date: bool = False
    status_500_every: int = 0
    drop_connection_every: int = 0
    truncate_every: int = 0
    latency: float = 0.0
    cursor_ttl: float | None = None
    bad_value_fraction: float = 0.0
    rate_limit: int = 0
    rate_period: float = 60.0
    trickle_every: int = 0
    trickle_delay: float = 1.0
    gzip_bomb_every: int = 0
    gzip_bomb_bytes: int = 2**30
    endless_every: int = 0
    lost_cursor: LostCursor | None = None
    empty_pages: bool = False
    repeat_across_pages: bool = False
    odd_shape: OddShape | None = None

    def __post_init__(self) -> None:
        for name in _EVERY:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or a positive request count")
        if self.rate_limit < 0:
            raise ValueError("rate_limit must be 0 (off) or a positive number of requests")
        if self.retry_after < 0 or self.latency < 0:
            raise ValueError("retry_after and latency must not be negative")
        if self.rate_period <= 0:
            raise ValueError("rate_period must be positive")
        if self.cursor_ttl is not None and self.cursor_ttl <= 0:
            raise ValueError("cursor_ttl must be positive (or None: cursors never expire)")
        if not 0.0 <= self.bad_value_fraction <= 1.0:
            raise ValueError("bad_value_fraction must be between 0 and 1")
        if self.trickle_delay <= 0 or self.gzip_bomb_bytes < 1:
            raise ValueError("trickle_delay and gzip_bomb_bytes must be positive")
        if self.lost_cursor not in (None, *get_args(LostCursor)):
            raise ValueError(f"lost_cursor must be one of {', '.join(get_args(LostCursor))} (or None)")
        if self.odd_shape not in (None, *ODD_SHAPES):
            raise ValueError(f"odd_shape must be one of {', '.join(ODD_SHAPES)} (or None)")


# The transport faults that hit every Nth request, in the order they are picked.
_EVERY = (
    "status_429_every",
    "status_500_every",
    "drop_connection_every",
    "truncate_every",
    "trickle_every",
    "gzip_bomb_every",
    "endless_every",
)


@dataclass(frozen=True)
class Verdict:
    """The fate of one authenticated request: its number and the transport fault that hits it, if any."""

    number: int
    fault: str | None = None
    retry_after: float | None = None


class FaultPlan:
    """Numbers requests and applies `Faults` in its documented order. Thread-safe."""

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._lock = threading.Lock()
        self._count = 0
        self._admitted: deque[float] = deque()

    def admit(self, now: float) -> Verdict:
        faults = self._faults
        with self._lock:
            self._count += 1
            number = self._count
            if faults.rate_limit:
                while self._admitted and self._admitted[0] <= now - faults.rate_period:
                    self._admitted.popleft()
                if len(self._admitted) >= faults.rate_limit:
                    return Verdict(number, "rate_limit", self._admitted[0] + faults.rate_period - now)
                self._admitted.append(now)
        for name in _EVERY:
            every, fault = getattr(faults, name), name.removesuffix("_every")
            if every and number % every == 0:
                return Verdict(number, fault, faults.retry_after if fault == "status_429" else None)
        return Verdict(number)
