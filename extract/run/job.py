"""The job: a run's settings and its plan, built once from the command line or the flow parameters, then
passed whole to the one pipeline (`ace_etl.pipeline.run_job`) and down to each window's extraction.

Every default of a run is defined here once. Adding a setting touches `Job`, `Job.plan`, the command's or
the flow's option that feeds it, and the one place that uses it. Light on purpose (no Polars, no HTTP):
the CLI imports it for its option defaults and `ace-etl --help` stays fast.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from extract.api import MAX_PAGE_SIZE  # the default: fewest requests per window
from extract.errors import ConfigError
from extract.windows import (
    DEFAULT_LOOKBACK_DAYS,
    Window,
    as_utc,
    check_lookback_days,
    check_window_hours,
    compact_time,
    live_windows,
    resolve_range,
    split_windows,
)

WINDOW_HOURS = 24.0
REQUESTS_PER_MINUTE = 100.0
"""The key's request budget when none is given."""
MAX_WORKERS = 4
"""Threads of one CLI run: requests are I/O bound and share one rate limit."""

# Points to keep: explicit names/patterns, a points file, or None for the API's enabled configured points.
PointsSource = Sequence[str] | Path | None


class Mode(StrEnum):
    """What the pipeline does with the job's range."""

    RUN = "run"
    """Extract every window of the range (a daily run, a backfill), build; heal the gaps and build again
    when the job heals."""
    LIVE = "live"
    """Keep the open window (and the one before it) current up to as-of; build; no heal, no compaction."""
    HEAL = "heal"
    """Only re-fetch the ranges of the warehouse's gaps in the range, then build if that changed anything."""


def new_run_id(now: datetime | None = None) -> str:
    """`20240102T030405Z-1a2b3c4d`: sortable by start time, unique across concurrent runs."""
    return f"{compact_time((now or datetime.now(UTC)).replace(microsecond=0))}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Job:
    """One run of the pipeline. `span` None: nothing to do yet (no window has closed by as-of)."""

    sites: tuple[str, ...]
    span: Window | None
    data_dir: Path
    """A folder, or an s3://bucket/prefix (`extract.lake.storage.normalize_location` reads both from a Path)."""
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The instant the run is for: windows not ended then are landed up to it, not complete."""
    mode: Mode = Mode.RUN
    points: PointsSource = None
    page_size: int = MAX_PAGE_SIZE
    window_hours: float = WINDOW_HOURS
    requests_per_minute: float = REQUESTS_PER_MINUTE
    max_workers: int = MAX_WORKERS
    force: bool = False
    """Run: re-extract complete windows. Heal: check every gap now, even those checked recently."""
    transform: bool = True
    heal: bool = False
    """Run: after the build, re-fetch the ranges of the gaps in the range, then build again (the daily
    deployment does; `ace-etl run` with --heal)."""
    compact: bool = False
    """Run: after extracting, compact the sites' closed days holding many small files."""
    limits_file: Path | None = None
    """The user's limits file for the build (else ACE_LIMITS_FILE, else the bundled limits alone)."""
    time_zones: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Per-site time-zone overrides (a sites file's), applied when landing sites and when building."""
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self) -> None:
        # `--site a --site a` is one site, not two runs racing.
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "sites", tuple(dict.fromkeys(self.sites)))
        if not self.sites or any(not s.strip() for s in self.sites):
            raise ConfigError(
                "site names must not be blank: give at least one --site (sites) by its FlightDeck name"
            )
        if isinstance(self.points, Sequence) and not isinstance(self.points, str):
            set_(self, "points", tuple(self.points))
        set_(self, "data_dir", Path(self.data_dir))  # a flow parameter's text, too
        if self.as_of.tzinfo is None:
            raise ConfigError(f"as-of {self.as_of.isoformat()} has no time zone: give it in UTC (e.g. ...Z)")
        set_(self, "as_of", as_utc(self.as_of))
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page size must be from 1 to {MAX_PAGE_SIZE:,} samples, got {self.page_size}")
        check_window_hours(self.window_hours)
        if not (math.isfinite(self.requests_per_minute) and self.requests_per_minute >= 1):
            raise ConfigError(f"requests per minute must be at least 1, got {self.requests_per_minute}")
        if self.max_workers < 1:
            raise ConfigError(f"max workers must be at least 1, got {self.max_workers}")

    @property
    def live(self) -> bool:
        return self.mode is Mode.LIVE

    @property
    def windows(self) -> list[Window]:
        """The span cut into windows of `window_hours` (none when there is nothing to do)."""
        if self.span is None:
            return []
        return split_windows(self.span.start, self.span.end, self.window_hours)

    @classmethod
    def plan(
        cls,
        *,
        sites: Sequence[str],
        data_dir: Path,
        start: datetime | None = None,
        end: datetime | None = None,
        as_of: datetime | None = None,
        lookback_days: float = DEFAULT_LOOKBACK_DAYS,
        mode: Mode = Mode.RUN,
        window_hours: float = WINDOW_HOURS,
        run_id: str | None = None,
        **settings: object,
    ) -> Job:
        """The job of a command or a flow run: its range from `start`/`end`, or else from the lookback before
        `as_of` (default now), as `mode` reads them; `settings` are the other fields. ConfigError (one line)
        for values no run can use."""
        moment = as_utc(as_of) if as_of is not None else datetime.now(UTC)
        check_lookback_days(lookback_days)
        span: Window | None
        if mode is Mode.LIVE:
            if start is not None or end is not None:
                raise ConfigError("live runs cover the open window at as-of: give no start or end")
            previous, current = live_windows(moment, window_hours)
            span = Window(previous.start, current.end)
        elif mode is Mode.HEAL and start is None and end is None:
            # Up to as-of itself, not the last closed window: gaps of the open window are fetched too
            # (never recorded as checked while it is open).
            first = moment.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=lookback_days)
            span = resolve_range(first, moment, moment)
        else:
            span = resolve_range(start, end, moment, lookback_days=lookback_days, window_hours=window_hours)
        return cls(
            sites=tuple(sites),
            span=span,
            data_dir=data_dir,
            as_of=moment,
            mode=mode,
            window_hours=window_hours,
            run_id=run_id or new_run_id(),
            **settings,  # type: ignore[arg-type]
        )
