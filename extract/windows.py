"""Half-open UTC time windows `[start, end)`: the unit of extraction, checkpointing and file naming."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from extract.errors import ConfigError


@dataclass(frozen=True, order=True)
class Window:
    """A half-open UTC interval `[start, end)`; a sample exactly at `end` belongs to the next window."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError("window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ConfigError(
                f"empty window: start {self.start.isoformat()} is not before end {self.end.isoformat()}"
            )

    @property
    def key(self) -> str:
        """Stable, filesystem-safe name, e.g. `20240101T000000Z_20240102T000000Z`; used in file and state names."""
        return f"{compact_time(self.start)}_{compact_time(self.end)}"


def compact_time(moment: datetime) -> str:
    """`20240101T000000Z` (with `.ffffff` only when there are microseconds): a file-name-safe UTC time."""
    utc = as_utc(moment)
    # Microseconds only when present, so whole-second windows keep short names.
    return utc.strftime("%Y%m%dT%H%M%S") + (f".{utc.microsecond:06d}" if utc.microsecond else "") + "Z"


def parse_compact_time(text: str) -> datetime:
    """The inverse of `compact_time`."""
    layout = "%Y%m%dT%H%M%S.%fZ" if "." in text else "%Y%m%dT%H%M%SZ"
    return datetime.strptime(text, layout).replace(tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken as UTC (the DESIGN.md rule for timestamps without offset)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Bounds that keep a run's plan small and its state files few; far beyond any real need.
MAX_WINDOW_HOURS = 24 * 366
MAX_WINDOWS = 100_000


def split_windows(start: datetime, end: datetime, hours: float = 24) -> list[Window]:
    """Cut `[start, end)` into consecutive windows of `hours`, counted from `start`; the last may be shorter."""
    if not (math.isfinite(hours) and 0 < hours <= MAX_WINDOW_HOURS):
        raise ConfigError(
            f"window length must be more than 0 and at most {MAX_WINDOW_HOURS} hours, got {hours}"
        )
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ConfigError(f"empty range: start {start.isoformat()} is not before end {end.isoformat()}")
    step = timedelta(hours=hours)
    if (end - start) / step > MAX_WINDOWS:
        raise ConfigError(
            f"{(end - start) / step:,.0f} windows of {hours:g} h: at most {MAX_WINDOWS:,}; use longer --window-hours"
        )
    return list(_cut(start, end, step))


def _cut(start: datetime, end: datetime, step: timedelta) -> Iterator[Window]:
    while start < end:
        stop = min(start + step, end)
        yield Window(start, stop)
        start = stop


def previous_utc_day(now: datetime) -> Window:
    """The full UTC day before `now`: the default range of `ace-etl run`."""
    today = as_utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(today - timedelta(days=1), today)


def resolve_range(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    """The range a run covers. Neither bound: the previous full UTC day. Only `start`: one day from it.
    Only `end`: the day before it. Raises ConfigError when start is not before end, or not before now
    (there is no data from the future to extract)."""
    try:
        window = _range(start, end, now)
    except OverflowError:
        raise ConfigError("the range reaches past the year 9999: give a start before now") from None
    if window.start >= as_utc(now):
        raise ConfigError(
            f"start {window.start.isoformat()} is not in the past: the API has no data for it yet; give an earlier --start"
        )
    return window


def _range(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    if start is None and end is None:
        return previous_utc_day(now)
    if start is None:
        assert end is not None
        return Window(as_utc(end) - timedelta(days=1), as_utc(end))
    if end is None:
        return Window(as_utc(start), as_utc(start) + timedelta(days=1))
    if as_utc(start) >= as_utc(end):
        raise ConfigError(f"start {as_utc(start).isoformat()} must be before end {as_utc(end).isoformat()}")
    return Window(as_utc(start), as_utc(end))
