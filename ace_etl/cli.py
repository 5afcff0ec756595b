"""The `ace-etl` command line.

Heavy modules (Polars, Prefect, dbt) are imported inside the commands so that `ace-etl --help` stays fast.
Exit status: 0 success, 1 the run failed, 2 bad usage or configuration (docs/DESIGN.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ace_etl.simulator.cli import simulator
from extract.api import MAX_PAGE_SIZE
from extract.run.job import REQUESTS_PER_MINUTE, WINDOW_HOURS, Job, Mode
from extract.windows import DEFAULT_LOOKBACK_DAYS

if TYPE_CHECKING:
    import socket

    from ace_etl.upkeep import Vacuumed

app = typer.Typer(
    name="ace-etl",
    help=(
        "Pull ACE IoT building telemetry into Parquet and a DuckDB warehouse.\n\n"
        "New here? ace-etl demo runs the whole pipeline against a bundled API simulator: no key, no setup."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("simulator")(simulator)

F = TypeVar("F", bound=Callable[..., Any])

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Root of the landing files, checkpoints and warehouse.duckdb. (env ACE_ETL_DATA_DIR; default ./data)",
        show_default=False,
    ),
]
LimitsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--limits-file",
        envvar="ACE_LIMITS_FILE",
        help="TOML file of limits rules for timeseries_excursions, tried before the bundled defaults.",
        show_default=False,
    ),
]


SitesFileOption = Annotated[
    Path | None,
    typer.Option(
        "--sites-file",
        help='TOML file of per-site time zones, e.g. \\[sites."hq"] then time_zone = "America/New_York"; they override '
        "the time zone of a site's coordinates. (env ACE_SITES_FILE)",
        show_default=False,
    ),
]


def _time_zones(sites_file: Path | None, settings: Any) -> dict[str, str]:
    """The time-zone overrides of `--sites-file`, else of ACE_SITES_FILE (ConfigError for a bad file or name)."""
    from extract.api.sites import time_zone_overrides

    return time_zone_overrides(sites_file or settings.sites_file)


def _fail(message: str, code: int) -> typer.Exit:
    # One line on stderr, then the exit status: scripts and schedulers read both.
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# `--max-requests-per-minute` of run and heal, from the environment (a scheduler's crontab, the test suite).
RATE_ENV = "ACE_ETL_MAX_REQUESTS_PER_MINUTE"
_INTERRUPTED = "interrupted; completed pages are checkpointed, re-run the same command to resume"
# After Ctrl-C, workers stop at their next page or wait; one blocked in a slow request is not waited for.
_STOP_GRACE_S = 1.5


def _on_interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C: ask every worker to stop and exit within 2 s whatever they do; the checkpoints are
    consistent at any instant (files first, then the checkpoint), so nothing is lost. Second: exit now."""
    import os
    import signal
    import socket
    import threading

    from extract import cancel

    if cancel.requested():
        os._exit(130)
    cancel.request()
    typer.echo("stopping... (Ctrl-C again to quit at once)", err=True)

    def give_up() -> None:
        typer.echo(f"error: {_INTERRUPTED}", err=True)
        os._exit(130)

    # The kernel may hand the second Ctrl-C to a worker thread while the main thread is blocked joining
    # it, and Python runs handlers only in the main thread: a wakeup fd lets a watcher thread see it.
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    signal.set_wakeup_fd(sender.fileno())
    threading.Thread(target=_quit_on_wakeup, args=(receiver, sender), daemon=True).start()
    timer = threading.Timer(_STOP_GRACE_S, give_up)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _quit_on_wakeup(receiver: socket.socket, sender: socket.socket) -> None:
    """Exit at the next signal written to `sender` (the wakeup fd). The thread holds both sockets for the
    rest of the process: a socket that is collected closes its fd, and the wakeup would be lost."""
    import os

    receiver.recv(1)
    os._exit(130)


