"""Upkeep of the landing's Delta tables on real tables on disk (and on the local S3 server): compaction of
closed days, retention, and a vacuum that keeps every file the published warehouse reads."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake.exceptions import CommitFailedError

from ace_etl.simulator import Simulator, SimulatorConfig
from ace_etl.upkeep import apply_retention, vacuum
from extract.lake import retention, schemas
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, WEATHER
from extract.lake.objectstore import S3Storage
from extract.lake.storage import LocalStorage, Storage
from tests.clihelp import ace_etl, expected_rows, landed_rows
from tests.s3server import BUCKET
from tests.test_lake import KEY, rows

TODAY = datetime.now(UTC).date()


@pytest.fixture(autouse=True)
def _today() -> None:
    """Each test counts its days from the UTC day it starts on, as the code under test does, not from the
    day the module was imported: a suite running past midnight failed five tests here."""
    global TODAY
    TODAY = datetime.now(UTC).date()


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def land(storage: Storage, site: str, day: date, merges: int) -> None:
    """A day as a window commit lands it, then `merges` heal or live merges of an hour each: 1 + merges files."""
    start = midnight(day)
    lake.replace_range(storage, TIMESERIES, site, start, start + timedelta(days=1), rows(site, start, 60),
                       attempt=f"{site}{day:%Y%m%d}")  # fmt: skip
    for hour in range(1, merges + 1):
        lake.insert_new(storage, TIMESERIES, site, rows(site, start + timedelta(hours=hour), 10), KEY)


def held(storage: Storage) -> pl.DataFrame:
    return lake.read(storage, TIMESERIES, schema=schemas.TIMESERIES).sort("site_name", *KEY)


def files_per_day(storage: Storage) -> dict[tuple[str, date], int]:
    parts = lake.partitions(storage, TIMESERIES)
    return {(site, day): files for site, day, files in parts.select("site_name", "day", "files").iter_rows()}


def weather_at(stamp: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {"site_name": "hq", "timestamp": [stamp], "temperature": 1.0, "humidity": 1.0, "precipitation": 0.0,
         "wind_speed": 0.0, "conditions": "clear", "metadata": "{}", "collected_at": stamp},
        schema=schemas.WEATHER,
    )  # fmt: skip


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


def test_compaction_changes_no_row_and_leaves_one_file_per_closed_day_only(storage: LocalStorage) -> None:
    for offset in (3, 2, 0):  # two closed days, and today, which a live run may still be merging into
        land(storage, "hq", TODAY - timedelta(days=offset), merges=3)
    land(storage, "other", TODAY - timedelta(days=2), merges=2)
    before, version = held(storage), lake.version(storage, TIMESERIES)
    assert version is not None

    done = lake.compact_closed(storage, TIMESERIES, sites=["hq"])
    assert sorted(done) == [("hq", TODAY - timedelta(days=3)), ("hq", TODAY - timedelta(days=2))]
    assert lake.version(storage, TIMESERIES) == version + 2  # one commit per partition
    assert held(storage).equals(before)  # read through the log: the same rows, each once
    assert files_per_day(storage) == {
        ("hq", TODAY - timedelta(days=3)): 1,
        ("hq", TODAY - timedelta(days=2)): 1,
        ("hq", TODAY): 4,  # the open day is never compacted
        ("other", TODAY - timedelta(days=2)): 3,  # not a site asked for
    }
    assert lake.compact_closed(storage, TIMESERIES, since=TODAY - timedelta(days=1)) == []
    assert lake.compact_closed(storage, TIMESERIES) == [("other", TODAY - timedelta(days=2))]
    assert lake.compact_closed(storage, TIMESERIES) == []  # nothing left with more than one file
    assert held(storage).equals(before)


def test_a_compaction_and_a_window_commit_of_another_day_do_not_conflict(storage: LocalStorage) -> None:
    """Deterministic interleavings both ways: each commit is made on a snapshot older than the other's. The
    window commit never fails; a compaction that loses is retried."""
    closed, other = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
    land(storage, "hq", closed, merges=2)
    land(storage, "hq", other, merges=0)  # one file: the compactions below leave it alone
    uri = storage.uri(TIMESERIES)

    stale = lake._open(uri)  # the compaction's snapshot, taken before the window commit below
    lake.replace_range(storage, TIMESERIES, "hq", midnight(other), midnight(other) + timedelta(hours=1),
                       rows("hq", midnight(other), 60, value=2.0), attempt="window1")  # fmt: skip
    # delta-rs's optimize takes any removal since its snapshot for a conflict: the compaction is the one that
    # loses (the window commit stands), and compact_closed retries it on the new snapshot.
    with pytest.raises(CommitFailedError, match="concurrent transaction deleted data"):
        stale.optimize.compact(partition_filters=[("site_key", "=", "hq"), ("day", "=", closed.isoformat())])
    assert lake.compact_closed(storage, TIMESERIES, since=closed) == [("hq", closed)]

    land(storage, "hq", closed - timedelta(days=1), merges=2)
    calls = []

    def pages() -> Iterator[pl.DataFrame]:
        # The window commit has loaded its snapshot and is reading its pages: the compaction commits now.
        # (On a thread of its own: delta-rs cannot be called from the thread it is streaming on.)
        calls.append(1)
        yield rows("hq", midnight(other), 60, value=3.0)
        compacted: list[object] = []
        compaction = threading.Thread(
            target=lambda: compacted.extend(
                lake.compact_closed(storage, TIMESERIES, since=closed - timedelta(days=1))
            )
        )
        compaction.start()
        compaction.join()
        assert compacted == [("hq", closed - timedelta(days=1))]
        yield rows("hq", midnight(other), 0)

    lake.replace_range(storage, TIMESERIES, "hq", midnight(other), midnight(other) + timedelta(hours=1), pages,
                       attempt="window2")  # fmt: skip
    assert calls == [1]  # committed at the first try: no conflict, no retry
    operations = [e["operation"] for e in lake._open(uri).history(limit=4)]
    assert operations[:2] == ["WRITE", "OPTIMIZE"]
    landed = held(storage)
    assert landed.height == 2 * (60 + 20) + 60 and landed.unique(list(KEY)).height == landed.height
    assert landed.filter(pl.col("value") == 3.0).height == 60


def test_a_live_merge_into_today_on_a_snapshot_older_than_a_compaction_goes_through(
    storage: LocalStorage,
) -> None:
    closed = TODAY - timedelta(days=2)
    land(storage, "hq", closed, merges=2)
    land(storage, "hq", TODAY, merges=0)
    stale = lake._open(storage.uri(TIMESERIES))  # the live run's snapshot, taken before the compaction
    assert lake.compact_closed(storage, TIMESERIES) == [("hq", closed)]
    new = lake._with_partitions(rows("hq", midnight(TODAY) + timedelta(hours=3), 10), TIMESERIES).to_arrow()
    on = (
        f"t.site_key = 'hq' AND t.site_name = 'hq' AND t.day IN ('{TODAY}') "
        "AND t.point_name = s.point_name AND t.timestamp = s.timestamp"
    )
    merged = stale.merge(new, on, source_alias="s", target_alias="t").when_not_matched_insert_all().execute()
    assert merged["num_target_rows_inserted"] == 10
    assert held(storage).height == (60 + 20) + 60 + 10


def _race(
    prefix: str, role: str, closed: str, other: str, barrier: multiprocessing.synchronize.Barrier
) -> None:
    storage = S3Storage(f"s3://{BUCKET}/{prefix}")
    barrier.wait()
    if role == "compact":
        assert lake.compact_closed(storage, TIMESERIES, since=date.fromisoformat(closed)) == [
            ("hq", date.fromisoformat(closed))
        ]
    else:
        start = midnight(date.fromisoformat(other))
        lake.replace_range(storage, TIMESERIES, "hq", start, start + timedelta(hours=1),
                           rows("hq", start, 60, value=5.0), attempt="racing")  # fmt: skip


def test_a_compaction_racing_a_window_commit_of_another_day_on_s3_both_succeed(
    s3_env: dict[str, str],
) -> None:
    storage = S3Storage(f"s3://{BUCKET}/upkeep")
    closed, other = TODAY - timedelta(days=2), TODAY - timedelta(days=1)
    land(storage, "hq", closed, merges=3)
    land(storage, "hq", other, merges=0)
    before = held(storage)
    context = multiprocessing.get_context("spawn")  # a process that used delta-rs and then forks can hang
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_race, args=("upkeep", role, closed.isoformat(), other.isoformat(), barrier))
        for role in ("compact", "window")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    assert files_per_day(storage)[("hq", closed)] == 1
    landed = held(storage)
    assert landed.filter(pl.col("value") == 5.0).height == 60
    assert landed.with_columns(value=pl.lit(1.0)).equals(before)  # only the window's values changed


def publish(data: Path) -> None:
    """A published warehouse as a build leaves it: `internal.lake_snapshot` lists the snapshot it read."""
    location = str(data.absolute())
    frames = [
        lake.snapshot_files(f"{location}/landing/{name}").with_columns(dataset=pl.lit(name))
        for name in ("timeseries", "weather")
    ]
    snapshot = pl.concat(frames).select("dataset", "path", "version")  # noqa: F841 (read by DuckDB below)
    (data / "warehouse.duckdb").unlink(missing_ok=True)
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        con.execute("create schema internal")
        con.execute("create table internal.lake_snapshot as select * from snapshot")


def published_paths(data: Path) -> list[str]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return [p for (p,) in con.execute("select path from internal.lake_snapshot").fetchall()]


def age_log(uri: str, hours: int) -> None:
    """Make everything the table's log records `hours` older (commits, additions, removals): what a table
    whose commits were made that long ago looks like, without waiting."""
    shift = hours * 3_600_000
    fields = {"commitInfo": "timestamp", "add": "modificationTime", "remove": "deletionTimestamp"}
    for commit in sorted(Path(uri, "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in commit.read_text().splitlines() if line.strip()]
        for action in actions:
            for kind, name in fields.items():
                if kind in action and action[kind].get(name) is not None:
                    action[kind][name] -= shift
        commit.write_text("".join(json.dumps(a) + "\n" for a in actions))


def on_disk(uri: str, day: date) -> list[Path]:
    return sorted(Path(uri).glob(f"site_key=*/day={day.isoformat()}/*.parquet"))


def test_retention_deletes_the_old_days_and_vacuum_keeps_what_the_published_warehouse_reads(
    storage: LocalStorage,
) -> None:
    data = storage.root
    uri = storage.uri(TIMESERIES)
    days = [TODAY - timedelta(days=n) for n in range(5, -1, -1)]
    for day in days:
        land(storage, "hq", day, merges=1)
    land(storage, "plant", days[0], merges=0)
    lake.compact_closed(storage, TIMESERIES)  # replaced files for vacuum to find
    publish(data)  # the warehouse reads the snapshot before the delete
    age_log(uri, 48)
    before, files = held(storage), {day: on_disk(uri, day) for day in days}

    result = ace_etl("retention", "--keep-days", "3", "--site", "hq", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    keep_from = TODAY - timedelta(days=3)
    old = before.filter(pl.col("site_name") == "hq", pl.col("timestamp") < midnight(keep_from))
    assert old.height == 2 * (60 + 10)
    assert result.stdout.startswith(f"Deleted {old.height} raw sample(s) of the days before {keep_from}\n")
    assert held(storage).equals(before.join(old, on=["site_name", *KEY], how="anti"))  # plant keeps its day
    # Everything was removed after the published version was committed, or just before it: all kept.
    assert {day: on_disk(uri, day) for day in days} == files
    assert all(Path(p).is_file() for p in published_paths(data))

    # Two days on, a build reads a snapshot after the delete: what no snapshot since needs can go.
    age_log(uri, 48)
    lake.insert_new(storage, TIMESERIES, "hq", rows("hq", midnight(TODAY) + timedelta(hours=5), 5), KEY)
    publish(data)
    vacuumed = vacuum(data)
    assert vacuumed.warnings == []
    assert [len(on_disk(uri, day)) for day in days] == [1, 0, 1, 1, 1, 3]  # plant's day; today not compacted
    assert vacuumed.files["timeseries"] == sum(len(f) for f in files.values()) - 6
    assert all(Path(p).is_file() for p in published_paths(data))
    assert held(storage).height == before.height - old.height + 5
    assert retention.cutoff(storage, "hq") == keep_from and retention.cutoff(storage, "plant") is None


def test_vacuum_keeps_files_removed_after_the_published_version_even_when_old(storage: LocalStorage) -> None:
    """A warehouse published long ago reads a version whose files were removed since: they all stay."""
    data = storage.root
    day = TODAY - timedelta(days=2)
    land(storage, "hq", day, merges=2)
    publish(data)
    lake.compact_closed(storage, TIMESERIES)  # removes the three files the warehouse reads
    age_log(storage.uri(TIMESERIES), 24 * 30)  # all of it a month ago: beyond delta's default 7 days
    assert vacuum(data).files == {"timeseries": 0, "weather": 0}
    assert len(on_disk(storage.uri(TIMESERIES), day)) == 4
    assert all(Path(p).is_file() for p in published_paths(data))


@pytest.mark.parametrize("warehouse", ["garbage", "no version column"])
def test_vacuum_deletes_nothing_when_the_warehouse_cannot_tell_what_it_reads(
    storage: LocalStorage, warehouse: str
) -> None:
    data = storage.root
    day = TODAY - timedelta(days=2)
    land(storage, "hq", day, merges=2)
    lake.compact_closed(storage, TIMESERIES)
    age_log(storage.uri(TIMESERIES), 24 * 30)
    if warehouse == "garbage":
        (data / "warehouse.duckdb").write_bytes(b"not a database")
    else:
        with duckdb.connect(str(data / "warehouse.duckdb")) as con:
            con.execute(
                "create schema internal; create table internal.lake_snapshot (dataset text, path text)"
            )
    result = ace_etl("retention", "--keep-days", "30", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "vacuum skipped, nothing deleted" in warning[0], result.stderr
    assert len(on_disk(storage.uri(TIMESERIES), day)) == 4


def test_no_published_warehouse_keeps_deltas_default_retention(storage: LocalStorage) -> None:
    data = storage.root
    recent, old = TODAY - timedelta(days=2), TODAY - timedelta(days=3)
    land(storage, "hq", old, merges=2)
    lake.compact_closed(storage, TIMESERIES)
    age_log(storage.uri(TIMESERIES), 24 * 8)  # removed 8 days ago: past the default 7 days
    land(storage, "hq", recent, merges=2)
    lake.compact_closed(storage, TIMESERIES)  # removed now
    assert vacuum(data).files["timeseries"] == 3
    assert len(on_disk(storage.uri(TIMESERIES), old)) == 1
    assert len(on_disk(storage.uri(TIMESERIES), recent)) == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["retention", "--keep-days", "0"], "error: --keep-days must be at least 1, got 0"),
        (["retention", "--keep-days", "-3", "--site", "hq"], "error: --keep-days must be at least 1, got -3"),
        (["compact", "--days", "0"], "error: --days must be at least 1, got 0"),
    ],
)
def test_bad_numbers_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    result = ace_etl(*args, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(needle)
    assert not (tmp_path / "state").exists()  # nothing recorded, nothing deleted


def test_compact_command_compacts_closed_days_of_both_tables(storage: LocalStorage) -> None:
    day = TODAY - timedelta(days=1)
    land(storage, "hq", day, merges=2)
    for hour in range(3):
        lake.upsert(
            storage,
            WEATHER,
            "hq",
            weather_at(midnight(day) + timedelta(hours=hour)),
            ("site_name", "timestamp"),
        )
    result = ace_etl("compact", "--site", "hq", "--days", "1", "--data-dir", str(storage.root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "timeseries: 1 day partition(s) compacted, weather: 1 day partition(s) compacted"
    )
    assert lake.read(storage, WEATHER).height == 3 and held(storage).height == 60 + 20


def test_compaction_vacuums_what_the_compaction_before_the_published_build_replaced(
    storage: LocalStorage,
) -> None:
    """Compaction alone must not double the lake: the files a compaction replaced go at the next one, once
    a build has published a snapshot after it; this compaction's stay for the warehouse that reads them."""
    data, uri = storage.root, storage.uri(TIMESERIES)
    first, second = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
    land(storage, "hq", first, merges=2)
    lake.compact_closed(storage, TIMESERIES)
    age_log(uri, 48)
    land(storage, "hq", second, merges=2)
    publish(data)  # a build after the first compaction, before the second
    result = ace_etl("compact", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "Vacuumed 3 file(s) of timeseries, 0 file(s) of weather"
    assert len(on_disk(uri, first)) == 1  # its three small files went
    assert len(on_disk(uri, second)) == 4  # replaced after the published version: the warehouse may read them
    assert all(Path(p).is_file() for p in published_paths(data))


def test_apply_retention_counts_every_site_when_none_is_named(storage: LocalStorage) -> None:
    for site in ("hq", "plant"):
        land(storage, site, TODAY - timedelta(days=4), merges=0)
        land(storage, site, TODAY - timedelta(days=1), merges=0)
    lake.upsert(
        storage, WEATHER, "hq", weather_at(midnight(TODAY - timedelta(days=4))), ("site_name", "timestamp")
    )
    result = apply_retention(storage.root, 2)
    assert result.deleted == 120 and result.keep_from == TODAY - timedelta(days=2)
    assert lake.read(storage, WEATHER).height == 1  # weather is kept
    assert held(storage).get_column("timestamp").min() == midnight(TODAY - timedelta(days=1))
    assert retention.cutoff(storage, "anywhere") == TODAY - timedelta(days=2)
    assert apply_retention(storage.root, 5).keep_from == TODAY - timedelta(days=5)
    assert retention.cutoff(storage, "hq") == TODAY - timedelta(days=2)  # a cutoff never moves back


def test_deleted_days_are_neither_healed_nor_fetched_again_until_forced(tmp_path: Path) -> None:
    """After retention, the published warehouse still shows the deleted day's gaps: heal leaves them alone,
    a run skips the day's complete window, and only `--force` fetches it again."""
    data = tmp_path / "data"
    day, cutoff = "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z"
    cfg = SimulatorConfig(sites=("hq",), points=10, interval=900, api_key="upkeep-key-0123456789",
                          upload_horizon="2024-06-10T20:00:00Z")  # fmt: skip
    with Simulator(cfg) as sim:
        env = {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": cfg.api_key}
        window = ["--site", "hq", "--start", day, "--end", cutoff, "--data-dir", str(data)]
        assert ace_etl("run", *window, env=env).returncode == 0
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            assert con.execute("select count(*) from timeseries_gaps").fetchone() != (0,)  # the late hours
            versions = con.execute(
                "select distinct dataset, version from internal.lake_snapshot order by 1"
            ).fetchall()
        storage = LocalStorage(data)
        assert versions == [
            (name, lake.version(storage, table))
            for name, table in (("timeseries", TIMESERIES), ("weather", WEATHER))
        ]  # what the build read
        assert retention.delete_before(storage, date(2024, 6, 11)) > 0
        sim.set_upload_horizon(None)  # the late samples arrive: heal would land them into the deleted day
        sim.clear_requests()

        healed = ace_etl("heal", *window, "--no-transform", env=env)
        assert healed.returncode == 0, healed.stderr
        rerun = ace_etl("run", *window, "--no-transform", env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert [r for r in sim.requests if "/timeseries/" in r["path"]] == []
        assert held(storage).is_empty()

        forced = ace_etl("run", *window, "--no-transform", "--force", env=env)
        assert forced.returncode == 0, forced.stderr
    assert landed_rows(data).equals(expected_rows(cfg, "hq", day, cutoff))


def test_retention_then_builds_keep_the_aggregates_of_the_deleted_days(tmp_path: Path) -> None:
    from ace_etl.transform import build_warehouse
    from tests.landing_factory import samples, write_timeseries

    data = tmp_path / "data"
    first = midnight(TODAY - timedelta(days=5))
    write_timeseries(data, samples("hq", ["p1", "p2"], first, 3 * 1440, collected_at=first), "three days")
    build_warehouse(data)

    def per_day(sql: str) -> dict[date, int]:
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            return dict(con.execute(sql).fetchall())  # type: ignore[arg-type]

    hourly_sql = "select hour::date, count(*) from timeseries_hourly group by 1"
    daily_sql = "select day, count(*) from timeseries_daily group by 1"
    raw_sql = "select (timestamp at time zone 'UTC')::date, count(*) from timeseries_raw group by 1"
    hourly, daily = per_day(hourly_sql), per_day(daily_sql)
    assert sorted(hourly.values()) == [48, 48, 48] and sorted(daily.values()) == [2, 2, 2]

    result = apply_retention(data, keep_days=4)  # the first of the three days goes
    assert result.deleted == 2 * 1440 and result.vacuumed.warnings == []
    for full_refresh in (False, True):
        build_warehouse(data, full_refresh=full_refresh)
        assert per_day(hourly_sql) == hourly and per_day(daily_sql) == daily, full_refresh
        assert sorted(per_day(raw_sql)) == [
            first.date() + timedelta(days=1),
            first.date() + timedelta(days=2),
        ]
