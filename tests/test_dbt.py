"""The dbt project, run for real: `dbt build` on a DuckDB file, fed with landing files.

One landing goes through a sequence of builds (module-scoped fixtures, since each dbt run costs seconds):
first load, an identical rebuild, a re-run of an old window while an analyst holds the warehouse, and a
full refresh. Each stage keeps a copy of the published warehouse for the assertions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ace_etl.transform import DBT_PROJECT_DIR, build_warehouse, dbt_vars, shared_parse
from extract.errors import TransformError
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from tests.landing_factory import (
    samples,
    timeseries_rows,
    write_points,
    write_rejects,
    write_runs,
    write_selections,
    write_timeseries,
    write_weather,
)
from tests.support import Stage, build

pytestmark = pytest.mark.timeout(300)

# A name a folder cannot hold as is: the warehouse must take it from the file contents.
SITE = "Site A/1"
DAY = datetime(2025, 1, 1, tzinfo=UTC)
POINTS = ["p1", "p2", "p3"]  # p3 is not configured: its interval is its median step
SLOW_POINT = "p5"  # every 15 minutes: its last sample, at 02:45, is not 14 minutes late
STALE, FIRST, OVERLAP, RERUN = (DAY + timedelta(hours=h) for h in (1, 3, 4, 5))

TABLES = [
    "timeseries_raw",
    "weather_raw",
    "timeseries_rejects",
    "etl_runs",
    "points",
    "sites",
    "timeseries_hourly",
    "timeseries_daily",
    "timeseries_gaps",
    "timeseries_coverage",
    "timeseries_excursions",
    "timeseries_anomalies",
    "weather_hourly",
    "degree_days",
]


def minute(m: int) -> datetime:
    return DAY + timedelta(minutes=m)


def land_first_day(data_dir: Path) -> None:
    # Window 1 (minutes 0-119) lacks p2's minutes 30-39; window 2 (60-179) overlaps it, fetched an hour
    # later, with every value 0.5 higher so the winner of each overlapping sample is visible.
    window_1 = samples(SITE, POINTS, DAY, 120, collected_at=FIRST)
    planted_gap = (pl.col("point_name") == "p2") & pl.col("timestamp").is_between(minute(30), minute(39))
    write_timeseries(data_dir, window_1.filter(~planted_gap), "w1-page1")
    window_2 = samples(SITE, POINTS, minute(60), 120, collected_at=OVERLAP)
    write_timeseries(data_dir, window_2.with_columns(pl.col("value") + 0.5), "w2-page1")
    slow = samples(SITE, [SLOW_POINT], DAY, 12, collected_at=FIRST, every=timedelta(minutes=15))
    write_timeseries(data_dir, slow, "w1-page2")

    # What the window was asked for: p4 never reports (a gap over the day); p6 is configured but was not
    # selected, so it is not expected.
    write_selections(
        data_dir,
        pl.DataFrame(
            {
                "site_name": SITE,
                "point_name": ["p1", "p2", "p3", "p4", "p5"],
                "window_start": DAY,
                "window_end": minute(180),
            }
        ),
        "w1-selection",
    )
    write_points(
        data_dir,
        pl.DataFrame(
            {
                "site_name": SITE,
                "point_name": ["p1", "p2", "p4", "p5", "p6"],
                "collect_enabled": [True, True, True, True, False],
                "collect_interval": [60, 60, 60, 900, 60],
                "collected_at": FIRST,
                "description": ["supply temp", "return temp", "never reports", "outside air", "disabled"],
            }
        ),
        "points",
    )

    weather = pl.DataFrame(
        {
            "site_name": SITE,
            "timestamp": [DAY + timedelta(hours=h) for h in range(3)],
            "temperature": [1.0, 2.0, 3.0],
            "humidity": 50.0,
            "precipitation": 0.0,
            "wind_speed": 4.0,
            "conditions": "clear",
            "metadata": '{"pressure": 1013}',
            "collected_at": FIRST,
        }
    )
    write_weather(data_dir, weather, "w1-weather")
    write_weather(
        data_dir,
        weather.tail(1).with_columns(temperature=pl.lit(-3.0), collected_at=pl.lit(OVERLAP)),
        "w2-weather",
    )

    rejects = reject_rows(SITE)
    write_rejects(data_dir, rejects, "w1-rejects")
    write_rejects(data_dir, rejects.head(1).with_columns(collected_at=pl.lit(OVERLAP)), "w2-rejects")

    run = {
        "run_id": ["r1", "r1", "r2"],
        "site_name": SITE,
        "window_start": [DAY, DAY + timedelta(hours=1), DAY + timedelta(hours=1)],
        "window_end": [DAY + timedelta(hours=2), DAY + timedelta(hours=3), DAY + timedelta(hours=3)],
        "status": ["complete", "failed", "complete"],
        "api_requests": [2, 5, 2],
        "retries": [0, 3, 0],
        "pages": [1, 0, 1],
        "bytes": [1000, 0, 1000],
        "records_fetched": [350, 0, 360],
        "records_kept": [350, 0, 360],
        "records_filtered": [0, 0, 0],
        "records_rejected": [2, 0, 1],
        "duration_s": [0.5, 9.0, 0.5],
        "error": [None, "HTTP 503 after 3 retries", None],
        "started_at": [FIRST, FIRST, OVERLAP],
        "finished_at": [FIRST, FIRST, OVERLAP],
    }
    write_runs(data_dir, pl.DataFrame(run), "runs-r1-r2")


def reject_rows(site: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "site_name": site,
            "point_name": ["p1", "p2"],
            "timestamp_raw": ["2025-01-01T00:05:00Z", "not a time"],
            "value_raw": ["abc", "1.0"],
            "reason": ["non_numeric_value", "bad_timestamp"],
            "collected_at": FIRST,
        }
    )


def land_rerun(data_dir: Path) -> None:
    # Window 1 fetched again, now complete, under the same file name: the newest fetch of minutes 0-119.
    write_timeseries(data_dir, samples(SITE, POINTS, DAY, 120, collected_at=RERUN), "w1-page1")
    # An older fetch of minutes already loaded from window 2, landing late: it must not win.
    stale = samples(SITE, ["p1"], minute(120), 10, collected_at=STALE).with_columns(value=pl.lit(999.0))
    write_timeseries(data_dir, stale, "w0-late")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("warehouse") / "data"
    land_first_day(path)
    return path


@pytest.fixture(scope="module")
def first(data_dir: Path) -> Stage:
    return build(data_dir, "first")


@pytest.fixture(scope="module")
def second(first: Stage, data_dir: Path) -> Stage:
    return build(data_dir, "second")


@dataclass(frozen=True)
class AnalystView:
    before: int
    during: int
    after: int


@pytest.fixture(scope="module")
def rerun(second: Stage, data_dir: Path) -> tuple[Stage, AnalystView]:
    land_rerun(data_dir)
    count = "select count(*) from timeseries_raw"
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as analyst:
        before = analyst.execute(count).fetchall()[0][0]
        stage = build(data_dir, "rerun")
        during = analyst.execute(count).fetchall()[0][0]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as analyst:
        after = analyst.execute(count).fetchall()[0][0]
    return stage, AnalystView(before, during, after)


@pytest.fixture(scope="module")
def refreshed(rerun: tuple[Stage, AnalystView], data_dir: Path) -> Stage:
    return build(data_dir, "refreshed", full_refresh=True)


def test_first_build_loads_every_table(first: Stage) -> None:
    counts = {table: first.rows(f"select count(*) from {table}")[0][0] for table in TABLES}
    assert counts == {
        "timeseries_raw": 180 + 170 + 180 + 12,
        "weather_raw": 3,
        "timeseries_rejects": 2,
        "etl_runs": 3,
        "points": 6,  # p3 has samples but was never listed: a row without metadata
        "sites": 1,
        "timeseries_hourly": 4 * 3,
        "timeseries_daily": 4,
        "timeseries_gaps": 2,
        "timeseries_coverage": 5,
        "timeseries_excursions": 0,
        "timeseries_anomalies": 0,
        "weather_hourly": 3,
        "degree_days": 1,  # the site has no zone: the UTC day
    }
    assert first.rows("select distinct site_name from timeseries_raw") == [(SITE,)]
    # Data-quality findings warn (this landing is from 2025, hence stale); nothing else does.
    warned = {line.split(":")[0] for line in first.result.warnings}
    assert warned == {"points_with_gaps", "coverage_below_threshold", "timeseries_landing_age_hours"}


def test_overlapping_windows_keep_the_latest_fetch(first: Stage) -> None:
    rows = first.rows(
        "select minute(timestamp) + 60 * hour(timestamp), value, collected_at from timeseries_raw "
        "where point_name = 'p1' and minute(timestamp) = 0 order by timestamp"
    )
    assert rows == [(0, 0.0, FIRST), (60, 60.5, OVERLAP), (120, 120.5, OVERLAP)]
    assert first.rows(
        "select temperature, collected_at from weather_raw where timestamp = '2025-01-01 02:00:00+00'"
    ) == [(-3.0, OVERLAP)]
    assert first.rows(
        "select point_name, reason, collected_at from timeseries_rejects order by point_name"
    ) == [
        ("p1", "non_numeric_value", OVERLAP),
        ("p2", "bad_timestamp", FIRST),
    ]


def test_raw_rows_carry_contract_columns(first: Stage) -> None:
    ((id_, quality),) = first.rows(
        "select id, quality from timeseries_raw where point_name = 'p2' and timestamp = '2025-01-01 00:00:00+00'"
    )
    assert quality == "unknown"
    assert first.rows(
        "select md5_number(json_array('Site A/1', 'p2', epoch_us(timestamptz '2025-01-01 00:00:00+00'))::varchar)"
    ) == [(id_,)]
    assert first.rows("select distinct metadata->>'pressure' from weather_raw") == [("1013",)]


def test_hourly_and_daily_aggregates(first: Stage) -> None:
    hourly = first.rows(
        "select point_name, hour(hour), sample_count, value_min, value_max, value_avg, value_first, value_last "
        "from timeseries_hourly where (point_name, hour(hour)) in (('p1', 1), ('p2', 0)) order by point_name"
    )
    assert hourly == [
        ("p1", 1, 60, 60.5, 119.5, 90.0, 60.5, 119.5),
        ("p2", 0, 50, 10000.0, 10059.0, 10028.5, 10000.0, 10059.0),
    ]
    ((count, low, high, avg, first_value, last_value),) = first.rows(
        "select sample_count, value_min, value_max, value_avg, value_first, value_last "
        "from timeseries_daily where point_name = 'p1'"
    )
    assert (count, low, high, first_value, last_value) == (180, 0.0, 179.5, 0.0, 179.5)
    assert avg == pytest.approx((sum(range(180)) + 0.5 * 120) / 180)


def test_planted_gap_and_silent_point_show_as_gaps(first: Stage) -> None:
    assert first.rows(
        "select point_name, gap_start, gap_end, missing_samples, expected_interval_s from timeseries_gaps order by all"
    ) == [
        ("p2", minute(29), minute(40), 10, 60.0),
        ("p4", minute(0), minute(180), 180, 60.0),  # the whole window asked, [00:00, 03:00)
    ]
    # The gap test names the points; it warns rather than fails by default.
    assert any(line.startswith("points_with_gaps: Got 2 results") for line in first.result.warnings)


def test_coverage_counts_expected_and_received(first: Stage) -> None:
    assert first.rows(
        "select point_name, expected_samples, received_samples, round(coverage_ratio, 4) "
        "from timeseries_coverage order by point_name"
    ) == [
        ("p1", 180, 180, 1.0),
        ("p2", 180, 170, round(170 / 180, 4)),
        ("p3", 180, 180, 1.0),
        ("p4", 180, 0, 0.0),
        (SLOW_POINT, 12, 12, 1.0),
    ]
    assert any(line.startswith("coverage_below_threshold: Got 1 result") for line in first.result.warnings)


def test_second_identical_build_changes_nothing(first: Stage, second: Stage) -> None:
    for table in TABLES:
        assert second.contents(table) == first.contents(table), table


def test_rerun_replaces_old_window_and_ignores_stale_fetch(
    second: Stage, rerun: tuple[Stage, AnalystView]
) -> None:
    stage, _ = rerun
    assert stage.rows("select count(*) from timeseries_raw") == [(552,)]
    # The re-run beats window 2 on minutes 60-119; the late, older fetch of minutes 120-129 loses.
    assert stage.rows(
        "select minute(timestamp) + 60 * hour(timestamp), value, collected_at from timeseries_raw "
        "where point_name = 'p1' and minute(timestamp) = 0 order by timestamp"
    ) == [(0, 0.0, RERUN), (60, 60.0, RERUN), (120, 120.5, OVERLAP)]
    # The filled gap is gone, and so is its warning.
    assert stage.rows("select point_name from timeseries_gaps") == [("p4",)]
    assert stage.rows("select received_samples from timeseries_coverage where point_name = 'p2'") == [(180,)]
    assert stage.rows(
        "select sample_count, value_avg from timeseries_hourly where point_name = 'p1' and hour(hour) = 1"
    ) == [(60, 89.5)]


def test_builds_after_the_first_parse_only_what_changed(
    rerun: tuple[Stage, AnalystView], data_dir: Path
) -> None:
    # Each build writes a copy of the published file, always at one path (`.build/next`): were the
    # profile's path to change, dbt would re-parse the whole project every time (4 s).
    log = (data_dir / ".build" / "logs" / "dbt.log").read_text()
    assert log.count("Running with dbt=") >= 3 and "profile has changed" not in log
    # At info level (DBT_LOG_LEVEL_FILE unset), the log names each node but not every statement.
    assert "OK created sql incremental model main.timeseries_hourly" in log and "[debug]" not in log


def test_point_days_never_runs_beside_a_model_that_aggregates_hourly(
    rerun: tuple[Stage, AnalystView], data_dir: Path
) -> None:
    # A backfill's point-day lists need most of DuckDB's memory limit, and beside hourly, daily or anomalies
    # they spilled (int_timeseries__point_days.sql): each of those ends before point-days starts, or starts
    # after it ends. The log's lines are in the order things happened.
    log = (data_dir / ".build" / "logs" / "dbt.log").read_text().split("Running with dbt=")[-1]
    order = {
        (event, model): place
        for place, (event, model) in enumerate(
            re.findall(r"(START|OK created) sql \w+ model \w+\.(\w+) ", log)
        )
    }
    point_days = (
        order[("START", "int_timeseries__point_days")],
        order[("OK created", "int_timeseries__point_days")],
    )
    for model in ("timeseries_hourly", "timeseries_daily", "timeseries_anomalies"):
        start, end = order[("START", model)], order[("OK created", model)]
        assert end < point_days[0] or start > point_days[1], (
            model,
            sorted(order.items(), key=lambda kv: kv[1]),
        )


def test_another_process_opens_the_warehouse_built_in_this_one(
    first: Stage, second: Stage, rerun: tuple[Stage, AnalystView], refreshed: Stage
) -> None:
    # dbt-duckdb keeps its database open in the process that ran dbt; a Prefect worker lives on, and an
    # analyst's notebook would meet "Conflicting lock" until it exited.
    for stage in (first, second, rerun[0], refreshed):
        assert stage.open_elsewhere == ""


def test_analyst_connection_survives_build(rerun: tuple[Stage, AnalystView]) -> None:
    _, analyst = rerun
    assert (analyst.before, analyst.during, analyst.after) == (542, 542, 552)


def test_full_refresh_matches_incremental(rerun: tuple[Stage, AnalystView], refreshed: Stage) -> None:
    incremental, _ = rerun
    for table in TABLES:
        assert refreshed.contents(table, ignore=("created_at",)) == incremental.contents(
            table, ignore=("created_at",)
        )


@pytest.fixture(scope="module")
def empty_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("empty") / "data"
    # A fresh install: some landing folders exist but hold nothing, the others are missing.
    (path / "landing" / "timeseries").mkdir(parents=True)
    (path / "landing" / "rejects").mkdir()
    return path


@pytest.fixture(scope="module")
def empty(empty_data_dir: Path) -> Stage:
    return build(empty_data_dir, "empty")


def test_empty_landing_builds_empty_tables(empty: Stage) -> None:
    for table in TABLES:
        assert empty.rows(f"select count(*) from {table}") == [(0,)], table
    # Nothing has arrived: that is not "fresh".
    assert any(w.startswith("timeseries_landing_age_hours") for w in empty.result.warnings)
    assert set(empty.columns("timeseries_raw")) == {
        "id", "site_name", "point_name", "timestamp", "value", "quality", "metadata", "collected_at", "created_at",
    }  # fmt: skip


def test_failed_build_raises_and_keeps_published_warehouse(empty: Stage, empty_data_dir: Path) -> None:
    # A readable Parquet file that breaks the contract: its collection time is not a time.
    folder = empty_data_dir / "landing" / "rejects" / "site_name=x" / "date=2025-01-01"
    folder.mkdir(parents=True)
    reject_rows("x").with_columns(collected_at=pl.lit("abc")).write_parquet(folder / "bad.parquet")
    published = empty_data_dir / "warehouse.duckdb"
    before = published.stat().st_ino
    with pytest.raises(TransformError, match="timeseries_rejects"):
        build_warehouse(empty_data_dir)
    assert published.stat().st_ino == before
    (folder / "bad.parquet").unlink()


def test_an_unreadable_landing_file_is_set_aside_and_the_build_goes_on(tmp_path: Path) -> None:
    # Rejects are plain Parquet files; the Delta tables' files are only ever read through their log.
    data_dir = tmp_path / "data"
    (good,) = write_rejects(data_dir, reject_rows(SITE), "good")
    truncated = good.with_name("20250101T000000Z_20250102T000000Z_0123456789ab_p000000.parquet")
    truncated.write_bytes(good.read_bytes()[:-100])
    checkpoint = (
        data_dir
        / "state"
        / "checkpoints"
        / good.parent.parent.name
        / "20250101T000000Z_20250102T000000Z.json"
    )
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    build_warehouse(data_dir)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from timeseries_rejects").fetchall() == [(2,)]
    assert not truncated.exists() and not checkpoint.exists()  # the window is fetched again next run
    aside = sorted(p.name for p in (data_dir / "quarantine").rglob("*") if p.is_file())
    assert aside == sorted(
        [truncated.name, truncated.name + ".reason.txt", checkpoint.name, checkpoint.name + ".reason.txt"]
    )


def test_every_published_column_is_described(first: Stage) -> None:
    import yaml

    described: dict[str, set[str]] = {}
    for path in (DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            described[model["name"]] = {c["name"] for c in model.get("columns", []) if c.get("description")}
    missing = {table: set(first.columns(table)) - described.get(table, set()) for table in TABLES}
    assert {table: columns for table, columns in missing.items() if columns} == {}


def test_analysts_schema_holds_the_published_tables_only(first: Stage) -> None:
    schemas = dict(
        first.rows(
            "select table_schema, list(table_name order by table_name) from information_schema.tables "
            "where table_catalog = current_database() group by 1"
        )
    )
    assert schemas["main"] == sorted(TABLES)
    # Bookkeeping and intermediate models are in `internal`: the Delta snapshot read, one record of loaded
    # files per model fed from a plain Parquet dataset; none for the Delta tables, whose log says it all.
    assert {"int_timeseries__point_days", "lake_snapshot", "lake_changes"} <= set(schemas["internal"])
    assert "timeseries_rejects__landing_loads" in schemas["internal"]
    assert not [name for name in schemas["internal"] if name.startswith(("timeseries_raw", "weather_raw"))]


def test_a_copied_landing_file_is_reported(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY, 10, collected_at=FIRST), "w1")
    (original,) = write_rejects(data_dir, reject_rows(SITE), "w1")
    shutil.copyfile(original, original.with_name("w1 (copy).parquet"))
    result = build_warehouse(data_dir)
    (warning,) = [w for w in result.warnings if w.startswith("duplicate_landing_files")]
    assert "Got 1 result" in warning  # one set of identical files
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from timeseries_rejects").fetchall() == [(2,)]


# --- the warehouse over the Delta lake ---------------------------------------------------------


def published(data_dir: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def land_days(data_dir: Path, days: int) -> None:
    """Two points, two hours a day, `days` days."""
    for day in range(days):
        write_timeseries(
            data_dir, samples(SITE, ["p1", "p2"], DAY + timedelta(days=day), 120, collected_at=FIRST), "d"
        )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """`built(days)`: the data dir of a landing of `days` days (`land_days`) just after its first build, for
    one test to change. The module builds each size once and lays a copy of it back for each test that asks,
    always at the same path: a warehouse knows where its lake is, and a copy elsewhere would be a new lake to
    it (every partition changed). The module's tests run one after another, on one worker."""
    root = tmp_path_factory.mktemp("built")
    data_dir = root / "data"

    def fresh(days: int) -> Path:
        shutil.rmtree(data_dir, ignore_errors=True)
        template = root / f"{days}-days"
        if template.exists():
            shutil.copytree(template, data_dir)
        else:
            land_days(data_dir, days)
            build_warehouse(data_dir)
            shutil.copytree(data_dir, template)
        return data_dir

    return fresh


