"""Extract orchestration: sites x windows -> pages -> landed Parquet, checkpointed, with one metrics row each.

The units of work are `land_points` (or `recent_points`), `extract_window` and `extract_weather`; they
raise the typed errors of `extract.errors`. `extract.scheduler.schedule` decides what runs when, for the CLI
(`run_extract`: the units on threads of this process) and the flows (the units as Prefect tasks) alike;
it collects failures per site and window, so one bad site does not stop the others, and
`RunResult.raise_if_failed` re-raises the first.

Per window (`extract.attempt`): take the site's lease, plan against the checkpoints, stage pages with a
checkpoint after each, commit. Any sequence of crashes, resumes, concurrent and forced runs lands exactly
what one clean run would.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from extract import lake
from extract.attempt import OnPage, covered, run_window
from extract.checkpoint import Checkpoint, load_checkpoints
from extract.client import AceClient, RequestStats
from extract.errors import ConfigError, NoPointsError
from extract.landing import WEATHER, points_path
from extract.lease import DEFAULT_WAIT_S, SiteLease
from extract.live import run_live
from extract.metrics import Status, WindowResult, write_run_row
from extract.pagination import MAX_PAGE_SIZE
from extract.points import PointSelector, configured_points_frame, enabled_point_names, read_points_file
from extract.quarantine import quarantine
from extract.redact import one_line
from extract.scheduler import Failure, Plan, RunResult, WeatherResult, schedule
from extract.sites import land_site
from extract.storage import Storage
from extract.weather import is_series, parse_weather
from extract.windows import Window, compact_time, split_windows

__all__ = ["Failure", "RunResult", "WeatherResult"]  # re-exported: the results of `run_extract`

log = logging.getLogger(__name__)

# Points to keep: explicit names/patterns, a points file, or None for the API's enabled configured points.
PointsSource = Sequence[str] | Path | None


def new_run_id(now: datetime | None = None) -> str:
    """`20240102T030405Z-1a2b3c4d`: sortable by start time, unique across concurrent runs."""
    return f"{compact_time((now or _now()).replace(microsecond=0))}-{uuid.uuid4().hex[:8]}"


def land_points(
    client: AceClient, storage: Storage, site: str, time_zones: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Fetch the site's configured points and land them, replacing the previous list when it changed, and
    land the site's record beside them (`extract.sites.land_site`, with the `time_zones` overrides; it never
    fails the points); returns the items. An unchanged list keeps its file (and `collected_at`), so a re-run
    that finds nothing new leaves the warehouse exactly as it was. A damaged list is set aside and replaced."""
    items = client.configured_points(site)
    now = _now()
    frame = configured_points_frame(items, site=site, collected_at=now)
    path = points_path(site)
    unchanged = False
    if storage.exists(path):
        try:
            landed = pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
            unchanged = landed.drop("collected_at").equals(frame.drop("collected_at"))
        except Exception as exc:  # polars raises several types for a damaged file
            quarantine(storage, path, f"unreadable points file: {one_line(exc)}")
    if not unchanged:
        storage.write_parquet_atomic(path, frame)
    land_site(client, storage, site, time_zones or {}, now)
    return items


POINTS_FRESH_FOR = 3600.0