def handles_errors(func: F) -> F:
    """Turn every failure into one line on stderr and the documented exit status: the library's typed
    errors, invalid settings, and file-system problems (read-only or damaged data dir). Never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import errno
        import logging
        import os
        import signal

        from pydantic import ValidationError

        from extract.api.client import use_own_retry_log
        from extract.errors import AceEtlError
        from extract.redact import one_line, redact

        # Inside the try: a Ctrl-C at any instant from here on is the one line below. The handler before
        # (the console script's quit-at-once) is back once the command is done.
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, _on_interrupt)
            _log_to_stderr(logging.getLogger("extract"))
            use_own_retry_log()
            return func(*args, **kwargs)
        except AceEtlError as exc:
            raise _fail(redact(str(exc)), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail(_INTERRUPTED, 1) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "settings"
            raise _fail(f"invalid setting {where}: {first['msg']}", 2) from None
        except OSError as exc:
            target = f" {exc.filename}" if exc.filename else ""
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _fail(
                    f"no space left on the device{f' (writing {exc.filename})' if exc.filename else ''}: free "
                    "some space and re-run the same command (what was landed is kept; unfinished windows resume)",
                    1,
                ) from None
            raise _fail(
                f"cannot use{target}: {exc.strerror or exc}; check the data dir (--data-dir / ACE_ETL_DATA_DIR) "
                "exists, is writable and holds folders where folders belong",
                1,
            ) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            # A failure nothing above foresaw (a bug): still one line, and how to see the whole story.
            if os.environ.get("ACE_ETL_DEBUG"):
                raise
            raise _fail(
                f"unexpected {one_line(exc)} (please report it; ACE_ETL_DEBUG=1 shows the traceback)", 1
            ) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    return wrapper  # type: ignore[return-value]


def _log_to_stderr(logger: Any) -> None:
    """The library's warnings (retries, waits for another run, quarantined state) as one line each."""
    import logging

    from extract.redact import one_line

    if any(getattr(h, "_ace_etl", False) for h in logger.handlers):
        return

    class OneLine(logging.Handler):
        _ace_etl = True

        def emit(self, record: logging.LogRecord) -> None:
            typer.echo(f"{record.levelname.lower()}: {one_line(record.getMessage())}", err=True)

    logger.addHandler(OneLine(logging.WARNING))
    logger.setLevel(logging.INFO)


