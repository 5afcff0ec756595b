"""What `ace-etl run`, `heal`, `demo` and `transform` do, without Prefect: the one pipeline
(`ace_etl.pipeline`) with its units on threads of this process, rich progress on stderr and the summary on
stdout. The flows (`flows/`) run the same pipeline with Prefect tasks."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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
from rich.table import Table

from ace_etl.pipeline import JobResult, run_job
from ace_etl.report import summarize, to_rich_table
from extract.api.budget import budget_file
from extract.api.client import AceClient
from extract.config import Settings
from extract.errors import AceEtlError
from extract.lake.storage import normalize_location
from extract.run.datadir import open_storage
from extract.run.heal import HealResult
from extract.run.job import Job, Mode
from extract.run.metrics import WindowResult
from extract.run.pipeline import threads
from extract.run.scheduler import Runner
from extract.windows import Window

# Summaries are tables: keep them whole when piped to a log rather than squeezed to 80 columns.
stdout = Console(width=None if Console().is_terminal else 160)
stderr = Console(stderr=True)


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


def run_pipeline(settings: Settings, job: Job, console: Console = stdout) -> JobResult:
    """Run the job through the one pipeline (`ace_etl.pipeline.run_job`) on threads of this process, with
    rich progress on stderr and the summary on stdout. Raises the first failure's typed error after the
    summary, so the caller can set the exit status."""
    return run_job(job, Cli(settings, console))


@dataclass
class CliBuild:
    """A build of the command line (`run_transform`): its error is kept for after the summary."""

    warehouse: Path
    error: AceEtlError | None = None


class Cli:
    """The pipeline's front for the command line: the units on a pool of threads sharing one client (and
    its rate limit, in the budget file every process of the data dir shares), rich output."""

    def __init__(self, settings: Settings, console: Console = stdout) -> None:
        self.settings = settings
        self.console = console
        self.progress: RunProgress | None = None

    def _client(self, job: Job) -> AceClient:
        return AceClient.from_settings(
            self.settings,
            requests_per_minute=job.requests_per_minute,
            budget=budget_file(self.settings, job.data_dir),
        )

    @contextmanager
    def runner(self, job: Job) -> Iterator[Runner]:
        windows, span = job.windows, job.span
        assert span is not None
        with self._client(job) as client:
            stderr.print(
                f"Extracting {len(job.sites)} site(s), {span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} UTC "
                f"({len(windows)} window(s) each) into {normalize_location(job.data_dir)}",  # not `s3:/...`
                markup=False,  # a data dir's `[x]` is part of its name
            )
            self.progress = RunProgress(len(windows) * len(job.sites))
            with (
                self.progress.progress,
                threads(client, open_storage(job.data_dir), job, self.progress.on_page) as pool,
            ):
                yield pool

    def on_window(self, row: WindowResult) -> None:
        if self.progress is not None:
            self.progress.on_window(row)

    def heal(self, job: Job) -> list[HealResult]:
        from ace_etl.healing import heal_sites

        with self._client(job) as client, stderr.status(f"Healing {len(job.sites)} site(s)..."):
            return heal_sites(client, open_storage(job.data_dir), job)

    def build(self, job: Job) -> CliBuild:
        from ace_etl.transform import TransformError, warehouse_file

        try:
            return CliBuild(
                run_transform(job.data_dir, time_zones=job.time_zones, limits_file=job.limits_file)
            )
        except TransformError as error:
            return CliBuild(warehouse_file(job.data_dir), error)

    def note(self, message: str, *, warning: bool = False) -> None:
        stderr.print(f"warning: {message}" if warning else message, markup=False, soft_wrap=True)

    def report(self, result: JobResult) -> None:
        if result.job.mode is Mode.HEAL:
            self.console.print(heal_table(result))
            return
        self.console.print(to_rich_table(summarize(result.windows, result.gaps)))
        still_open = sum(w.status == "live" for w in result.windows)
        if still_open and not result.job.live:
            stderr.print(
                f"{still_open} window(s) had not ended at {result.job.as_of:%Y-%m-%d %H:%M} UTC: landed up to "
                "then, not complete; a later run (this command again, or the next day's) fetches the rest",
                soft_wrap=True,
            )


def heal_table(result: JobResult) -> Table:
    """Per site: what heal found, fetched and healed, and what is still open (in the last build)."""
    from ace_etl.healing import warehouse_gaps

    job, span = result.job, result.job.span
    assert span is not None
    table = Table("site", "gaps found", "checked", "ranges fetched", "requests", "samples landed", "gaps still open",
                  title=f"Heal {span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    for r in result.healed:
        still = len(warehouse_gaps(job.data_dir, r.site_name, span)) if job.transform else r.gaps
        table.add_row(
            r.site_name, str(r.gaps), str(r.gaps - r.deferred - r.skipped), str(r.ranges), str(r.requests), f"{r.samples:,}", str(still)
        )  # fmt: skip
    return table


def run_transform(
    data_dir: Path,
    *,
    full_refresh: bool = False,
    full_check: bool = False,
    time_zones: Mapping[str, str] | None = None,
    limits_file: Path | None = None,
) -> Path:
    """dbt build, then publish the warehouse; returns it."""
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
    return result.warehouse


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
        run_pipeline(
            settings,
            Job(sites=(site,), span=Window(start, end), data_dir=data_dir, window_hours=min(hours, 24)),
        )
    show_examples(data_dir)


def show_examples(data_dir: Path, console: Console = stdout) -> None:
    """Run the example queries on the published warehouse (read-only, as an analyst would) and print them."""
    from rich.syntax import Syntax

    from ace_etl.transform import reading, warehouse_file
    from extract.lake.landing import TIMESERIES
    from extract.run.datadir import open_storage

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