HOURLY_BY_DAY = (
    "select hour::date, list(distinct created_at), count(*), sum(sample_count), sum(value_avg * sample_count) "
    "from timeseries_hourly group by 1 order by 1"
)


def test_the_warehouse_holds_no_raw_sample_and_a_fresh_read_only_process_reads_them(first: Stage) -> None:
    assert (
        first.rows(
            "select table_name from duckdb_tables() where table_name in ('timeseries_raw', 'weather_raw')"
        )
        == []
    )
    assert first.rows(
        "select view_name from duckdb_views() where not internal and view_name like '%_raw' order by 1"
    ) == [("timeseries_raw",), ("weather_raw",)]
    # A new process, read-only, no extension and no setup: the views name the snapshot's files.
    query = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('select count(*), count(distinct id) from timeseries_raw').fetchall())"
    )
    out = subprocess.run(
        [sys.executable, "-c", query, str(first.copy)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[(542, 542)]"


def test_a_change_in_one_day_recomputes_only_that_day_with_the_landed_values(
    built: Callable[[int], Path],
) -> None:
    data_dir = built(3)
    before = published(data_dir, HOURLY_BY_DAY)
    storage = LocalStorage(data_dir)
    # Day 2's window extracted again: p2 is no longer selected, p1's values are 0.5 higher.
    day_2 = DAY + timedelta(days=1)
    again = timeseries_rows(
        samples(SITE, ["p1"], day_2, 120, collected_at=RERUN).with_columns(pl.col("value") + 0.5)
    )
    lake.replace_range(storage, TIMESERIES, SITE, day_2, day_2 + timedelta(hours=2), again, attempt="a")
    # Heal lands samples of day 3 that the table does not hold (and one it does, which is skipped).
    day_3 = DAY + timedelta(days=2)
    late = timeseries_rows(samples(SITE, ["p1"], day_3 + timedelta(minutes=119), 3, collected_at=RERUN))
    assert lake.insert_new(storage, TIMESERIES, SITE, late, ["site_name", "point_name", "timestamp"]) == 2
    build_warehouse(data_dir)
    after = published(data_dir, HOURLY_BY_DAY)
    assert after[0] == before[0]  # day 1 untouched: same rows, same created_at
    assert after[1][1] != before[1][1] and after[2][1] != before[2][1]
    p1_day_2 = sum(range(120)) + 0.5 * 120
    assert after[1][2:] == (2, 120, pytest.approx(p1_day_2))  # p2's rows of day 2 are gone
    assert after[2][2:4] == (5, 242)
    assert published(
        data_dir, "select day, point_name, sample_count from timeseries_daily order by all"
    ) == [
        (DAY.date(), "p1", 120), (DAY.date(), "p2", 120),
        (day_2.date(), "p1", 120),
        (day_3.date(), "p1", 122), (day_3.date(), "p2", 120),
    ]  # fmt: skip
    assert published(data_dir, "select count(*) from timeseries_raw") == [(602,)]


def test_a_build_with_nothing_new_recomputes_nothing(built: Callable[[int], Path]) -> None:
    data_dir = built(2)
    before = published(data_dir, HOURLY_BY_DAY)
    build_warehouse(data_dir)
    assert published(data_dir, "select count(*) from internal.lake_changes") == [(0,)]
    assert published(data_dir, HOURLY_BY_DAY) == before


def test_data_tests_look_at_the_changed_partitions_and_a_full_check_at_every_row(
    built: Callable[[int], Path],
) -> None:
    data_dir = built(2)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as by_hand:
        # A duplicate hour on day 1, which no later build here changes.
        by_hand.execute("insert into timeseries_hourly select * from timeseries_hourly order by hour limit 1")
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY + timedelta(days=5), 10, collected_at=FIRST), "d6")
    build_warehouse(data_dir)  # nightly: tests day 6 only
    with pytest.raises(TransformError, match="primary_key_timeseries_hourly"):
        build_warehouse(data_dir, full_check=True)
    # A duplicate sample landed in day 6 (an append of a key the table holds): that partition changed.
    write_timeseries(
        data_dir, samples(SITE, ["p1"], DAY + timedelta(days=5), 1, collected_at=RERUN), "dup", merge=False
    )
    with pytest.raises(TransformError, match="timeseries_samples_unique") as failed:
        build_warehouse(data_dir)
    assert "timeseries_hourly" not in str(failed.value)
    # A full check groups every key of the raw view as well.
    with pytest.raises(TransformError, match="unique_timeseries_raw_id"):
        build_warehouse(data_dir, full_check=True)


