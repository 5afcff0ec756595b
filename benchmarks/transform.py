"""Does an incremental build cost what the new data costs, or what the history costs? And publishing?

0. Build once on an empty landing, so that every timed build parses and finds its tables as in production.
1. Land one day of 2,000 points x 1,440 minutes (2.88 M samples) and time the build.
2. Land days 2-30 and build once (history; printed, not compared).
3. Land day 31 and time that incremental build.
4. Heal: land late samples into yesterday (day 31), build; then into day 1, 30 days back, build.

Every build is what `ace-etl transform` does: dbt build into a copy of the published warehouse (small: the
raw samples are views over the landing), then rename it over the published one (see ace_etl.transform).
After each landing the benchmark builds twice: the first build processes the new landing (timed and
compared), the second is a build with nothing new. Publishing is timed on its own: it must not grow with
the history.

Prints the times, their ratios (targets <= 1.5: day 31 / day 1, and healing day 1 / healing day 31; publish
day 31 / day 1 near 1), disk used by the build folder, and peak RSS. dbt runs in this process, as
PrefectDbtRunner would, so the RSS includes DuckDB.

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

from ace_etl.transform import build_dir, building, dbt_build, warehouse_file
from tests.landing_factory import samples, write_timeseries

SITE = "bench"
FIRST_DAY = datetime(2025, 1, 1, tzinfo=UTC)
PAGE_ROWS = 100_000  # the API's largest page: the extractor lands one file per page


def land_day(data_dir: Path, points: list[str], day: int) -> None:
    start = FIRST_DAY + timedelta(days=day)
    rows = samples(SITE, points, start, 1440, collected_at=start + timedelta(days=1, minutes=5))
    for page, offset in enumerate(range(0, rows.height, PAGE_ROWS)):
        write_timeseries(
            data_dir, rows.slice(offset, PAGE_ROWS), f"{start:%Y%m%d}-page{page:03d}", merge=False
        )


def land_late(data_dir: Path, points: list[str], day: int) -> None:
    """What `ace-etl heal` lands for a day: samples that arrived late (here, half-minute readings of a tenth of
    the points over four hours), in a patch file of their own."""
    start = FIRST_DAY + timedelta(days=day, hours=20, seconds=30)
    rows = samples(SITE, points[::10], start, 240, collected_at=datetime.now(UTC))
    write_timeseries(data_dir, rows, f"{start:%Y%m%d}-heal", merge=False)


def timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<52} {elapsed:8.1f} s", flush=True)
    return elapsed


def build_twice(data_dir: Path, label: str) -> tuple[float, float]:
    """Build and publish (timed), then build with nothing new; returns (build, publish) seconds."""
    started = time.perf_counter()
    with building(data_dir):
        dbt_build(data_dir)
        built = time.perf_counter()
    published = time.perf_counter()
    print(
        f"{'build, ' + label:<52} {built - started:8.1f} s   publish {published - built:6.3f} s", flush=True
    )
    timed("  next build, nothing new", lambda: build_once(data_dir))
    return built - started, published - built


def build_once(data_dir: Path) -> None:
    with building(data_dir):
        dbt_build(data_dir)


def folder_gb(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*.duckdb")) / 1e9


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
        timed("warm-up builds on an empty landing", lambda: [build_once(data_dir) for _ in range(2)])
        timed("land day 1", lambda: land_day(data_dir, points, 0))
        first, first_publish = build_twice(data_dir, "day 1")
        days = options.history_days
        timed(f"land days 2-{days}", lambda: [land_day(data_dir, points, d) for d in range(1, days)])
        build_twice(data_dir, f"days 2-{days}")
        timed(f"land day {days + 1}", lambda: land_day(data_dir, points, days))
        latest, latest_publish = build_twice(data_dir, f"day {days + 1} (incremental)")
        timed("land late samples into yesterday", lambda: land_late(data_dir, points, days))
        heal_recent, _ = build_twice(data_dir, "after healing yesterday")
        timed(f"land late samples {days} days back", lambda: land_late(data_dir, points, 0))
        heal_old, _ = build_twice(data_dir, f"after healing {days} days back")

        size_gb = warehouse_file(data_dir).stat().st_size / 1e9
        copy_started = time.perf_counter()
        shutil.copyfile(warehouse_file(data_dir), data_dir / "copy.duckdb")  # what publishing used to do
        copy_s = time.perf_counter() - copy_started
        (data_dir / "copy.duckdb").unlink()
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB
        print(f"ratio day {days + 1} / day 1: {latest / first:.2f} (target <= 1.5)")
        print(
            f"ratio healing {days} days back / healing yesterday: {heal_old / heal_recent:.2f} (target <= 1.5)"
        )
        print(
            f"publish: day 1 {first_publish * 1000:.0f} ms, day {days + 1} {latest_publish * 1000:.0f} ms; "
            f"copying the warehouse, as publishing used to, takes {copy_s:.1f} s "
            f"(publish / copy at day {days + 1}: {latest_publish / copy_s:.3f})"
        )
        print(
            f"warehouse: {size_gb:.2f} GB; build folder: {folder_gb(build_dir(data_dir)):.2f} GB; "
            f"peak RSS: {peak_gb:.1f} GB"
        )
    finally:
        if options.data_dir is None:
            shutil.rmtree(data_dir.parent)


if __name__ == "__main__":
    main()
