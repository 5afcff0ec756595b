"""What `ace-etl run`, `demo` and `transform` do, without Prefect: the library's stages in order, rich
progress on stderr and the run summary on stdout. Prefect flows (`flows/`) wire the same stages as tasks."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ace_etl.report import gaps_by_site, summarize, to_rich_table, weather_history_note
from extract.client import AceClient
from extract.config import Settings
from extract.datadir import open_storage
from extract.heal import HealResult
from extract.metrics import WindowResult
from extract.pipeline import PointsSource, RunResult, run_extract
from extract.windows import Window, split_windows

# Summaries are tables: keep them whole when piped to a log rather than squeezed to 80 columns.
stdout = Console(width=None if Console().is_terminal else 160)
stderr = Console(stderr=True)


@dataclass(frozen=True)
class RunOptions:
    sites: Sequence[str]
    start: datetime
    end: datetime
    data_dir: Path
    points: PointsSource = None
    page_size: int = 100_000
    window_hours: float = 24
    requests_per_minute: float = 100
    transform: bool = True
    force: bool = False
    max_workers: int = 4
    as_of: datetime | None = None
    """The instant the run is for (default now): windows not ended then are landed up to it, not complete."""
    live: bool = False
    limits_file: Path | None = None
    """The user's limits file for the build (else ACE_LIMITS_FILE, else the bundled limits alone)."""
    time_zones: Mapping[str, str] = field(default_factory=dict)
    """Per-site time-zone overrides (a sites file's), applied when landing sites and when building."""


