"""Every failure of a command is one line and its exit status, never a traceback (issue 15, item 8): dates
outside what a datetime holds, a full disk (a real tmpfs), a warehouse analysts cannot read, and Ctrl-C at
any moment of a real `ace-etl run` process's start-up."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from rich.console import Console

from ace_etl.report import gaps_by_site
from ace_etl.runner import show_examples
from ace_etl.simulator import Faults, Simulator, SimulatorConfig
from extract.api.budget import SharedBudget
from extract.errors import LakeError, WarehouseError
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from tests import landing_factory
from tests.clihelp import BIN, ace_etl, cli_env, error_line, expected_rows, landed_rows

SITE = "hq"
DAY1, DAY3 = "2024-06-01T00:00:00Z", "2024-06-03T00:00:00Z"
CFG = SimulatorConfig(sites=(SITE,), points=200, interval=60, api_key="failures-key-0123456789")


def env_of(sim: Simulator | None = None) -> dict[str, str]:
    return {"ACEIOT_API_KEY": CFG.api_key, **({"ACEIOT_API_URL": sim.url} if sim else {})}


# Out-of-range dates: usage errors, exit 2.
@pytest.mark.parametrize(
    "args",
    [
        ["--start", "0001-01-01T00:00:00+05:00"],  # the year 0 in UTC
        ["--end", "9999-12-31T23:00:00-05:00"],  # the year 10000 in UTC
        ["--live", "--as-of", "0001-01-01T00:00:00"],  # the window before it is in the year 0
        ["--live", "--as-of", "9999-12-31T12:00:00"],  # the open window ends in the year 10000
        ["--live", "--window-hours", "1e15"],
        ["--live", "--window-hours", "inf"],
        ["--as-of", "0001-01-01T00:00:00"],
    ],
)
def test_a_date_out_of_range_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    result = ace_etl("run", "--site", SITE, "--data-dir", str(tmp_path), *args, env=env_of())
    assert result.returncode == 2, result.stderr
    assert "year" in error_line(result.stderr) or "window length" in error_line(result.stderr)


@contextlib.contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"this test mounts a 1 MB tmpfs and needs root (as CI has): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# A full disk: a real tmpfs, filled by the landing itself.
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "size=1m") as mount:
        yield mount


# A read-only folder, even for root: a tmpfs mounted read-only.
@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "read-only", "ro,size=1m") as mount:
        yield mount


def fill(disk: Path) -> None:
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


def test_a_full_disk_is_one_line_and_the_next_run_completes_the_landing(small_disk: Path) -> None:
    data = small_disk / "data"
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data), "--no-transform",
            "--page-size", "5000", "--max-requests-per-minute", "100000", env=env_of(sim),
        )  # fmt: skip
        assert result.returncode == 1
        assert error_line(result.stderr).startswith("error: no space left on the device")
        # Nothing half-written is left where a reader or a later run would look.
        assert not [p for p in data.rglob("*") if p.name.endswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        result = ace_etl(
            "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data), "--no-transform",
            "--page-size", "5000", "--max-requests-per-minute", "100000", env=env_of(sim),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert landed_rows(data).equals(expected_rows(CFG, SITE, DAY1, DAY3))


def test_a_build_on_a_full_disk_is_one_line_and_publishes_nothing(small_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    data = small_disk / "data"
    with Simulator(CFG) as sim:
        landed = ace_etl(
            "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data), "--no-transform",
            "--max-requests-per-minute", "100000", env=env_of(sim),
        )  # fmt: skip
    assert landed.returncode == 0, landed.stderr
    # Leave a little room: the build starts (its lock, its log), and dbt runs out of space.
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - 256 * 1024))
    result = ace_etl("transform", "--data-dir", str(data))
    assert result.returncode == 1
    error = error_line(result.stderr)  # and no "Logging error" per line dbt could not write to its log
    assert "no space left on" in error.lower() and "free some space" in error
    assert not (data / "warehouse.duckdb").exists()
    assert logging.raiseExceptions  # ignoring them was for the build only, not for the rest of the process


# A warehouse analysts cannot read: `heal` and `status --html` say why in one line; `status` says it too.
@pytest.fixture
def locked_by_a_writer(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data" / "warehouse.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute("create table timeseries_gaps (site_name varchar)")
    code = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    try:
        yield path.parent
    finally:
        writer.kill()
        writer.wait()


def not_duckdb(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "warehouse.duckdb").write_bytes(b"not a database\n" * 1000)
    return tmp_path / "data"


def without_gaps_table(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb")).close()
    return tmp_path / "data"


def damaged(damage: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The data dir of a warehouse damaged as `damage` says."""
    if damage == "locked":
        return Path(request.getfixturevalue("locked_by_a_writer"))
    return {"not_duckdb": not_duckdb, "without_gaps_table": without_gaps_table}[damage](tmp_path)


DAMAGES = pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("locked", "is open for writing elsewhere"),
        ("not_duckdb", "is not a DuckDB database"),
        ("without_gaps_table", "has no table timeseries_"),
    ],
)


