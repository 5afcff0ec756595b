"""Does a build cost what the new data costs, or what the history costs? A year of one building on the lake.

0. Build twice on an empty landing, so that every timed build parses and finds its tables as in production.
1. Days 1-3: land each day of `--points` points x 1,440 minutes of sensor-like values (exact values plus
   noise in the last digits) as `ace-etl run` does: one Delta commit replacing the day, then the window's
   `complete` row in landing/runs (what makes its hours and days complete, as in production), and build
   (timed); build three times with nothing new (timed); then a live build: five minutes of the next day
   merged in with its `live` row, as `run --live` does, build (timed).
2. The following days up to `--days`: land them (one commit and one run row a day) and build once: the
   backfill build, compared with a plain DuckDB `create table as select * from read_parquet([...])` of the
   same files (what copying the samples costs; run in a child process, so that its memory is not counted
   as the pipeline's).
3. The next three days as in 1, each compared with 1. A build of a small day lasts 2-3 s, and one build
   varies by a fifth between runs: the ratios compare the medians of three builds.

Every build is what `ace-etl transform` does (`build_warehouse`: dbt build, tests of what changed, publish),
in this process as the Prefect flow runs it (its garbage collector set as a flow's is), so the peak RSS
includes DuckDB. Prints the times, the ratios (targets: after a year / at first <= 1.2 for a day's build
and for nothing new; backfill / plain copy <= 2), the size of the DuckDB side of the data dir against the
lake (target <= 0.25x) and peak RSS (target <= 2 GB).

    .venv/bin/python -m benchmarks.transform [--data-dir DIR] [--points 500] [--days 365]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import duckdb
import polars as pl

from ace_etl import heap
from ace_etl.transform import build_warehouse
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from extract.run.metrics import Status, WindowResult, write_run_row
from tests.landing_factory import samples, timeseries_rows

SITE = "bench"
# Builds measured at each end of the history, of which the ratios compare the medians.
REPEATS = 3
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)


def readings(rows: pl.DataFrame) -> pl.DataFrame:
    """Sensor-like values: the factory's exact values (point x 10,000 + minute) plus noise in the last
    digits, as real readings have. Exact values compress to under a byte a sample, which no building sends."""
    noise = (pl.struct("point_name", "timestamp").hash(seed=1) % 100_000).cast(pl.Float64) / 100_000
    return timeseries_rows(rows.with_columns(value=pl.col("value") + noise))


def land_run_row(
    storage: LocalStorage, run_id: str, start: datetime, end: datetime, status: Status, kept: int
) -> None:
    """The window's row in landing/runs, as `ace-etl run` writes one per window: a `complete` row is what
    makes the window's hours and days complete, so without it every row would stay incomplete and each
    build would re-check the whole history."""
    write_run_row(
        storage,
        WindowResult(
            run_id=run_id, site_name=SITE, window_start=start, window_end=end, status=status,
            api_requests=1, retries=0, pages=1, bytes=0, records_fetched=kept, records_kept=kept,
            records_filtered=0, records_rejected=0, duration_s=0.0, error=None, started_at=end, finished_at=end,
        ),
    )  # fmt: skip


def land_day(storage: LocalStorage, points: list[str], day: int) -> None:
    """A nightly window: one commit replacing the site's UTC day, then the run's `complete` row."""
    start = FIRST_DAY + timedelta(days=day)
    end = start + timedelta(days=1)
    rows = readings(samples(SITE, points, start, 1440, collected_at=end + timedelta(minutes=5)))
    lake.replace_range(storage, TIMESERIES, SITE, start, end, rows, attempt=f"day-{day}")
    land_run_row(storage, f"day-{day}", start, end, "complete", rows.height)


def land_live(storage: LocalStorage, points: list[str], day: int) -> None:
    """A live run: the open day's newest five minutes, merged in (only samples the table lacks), and its
    `live` row (the day stays incomplete)."""
    start = FIRST_DAY + timedelta(days=day)
    rows = readings(samples(SITE, points, start, 5, collected_at=start + timedelta(minutes=6)))
    lake.insert_new(storage, TIMESERIES, SITE, rows, ["point_name", "timestamp"])
    land_run_row(storage, f"live-{day}", start, start + timedelta(days=1), "live", rows.height)


def timed(label: str, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<60} {elapsed:8.1f} s", flush=True)
    return elapsed


def plain_copy_s(files: list[str], database: str) -> float:
    """What DuckDB alone takes to copy the snapshot's samples into a table: the floor of a backfill build.
    Run in a child process, so that its memory is not counted as the pipeline's."""
    started = time.perf_counter()
    with duckdb.connect(database) as con:
        con.execute("set enable_progress_bar = false")  # its bar would fill the benchmark's output
        con.execute("create table samples as select * from read_parquet($files)", {"files": files})
    elapsed = time.perf_counter() - started
    Path(database).unlink()
    return elapsed


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