def recent_points(
    client: AceClient, storage: Storage, site: str, time_zones: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The landed points list when fetched within the last hour, else a fresh one (`land_points`)."""
    path = points_path(site)
    try:
        landed = pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
    except Exception:  # absent or damaged: fetch it
        return land_points(client, storage, site, time_zones)
    newest = landed.get_column("collected_at").max()
    if not isinstance(newest, datetime) or (_now() - newest).total_seconds() > POINTS_FRESH_FOR:
        return land_points(client, storage, site, time_zones)
    return [
        {
            "name": r["point_name"],
            "collect_enabled": r["collect_enabled"],
            "collect_interval": r["collect_interval"],
        }
        for r in landed.iter_rows(named=True)
    ]


def resolve_selector(
    points: PointsSource, configured: Sequence[Mapping[str, Any]] = (), *, site: str = ""
) -> PointSelector:
    """The selection for a site: from `points` (names/patterns, `a,b,c` text, or a file), or, when None, the
    site's configured points with `collect_enabled`, as exact names (never patterns). A selection that cannot keep anything is an error:
    ConfigError when given points select nothing (or none of the site's configured points), NoPointsError
    when the site has no enabled point."""
    if points is None:
        names = enabled_point_names(configured)
        if not names:
            raise NoPointsError(
                f"site {site!r} has no configured points with collect_enabled ({len(configured)} configured): "
                "enable points in FlightDeck, or name them with --points"
            )
        return PointSelector.exact(names)
    if isinstance(points, Path):
        selector = PointSelector.from_list(read_points_file(points))
    else:
        selector = PointSelector.from_list(points.split(",") if isinstance(points, str) else points)
    if not selector:
        raise ConfigError(
            f"no points given in {points!r}: name points or patterns, or omit them to use the API's"
        )
    known = [str(item["name"]) for item in configured if item.get("name")]
    if known and not selector.names and not selector.among(known):
        sample = ", ".join(known[:3])
        raise ConfigError(
            f"the points selection matches none of site {site!r}'s {len(known)} configured points (e.g. {sample}): "
            "check the names and patterns"
        )
    return selector


def extract_window(
    client: AceClient,
    storage: Storage,
    site: str,
    window: Window,
    selector: PointSelector,
    *,
    run_id: str,
    page_size: int = MAX_PAGE_SIZE,
    force: bool = False,
    on_page: OnPage | None = None,
    configured: Sequence[str] = (),
    lease_wait_s: float = DEFAULT_WAIT_S,
    as_of: datetime | None = None,
    live: bool = False,
) -> WindowResult:
    """Land one (site, window) under the site's lease: resume from its checkpoint, skip it when complete
    for the selection (unless `force`), restart it when its cursor is rejected. A window that has not
    ended at `as_of` (the instant the run is for, default now) is landed up to as-of and kept `live`, not
    complete (`extract.live`); `live` runs also finish the live window before it. Writes the window's
    metrics row whatever happens, unless the window starts at or after as-of (it is not fetched then); on
    failure the row has status `failed` and the error is re-raised with the row as its `window_result` (the
    scheduler reports it)."""
    result, error = _window(
        client, storage, site, window, selector, run_id, page_size, force, on_page, configured, lease_wait_s,
        as_of or _now(), live,
    )  # fmt: skip
    if error is not None:
        error.window_result = result  # type: ignore[attr-defined]
        raise error
    return result


def _window(
    client: AceClient,
    storage: Storage,
    site: str,
    window: Window,
    selector: PointSelector,
    run_id: str,
    page_size: int,
    force: bool,
    on_page: OnPage | None,
    configured: Sequence[str],
    lease_wait_s: float,
    as_of: datetime,
    live: bool,
) -> tuple[WindowResult, Exception | None]:
    started, clock, stats = _now(), time.monotonic(), RequestStats()

    def result(status: Status, progress: Checkpoint | None, error: str | None = None) -> WindowResult:
        return _record(
            storage, _window_result(run_id, site, window, status, progress, stats, started, clock, error)
        )

    if window.start >= as_of:
        # Nothing can have been uploaded for it yet: it is not fetched, so no runs row says it was. The run's
        # summary still counts it among the windows not complete.
        return _window_result(run_id, site, window, "live", None, stats, started, clock, None), None
    try:
        with SiteLease(storage, site, run_id, wait_s=lease_wait_s) as lease:
            outcome = None
            closed = window.end <= as_of
            if not (closed and force):
                # An open window is kept live; a closed one with a live checkpoint is finished by it.
                outcome = run_live(
                    client, storage, lease, window, as_of, selector,
                    page_size=page_size, stats=stats, configured=list(configured), begin=live or not closed,
                )  # fmt: skip
            if outcome is None:
                outcome = run_window(
                    client, storage, lease, window, selector, as_of=as_of,
                    page_size=page_size, force=force, stats=stats, configured=configured, on_page=on_page,
                )  # fmt: skip
            if outcome is None:
                log.warning(
                    "window %s of site %r is open at %s and other windows' checkpoints overlap it (another "
                    "window length or selection): it is fetched once it has closed",
                    window.key, site, as_of.isoformat(),
                )  # fmt: skip
                return result("live", None), None
    except Exception as exc:
        return result("failed", None, one_line(exc)), exc
    return result(outcome.status, outcome.progress), None  # type: ignore[arg-type]


def weather_due(storage: Storage, site: str, windows: Sequence[Window], *, force: bool = False) -> bool:
    """Weather belongs to the range being extracted: when every window of the site is already complete (and
    not forced) the run extracts nothing for the site, so it lands no new weather either, and a re-run
    leaves the warehouse unchanged."""
    if force:
        return True
    checkpoints = load_checkpoints(storage, site, Window(windows[0].start, windows[-1].end))
    return not all(covered(checkpoints, w) for w in windows)


def extract_weather(
    client: AceClient, storage: Storage, site: str, start: datetime, end: datetime
) -> WeatherResult:
    """Land the site's weather for `[start, end)`: the series (seed shape) or the current conditions, one
    row per call (real API), merged into the weather table in one commit: a re-run replaces the rows of the
    same times (unless they hold a newer fetch)."""
    stats = RequestStats()
    body = client.weather(site, start, end, stats=stats)
    parsed = parse_weather(body, site=site, collected_at=_now())
    frame = parsed.filter(pl.col("timestamp").is_not_null())
    lake.upsert(storage, WEATHER, site, frame, ("site_name", "timestamp"))
    version = lake.version(storage, WEATHER) if frame.height else None
    return WeatherResult(
        site,
        start,
        end,
        frame.height,
        parsed.height - frame.height,
        version,
        stats.requests,
        current_only=not is_series(body),
    )


def run_extract(
    client: AceClient,
    storage: Storage,
    sites: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    window_hours: float = 24,
    page_size: int = MAX_PAGE_SIZE,
    points: PointsSource = None,
    force: bool = False,
    max_workers: int = 4,
    on_page: OnPage | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
    run_id: str | None = None,
    lease_wait_s: float = DEFAULT_WAIT_S,
    as_of: datetime | None = None,
    live: bool = False,
    time_zones: Mapping[str, str] | None = None,
) -> RunResult:
    """Extract every site over `[start, end)`, split into windows of `window_hours`, with weather beside it,
    on a pool of threads sharing `client` (and its one rate limit). See `extract.scheduler.schedule`.
    `time_zones` overrides sites' time zones (site -> IANA name) in the sites landing.
    Windows not ended at `as_of` (default now) are landed up to it, not complete (see `extract_window`).
    Never raises for a failed site or window: see `RunResult.failures` and `raise_if_failed`."""
    windows = split_windows(start, end, window_hours)
    as_of = as_of or _now()
    run_id = run_id or new_run_id()
    if points is not None:
        resolve_selector(points)  # a selection that keeps nothing fails before any request
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="extract") as pool:
        runner = ThreadRunner(
            pool, client, storage,
            run_id=run_id, page_size=page_size, force=force, on_page=on_page, lease_wait_s=lease_wait_s,
            as_of=as_of, live=live, time_zones=time_zones or {},
        )  # fmt: skip
        plan = extraction_plan(storage, sites, windows, run_id, points, force=force, live=live)
        return schedule(plan, runner, on_window=on_window)


def extraction_plan(
    storage: Storage,
    sites: Sequence[str],
    windows: Sequence[Window],
    run_id: str,
    points: PointsSource,
    *,
    force: bool,
    live: bool,
) -> Plan:
    """The scheduler's plan, for the CLI and the flows alike (live runs land no weather)."""
    return Plan(
        sites=sites,
        windows=windows,
        run_id=run_id,
        selector=lambda configured, site: resolve_selector(points, configured, site=site),
        weather_due=lambda site: not live and weather_due(storage, site, windows, force=force),
        failed_row=lambda site, window, exc: _failed_row(storage, run_id, site, window, exc),
    )


@dataclass
class ThreadRunner:
    """The scheduler's units on threads of this process, sharing one client and one storage."""

    pool: ThreadPoolExecutor
    client: AceClient
    storage: Storage
    run_id: str
    page_size: int
    force: bool
    on_page: OnPage | None
    lease_wait_s: float
    as_of: datetime
    live: bool
    time_zones: Mapping[str, str]

    def points(self, site: str) -> Future[list[dict[str, Any]]]:
        # Live runs every few minutes reuse a recent points list rather than ask for it each time.
        fetch = recent_points if self.live else land_points
        return self.pool.submit(fetch, self.client, self.storage, site, self.time_zones)

    def weather(self, site: str, span: Window) -> Future[WeatherResult]:
        return self.pool.submit(extract_weather, self.client, self.storage, site, span.start, span.end)

    def window(
        self, site: str, window: Window, selector: PointSelector, configured: list[str]
    ) -> Future[WindowResult]:
        return self.pool.submit(
            extract_window, self.client, self.storage, site, window, selector,
            run_id=self.run_id, page_size=self.page_size, force=self.force, on_page=self.on_page,
            configured=configured, lease_wait_s=self.lease_wait_s, as_of=self.as_of, live=self.live,
        )  # fmt: skip

    # The scheduler only hands back what this runner returned: futures.
    def wait(self, pending: Collection[Any], timeout: float) -> Collection[Any]:
        return wait(pending, timeout=timeout, return_when=FIRST_COMPLETED).done

    def cancel(self, handle: Any) -> bool:
        return bool(handle.cancel())


def _failed_row(storage: Storage, run_id: str, site: str, window: Window, exc: Exception) -> WindowResult:
    """The row of a window that could not start."""
    row = _window_result(
        run_id, site, window, "failed", None, RequestStats(), _now(), time.monotonic(), one_line(exc)
    )
    return _record(storage, row)


def _window_result(
    run_id: str,
    site: str,
    window: Window,
    status: Status,
    progress: Checkpoint | None,
    stats: RequestStats,
    started: datetime,
    clock: float,
    error: str | None,
) -> WindowResult:
    done = progress or Checkpoint(site, window, 0, "")
    return WindowResult(
        run_id=run_id,
        site_name=site,
        window_start=window.start,
        window_end=window.end,
        status=status,
        api_requests=stats.requests,
        retries=stats.retries,
        pages=done.next_page,
        bytes=stats.bytes,
        records_fetched=done.records_fetched,
        records_kept=done.records_kept,
        records_filtered=done.records_filtered,
        records_rejected=done.records_rejected,
        duration_s=time.monotonic() - clock,
        error=error,
        started_at=started,
        finished_at=_now(),
    )


def _record(storage: Storage, result: WindowResult) -> WindowResult:
    write_run_row(storage, result)
    return result


def _now() -> datetime:
    return datetime.now(UTC)