@DAMAGES
def test_a_warehouse_that_cannot_be_read_is_one_line_in_heal_and_status(
    damage: str, needle: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = damaged(damage, tmp_path, request)
    day = datetime(2024, 6, 1, tzinfo=UTC)
    rows = landing_factory.samples(SITE, [f"{SITE}/ahu-1/t"], day, 60, collected_at=day)
    landing_factory.write_timeseries(data, rows, "page-0")
    heal = ace_etl("heal", "--site", SITE, "--data-dir", str(data), env=env_of())
    assert heal.returncode == 1 and needle in error_line(heal.stderr)
    html = ace_etl("status", "--data-dir", str(data), "--html", str(tmp_path / "coverage.html"))
    assert html.returncode == 1 and needle in error_line(html.stderr)
    status = ace_etl("status", "--data-dir", str(data))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "cannot be read" in status.stdout and needle in " ".join(status.stdout.split())


@DAMAGES
def test_the_run_summary_and_the_demo_read_the_warehouse_as_heal_and_status_do(
    damage: str, needle: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`run`'s gaps column and `demo`'s example queries: the same one line, not DuckDB's own error."""
    data = damaged(damage, tmp_path, request)
    readers = {
        "gaps_by_site": lambda: gaps_by_site(data / "warehouse.duckdb"),
        "show_examples": lambda: show_examples(data, Console(file=io.StringIO())),
    }
    for name, read in readers.items():
        with pytest.raises(WarehouseError) as raised:
            read()
        assert needle in str(raised.value) and "\n" not in str(raised.value), name


# Ctrl-C during start-up. `-X importtime` has the real console script report each module as it finishes
# loading: the test interrupts right after a given one, whatever the machine's speed.
START_UP = (
    "ace_etl.console",  # the first moment the project's code runs
    "typer",
    "ace_etl.cli",
    "pydantic",
    "extract.redact",  # the command's own handler is about to take over
    "httpx",
    "polars",
    "ace_etl.runner",
    "Extracting",  # the run has started: workers are stopped gracefully
)


@pytest.fixture(scope="module")
def stalled() -> Iterator[Simulator]:
    """Every answer takes 30 s: whenever the signal comes, the run is still going."""
    with Simulator(replace(CFG, faults=Faults(latency=30))) as running:
        yield running


@pytest.mark.parametrize("moment", START_UP)
def test_ctrl_c_at_any_moment_of_start_up_is_one_line(
    moment: str, stalled: Simulator, tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-X", "importtime", str(BIN / "ace-etl"), "run", "--site", SITE, "--start", DAY1,
         "--end", DAY3, "--data-dir", str(tmp_path / "data"), "--no-transform"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env_of(stalled)),
    )  # fmt: skip
    assert child.stderr is not None
    lines, sent = [], False
    for line in child.stderr:
        lines.append(line)
        loaded = line.rsplit("|", 1)[-1].strip() if line.startswith("import time:") else line
        if loaded.startswith(moment):
            child.send_signal(signal.SIGINT)
            sent = True
            break
    lines += child.communicate(timeout=60)[1].splitlines(keepends=True)
    stderr = "".join(line for line in lines if not line.startswith("import time:"))
    assert sent, stderr
    assert child.returncode in (130, 1), (child.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr


def test_a_full_disk_under_the_request_budget_is_a_full_disk(small_disk: Path) -> None:
    # SQLite rolls back by itself on a full disk; the budget must say "no space", not "no transaction".
    budget = SharedBudget(small_disk / "budget.sqlite", "key", capacity=10**9, period=60.0)
    fill(small_disk)
    with pytest.raises(OSError) as raised:
        for _ in range(100_000):
            budget.acquire()
    assert raised.value.errno == errno.ENOSPC, raised.value


def one_day(points: int = 50) -> pl.DataFrame:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    return landing_factory.timeseries_rows(
        landing_factory.samples(SITE, [f"p{i}" for i in range(points)], start, 1440, collected_at=start)
    )


def test_a_first_merge_that_cannot_create_the_table_says_why(read_only_disk: Path) -> None:
    # Heal and live runs merge; the first writer of a landing creates the table before it merges into it.
    with pytest.raises(LakeError) as raised:
        lake.insert_new(
            LocalStorage(read_only_disk), TIMESERIES, SITE, one_day(), ("point_name", "timestamp")
        )
    message = str(raised.value)
    assert "\n" not in message and "Read-only file system; make the data dir writable" in message, message


def test_a_full_disk_under_a_first_merge_is_a_full_disk(small_disk: Path) -> None:
    fill(small_disk)
    with pytest.raises(OSError) as raised:
        lake.insert_new(
            LocalStorage(small_disk / "data"), TIMESERIES, SITE, one_day(), ("point_name", "timestamp")
        )
    assert raised.value.errno == errno.ENOSPC, raised.value


def test_a_full_disk_under_a_lake_commit_is_a_full_disk(small_disk: Path) -> None:
    start = datetime(2024, 6, 1, tzinfo=UTC)
    rows = landing_factory.timeseries_rows(
        landing_factory.samples(SITE, [f"p{i}" for i in range(50)], start, 1440, collected_at=start)
    )
    fill(small_disk)
    with pytest.raises(OSError) as raised:
        lake.replace_range(
            LocalStorage(small_disk / "data"),
            TIMESERIES,
            SITE,
            start,
            start + timedelta(days=1),
            rows,
            attempt="a",
        )
    assert raised.value.errno == errno.ENOSPC, raised.value
