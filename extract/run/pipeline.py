"""Extract orchestration: sites x windows -> pages -> landed Parquet, checkpointed, with one metrics row each.

The units of work are `land_points` (or `recent_points`), `land_site_record`, `extract_window` and
`extract_weather`; they raise the typed errors of `extract.errors` (a window's as `WindowFailed`, carrying
its row). `extract_job` runs a job's extraction on a runner, for the one pipeline (`ace_etl.pipeline`:
threads for the CLI, Prefect tasks for the flows) and for `run_extract` (threads of this process) alike;
`extract.run.scheduler.schedule` decides what runs when and collects failures per site and window, so one
bad site does not stop the others, and `RunResult.raise_if_failed` re-raises the first.

Per window (`extract.run.attempt`): take the site's lease, plan against the checkpoints, stage pages with a
checkpoint after each, commit. Any sequence of crashes, resumes, concurrent and forced runs lands exactly
what one clean run would.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from extract.api.client import AceClient, RequestStats
from extract.api.points import PointSelector, configured_points_frame, enabled_point_names, read_points_file
from extract.api.sites import land_site, record_due
from extract.api.weather import is_series, parse_weather
from extract.errors import ConfigError, NoPointsError, WindowFailed
from extract.lake import tables as lake
from extract.lake.landing import WEATHER, points_path
from extract.lake.quarantine import quarantine
from extract.lake.storage import Storage
from extract.redact import one_line
from extract.run.attempt import OnPage, covered, run_window
from extract.run.checkpoint import Checkpoint, load_checkpoints
from extract.run.job import Job, PointsSource
from extract.run.lease import SiteLease
from extract.run.live import run_live
from extract.run.metrics import Status, WindowResult, write_run_row
from extract.run.scheduler import Failure, Plan, Runner, RunResult, WeatherResult, schedule
from extract.windows import Window

__all__ = ["Failure", "RunResult", "WeatherResult"]  # re-exported: the results of `run_extract`

log = logging.getLogger(__name__)


def land_points(client: AceClient, storage: Storage, site: str) -> list[dict[str, Any]]:
    """Fetch the site's configured points and land them, replacing the previous list when it changed;
    returns the items. An unchanged list keeps its file (and `collected_at`), so a re-run that finds nothing
    new leaves the warehouse exactly as it was. A damaged list is set aside and replaced."""
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
    return items


def land_site_record(
    client: AceClient, storage: Storage, site: str, time_zones: Mapping[str, str] | None = None
) -> None:
    """Land the site's record with the `time_zones` overrides (`extract.api.sites.land_site`, which never
    fails for the API's sake)."""
    land_site(client, storage, site, time_zones or {}, _now())


POINTS_FRESH_FOR = 3600.0


