"""Extract orchestration: sites x windows -> pages -> landed Parquet, checkpointed, with one metrics row each.

The public entry points are `run_extract` (what the CLI calls) and its parts, which Prefect tasks call one
by one: `land_points`, `resolve_selector`, `extract_window`, `extract_weather`. They raise the typed errors of
`extract.errors`; `run_extract` collects them per site and window instead, so one bad site does not stop the
others, and `RunResult.raise_if_failed` re-raises the first.

Per window: land a page's files, then save the checkpoint. A crash between the two re-fetches that page on
the next run and rewrites the same file names; files of later pages left by an older attempt are removed
before resuming, so any sequence of crashes and resumes lands exactly what one clean run would.
"""

from __future__ import annotations

import io
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl

from extract.checkpoint import Checkpoint, clear_checkpoint, load_checkpoint, save_checkpoint
from extract.client import AceClient, RequestStats
from extract.errors import AuthError, ConfigError, CursorError
from extract.landing import points_path, window_files, write_page, write_weather
from extract.metrics import Status, WindowResult, write_run_row
from extract.pagination import MAX_PAGE_SIZE, Page, iter_pages
from extract.parse import normalize_samples, parse_weather
from extract.points import PointSelector, configured_points_frame, enabled_point_names, read_points_file
from extract.storage import Storage
from extract.windows import Window, compact_time, split_windows

T = TypeVar("T")

# Points to keep: explicit names/patterns, a points file, or None for the API's enabled configured points.
PointsSource = Sequence[str] | Path | None
# Progress callback: (site, window, page number, samples fetched in that page).
OnPage = Callable[[str, Window, int, int], None]

# An expired cursor restarts its window; a server whose cursors expire faster than we can page would loop.
MAX_CURSOR_RESTARTS = 3


@dataclass(frozen=True)
class WeatherResult:
    """Weather landed for one site and range; `rejected` rows had no readable time and were not landed."""

    site_name: str
    start: datetime
    end: datetime
    rows: int
    rejected: int
    files: tuple[str, ...]
    api_requests: int


Task = Literal["points", "weather", "timeseries"]


@dataclass(frozen=True)
class Failure:
    """A task that raised; `window` is set for `timeseries`."""

    site_name: str
    what: Task
    error: Exception
    window: Window | None = None


@dataclass
class RunResult:
    """Everything one `run_extract` did: a row per (site, window), weather per site, and the failures."""

    run_id: str
    windows: list[WindowResult] = field(default_factory=list)
    weather: list[WeatherResult] = field(default_factory=list)
    points: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_if_failed(self) -> None:
        """Re-raise the first failure's error (typed, so callers can map it to an exit status)."""
        if self.failures:
            raise self.failures[0].error


def new_run_id(now: datetime | None = None) -> str:
    """`20240102T030405Z-1a2b3c4d`: sortable by start time, unique across concurrent runs."""
    return f"{compact_time((now or _now()).replace(microsecond=0))}-{uuid.uuid4().hex[:8]}"


def land_points(client: AceClient, storage: Storage, site: str) -> list[dict[str, Any]]:
    """Fetch the site's configured points and land them, replacing the previous list when it changed;
    returns the items. An unchanged list keeps its file (and `collected_at`), so a re-run that finds nothing
    new leaves the warehouse exactly as it was."""
    items = client.configured_points(site)
    frame = configured_points_frame(items, site=site, collected_at=_now())
    path = points_path(site)
    if storage.exists(path):
        landed = pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
        if landed.drop("collected_at").equals(frame.drop("collected_at")):
            return items
    storage.write_parquet_atomic(path, frame)
    return items