def test_a_key_column_left_null_fails_the_primary_key_test(built: Callable[[int], Path]) -> None:
    # One test per table checks its key is set as well as unique (no not_null per key column).
    data_dir = built(2)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as by_hand:
        by_hand.execute(
            "update timeseries_daily set point_name = null where rowid = (select min(rowid) from timeseries_daily)"
        )
    with pytest.raises(TransformError, match="primary_key_timeseries_daily"):
        build_warehouse(data_dir)


def test_a_value_a_rule_forbids_fails_its_tables_one_test_and_the_failing_row_names_the_rule(
    built: Callable[[int], Path],
) -> None:
    # Each table has one test of its rows (the key and its value rules): fewer nodes for every build to pay.
    data_dir = built(2)
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as by_hand:
        by_hand.execute(
            "update timeseries_hourly set on_ratio = 1.5 where rowid = (select min(rowid) from timeseries_hourly)"
        )
    with pytest.raises(TransformError, match="primary_key_timeseries_hourly"):
        build_warehouse(data_dir, full_check=True)
    # The test's own query, as dbt compiled it, on the warehouse still published: the row and its rule.
    (compiled,) = (data_dir / ".build" / "target" / "compiled").rglob("primary_key_timeseries_hourly_*.sql")
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as analyst:
        failing = analyst.execute(f"select failed, occurrences from ({compiled.read_text()})").fetchall()
    assert failing == [("on_ratio", 1)]