def recent_points(client: AceClient, storage: Storage, site: str) -> list[dict[str, Any]]:
    """The landed points list when fetched within the last hour, else a fresh one (`land_points`)."""
    path = points_path(site)
    try:
        landed = pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
    except Exception:  # absent or damaged: fetch it
        return land_points(client, storage, site)
    newest = landed.get_column("collected_at").max()
    if not isinstance(newest, datetime) or (_now() - newest).total_seconds() > POINTS_FRESH_FOR:
        return land_points(client, storage, site)
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
    site's configured points with `collect_enabled`, as exact names (never patterns). A selection that
    cannot keep anything is an error: ConfigError when given points select nothing (or none of the site's
    configured points), NoPointsError when the site has no enabled point."""
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
    job: Job,
    site: str,
    window: Window,
    selector: PointSelector,
    configured: Sequence[str] = (),
    on_page: OnPage | None = None,
) -> WindowResult:
    """Land one (site, window) of `job` under the site's lease: resume from its checkpoint, skip it when
    complete for the selection (unless the job forces), restart it when its cursor is rejected. A window
    that has not ended at the job's as-of is landed up to as-of and kept `live`, not complete
    (`extract.run.live`); live jobs also finish the live window before it. Writes the window's metrics row
    whatever happens, unless the window starts at or after as-of (it is not fetched then); on failure the
    row has status `failed` and `WindowFailed` carries it, caused by the error."""
    started, clock, stats = _now(), time.monotonic(), RequestStats()

    def result(status: Status, progress: Checkpoint | None, error: str | None = None) -> WindowResult:
        return _record(
            storage, _window_result(job.run_id, site, window, status, progress, stats, started, clock, error)
        )

    as_of = job.as_of
    if window.start >= as_of:
        # Nothing can have been uploaded for it yet: it is not fetched, so no runs row says it was. The run's
        # summary still counts it among the windows not complete.
        return _window_result(job.run_id, site, window, "live", None, stats, started, clock, None)
    try:
        with SiteLease(storage, site, job.run_id) as lease:
            outcome = None
            closed = window.end <= as_of
            if not (closed and job.force):
                # An open window is kept live; a closed one with a live checkpoint is finished by it.
                outcome = run_live(
                    client, storage, lease, job, window, selector,
                    stats=stats, configured=list(configured), begin=job.live or not closed,
                )  # fmt: skip
            if outcome is None:
                outcome = run_window(
                    client, storage, lease, job, window, selector,
                    stats=stats, configured=configured, on_page=on_page,
                )  # fmt: skip
            if outcome is None:
                log.warning(
                    "window %s of site %r is open at %s and other windows' checkpoints overlap it (another "
                    "window length or selection): it is fetched once it has closed",
                    window.key, site, as_of.isoformat(),
                )  # fmt: skip
                return result("live", None)
    except Exception as exc:
        raise WindowFailed(result("failed", None, one_line(exc)), exc) from exc
    return result(outcome.status, outcome.progress)  # type: ignore[arg-type]


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
    job: Job,
    *,
    on_page: OnPage | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> RunResult:
    """Extract the job on a pool of `job.max_workers` threads sharing `client` (and its one rate limit): the
    extraction alone, without the build (see `extract_job`). Never raises for a failed site or window: see
    `RunResult.failures` and `raise_if_failed`."""
    with threads(client, storage, job, on_page) as runner:
        return extract_job(storage, job, runner, on_window)


def extract_job(
    storage: Storage, job: Job, runner: Runner, on_window: Callable[[WindowResult], None] | None = None
) -> RunResult:
    """Every (site, window) of the job, with weather beside them (not for live jobs), on `runner`: see
    `extract.run.scheduler.schedule`. The job's time zones override sites' in the sites landing."""
    if job.points is not None:
        resolve_selector(job.points)  # a selection that keeps nothing fails before any request
    windows = job.windows
    plan = Plan(
        sites=job.sites,
        windows=windows,
        run_id=job.run_id,
        selector=lambda configured, site: resolve_selector(job.points, configured, site=site),
        weather_due=lambda site: not job.live and weather_due(storage, site, windows, force=job.force),
        # Live runs every few minutes ask for it only when `land_site` would.
        site_due=lambda site: not job.live or record_due(storage, site, _now()),
        failed_row=lambda site, window, exc: _failed_row(storage, job.run_id, site, window, exc),
    )
    return schedule(plan, runner, on_window=on_window)


@contextmanager
def threads(
    client: AceClient, storage: Storage, job: Job, on_page: OnPage | None = None
) -> Iterator[ThreadRunner]:
    """The scheduler's units on a pool of the job's `max_workers` threads of this process."""
    with ThreadPoolExecutor(max_workers=job.max_workers, thread_name_prefix="extract") as pool:
        yield ThreadRunner(pool, client, storage, job, on_page)


@dataclass
class ThreadRunner:
    """The scheduler's units on threads of this process, sharing one client and one storage."""

    pool: ThreadPoolExecutor
    client: AceClient
    storage: Storage
    job: Job
    on_page: OnPage | None = None

    def points(self, site: str) -> Future[list[dict[str, Any]]]:
        # Live runs every few minutes reuse a recent points list rather than ask for it each time.
        fetch = recent_points if self.job.live else land_points
        return self.pool.submit(fetch, self.client, self.storage, site)

    def site(self, site: str) -> Future[None]:
        return self.pool.submit(land_site_record, self.client, self.storage, site, self.job.time_zones)

    def weather(self, site: str, span: Window) -> Future[WeatherResult]:
        return self.pool.submit(extract_weather, self.client, self.storage, site, span.start, span.end)

    def window(
        self, site: str, window: Window, selector: PointSelector, configured: list[str]
    ) -> Future[WindowResult]:
        return self.pool.submit(
            extract_window,
            self.client,
            self.storage,
            self.job,
            site,
            window,
            selector,
            configured,
            self.on_page,
        )

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
