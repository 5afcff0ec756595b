"""The dbt project, run for real: `dbt build` on a DuckDB file, fed with landing files.

One landing goes through a sequence of builds (module-scoped fixtures, since each dbt run costs seconds):
first load, an identical rebuild, a re-run of an old window while an analyst holds the warehouse, and a
full refresh. Each stage keeps a copy of the published warehouse for the assertions.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ace_etl import generations
from ace_etl.transform import DBT_PROJECT_DIR, TransformError, build_warehouse
from tests.landing_factory import (
    samples,
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
    "timeseries_hourly",
    "timeseries_daily",
    "timeseries_gaps",
    "timeseries_coverage",
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


@pytest.fixture(scope="module", autouse=True)
def catch_up() -> Iterator[None]:
    """Builds here are small and quick, so copying the warehouse would always look cheaper: make every
    build catch up on the generation behind instead, so that real dbt runs that path (ace_etl.generations)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generations, "COPY_BYTES_PER_S", 1e-9)
        yield


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
        "points": 5,
        "timeseries_hourly": 4 * 3,
        "timeseries_daily": 4,
        "timeseries_gaps": 2,
        "timeseries_coverage": 5,
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
    # Only rows of the re-landed window were rewritten.
    assert stage.rows(
        "select created_at = (select max(created_at) from timeseries_raw), count(*) from timeseries_raw group by 1 order by 1"
    ) == [(False, 192), (True, 360)]
    # The filled gap is gone, and so is its warning.
    assert stage.rows("select point_name from timeseries_gaps") == [("p4",)]
    assert stage.rows("select received_samples from timeseries_coverage where point_name = 'p2'") == [(180,)]
    assert stage.rows(
        "select sample_count, value_avg from timeseries_hourly where point_name = 'p1' and hour(hour) = 1"
    ) == [(60, 89.5)]


def test_builds_after_the_first_parse_only_what_changed(
    rerun: tuple[Stage, AnalystView], data_dir: Path
) -> None:
    # Each build writes another generation, through one path (`.build/building`): were the profile's path
    # to change, dbt would re-parse the whole project every time (4 s).
    log = (data_dir / ".build" / "logs" / "dbt.log").read_text()
    assert log.count("Running with dbt=") >= 3 and "profile has changed" not in log


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
    # Bookkeeping and intermediate models are in `internal`: one record of loaded files per landing model.
    assert "int_timeseries__point_days" in schemas["internal"]
    assert "timeseries_raw__landing_loads" in schemas["internal"]


def test_a_copied_landing_file_is_reported_and_a_duplicate_key_anywhere_fails_the_build(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY, 10, collected_at=FIRST), "w1")
    (original,) = write_rejects(data_dir, reject_rows(SITE), "w1")
    shutil.copyfile(original, original.with_name("w1 (copy).parquet"))
    result = build_warehouse(data_dir)
    (warning,) = [w for w in result.warnings if w.startswith("duplicate_landing_files")]
    assert "Got 1 result" in warning  # one set of identical files
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as by_hand:
        assert by_hand.execute("select count(*) from timeseries_raw").fetchall() == [(10,)]
        # A duplicate of the oldest row, far from anything a later build writes: the test sees it anyway.
        by_hand.execute("insert into timeseries_raw select * from timeseries_raw order by timestamp limit 1")
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY + timedelta(days=30), 10, collected_at=FIRST), "w2")
    with pytest.raises(TransformError, match="unique_timeseries_raw_id"):
        build_warehouse(data_dir)


def test_a_warehouse_from_before_per_model_records_is_not_reloaded_on_upgrade(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY, 10, collected_at=FIRST), "w1")
    build_warehouse(data_dir)
    # What the previous version left: one registry in the analysts' schema, no record per model.
    with duckdb.connect(str(data_dir / "warehouse.duckdb")) as old:
        loads = [name for (name,) in old.execute(
            "select table_name from information_schema.tables where table_schema = 'internal' "
            "and table_name like '%__landing_loads'"
        ).fetchall()]  # fmt: skip
        old.execute(
            "create table main.stg_landing__files as "
            + " union all ".join(
                f"select path, regexp_extract(path, '.*/landing/([^/]+)/', 1) as dataset, size_bytes, "
                f"modified_at, '-infinity'::timestamptz as registered_at from internal.{name}"
                for name in loads
            )
        )
        for name in loads:
            old.execute(f"drop table internal.{name}")
        loaded_at = old.execute("select max(created_at) from timeseries_raw").fetchall()
    write_timeseries(data_dir, samples(SITE, ["p1"], DAY + timedelta(days=1), 10, collected_at=FIRST), "w2")
    build_warehouse(data_dir)
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as upgraded:
        # The first file was not read again: its rows keep the time they were loaded.
        assert upgraded.execute(
            "select count(*) filter (where created_at = $at), count(*) from timeseries_raw",
            {"at": loaded_at[0][0]},
        ).fetchall() == [(10, 20)]
        tables = upgraded.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
        ).fetchall()
    assert ("main.stg_landing__files",) not in tables and (
        "internal.timeseries_raw__landing_loads",
    ) in tables


def test_a_key_fetched_twice_at_the_same_instant_keeps_one_version_whatever_the_build_order(
    tmp_path: Path,
) -> None:
    # Two files hold the same sample with the same collected_at and different values. Built together, or
    # one build after the other in either order, the warehouse keeps the same version.
    versions = {
        name: samples(SITE, ["p1"], DAY, 1, collected_at=FIRST).with_columns(value=pl.lit(value))
        for name, value in (("a-first", 2.0), ("z-last", 1.0))
    }

    def kept(*batches: tuple[str, ...]) -> list[tuple[float]]:
        data_dir = tmp_path / "-".join("+".join(b) for b in batches)
        for batch in batches:
            for name in batch:
                write_timeseries(data_dir, versions[name], name)
            build_warehouse(data_dir, select="timeseries_raw")
        with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
            return con.execute("select value from timeseries_raw").fetchall()

    together = kept(("a-first", "z-last"))
    assert kept(("a-first",), ("z-last",)) == together
    assert kept(("z-last",), ("a-first",)) == together