def test_a_landed_value_a_core_tables_contract_forbids_stops_the_build_naming_the_table(
    built: Callable[[int], Path],
) -> None:
    # The core tables' value rules are CHECK constraints: DuckDB refuses the row as it is inserted.
    data_dir = built(2)
    run = {
        "run_id": "r9", "site_name": SITE, "window_start": DAY, "window_end": DAY + timedelta(days=1),
        "status": "paused", "api_requests": 1, "retries": 0, "pages": 1, "bytes": 10, "records_fetched": 0,
        "records_kept": 0, "records_filtered": 0, "records_rejected": 0, "duration_s": 0.1, "error": None,
        "started_at": RERUN, "finished_at": RERUN,
    }  # fmt: skip
    write_runs(data_dir, pl.DataFrame([run]), "runs-r9")
    before = published(data_dir, "select count(*) from etl_runs")
    with pytest.raises(TransformError, match=r"etl_runs.*CHECK.*status"):
        build_warehouse(data_dir)
    assert published(data_dir, "select count(*) from etl_runs") == before  # nothing published


def test_after_a_process_s_first_build_later_full_collections_skip_what_dbt_keeps(
    built: Callable[[int], Path],
) -> None:
    import gc

    data_dir = built(2)  # a build in this process, at the latest here
    frozen = gc.get_freeze_count()
    assert frozen > 0
    build_warehouse(data_dir)
    # Once a process: later builds' objects are collected as before (frozen ones may still be freed).
    assert gc.get_freeze_count() <= frozen


