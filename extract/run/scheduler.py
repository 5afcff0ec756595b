"""The one scheduler of an extraction, whatever runs the work: threads of this process (the CLI, through
`extract.run.pipeline.run_extract`) or Prefect tasks on threads or Dask workers (the flows, `flows.etl`).

Per site: the configured points first (by default they decide the selection), weather beside them, then
the site's windows one after another with its record (time zone) beside them, so memory stays one window
per site in flight however long the range. A failure is recorded and the others go on; a site whose
points fail gets a `failed` row for each of its windows; a rejected key stops what has not started. How
a unit of work runs is the `Runner`'s business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

from extract.api.points import PointSelector
from extract.errors import AuthError, WindowFailed
from extract.run.metrics import WindowResult
from extract.windows import Window

T = TypeVar("T", covariant=True)


class Task(Enum):
    """The kinds of unit the scheduler submits."""

    POINTS = "points"
    SITE = "site"
    WEATHER = "weather"
    TIMESERIES = "timeseries"


@dataclass(frozen=True)
class WeatherResult:
    """Weather landed for one site and range; `rejected` rows had no readable time and were not landed."""

    site_name: str
    start: datetime
    end: datetime
    rows: int
    rejected: int
    version: int | None
    """The weather table's version once these rows are merged in (None when nothing was landed)."""
    api_requests: int
    current_only: bool = False
    """The API answered with its current conditions (the real API always does), not the range's series."""


@dataclass(frozen=True)
class Failure:
    """A task that raised; `window` is set for `Task.TIMESERIES`."""

    site_name: str
    what: Task
    error: Exception
    window: Window | None = None


@dataclass
class RunResult:
    """Everything one extraction did: a row per (site, window), weather per site, and the failures."""

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


class Handle(Protocol[T]):
    """A unit of work submitted to a runner: a concurrent.futures or a Prefect future."""

    def result(self) -> T: ...


class Runner(Protocol):
    """How units of work run. `window` runs `extract.run.pipeline.extract_window`: it writes the window's
    metrics row whatever happens and raises `WindowFailed`, carrying that row, on failure."""

    def points(self, site: str) -> Handle[list[dict[str, Any]]]: ...

    def site(self, site: str) -> Handle[Any]:
        """Land the site's record (`extract.api.sites.land_site`)."""
        ...

    def weather(self, site: str, span: Window) -> Handle[WeatherResult]: ...

    def window(
        self, site: str, window: Window, selector: PointSelector, configured: list[str]
    ) -> Handle[WindowResult]: ...

    def wait(self, pending: Collection[Handle[Any]], timeout: float) -> Collection[Handle[Any]]:
        """Those of `pending` that are done, after at most `timeout` seconds."""
        ...

    def cancel(self, handle: Handle[Any]) -> bool:
        """Cancel a unit that has not started; False when it cannot be cancelled any more."""
        ...


@dataclass(frozen=True)
class Plan:
    """What to extract and how to decide the selection."""

    sites: Sequence[str]
    windows: Sequence[Window]
    run_id: str
    selector: Callable[[list[dict[str, Any]], str], PointSelector]
    """The site's selection from its configured points (raises when nothing can be kept)."""
    weather_due: Callable[[str], bool]
    site_due: Callable[[str], bool]
    """Whether the site's record is landed (`Runner.site`) once its points are."""
    failed_row: Callable[[str, Window, Exception], WindowResult]
    """Record the `failed` row of a window that could not start."""


def schedule(
    plan: Plan, runner: Runner, *, on_window: Callable[[WindowResult], None] | None = None
) -> RunResult:
    """Run the plan on `runner`; never raises for a failed site or window (see `RunResult.failures`)."""
    result = RunResult(run_id=plan.run_id)
    queued: dict[str, deque[Window]] = {}
    selectors: dict[str, PointSelector] = {}
    configured: dict[str, list[str]] = {}
    tasks: dict[Handle[Any], tuple[str, Task, Window | None]] = {}
    span = Window(plan.windows[0].start, plan.windows[-1].end)

    def submit(handle: Handle[Any], site: str, what: Task, window: Window | None = None) -> None:
        tasks[handle] = (site, what, window)
        pending.add(handle)

    def next_window(site: str) -> None:
        if queued[site]:
            w = queued[site].popleft()
            submit(runner.window(site, w, selectors[site], configured[site]), site, Task.TIMESERIES, w)

    def site_failed(site: str, exc: Exception) -> None:
        result.failures.append(Failure(site, Task.POINTS, exc))
        result.windows.extend(plan.failed_row(site, w, exc) for w in plan.windows)

    pending: set[Handle[Any]] = set()
    for site in dict.fromkeys(plan.sites):  # a repeated site is one site, not two runs racing
        submit(runner.points(site), site, Task.POINTS)
        if plan.weather_due(site):
            submit(runner.weather(site, span), site, Task.WEATHER)
    while pending:
        # A timed wait, not a blocking one: a signal may be delivered to any thread, and the main thread
        # only runs Python's handler (Ctrl-C) when it wakes up.
        for done in runner.wait(list(pending), 0.2):
            pending.discard(done)
            site, what, window = tasks[done]
            try:
                value = done.result()
            except WindowFailed as failed:
                _add_row(result, failed.result, on_window)
                cause = failed.__cause__ if isinstance(failed.__cause__, Exception) else failed
                result.failures.append(Failure(site, what, cause, window))
                next_window(site)
                if isinstance(cause, AuthError):
                    _stop(runner, pending, queued)
                continue
            except Exception as exc:
                if what is Task.POINTS:
                    site_failed(site, exc)  # no selection, so no window can run: each gets its row
                else:
                    result.failures.append(Failure(site, what, exc, window))
                if isinstance(exc, AuthError):
                    _stop(runner, pending, queued)
                continue
            if what is Task.TIMESERIES:
                _add_row(result, value, on_window)
                next_window(site)
            elif what is Task.POINTS:
                result.points[site] = len(value)
                configured[site] = [str(item["name"]) for item in value if item.get("name")]
                try:
                    selectors[site] = plan.selector(value, site)
                except Exception as exc:
                    site_failed(site, exc)
                else:
                    queued[site] = deque(plan.windows)
                    next_window(site)
                # After the points, which tell that the site exists and the key works, and beside the
                # windows, which do not need the record.
                if plan.site_due(site):
                    submit(runner.site(site), site, Task.SITE)
            elif what is Task.WEATHER:
                result.weather.append(value)
    result.windows.sort(key=lambda r: (r.site_name, r.window_start))
    return result


def _add_row(result: RunResult, row: WindowResult, on_window: Callable[[WindowResult], None] | None) -> None:
    result.windows.append(row)
    if on_window is not None:
        on_window(row)


def _stop(runner: Runner, pending: set[Handle[Any]], queued: dict[str, deque[Window]]) -> None:
    # A rejected key fails every request alike: drop what has not started rather than let each find out.
    for windows in queued.values():
        windows.clear()
    for handle in list(pending):
        if runner.cancel(handle):
            pending.discard(handle)
