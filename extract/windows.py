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
    """A naive datetime is taken as UTC (the docs/DESIGN.md rule for timestamps without offset)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Bounds that keep a run's plan small and its state files few; far beyond any real need.
MAX_WINDOW_HOURS = 24 * 366
MAX_WINDOWS = 100_000


def check_window_hours(hours: float) -> None:
    """ConfigError unless `hours` is a usable window length."""
    if not (math.isfinite(hours) and 0 < hours <= MAX_WINDOW_HOURS):
        raise ConfigError(
            f"window length must be more than 0 and at most {MAX_WINDOW_HOURS} hours, got {hours}"
        )


def split_windows(start: datetime, end: datetime, hours: float = 24) -> list[Window]:
    """Cut `[start, end)` into consecutive windows of `hours`, counted from `start`; the last may be shorter."""
    check_window_hours(hours)
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


DEFAULT_LOOKBACK_DAYS = 7
MAX_LOOKBACK_DAYS = 3660


def check_lookback_days(days: float) -> None:
    """ConfigError unless `days` is a usable lookback."""
    if not (math.isfinite(days) and 0 < days <= MAX_LOOKBACK_DAYS):
        raise ConfigError(f"--lookback-days must be more than 0 and at most {MAX_LOOKBACK_DAYS}, got {days}")


def lookback_range(as_of: datetime, lookback_days: float, window_hours: float = 24) -> Window | None:
    """The range a run owes at `as_of`: from UTC midnight `lookback_days` before as-of's day, up to the end
    of the last window (of `window_hours`, counted from that midnight) that is closed at as-of. None when
    no window has closed yet. The run then skips the windows already complete, so a run that comes three
    days late lands the three missed days and nothing it already has."""
    check_lookback_days(lookback_days)
    check_window_hours(window_hours)
    moment = as_utc(as_of)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=lookback_days)
    step = timedelta(hours=window_hours)
    closed = math.floor((moment - start) / step)
    return Window(start, start + closed * step) if closed > 0 else None


def live_windows(as_of: datetime, window_hours: float = 24) -> list[Window]:
    """The window (on the grid of `window_hours` from UTC midnight) that holds `as_of`, and the one before
    it, which a live run may still have to finish."""
    check_window_hours(window_hours)
    moment = as_utc(as_of)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(hours=window_hours)
    current = midnight + math.floor((moment - midnight) / step) * step
    try:
        return [Window(current - step, current), Window(current, current + step)]
    except OverflowError:
        raise ConfigError(
            f"as-of {moment.isoformat()}: its windows reach outside the years 1 to 9999; give a later or earlier --as-of"
        ) from None


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    as_of: datetime,
    *,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    window_hours: float = 24,
) -> Window | None:
    """The range a run covers. Neither bound: `lookback_range` (None when nothing has closed yet). Only
    `start`: one day from it. Only `end`: the day before it. Raises ConfigError when start is not before
    end, or not before as-of (there is no data from the future to extract)."""
    try:
        window = _range(start, end) if start or end else lookback_range(as_of, lookback_days, window_hours)
    except OverflowError:
        raise ConfigError("the range reaches outside the years 1 to 9999: give a start before now") from None
    if window is not None and window.start >= as_utc(as_of):
        raise ConfigError(
            f"start {window.start.isoformat()} is not in the past: the API has no data for it yet; give an earlier --start"
        )
    return window


def _range(start: datetime | None, end: datetime | None) -> Window:
    if start is None:
        assert end is not None
        return Window(as_utc(end) - timedelta(days=1), as_utc(end))
    if end is None:
        return Window(as_utc(start), as_utc(start) + timedelta(days=1))
    if as_utc(start) >= as_utc(end):
        raise ConfigError(f"start {as_utc(start).isoformat()} must be before end {as_utc(end).isoformat()}")
    return Window(as_utc(start), as_utc(end))