AGGREGATES = {
    "timeseries_hourly": "select * exclude (created_at) from timeseries_hourly order by all",
    "timeseries_daily": "select * exclude (created_at) from timeseries_daily order by all",
    "timeseries_coverage": "select * from timeseries_coverage order by all",
}


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full-refresh"])
def test_aggregates_of_a_day_whose_raw_samples_are_deleted_stay(
    built: Callable[[int], Path], full_refresh: bool
) -> None:
    from deltalake import DeltaTable

    data_dir = built(3)
    aggregates = {table: published(data_dir, sql) for table, sql in AGGREGATES.items()}
    # What retention does: a Delta delete of the day's samples.
    DeltaTable(str(data_dir / "landing" / "timeseries")).delete(f"day = '{(DAY + timedelta(days=1)).date()}'")
    build_warehouse(data_dir, full_refresh=full_refresh)
    assert published(data_dir, "select count(*) from timeseries_raw") == [(2 * 240,)]
    for table, rows in aggregates.items():
        assert published(data_dir, AGGREGATES[table]) == rows, table


def test_a_warehouse_of_an_earlier_version_loses_its_copies_and_keeps_its_aggregates(
    built: Callable[[int], Path],
) -> None:
    data_dir = built(2)
    hourly = published(data_dir, AGGREGATES["timeseries_hourly"])
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as old:
        # What an earlier version left: timeseries_raw a table holding a copy, its record of loaded files.
        old.execute("drop view timeseries_raw")
        old.execute("create table timeseries_raw as select 1 as id")
        old.execute("create table internal.timeseries_raw__landing_loads as select 'x' as path")
    build_warehouse(data_dir)
    assert published(data_dir, "select count(*) from timeseries_raw") == [(480,)]
    assert (
        published(
            data_dir,
            "select table_name from duckdb_tables() where table_name like '%raw%'",
        )
        == []
    )
    assert published(data_dir, AGGREGATES["timeseries_hourly"]) == hourly