def resolve_selector(points: PointsSource, configured: Sequence[Mapping[str, Any]] = ()) -> PointSelector:
    """The selection for a site: from `points` (names/patterns, `a,b,c` text, or a file), or, when None, the
    site's configured points with `collect_enabled`. ConfigError when given points select nothing."""
    if points is None:
        return PointSelector.from_list(enabled_point_names(configured))
    if isinstance(points, Path):
        selector = PointSelector.from_list(read_points_file(points))
    else:
        selector = PointSelector.from_list(points.split(",") if isinstance(points, str) else points)
    if not selector:
        raise ConfigError(
            f"no points given in {points!r}: name points or patterns, or omit them to use the API's"
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
) -> WindowResult:
    """Land one (site, window): resume from its checkpoint, skip it when complete (unless `force`), restart
    it when its cursor is rejected. Writes the window's metrics row whatever happens; on failure the row
    has status `failed` and the error is re-raised."""
    result, error = _window(client, storage, site, window, selector, run_id, page_size, force, on_page)
    if error is not None:
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
) -> tuple[WindowResult, Exception | None]:
    started, clock, stats = _now(), time.monotonic(), RequestStats()

    def result(status: Status, progress: Checkpoint | None, error: str | None = None) -> WindowResult:
        return _record(
            storage, _window_result(run_id, site, window, status, progress, stats, started, clock, error)
        )

    saved = load_checkpoint(storage, site, window)
    if saved is not None and saved.complete and not force:
        return result("skipped", saved), None
    if saved is not None and (
        force or not saved.resumes(page_size=page_size, selection=selector.fingerprint)
    ):
        saved = None
    try:
        progress = _land_window(client, storage, site, window, selector, saved, page_size, stats, on_page)
    except Exception as exc:
        return result("failed", load_checkpoint(storage, site, window), _one_line(exc)), exc
    return result("complete", progress), None


def weather_due(storage: Storage, site: str, windows: Sequence[Window], *, force: bool = False) -> bool:
    """Weather belongs to the range being extracted: when every window of the site is already complete (and
    not forced) the run extracts nothing for the site, so it lands no new weather either, and a re-run
    leaves the warehouse unchanged."""
    if force:
        return True
    return not all((c := load_checkpoint(storage, site, w)) is not None and c.complete for w in windows)


def extract_weather(
    client: AceClient, storage: Storage, site: str, start: datetime, end: datetime
) -> WeatherResult:
    """Land the site's weather for `[start, end)`: the series (seed shape) or the current conditions, one
    row per call (real API), named by the range or by the observation time so a re-run replaces it."""
    stats = RequestStats()
    body = client.weather(site, start, end, stats=stats)
    parsed = parse_weather(body, site=site, collected_at=_now())
    frame = parsed.filter(pl.col("timestamp").is_not_null())
    if isinstance(body.get("data"), list):
        stem = Window(start, end).key
    else:
        stem = "current_" + "_".join(compact_time(t) for t in frame.get_column("timestamp").to_list())
    files = write_weather(storage, site, frame, stem)
    return WeatherResult(
        site, start, end, frame.height, parsed.height - frame.height, tuple(files), stats.requests
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
) -> RunResult:
    """Extract every site over `[start, end)`, split into windows of `window_hours`, with weather beside it.

    Sites share one thread pool (and the client's one rate limit); a site's windows run one after another,
    so memory is one window's worth per site in flight whatever the range's length (each window already
    overlaps fetching with landing). The configured points are landed first for each site, since by default
    they decide the selection. Never raises for a failed site or window: see `RunResult.failures` and
    `raise_if_failed`. An AuthError cancels what has not started.
    """
    windows = split_windows(start, end, window_hours)
    explicit = None if points is None else resolve_selector(points)
    result = RunResult(run_id=run_id or new_run_id())
    queued: dict[str, deque[Window]] = {}
    selectors: dict[str, PointSelector] = {}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="extract") as pool:
        tasks: dict[Future[Any], tuple[str, Task, Window | None]] = {}

        def next_window(site: str) -> None:
            if queued[site]:
                w = queued[site].popleft()
                args = (client, storage, site, w, selectors[site], result.run_id, page_size, force, on_page)
                future = pool.submit(_window, *args)
                tasks[future] = (site, "timeseries", w)
                pending.add(future)

        for site in sites:
            tasks[pool.submit(land_points, client, storage, site)] = (site, "points", None)
            if weather_due(storage, site, windows, force=force):
                weather = pool.submit(
                    extract_weather, client, storage, site, windows[0].start, windows[-1].end
                )
                tasks[weather] = (site, "weather", None)
        pending = set(tasks)
        while pending:
            done = next(as_completed(pending))
            pending.discard(done)
            site, what, window = tasks[done]
            try:
                value = done.result()
            except Exception as exc:
                result.failures.append(Failure(site, what, exc))
                if what == "points":
                    # No selection, so no window can run: each still gets its `failed` row.
                    result.windows.extend(_failed_row(storage, result.run_id, site, w, exc) for w in windows)
                _stop_if_unauthorized(exc, pending, queued)
                continue
            if what == "timeseries":
                row, error = value
                result.windows.append(row)
                if on_window is not None:
                    on_window(row)
                if error is not None:
                    result.failures.append(Failure(site, what, error, window))
                    _stop_if_unauthorized(error, pending, queued)
                next_window(site)
            elif what == "points":
                result.points[site] = len(value)
                selectors[site] = explicit if explicit is not None else resolve_selector(None, value)
                queued[site] = deque(windows)
                next_window(site)
            else:
                result.weather.append(value)
    result.windows.sort(key=lambda r: (r.site_name, r.window_start))
    return result


