"""Running the `ace-etl` command (in this process, or as the console script in a new one) and reading what it
landed: shared by the CLI test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from ace_etl.simulator import SimulatorConfig, served_samples, site_points
from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage

BIN = Path(sys.executable).parent


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", **(env or {})}


def ace_etl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ace-etl ARGS` run in this process by Typer's test runner: the same command, options, output and exit
    status, without a Python start-up and a dbt import (3 to 4 s) per call. `ace_etl_script` runs the
    installed console script; `spawn` runs it in the background (kills, Ctrl-C, concurrency)."""
    import signal
    import traceback

    from typer.testing import CliRunner

    from ace_etl.cli import app

    handler = signal.getsignal(signal.SIGINT)  # the command installs its own Ctrl-C handler
    try:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    finally:
        signal.signal(signal.SIGINT, handler)
    stderr, code = result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What the console script would print: tests check that no command ever shows one.
        stderr += "".join(traceback.format_exception(result.exception))
        code = 1
    return subprocess.CompletedProcess(["ace-etl", *args], code, result.stdout, stderr)


def ace_etl_script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The installed `ace-etl` console script in a new process, as a user or a scheduler runs it."""
    return subprocess.run(
        [str(BIN / "ace-etl"), *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        check=False,
    )


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`ace-etl ARGS` in the background (for concurrent runs and kills)."""
    return subprocess.Popen(
        [str(BIN / "ace-etl"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
    )


def expected_rows(
    cfg: SimulatorConfig, site: str, start: str, end: str, names: set[str] | None = None
) -> pl.DataFrame:
    """What a correct run lands for `site` over `[start, end)`: the configured points' samples (or `names`')."""
    if names is None:
        names = {
            p.name
            for p in site_points(site, cfg.points, cfg.interval, cfg.configured_fraction)
            if p.configured
        }
    return (
        served_samples(cfg, site, start, end)
        .filter(pl.col("name").is_in(sorted(names)))
        .select(point_name="name", timestamp="time", value="value")
        .sort("point_name", "timestamp")
    )


def landed_rows(data_dir: Path) -> pl.DataFrame:
    """Every landed timeseries row as analysts read the landing (the Delta table's current snapshot,
    duplicates included)."""
    frame = lake.read(LocalStorage(data_dir), TIMESERIES, schema=schemas.TIMESERIES)
    return frame.select("point_name", "timestamp", "value").sort("point_name", "timestamp")


def assert_landed_once(data_dir: Path, expected: pl.DataFrame) -> None:
    """The landing holds every expected sample, each exactly once, and nothing else."""
    landed = landed_rows(data_dir)
    assert landed.height == landed.unique(["point_name", "timestamp"]).height, "a sample is landed twice"
    assert landed.equals(expected)


def window_statuses(data_dir: Path) -> list[str]:
    """The status of every runs row (one per window a run fetched, skipped or failed), oldest first."""
    files = sorted((data_dir / "landing" / "runs").rglob("*.parquet"))
    if not files:
        return []
    return pl.concat([pl.read_parquet(f) for f in files]).sort("finished_at").get_column("status").to_list()


def error_line(stderr: str) -> str:
    """A failed command's one error line (progress and warning lines may precede it): never a traceback, nor
    the "--- Logging error ---" one of a log line that could not be written."""
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]