def test_the_published_warehouse_records_the_delta_version_it_reads(built: Callable[[int], Path]) -> None:
    data_dir = built(2)
    version = lake.version(LocalStorage(data_dir), TIMESERIES)
    assert published(
        data_dir,
        "select dataset, count(*), min(version), max(version) from internal.lake_snapshot group by 1",
    ) == [("timeseries", 2, version, version)]


def test_data_tests_scoped_to_what_changed_run_after_the_build_lists_it(tmp_path: Path) -> None:
    # A test reading `internal.lake_changes` or the rows a build computed must wait for that build's own
    # list: run before it (the two threads), it checked the last build's partitions and let a backfill's
    # duplicates through.
    from dbt.cli.main import dbtRunner

    args = ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--quiet",
            *dbt_vars()]  # fmt: skip
    with shared_parse(tmp_path / "target", args):  # the builds' parse, not one of its own
        parsed = dbtRunner().invoke(args)
    nodes = parsed.result.nodes

    def ancestors(unique_id: str) -> set[str]:
        found: set[str] = set()
        waiting = [unique_id]
        while waiting:
            node = nodes.get(waiting.pop())  # sources and macros are no nodes here
            for parent in node.depends_on.nodes if node is not None else []:
                if parent not in found:
                    found.add(parent)
                    waiting.append(parent)
        return found

    scoped = {
        node.name: node.unique_id
        for node in nodes.values()
        if node.resource_type == "test" and (node.config.meta or {}).get("partitions") in ("changed", "built")
    }
    assert {"primary_key_weather_raw_site_name__timestamp", "timeseries_samples_unique"} <= scoped.keys()
    late = [
        name for name, unique_id in scoped.items() if "model.ace_etl.lake_changes" not in ancestors(unique_id)
    ]
    assert late == []
