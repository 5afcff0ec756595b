"""The warehouse end to end: the real extractor fetches from the simulator over loopback HTTP and lands
Parquet, real `dbt build` turns it into DuckDB, and every table is checked exactly against `served_samples`.

`tests/test_dbt.py` covers the same ground on hand-made landing files; this file proves the two stages agree.
Module-scoped fixtures chain the builds of one landing (first load, an identical re-run, a re-extraction in
overlapping windows, a build under an analyst's open connection); a second landing without bad values
holds the gap and coverage checks, where a rejected sample would be a gap of its own.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, served_samples, site_points
from ace_etl.transform import build_dir, building, warehouse_file
from extract.api.client import AceClient
from extract.api.retry import RetryPolicy
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from extract.run.job import Job
from extract.run.pipeline import run_extract
from extract.windows import Window
from tests.support import Stage, build

pytestmark = pytest.mark.timeout(300)

SITE = "demo-site"
START = datetime(2024, 3, 1, tzinfo=UTC)
END = START + timedelta(hours=12)
LATER = END + timedelta(hours=3)
INTERVAL = 300
FAST_RETRIES = RetryPolicy(max_attempts=6, deadline=30, backoff_initial=0.01, backoff_max=0.05, jitter=0.01)
REASONS = {"text": "non_numeric_value", "null": "null_value", "bad_timestamp": "bad_timestamp"}

CONFIGURED = [p.name for p in site_points(SITE, 12, INTERVAL, 0.75) if p.configured]
GAPPY, SILENT = CONFIGURED[0], CONFIGURED[-1]
# Unaligned bounds: GAPPY misses its samples 04:05 to 05:30, so its gap runs from 04:00 to 05:35.
# Reykjavik keeps UTC all year: the site's local days, which these tests count, are UTC days.
REYKJAVIK = (64.1466, -21.9426)
OUTAGES = ((GAPPY, "2024-03-01T04:02:30Z", "2024-03-01T05:31:00Z"), (SILENT, None, None))
GAP_MISSING = 18
SAMPLES_PER_POINT = (END - START) // timedelta(seconds=INTERVAL)
CLEAN = SimulatorConfig(
    sites=(SITE,),
    points=12,
    interval=INTERVAL,
    configured_fraction=0.75,
    outages=OUTAGES,
    site_locations=((SITE, *REYKJAVIK),),
)
FAULTY = replace(CLEAN, faults=Faults(bad_value_fraction=0.05))


def extract(
    cfg: SimulatorConfig, data_dir: Path, start: datetime = START, end: datetime = END, **options: Any
) -> None:
    settings: dict[str, Any] = {"window_hours": 3, "page_size": 150, "max_workers": 2, **options}
    job = Job(sites=cfg.sites, span=Window(start, end), data_dir=data_dir, **settings)
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, cfg.api_key, retry_policy=FAST_RETRIES, requests_per_minute=None) as client,
    ):
        result = run_extract(client, LocalStorage(data_dir), job)
    result.raise_if_failed()


def frame(stage: Stage, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(stage.copy), read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        return connection.sql(sql).pl()


def tables(stage: Stage) -> list[str]:
    """The analysts' tables (schema main)."""
    return [
        name
        for (name,) in stage.rows(
            "select table_name from information_schema.tables where table_schema = 'main' order by 1"
        )
    ]


def served_configured(cfg: SimulatorConfig, start: datetime = START, end: datetime = END) -> pl.DataFrame:
    return served_samples(cfg, SITE, start, end).filter(pl.col("name").is_in(CONFIGURED))


def rejected() -> pl.Expr:
    return pl.col("bad_kind").is_in(list(REASONS)).fill_null(False)


def expected_rows(cfg: SimulatorConfig, start: datetime = START, end: datetime = END) -> pl.DataFrame:
    """timeseries_raw as a correct pipeline loads it: configured points, coercible values only."""
    return (
        served_configured(cfg, start, end)
        .filter(~rejected())
        .select(site_name=pl.lit(SITE), point_name="name", timestamp="time", value="value")
        .sort("point_name", "timestamp")
    )