def _stop_if_unauthorized(
    exc: Exception, pending: set[Future[Any]], queued: Mapping[str, deque[Window]]
) -> None:
    # A rejected key fails every request alike: cancel queued tasks rather than let each find out.
    if isinstance(exc, AuthError):
        for windows in queued.values():
            windows.clear()
        for future in list(pending):
            if future.cancel():
                pending.discard(future)


def _failed_row(storage: Storage, run_id: str, site: str, window: Window, exc: Exception) -> WindowResult:
    """The row of a window that could not start."""
    progress = load_checkpoint(storage, site, window)
    row = _window_result(
        run_id, site, window, "failed", progress, RequestStats(), _now(), time.monotonic(), _one_line(exc)
    )
    return _record(storage, row)


def _land_window(
    client: AceClient,
    storage: Storage,
    site: str,
    window: Window,
    selector: PointSelector,
    progress: Checkpoint | None,
    page_size: int,
    stats: RequestStats,
    on_page: OnPage | None,
) -> Checkpoint:
    restarts = 0
    while True:
        if progress is None:
            # Forget the checkpoint before the files: a crash in between then also starts over.
            clear_checkpoint(storage, site, window)
            storage.delete(window_files(storage, site, window))
            progress = Checkpoint(site, window, page_size, selector.fingerprint)
        else:
            storage.delete(window_files(storage, site, window, from_page=progress.next_page))
        try:
            return _land_pages(client, storage, selector, progress, stats, on_page)
        except CursorError:
            restarts += 1
            if restarts > MAX_CURSOR_RESTARTS:
                raise
            progress = None


def _land_pages(
    client: AceClient,
    storage: Storage,
    selector: PointSelector,
    progress: Checkpoint,
    stats: RequestStats,
    on_page: OnPage | None,
) -> Checkpoint:
    site, window = progress.site, progress.window
    pages = iter_pages(
        client,
        site,
        window.start,
        window.end,
        page_size=progress.page_size,
        cursor=progress.next_cursor,
        first_page_number=progress.next_page,
        stats=stats,
    )
    with _Prefetched(pages) as ahead:
        for page in ahead:
            progress = _land_page(storage, selector, progress, page, on_page)
            del page  # not alive while the next one is awaited
    return progress


def _land_page(
    storage: Storage, selector: PointSelector, progress: Checkpoint, page: Page, on_page: OnPage | None
) -> Checkpoint:
    """Write the page's files, then the checkpoint that says they are there."""
    site, window = progress.site, progress.window
    rows = normalize_samples(page.samples, site=site, collected_at=_now(), window=window, selector=selector)
    write_page(storage, site, window, page.number, rows)
    progress = progress.after_page(rows, next_cursor=page.next_cursor, has_more=page.has_more)
    save_checkpoint(storage, progress)
    if on_page is not None:
        on_page(site, window, page.number, rows.fetched)
    return progress


_DONE = object()


class _Prefetched(Iterator[T]):
    """Iterate `items` on a background thread, one item ahead, so fetching page n+1 overlaps landing page n.

    The producer hands over an item and then waits until it is taken before fetching the next, and no frame
    here keeps a reference to an item once it is handed out: with the consumer dropping its own, at most two
    pages are alive per window, whatever the window's length. Use as a context manager, which stops the
    producer when the consumer leaves early.
    """

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=1)
        self._taken = threading.Semaphore(0)
        self._stop = threading.Event()
        self._producer = threading.Thread(target=self._produce, name="prefetch", daemon=True)

    def __enter__(self) -> _Prefetched[T]:
        self._producer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._producer.join()

    def __next__(self) -> T:
        item, error = self._handoff.get()
        self._taken.release()
        if error is not None:
            raise error
        if item is _DONE:
            raise StopIteration
        return item  # type: ignore[return-value]

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not (self._put((item, None)) and self._wait_taken()):
                    return
        except BaseException as exc:
            self._put((_DONE, exc))
            return
        self._put((_DONE, None))

    def _put(self, entry: tuple[object, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _wait_taken(self) -> bool:
        while not self._stop.is_set():
            if self._taken.acquire(timeout=0.1):
                return True
        return False


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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)