def parse_when(value: str | None, option: str) -> datetime | None:
    """ISO date or datetime -> aware UTC datetime. A value without offset is UTC, as in the API."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            raise _fail(
                f"{option} {value!r} is not an ISO date or time; use e.g. 2026-11-27 or 2026-11-27T06:00:00Z",
                2,
            ) from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is in the year 0 in UTC
        raise _fail(
            f"{option} {value!r} is outside the years 1 to 9999 in UTC; give a later or earlier time", 2
        ) from None


@app.command()
@handles_errors
def run(
    site: Annotated[
        list[str],
        typer.Option(
            "--site", help="Site name as in FlightDeck; repeat for several sites.", show_default=False
        ),
    ],
    start: Annotated[
        str | None,
        typer.Option(
            help="Start of the range (ISO; inclusive). Default: every window not yet complete in the lookback.",
            show_default=False,
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(help="End of the range (ISO; exclusive).", show_default=False),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The instant the run is for (ISO; default now): without --start/--end, windows still open then "
            "are not fetched; a window of --start/--end still open then is landed up to it, not complete.",
            show_default=False,
        ),
    ] = None,
    lookback_days: Annotated[
        float,
        typer.Option(
            "--lookback-days", help="Without --start/--end: cover the windows of this many days before as-of."
        ),
    ] = DEFAULT_LOOKBACK_DAYS,
    points: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated point names or glob patterns, e.g. '*/ahu-1/*,site/meter-1/kw'; a name in double "
            "quotes is exactly that name, e.g. '\"site/zone[1]/temp\"'.",
            show_default=False,
        ),
    ] = None,
    points_file: Annotated[
        Path | None,
        typer.Option(
            help="UTF-8 file with one point name or pattern per line ('#' starts a comment; a name in double "
            "quotes is exactly that name).",
            show_default=False,
        ),
    ] = None,
    points_from_api: Annotated[
        bool,
        typer.Option(
            "--points-from-api", help="Keep the site's configured points with collect_enabled (the default)."
        ),
    ] = False,
    data_dir: DataDirOption = None,
    sites_file: SitesFileOption = None,
    page_size: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_PAGE_SIZE, help=f"Samples per API page (the API allows {MAX_PAGE_SIZE:,})."
        ),
    ] = MAX_PAGE_SIZE,
    window_hours: Annotated[
        float,
        typer.Option(min=0.01, help="Split the range into windows of this many hours; each is checkpointed."),
    ] = WINDOW_HOURS,
    max_requests_per_minute: Annotated[
        float,
        typer.Option(
            min=1,
            envvar=RATE_ENV,
            help="The API key's request budget, shared by every window, site and process using the key on "
            "this machine; requests go evenly spaced.",
        ),
    ] = REQUESTS_PER_MINUTE,
    no_transform: Annotated[
        bool, typer.Option("--no-transform", help="Only extract and land; skip dbt build.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-extract windows that are already complete.")
    ] = False,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Keep the still-open window current up to as-of (about one request per site); for a schedule "
            "every few minutes.",
        ),
    ] = False,
    heal: Annotated[
        bool,
        typer.Option(
            "--heal",
            help="After the build, re-fetch the ranges of the gaps in the range (as `ace-etl heal` does), then "
            "build again if that landed anything.",
        ),
    ] = False,
    limits_file: LimitsFileOption = None,
) -> None:
    """Extract a time range for one or more sites, land it as Parquet, then build the warehouse (and heal the
    range's gaps with --heal).

    Needs ACEIOT_API_KEY (and ACEIOT_API_URL for a non-default API). Completed windows are skipped on a
    re-run (use --force to redo them); an interrupted window resumes from its last landed page.
    """
    from ace_etl.runner import run_pipeline
    from extract.config import Settings

    settings = Settings()
    job = run_job(
        settings, site=site, start=start, end=end, as_of=as_of, lookback_days=lookback_days, points=points,
        points_file=points_file, points_from_api=points_from_api, data_dir=data_dir, sites_file=sites_file,
        page_size=page_size, window_hours=window_hours, max_requests_per_minute=max_requests_per_minute,
        no_transform=no_transform, force=force, live=live, heal=heal, limits_file=limits_file,
    )  # fmt: skip
    run_pipeline(settings, job)


def run_job(
    settings: Any,
    *,
    site: list[str],
    start: str | None,
    end: str | None,
    as_of: str | None,
    lookback_days: float,
    points: str | None,
    points_file: Path | None,
    points_from_api: bool,
    data_dir: Path | None,
    sites_file: Path | None,
    page_size: int,
    window_hours: float,
    max_requests_per_minute: float,
    no_transform: bool,
    force: bool,
    live: bool,
    heal: bool,
    limits_file: Path | None,
) -> Job:
    """The job of `ace-etl run`, from its option values as the command line gives them."""
    if sum((points is not None, points_file is not None, points_from_api)) > 1:
        raise _fail("give only one of --points, --points-file and --points-from-api", 2)
    return Job.plan(
        sites=site,
        start=parse_when(start, "--start"),
        end=parse_when(end, "--end"),
        as_of=parse_when(as_of, "--as-of"),
        lookback_days=lookback_days,
        mode=Mode.LIVE if live else Mode.RUN,
        window_hours=window_hours,
        **_settings(settings, points, points_file, data_dir, sites_file),
        page_size=page_size,
        requests_per_minute=max_requests_per_minute,
        transform=not no_transform,
        heal=heal,
        force=force,
        limits_file=limits_file,
    )


def _settings(
    settings: Any,
    points: str | None,
    points_file: Path | None,
    data_dir: Path | None,
    sites_file: Path | None,
) -> dict[str, Any]:
    """The job settings `run` and `heal` read alike from their command-line values and the environment."""
    return {
        "points": points.split(",") if points is not None else points_file,
        "data_dir": data_dir or settings.data_dir,
        "time_zones": _time_zones(sites_file, settings),
    }


@app.command()
@handles_errors
def heal(
    site: Annotated[
        list[str],
        typer.Option(
            "--site", help="Site name as in FlightDeck; repeat for several sites.", show_default=False
        ),
    ],
    start: Annotated[
        str | None, typer.Option(help="Start of the range to heal (ISO).", show_default=False)
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="End of the range to heal (ISO).", show_default=False)
    ] = None,
    lookback_days: Annotated[
        float, typer.Option("--lookback-days", help="Without --start/--end: heal this many days before now.")
    ] = DEFAULT_LOOKBACK_DAYS,
    points: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated point names or glob patterns (a name in double quotes is exactly that name).",
            show_default=False,
        ),
    ] = None,
    points_file: Annotated[
        Path | None,
        typer.Option(help="UTF-8 file with one point name or pattern per line.", show_default=False),
    ] = None,
    data_dir: DataDirOption = None,
    sites_file: SitesFileOption = None,
    page_size: Annotated[
        int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="Samples per API page.")
    ] = MAX_PAGE_SIZE,
    max_requests_per_minute: Annotated[
        float,
        typer.Option(
            min=1, envvar=RATE_ENV, help="The API key's request budget, shared as for run; evenly spaced."
        ),
    ] = REQUESTS_PER_MINUTE,
    no_transform: Annotated[
        bool, typer.Option("--no-transform", help="Only land what was found; skip dbt build.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Check every gap now, even those checked recently without result.")
    ] = False,
    limits_file: LimitsFileOption = None,
) -> None:
    """Re-fetch only the time ranges that have gaps (site-wide, nearby gaps coalesced), land what the API
    now has, rebuild, and report per site: gaps found, fetched, still open.

    Reads the gaps from the published warehouse. A gap the API cannot fill is re-checked with backoff and
    becomes `confirmed` in timeseries_gaps after repeated empty checks. Gaps of a window not complete yet
    (still open) are fetched and landed, but not counted as checks: they never become `confirmed` while open.
    """
    from ace_etl.runner import run_pipeline
    from extract.config import Settings

    if points is not None and points_file is not None:
        raise _fail("give only one of --points and --points-file", 2)
    settings = Settings()
    job = Job.plan(
        sites=site,
        start=parse_when(start, "--start"),
        end=parse_when(end, "--end"),
        lookback_days=lookback_days,
        mode=Mode.HEAL,
        **_settings(settings, points, points_file, data_dir, sites_file),
        page_size=page_size,
        requests_per_minute=max_requests_per_minute,
        transform=not no_transform,
        force=force,
        limits_file=limits_file,
    )
    run_pipeline(settings, job)


@app.command()
@handles_errors
def demo(
    data_dir: DataDirOption = None,
    site: Annotated[str, typer.Option(help="Name of the simulated site.")] = "demo-site",
    points: Annotated[int, typer.Option(min=1, max=20_000, help="Number of simulated points.")] = 200,
    hours: Annotated[
        int, typer.Option(min=1, max=24 * 31, help="Hours of history, ending today 00:00 UTC.")
    ] = 24,
) -> None:
    """Run the whole pipeline against the bundled API simulator: extract, land, dbt build, summary.

    No key and no setup needed. Run it twice: the second run skips the complete windows.
    """
    from ace_etl.runner import run_demo
    from extract.config import Settings

    run_demo(data_dir or Settings().data_dir, site=site, points=points, hours=hours)


@app.command()
@handles_errors
def transform(
    data_dir: DataDirOption = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Rebuild every table from the whole landing (after changing points or replacing files by hand).",
        ),
    ] = False,
    full_check: Annotated[
        bool,
        typer.Option(
            "--full-check",
            help="Test every row, not only the partitions this build changed (weekly in the deployments).",
        ),
    ] = False,
    limits_file: LimitsFileOption = None,
    sites_file: SitesFileOption = None,
) -> None:
    """Build (or update) the DuckDB warehouse from the landing with dbt build, then publish it atomically.

    The sites file's time zones are applied as they are now: an edit takes effect without fetching again.
    """
    from ace_etl.runner import run_transform
    from extract.config import Settings

    settings = Settings()
    run_transform(
        data_dir or settings.data_dir,
        full_refresh=full_refresh,
        full_check=full_check,
        time_zones=_time_zones(sites_file, settings),
        limits_file=limits_file,
    )


@app.command()
@handles_errors
def status(
    data_dir: DataDirOption = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write the coverage picture (points by days, gaps marked) to this self-contained HTML file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show what is landed per site, unfinished windows, the last runs and the warehouse."""
    from ace_etl.status import print_status
    from extract.config import Settings

    root = data_dir or Settings().data_dir
    print_status(root)
    if html is not None:
        from ace_etl.coverage_view import coverage_grid, to_html
        from ace_etl.transform import warehouse_file

        html.write_text(to_html(coverage_grid(warehouse_file(root))), encoding="utf-8")
        typer.echo(f"Coverage picture written to {html}", err=True)


@app.command()
@handles_errors
def export(
    site: Annotated[str, typer.Option("--site", help="Site name as in FlightDeck.", show_default=False)],
    points: Annotated[
        str,
        typer.Option(
            help="Comma-separated point names or glob patterns, as for run, e.g. '*/ahu-1/*'.",
            show_default=False,
        ),
    ],
    start: Annotated[
        str,
        typer.Option(
            help="First grid instant (ISO; without an offset: the site's local time).", show_default=False
        ),
    ],
    end: Annotated[
        str, typer.Option(help="End of the grid (ISO, exclusive; as --start).", show_default=False)
    ],
    wide: Annotated[
        Path,
        typer.Option(
            "--wide", help="Write one column per point to this .parquet or .csv file.", show_default=False
        ),
    ],
    every: Annotated[str, typer.Option(help="Grid step: a whole number and s, m, h or d.")] = "5m",
    how: Annotated[
        str,
        typer.Option(
            help="Numeric points: 'last' (the sample in force, held at most one collect interval) or 'mean' "
            "(of each step); binary and multi-state points are always 'last'."
        ),
    ] = "last",
    data_dir: DataDirOption = None,
) -> None:
    """Export points of a site as a wide table: a row per grid instant in the site's time zone, a column per
    point. Reads the lake's samples and the warehouse's points and sites (run `ace-etl transform` first)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ace_etl.export import check_target, parse_every, parse_how, parse_instant, wide_frame, write_wide
    from extract.config import Settings

    check_target(wide)
    parse_every(every, "--every")
    way = parse_how(how, "--how")
    parse_instant(start, "--start")
    parse_instant(end, "--end")
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not console.is_terminal,
    )  # fmt: skip
    task = bar.add_task("export", total=None)
    with bar:
        frame = wide_frame(
            data_dir or Settings().data_dir, site, points, every, start, end, how=way,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
        write_wide(frame, wide)
    typer.echo(f"Wrote {frame.height:,} rows x {frame.width - 1} point(s) to {wide}")


@app.command()
@handles_errors
def compact(
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site", help="Only this site; repeat for several. Default: every site.", show_default=False
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(help="Only the last N closed days. Default: every closed day.", show_default=False),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Rewrite the small files of closed days (before today, UTC) of the Delta tables into few: one commit per
    day partition, no sample changed. Today's partition, where live runs still merge, is never touched. The
    daily flow does this after extracting. Then vacuums: files replaced before the published warehouse's
    snapshot go (those of this compaction stay until the next build has published)."""
    from ace_etl.upkeep import compact as compact_lake
    from ace_etl.upkeep import vacuum
    from extract.config import Settings

    location = data_dir or Settings().data_dir
    done = compact_lake(location, list(dict.fromkeys(site)) if site else None, days)
    typer.echo(", ".join(f"{dataset}: {n} day partition(s) compacted" for dataset, n in done.items()))
    _echo_vacuumed(vacuum(location))


def _echo_vacuumed(vacuumed: Vacuumed) -> None:
    for warning in vacuumed.warnings:
        typer.echo(f"warning: {warning}", err=True)
    files = ", ".join(f"{n} file(s) of {dataset}" for dataset, n in vacuumed.files.items())
    typer.echo(f"Vacuumed {files or 'nothing'}")


@app.command()
@handles_errors
def retention(
    keep_days: Annotated[
        int,
        typer.Option(
            "--keep-days",
            help="Keep the raw samples of the last N days before today (UTC) and today; delete older ones.",
            show_default=False,
        ),
    ],
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site", help="Only this site; repeat for several. Default: every site.", show_default=False
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete the raw samples (timeseries; weather is kept) of the days before today minus --keep-days, then
    vacuum the Delta tables. Hourly and daily aggregates keep their history. Deleted windows stay complete (a
    run does not fetch them again; --force does) and heal leaves them alone. Vacuum keeps every file the
    published warehouse reads, and deletes nothing when it cannot read it."""
    from ace_etl.upkeep import apply_retention
    from extract.config import Settings

    result = apply_retention(
        data_dir or Settings().data_dir, keep_days, list(dict.fromkeys(site)) if site else None
    )
    typer.echo(f"Deleted {result.deleted} raw sample(s) of the days before {result.keep_from}")
    _echo_vacuumed(result.vacuumed)


@app.command()
@handles_errors
def upgrade(data_dir: DataDirOption = None) -> None:
    """Convert a landing written before the Delta tables into them, once (any command does it first).

    The plain Parquet folders under landing/timeseries and landing/weather become rows of the Delta tables,
    the fetch the old warehouse kept per sample: nothing is lost or fetched again. The old files move to
    pre-delta/ in the data dir. Says "nothing to upgrade" when there is nothing old."""
    from extract.config import Settings
    from extract.run.datadir import open_storage
    from extract.run.upgrade import ASIDE, upgrade

    storage = open_storage(data_dir or Settings().data_dir, upgrade=False)
    done = upgrade(
        storage, on_site=lambda table, site: typer.echo(f"converting {table} of site {site!r}", err=True)
    )
    if not done.folders:
        typer.echo(
            f"nothing to upgrade: {storage.uri()} holds no Parquet landing from before the Delta tables"
        )
        return
    typer.echo(
        f"converted {done.folders} (site, day) folders ({done.files} files, {done.rows:,} rows) into the Delta "
        f"tables; the old files are in {storage.uri(ASIDE)} (delete them once satisfied)"
    )


COMMANDS_GROUP = "ace_etl.commands"


def _add_plugin_commands() -> None:
    """Commands other packages contribute (the flows' `prefect-setup`) through the `ace_etl.commands` entry
    point: the CLI never imports them, so nothing here depends on a package built on top of it."""
    from importlib.metadata import entry_points

    for command in entry_points(group=COMMANDS_GROUP):
        app.command(command.name)(handles_errors(command.load()))


_add_plugin_commands()


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        sys.exit(exc.code)