def expected_rejects(cfg: SimulatorConfig) -> pl.DataFrame:
    """timeseries_rejects: the raw text as the extractor reads it (JSON strings unquoted, null as null).

    A reject's identity is its raw text, so two rejects of one point reading alike would be one row.
    """
    value_raw = pl.col("value_raw")
    return (
        served_configured(cfg)
        .filter(rejected())
        .select(
            point_name="name",
            timestamp_raw="time_raw",
            value_raw=pl.when(value_raw != "null").then(value_raw.str.strip_chars('"')),
            reason=pl.col("bad_kind").replace_strict(REASONS),
        )
        .unique()
        .sort(pl.all())
    )


def actual_rejects(stage: Stage) -> pl.DataFrame:
    return frame(stage, "select point_name, timestamp_raw, value_raw, reason from timeseries_rejects").sort(
        pl.all()
    )


# --- one landing, built four times ----------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse") / "data"


@pytest.fixture(scope="module")
def first(data_dir: Path) -> Stage:
    extract(FAULTY, data_dir)
    return build(data_dir, "first")


@pytest.fixture(scope="module")
def second(first: Stage, data_dir: Path) -> Stage:
    extract(FAULTY, data_dir)
    return build(data_dir, "second")


@dataclass(frozen=True)
class Overlapped:
    stage: Stage
    landed: pl.DataFrame
    """Every landed timeseries row."""


@pytest.fixture(scope="module")
def overlapped(second: Stage, data_dir: Path) -> Overlapped:
    # Windows of 5 h from 01:00 cut the range elsewhere than the first run's 3 h windows from 00:00: the
    # forced re-extraction covers the hull of the windows it overlaps and replaces their files, so every
    # sample is fetched again, collected later, and the landing still holds each sample once.
    extract(FAULTY, data_dir, START + timedelta(hours=1), window_hours=5, force=True)
    landed = lake.read(LocalStorage(data_dir), TIMESERIES)  # the log's snapshot: a glob reads replaced files
    return Overlapped(build(data_dir, "overlapped"), landed)


@dataclass(frozen=True)
class AnalystSession:
    stage: Stage
    before: list[tuple]
    during: list[tuple]
    after: list[tuple]