def size_gb(folder: Path, keep: Callable[[Path], bool]) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and keep(p)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    options = parser.parse_args()
    heap.tune()  # the garbage collector of a flow's process (flows.etl tunes it on import)

    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="ace-etl-bench-")) / "data"
    storage = LocalStorage(data_dir)
    points = [f"{SITE}/ahu-{i // 20:03d}/sensor-{i % 20:02d}" for i in range(options.points)]
    days = options.days
    print(
        f"{len(points) * 1440:,} samples a day, {len(points) * 1440 * (days + REPEATS):,} in "
        f"{days + REPEATS} days, landing under {data_dir}",
        flush=True,
    )

    def build() -> None:
        build_warehouse(data_dir)

    def day_builds(first: int) -> float:
        """Land and build REPEATS days from `first`, one at a time: the median build."""
        elapsed = []
        for day in range(first, first + REPEATS):
            timed(f"land day {day + 1}", partial(land_day, storage, points, day))
            elapsed.append(timed(f"build, day {day + 1}", build))
        return statistics.median(elapsed)

    def idle_builds(day: int) -> float:
        return statistics.median(timed(f"build, nothing new, day {day}", build) for _ in range(REPEATS))

    def live_build(day: int) -> float:
        timed(f"live: land 5 minutes of day {day + 1}", partial(land_live, storage, points, day))
        return timed(f"build, live, day {day + 1}", build)

    try:
        timed("warm-up builds on an empty landing", lambda: [build() for _ in range(2)])
        day_first = day_builds(0)
        idle_first = idle_builds(REPEATS)
        live_first = live_build(REPEATS)

        started = time.perf_counter()
        for day in range(REPEATS, days):
            land_day(storage, points, day)
            if day % 30 == 0:
                print(f"  landed {day + 1} days ({time.perf_counter() - started:.0f} s)", flush=True)
        print(f"{f'land days {REPEATS + 1}-{days}':<60} {time.perf_counter() - started:8.1f} s", flush=True)
        backfill = timed(f"build, backfill of days {REPEATS + 1}-{days}", build)
        backfill_peak = peak_gb()
        files = lake.snapshot_files(storage.uri(TIMESERIES)).get_column("path").to_list()
        # spawn: a process that used deltalake and then forks can hang.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            copy = pool.apply(plain_copy_s, (files, str(data_dir / "plain.duckdb")))
        print(f"{'plain DuckDB create table as select of the same files':<60} {copy:8.1f} s", flush=True)

        day_last = day_builds(days)
        idle_last = idle_builds(days + REPEATS)
        live_last = live_build(days + REPEATS)

        lake_gb = size_gb(data_dir / "landing", lambda p: True)
        duck_gb = size_gb(data_dir, lambda p: ".duckdb" in p.name)
        later, first = f"days {days + 1}-{days + REPEATS}", f"days 1-{REPEATS}"
        print(f"ratio {later} / {first}, a day's build (medians): {day_last / day_first:.2f} (target <= 1.2)")
        print(
            f"ratio {later} / {first}, nothing new (medians):   {idle_last / idle_first:.2f} (target <= 1.2)"
        )
        live = f"day {days + REPEATS + 1} / day {REPEATS + 1}"
        print(f"ratio {live}, live build:                  {live_last / live_first:.2f}")
        print(f"ratio backfill build / plain copy:          {backfill / copy:.2f} (target <= 2)")
        print(
            f"lake {lake_gb:.2f} GB; DuckDB side {duck_gb:.3f} GB; DuckDB side / lake: "
            f"{duck_gb / lake_gb:.3f} (target <= 0.25)"
        )
        print(
            f"peak RSS of this process (every build; the plain copy ran in a child): {peak_gb():.2f} GB "
            f"(after the backfill build: {backfill_peak:.2f} GB; target <= 2)"
        )
    finally:
        if options.data_dir is None:
            shutil.rmtree(data_dir.parent)


if __name__ == "__main__":
    main()