class RunProgress:
    """Rich progress on stderr: one bar over all windows, and one line per window with its pages and
    samples so far. Its methods are the extract callbacks; they are called from worker threads."""

    def __init__(self, total_windows: int, console: Console = stderr) -> None:
        self._lock = threading.Lock()
        self._lines: dict[tuple[str, Window], tuple[TaskID, int]] = {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._overall = self.progress.add_task("windows", total=total_windows, detail="")

    def on_page(self, site: str, window: Window, page: int, samples: int) -> None:
        with self._lock:
            task, seen = self._line(site, window)
            self._lines[(site, window)] = (task, seen + samples)
            self.progress.update(
                task, completed=page + 1, detail=f"{page + 1} pages, {seen + samples:,} samples"
            )

    def on_window(self, result: WindowResult) -> None:
        with self._lock:
            task, _ = self._line(result.site_name, result.window)
            self.progress.update(task, total=result.pages, completed=result.pages, detail=result.status)
            self.progress.advance(self._overall)

    def _line(self, site: str, window: Window) -> tuple[TaskID, int]:
        if (site, window) not in self._lines:
            task = self.progress.add_task(f"{site} {window.start:%Y-%m-%d %H:%M}", total=None, detail="")
            self._lines[(site, window)] = (task, 0)
        return self._lines[(site, window)]


def run_pipeline(settings: Settings, options: RunOptions, console: Console = stdout) -> RunResult:
    """Extract and land every (site, window), then build the warehouse; print the summary.

    Raises the first failure's typed error after the summary, so the caller can set the exit status."""
    if options.transform:
        from ace_etl.transform import check_build_paths, checked_limits_file

        check_build_paths(options.data_dir)  # before landing anything the build could not read
        checked_limits_file(options.limits_file)
    windows = split_windows(options.start, options.end, options.window_hours)
    as_of = options.as_of or datetime.now(UTC)
    storage = open_storage(options.data_dir)
    with AceClient.from_settings(
        settings,
        requests_per_minute=options.requests_per_minute,
        budget=settings.budget_file(options.data_dir),
    ) as client:
        stderr.print(
            f"Extracting {len(options.sites)} site(s), {options.start:%Y-%m-%d %H:%M} to {options.end:%Y-%m-%d %H:%M} UTC "
            f"({len(windows)} window(s) each) into {options.data_dir}",
            markup=False,  # a data dir's `[x]` is part of its name
        )
        progress = RunProgress(len(windows) * len(options.sites))
        with progress.progress:
            result = run_extract(
                client,
                storage,
                options.sites,
                options.start,
                options.end,
                window_hours=options.window_hours,
                page_size=options.page_size,
                points=options.points,
                force=options.force,
                max_workers=options.max_workers,
                on_page=progress.on_page,
                on_window=progress.on_window,
                as_of=as_of,
                live=options.live,
                time_zones=options.time_zones,
            )
    gaps = None
    if options.transform and any(w.status != "failed" for w in result.windows):
        gaps = run_transform(options.data_dir, time_zones=options.time_zones, limits_file=options.limits_file)
    console.print(to_rich_table(summarize(result.windows, gaps)))
    if note := weather_history_note(result.weather, datetime.now(UTC)):
        stderr.print(note, markup=False, soft_wrap=True)
    still_open = sum(w.status == "live" for w in result.windows)
    if still_open and not options.live:
        stderr.print(
            f"{still_open} window(s) had not ended at {as_of:%Y-%m-%d %H:%M} UTC: "
            "landed up to then, not complete; a later run (this command again, or the next day's) fetches the rest",
            soft_wrap=True,
        )
    result.raise_if_failed()
    return result


def run_transform(
    data_dir: Path,
    *,
    full_refresh: bool = False,
    full_check: bool = False,
    time_zones: Mapping[str, str] | None = None,
    limits_file: Path | None = None,
) -> dict[str, int]:
    """dbt build, then publish the warehouse; returns the gaps found per site."""
    from ace_etl.transform import build_warehouse

    with stderr.status("Building the warehouse (dbt build)..."):
        result = build_warehouse(
            data_dir,
            full_refresh=full_refresh,
            full_check=full_check,
            time_zones=time_zones,
            limits_file=limits_file,
        )
    stderr.print(
        f"Warehouse ready: {result.warehouse} ({result.models} models, {result.tests} tests, {result.elapsed_s:.1f} s)",
        markup=False,
    )
    for warning in result.warnings:
        stderr.print(f"[yellow]data-quality warning[/yellow] {escape(warning)}")
    return gaps_by_site(result.warehouse)


def demo_range(hours: int, now: datetime) -> tuple[datetime, datetime]:
    """The last `hours` hours before today 00:00 UTC: fixed for the day, so a second demo run finds every
    window complete."""
    end = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    return end - timedelta(hours=hours), end


EXAMPLE_QUERIES = (
    (
        "Samples and average value per device",
        "select split_part(point_name, '/', 2) as device, count(*) as samples, round(avg(value), 2) as avg_value\n"
        "from timeseries_raw group by 1 order by samples desc limit 5",
    ),
    (
        "Hourly profile of one point",
        "select hour, sample_count, round(value_avg, 2) as value_avg, value_min, value_max from timeseries_hourly\n"
        "where point_name = (select min(point_name) from timeseries_hourly) order by hour limit 5",
    ),
    (
        "Points with the lowest coverage",
        "select point_name, day, expected_samples, received_samples, round(coverage_ratio, 3) as coverage_ratio\n"
        "from timeseries_coverage order by coverage_ratio, point_name limit 5",
    ),
)


def run_demo(data_dir: Path, *, site: str, points: int, hours: int) -> None:
    """Start the bundled simulator on a free loopback port and run the whole pipeline against it."""
    from ace_etl.simulator import Simulator, SimulatorConfig

    start, end = demo_range(hours, datetime.now(UTC))
    config = SimulatorConfig(sites=(site,), points=points, api_key="demo")
    with Simulator(config) as sim:
        stderr.print(f"Simulator ready at {sim.url} (site {site!r}, {points} points)")
        settings = Settings(api_url=sim.url, api_key=SecretStr(config.api_key), data_dir=data_dir)
        options = RunOptions(
            sites=(site,), start=start, end=end, data_dir=data_dir, window_hours=min(hours, 24)
        )
        run_pipeline(settings, options)
    show_examples(data_dir)


def show_examples(data_dir: Path, console: Console = stdout) -> None:
    """Run the example queries on the published warehouse (read-only, as an analyst would) and print them."""
    from rich.syntax import Syntax
    from rich.table import Table

    from ace_etl.transform import reading, warehouse_file
    from extract.datadir import open_storage
    from extract.landing import TIMESERIES

    path = warehouse_file(data_dir)
    console.print(
        f"\nTry it yourself: duckdb -readonly {shlex.quote(str(path))}   (or in Python: duckdb.connect({str(path)!r}, read_only=True))",
        markup=False,
    )
    with reading(path) as con:
        for title, sql in EXAMPLE_QUERIES:
            console.print(f"\n[bold]{title}[/bold]")
            console.print(Syntax(sql, "sql", theme="ansi_dark"))
            cursor = con.execute(sql)
            table = Table(*(d[0] for d in cursor.description))
            for row in cursor.fetchall():
                table.add_row(*(f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row))
            console.print(table)
    landing = open_storage(data_dir).uri(TIMESERIES)
    console.print(
        "\nOr read the landing's Delta table directly (through its log, never a folder glob), e.g. with Polars:\n"
        f"pl.scan_delta({landing!r}).group_by('site_name').len().collect()",
        markup=False,
    )


def run_heal(settings: Settings, options: RunOptions, console: Console = stdout) -> list[HealResult]:
    """Re-fetch the gap ranges of each site, land what the API now has, rebuild, and print per site what
    was found, fetched and healed, and what is still open."""
    from rich.table import Table

    from ace_etl.healing import heal_sites, warehouse_gaps

    span = Window(options.start, options.end)
    with (
        AceClient.from_settings(
            settings,
            requests_per_minute=options.requests_per_minute,
            budget=settings.budget_file(options.data_dir),
        ) as client,
        stderr.status(f"Healing {len(options.sites)} site(s)..."),
    ):
        results = heal_sites(
            client, open_storage(options.data_dir), options.data_dir, options.sites, span,
            points=options.points, page_size=options.page_size, force=options.force,
            time_zones=options.time_zones,
        )  # fmt: skip
    if options.transform and any(r.samples or r.rejected or r.ranges for r in results):
        run_transform(options.data_dir, time_zones=options.time_zones, limits_file=options.limits_file)
    table = Table("site", "gaps found", "checked", "ranges fetched", "requests", "samples landed", "gaps still open",
                  title=f"Heal {span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    for r in results:
        still = len(warehouse_gaps(options.data_dir, r.site_name, span)) if options.transform else r.gaps
        table.add_row(
            r.site_name, str(r.gaps), str(r.gaps - r.deferred - r.skipped), str(r.ranges), str(r.requests), f"{r.samples:,}", str(still)
        )  # fmt: skip
    console.print(table)
    return results
