"""Configuration of one simulator instance: what it serves and which faults it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Shape = Literal["real", "seed"]
TimeFormat = Literal["z", "offset", "naive", "millis", "mixed"]
SHAPES: tuple[Shape, ...] = ("real", "seed")
TIME_FORMATS: tuple[TimeFormat, ...] = ("z", "offset", "naive", "millis", "mixed")


@dataclass(frozen=True)
class Faults:
    """Deterministic failures, all off by default.

    The server numbers every request that passes authentication (1-based, across all endpoints), so a
    test can name exactly which requests fail. At most one transport fault applies to a request, picked
    in this order: `rate_limit`, `status_429_every`, `status_500_every`, `drop_connection_every`,
    `truncate_every`. A request that `rate_limit` rejects still takes a number, but it does not use a slot
    of the sliding window. `drop_connection_every` and `truncate_every` cut whatever body the request would
    have received, error bodies included. `latency` delays every response (401s too). `cursor_ttl` and
    `bad_value_fraction` act on content rather than on request numbers.
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

    def __post_init__(self) -> None:
        for name in ("status_429_every", "status_500_every", "drop_connection_every", "truncate_every"):
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


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator serves. `interval=None` mixes 60, 300 and 900 s points; an int fixes it."""

    sites: tuple[str, ...] = ("demo-site",)
    points: int = 50
    interval: int | None = None
    shape: Shape = "real"
    api_key: str = "demo"
    configured_fraction: float = 0.8
    time_format: TimeFormat = "z"
    faults: Faults = field(default_factory=Faults)
    request_log: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not self.sites or any(not site for site in self.sites):
            raise ValueError("sites must name at least one site, and no name may be empty")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("site names must be unique")
        if self.points < 1:
            raise ValueError("points must be at least 1")
        if self.interval is not None and self.interval < 1:
            raise ValueError("interval must be a positive number of seconds (or None to mix intervals)")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.time_format not in TIME_FORMATS:
            raise ValueError(f"time_format must be one of {', '.join(TIME_FORMATS)}")
        if not 0.0 <= self.configured_fraction <= 1.0:
            raise ValueError("configured_fraction must be between 0 and 1")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