@pytest.fixture(scope="module")
def analyst(overlapped: Overlapped, data_dir: Path) -> AnalystSession:
    query = "select count(*), max(timestamp) from timeseries_raw"
    published = str(data_dir / "warehouse.duckdb")
    with duckdb.connect(published, read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        before = connection.execute(query).fetchall()
        extract(FAULTY, data_dir, END, LATER)
        stage = build(data_dir, "analyst")
        during = connection.execute(query).fetchall()
    with duckdb.connect(published, read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        after = connection.execute(query).fetchall()
    return AnalystSession(stage, before, during, after)


def test_raw_rows_are_exactly_the_coercible_samples_served(first: Stage) -> None:
    expected = expected_rows(FAULTY)
    kinds = served_configured(FAULTY).get_column("bad_kind")
    assert {"bool", "numeric_string"} <= set(kinds.drop_nulls())
    loaded = frame(first, "select site_name, point_name, timestamp, value from timeseries_raw")
    assert loaded.sort("point_name", "timestamp").equals(expected)
    assert GAPPY in loaded["point_name"] and SILENT not in loaded["point_name"]


def test_rejects_carry_their_raw_text_and_reason(first: Stage) -> None:
    expected = expected_rejects(FAULTY)
    assert set(expected["reason"]) == set(REASONS.values())
    assert actual_rejects(first).equals(expected)
    assert first.rows("select reason, count(*) from timeseries_rejects group by 1 order by 1") == sorted(
        expected.group_by("reason").len().iter_rows()
    )


def test_etl_runs_account_for_every_fetched_sample(first: Stage) -> None:
    served = served_samples(FAULTY, SITE, START, END)
    runs = first.rows(
        "select count(*), bool_and(status = 'complete'), sum(records_fetched), sum(records_kept), "
        "sum(records_filtered), sum(records_rejected), "
        "bool_and(records_fetched = records_kept + records_filtered + records_rejected) from etl_runs"
    )
    kept = expected_rows(FAULTY).height
    bad = served_configured(FAULTY).filter(rejected()).height
    assert runs == [(4, True, served.height, kept, served.height - kept - bad, bad, True)]


def test_an_identical_rerun_changes_only_the_run_log(first: Stage, second: Stage) -> None:
    assert tables(second) == tables(first)
    for table in tables(first):
        if table != "etl_runs":
            assert second.contents(table) == first.contents(table), table
    assert second.rows("select status, count(*) from etl_runs group by 1 order by 1") == [
        ("complete", 4),
        ("skipped", 4),
    ]


def test_overlapping_windows_keep_one_row_per_key_from_the_latest_fetch(
    second: Stage, overlapped: Overlapped
) -> None:
    stage, landed = overlapped.stage, overlapped.landed
    key = ["point_name", "timestamp"]
    assert landed.height == landed.unique(key).height
    assert stage.rows(
        "select count(*) = count(distinct (site_name, point_name, timestamp)) from timeseries_raw"
    ) == [(True,)]
    loaded = frame(stage, "select site_name, point_name, timestamp, value, collected_at from timeseries_raw")
    assert loaded.drop("collected_at").sort(key).equals(expected_rows(FAULTY))
    newest = landed.group_by(key).agg(pl.col("collected_at").max()).sort(key)
    assert loaded.select(*key, "collected_at").sort(key).equals(newest)
    ((first_fetch,),) = second.rows("select max(collected_at) from timeseries_raw")
    refetched = loaded.filter(pl.col("timestamp") >= START + timedelta(hours=1))
    assert refetched["collected_at"].min() > first_fetch
    assert actual_rejects(stage).equals(expected_rejects(FAULTY))


def test_an_analyst_reading_during_a_build_keeps_a_working_connection(analyst: AnalystSession) -> None:
    rows = expected_rows(FAULTY)
    assert analyst.before == analyst.during == [(rows.height, rows["timestamp"].max())]
    both = expected_rows(FAULTY, START, LATER)
    assert analyst.after == [(both.height, both["timestamp"].max())]
    assert analyst.stage.rows("select count(*) from timeseries_raw") == [(both.height,)]


# --- gaps and coverage, on a landing without bad values --------------------------------------


@dataclass(frozen=True)
class GapsBuild:
    stage: Stage
    reported: list[tuple]
    """The rows the `points_with_gaps` test found, run against the published warehouse."""


@pytest.fixture(scope="module")
def gaps(tmp_path_factory: pytest.TempPathFactory) -> GapsBuild:
    data_dir = tmp_path_factory.mktemp("gaps") / "data"
    extract(CLEAN, data_dir)
    stage = build(data_dir, "gaps")
    test_sql = next((build_dir(data_dir) / "target" / "compiled").rglob("points_with_gaps.sql"))
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as connection:
        connection.execute("set TimeZone = 'UTC'")
        reported = connection.execute(test_sql.read_text() + " order by point_name").fetchall()
    return GapsBuild(stage, reported)


def at(hours: int, minutes: int) -> datetime:
    return START + timedelta(hours=hours, minutes=minutes)


def test_a_planted_gap_and_a_silent_point_are_the_only_gaps(gaps: GapsBuild) -> None:
    # The range asked is the extraction's, [00:00, 12:00): the silent point misses all of it.
    by_point = {GAPPY: (at(4, 0), at(5, 35), GAP_MISSING), SILENT: (START, at(12, 0), SAMPLES_PER_POINT)}
    assert gaps.stage.rows(
        "select site_name, point_name, gap_start, gap_end, missing_samples, expected_interval_s "
        "from timeseries_gaps order by point_name"
    ) == [(SITE, point, *span, float(INTERVAL)) for point, span in sorted(by_point.items())]
    assert gaps.reported == [
        (SITE, point, 1, n, start, end) for point, (start, end, n) in sorted(by_point.items())
    ]
    assert "points_with_gaps: Got 2 results, configured to warn if >0" in gaps.stage.result.warnings


def test_coverage_is_zero_for_a_silent_point_and_short_for_the_gap(gaps: GapsBuild) -> None:
    received = expected_rows(CLEAN).group_by("point_name").len()
    assert dict(received.iter_rows())[GAPPY] == SAMPLES_PER_POINT - GAP_MISSING
    expected = sorted(
        (point, SAMPLES_PER_POINT, n, n / SAMPLES_PER_POINT)
        for point, n in [*received.iter_rows(), (SILENT, 0)]
    )
    assert (
        gaps.stage.rows(
            "select point_name, expected_samples, received_samples, coverage_ratio "
            "from timeseries_coverage order by point_name"
        )
        == expected
    )
    assert sorted(CONFIGURED) == [point for point, *_ in expected]
    assert "coverage_below_threshold: Got 2 results, configured to warn if >0" in gaps.stage.result.warnings


# --- publishing: built beside the published file, renamed over it -------------------------------
# The "build" here writes one table with DuckDB instead of running dbt: which file a build writes and what
# analysts see do not depend on what dbt puts in it (the tests above run the real thing).

NOTEBOOK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
sys.stdin.read()
print(connection.execute("select v from t").fetchall())
"""


def fake_build(data_dir: Path, value: int) -> Path:
    with building(data_dir) as database, duckdb.connect(str(database)) as db:
        db.execute("create or replace table t as select ? as v", [value])
    return database


def published_value(data_dir: Path) -> int:
    with duckdb.connect(str(warehouse_file(data_dir)), read_only=True) as analyst:
        return int(analyst.execute("select v from t").fetchall()[0][0])


def test_a_reader_holding_the_old_file_keeps_reading_it_while_builds_publish(tmp_path: Path) -> None:
    fake_build(tmp_path, 1)
    # Another process, as a notebook is (DuckDB's file locks do not stop the process that holds them).
    notebook = subprocess.Popen(
        [sys.executable, "-c", NOTEBOOK, str(warehouse_file(tmp_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert notebook.stdout is not None and notebook.stdout.readline() == "open\n"
    fake_build(tmp_path, 2)
    fake_build(tmp_path, 3)
    assert notebook.communicate("", timeout=60)[0] == "[(1,)]\n"
    assert published_value(tmp_path) == 3


def test_a_build_starts_from_the_published_file_and_leaves_one_file(tmp_path: Path) -> None:
    fake_build(tmp_path, 1)
    with duckdb.connect(str(warehouse_file(tmp_path))) as by_hand:  # e.g. a `dbt run` on the published file
        by_hand.execute("create table notes as select 'kept' as note")
    database = fake_build(tmp_path, 2)
    with duckdb.connect(str(warehouse_file(tmp_path)), read_only=True) as analyst:
        assert analyst.execute("select note, (select v from t) from notes").fetchall() == [("kept", 2)]
    # Renamed, not copied: the build folder holds no second database.
    assert not database.exists() and not list(build_dir(tmp_path).rglob("*.duckdb*"))


def test_a_failed_build_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    fake_build(tmp_path, 1)
    inode = warehouse_file(tmp_path).stat().st_ino
    with pytest.raises(RuntimeError), building(tmp_path) as database, duckdb.connect(str(database)) as db:
        db.execute("create or replace table t as select 99 as v")
        raise RuntimeError("a model failed")
    assert warehouse_file(tmp_path).stat().st_ino == inode and published_value(tmp_path) == 1
    assert not list(build_dir(tmp_path).rglob("*.duckdb*"))


def test_a_warehouse_mostly_free_space_is_rewritten_small(tmp_path: Path) -> None:
    # What an earlier version's warehouse is after its raw copies are dropped: a file of free blocks.
    with building(tmp_path) as database, duckdb.connect(str(database)) as db:
        db.execute("create table raw_copy as select range as v, md5(range::varchar) as h from range(2000000)")
        db.execute("create table t as select 1 as v")
    large = warehouse_file(tmp_path).stat().st_size
    with building(tmp_path) as database, duckdb.connect(str(database)) as db:
        db.execute("drop table raw_copy")
        db.execute("create view w as select v + 1 as w from main.t")
    assert warehouse_file(tmp_path).stat().st_size < large / 10
    with duckdb.connect(str(warehouse_file(tmp_path)), read_only=True) as analyst:
        assert analyst.execute("select v, (select w from w) from t").fetchall() == [(1, 2)]
