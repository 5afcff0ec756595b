"""Does an incremental `dbt build` cost what the new data costs, or what the history costs?

0. Build once on an empty landing, so that every timed build parses and finds its tables as in production.
1. Land one day of 2,000 points x 1,440 minutes (2.88 M samples) and time `dbt build`.
2. Land days 2-30 and build once (history; printed, not compared).
3. Land day 31 and time that incremental build.
4. Heal: land late samples into yesterday (day 31), build; then into day 1, 30 days back, build.

Prints the times, their ratios (targets <= 1.5: day 31 / day 1, and healing day 1 / healing day 31), the
time to publish the warehouse, and peak RSS. dbt runs in this process, as PrefectDbtRunner would, so the
RSS includes DuckDB.

    .venv/bin/python -m benchmarks.transform [--data-dir DIR] [--points 2000] [--history-days 30]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ace_etl.transform import build_dir, dbt_build, publish_warehouse
from tests.landing_factory import samples, write_timeseries

SITE = "bench"
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)
PAGE_ROWS = 100_000  # the API's largest page: the extractor lands one file per page


def land_day(data_dir: Path, points: list[str], day: int) -> None:
    start = FIRST_DAY + timedelta(days=day)
    rows = samples(SITE, points, start, 1440, collected_at=start + timedelta(days=1, minutes=5))
    for page, offset in enumerate(range(0, rows.height, PAGE_ROWS)):
        write_timeseries(data_dir, rows.slice(offset, PAGE_ROWS), f"{start:%Y%m%d}-page{page:03d}")


def land_late(data_dir: Path, points: list[str], day: int) -> None:
    """What `ace-etl heal` lands for a day: samples that arrived late (here, half-minute readings of a tenth of
    the points over four hours), in a patch file of their own."""
    start = FIRST_DAY + timedelta(days=day, hours=20, seconds=30)
    rows = samples(SITE, points[::10], start, 240, collected_at=datetime.now(UTC))
    write_timeseries(data_dir, rows, f"{start:%Y%m%d}-heal")


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<40} {elapsed:8.1f} s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--history-days", type=int, default=30)
    options = parser.parse_args()

    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="ace-etl-bench-")) / "data"
    points = [f"{SITE}/ahu-{i // 20:03d}/sensor-{i % 20:02d}" for i in range(options.points)]
    samples_per_day = len(points) * 1440
    print(f"{samples_per_day:,} samples a day, landing under {data_dir}", flush=True)
    try:
        # Steady state: dbt has parsed the project before (partial parsing) and the tables exist.
        timed("warm-up build on an empty landing", lambda: dbt_build(data_dir))
        timed("land day 1", lambda: land_day(data_dir, points, 0))
        first = timed("dbt build, day 1", lambda: dbt_build(data_dir))
        timed(
            f"land days 2-{options.history_days}",
            lambda: [land_day(data_dir, points, d) for d in range(1, options.history_days)],
        )
        timed(f"dbt build, days 2-{options.history_days}", lambda: dbt_build(data_dir))
        timed(
            f"land day {options.history_days + 1}", lambda: land_day(data_dir, points, options.history_days)
        )
        latest = timed(
            f"dbt build, day {options.history_days + 1} (incremental)", lambda: dbt_build(data_dir)
        )
        timed("land late samples into yesterday", lambda: land_late(data_dir, points, options.history_days))
        heal_recent = timed("dbt build after healing yesterday", lambda: dbt_build(data_dir))
        timed(f"land late samples {options.history_days} days back", lambda: land_late(data_dir, points, 0))
        heal_old = timed(
            f"dbt build after healing {options.history_days} days back", lambda: dbt_build(data_dir)
        )
        timed("publish warehouse (checkpoint, copy, rename)", lambda: publish_warehouse(data_dir))

        size_gb = (build_dir(data_dir) / "warehouse.duckdb").stat().st_size / 1e9
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB
        print(f"ratio day {options.history_days + 1} / day 1: {latest / first:.2f} (target <= 1.5)")
        print(
            f"ratio healing {options.history_days} days back / healing yesterday: {heal_old / heal_recent:.2f} "
            "(target <= 1.5)"
        )
        print(f"warehouse: {size_gb:.1f} GB; peak RSS: {peak_gb:.1f} GB")
    finally:
        if options.data_dir is None:
            shutil.rmtree(data_dir.parent)


if __name__ == "__main__":
    main()
