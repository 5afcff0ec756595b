"""extract.lake.tables on real Delta tables (delta-rs): on a local folder, and on a local S3-compatible server
(moto's server mode, over loopback) with two processes committing to the same table."""

from __future__ import annotations

import glob
import json
import multiprocessing
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from extract.errors import LakeError
from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, WEATHER
from extract.lake.objectstore import S3Storage
from extract.lake.storage import LocalStorage, Storage
from tests.s3server import BUCKET

T0 = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
KEY = ("point_name", "timestamp")


def rows(
    site: str, start: datetime, minutes: int, *, value: float = 1.0, points: tuple[str, ...] = ("p",)
) -> pl.DataFrame:
    """One sample per point and minute from `start`."""
    stamps = [start + timedelta(minutes=m) for m in range(minutes)]
    return pl.DataFrame(
        {
            "site_name": site,
            "point_name": [p for p in points for _ in stamps],
            "timestamp": stamps * len(points),
            "value": value,
            "quality": "good",
            "metadata": "{}",
            "collected_at": T0,
        },
        schema=schemas.TIMESERIES,
    )


def held(storage: Storage, site: str | None = None) -> pl.DataFrame:
    return lake.read(storage, TIMESERIES, site, schema=schemas.TIMESERIES).sort("site_name", *KEY)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


@pytest.mark.parametrize("site", ["hq", "a b", "../x", "ü" * 10, "x" * 300, ".hidden", "50%", "a/b"])
def test_a_site_key_is_safe_short_and_distinct(site: str) -> None:
    key = lake.site_key(site)
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key) and not key.startswith(".")
    assert key == site or key != lake.site_key(site + "!")
    assert (key == site) == (site == "hq")


def test_replace_range_is_one_commit_that_replaces_exactly_the_range(storage: LocalStorage) -> None:
    end = T0 + timedelta(hours=4)  # across midnight: two day partitions
    assert lake.replace_range(storage, TIMESERIES, "a b", T0, end, rows("a b", T0, 240), attempt="one") == 0
    lake.replace_range(storage, TIMESERIES, "other", T0, end, rows("other", T0, 240), attempt="two")
    middle = (T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    fewer = rows("a b", middle[0], 60, value=2.0)  # the second hour of the range is no longer served
    assert lake.replace_range(storage, TIMESERIES, "a b", *middle, fewer, attempt="three") == 2
    site = held(storage, "a b")
    assert site.height == 60 + 60 + 60
    inside = site.filter(pl.col("timestamp").is_between(*middle, closed="left"))
    assert inside.get_column("value").unique().to_list() == [2.0] and inside.height == 60
    assert held(storage, "other").height == 240  # another site's rows of the same times are untouched
    assert lake.committed(storage, TIMESERIES, "three") and not lake.committed(storage, TIMESERIES, "four")


def test_an_empty_attempt_deletes_its_range_in_one_commit(storage: LocalStorage) -> None:
    end = T0 + timedelta(hours=2)
    lake.replace_range(storage, TIMESERIES, "s", T0, end, rows("s", T0, 120), attempt="one")
    empty = pl.DataFrame(schema=schemas.TIMESERIES)
    assert (
        lake.replace_range(storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), empty, attempt="two") == 1
    )
    assert held(storage).get_column("timestamp").min() == T0 + timedelta(hours=1)


def test_insert_new_adds_only_what_the_table_does_not_hold_in_one_commit(storage: LocalStorage) -> None:
    lake.replace_range(storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), rows("s", T0, 60), attempt="a")
    fetched = rows("s", T0 + timedelta(minutes=30), 60, value=9.0)  # half held, half new
    new = lake.new_rows(storage, TIMESERIES, "s", fetched, KEY)
    assert new.height == 30
    assert lake.insert_new(storage, TIMESERIES, "s", fetched, KEY) == 30
    assert lake.version(storage, TIMESERIES) == 1
    assert lake.insert_new(storage, TIMESERIES, "s", fetched, KEY) == 0  # again: nothing new
    landed = held(storage)
    assert landed.height == 90 and landed.unique(list(KEY)).height == 90
    assert landed.filter(pl.col("value") == 9.0).height == 30  # held samples were not overwritten


def test_upsert_keeps_the_latest_fetch_per_key(storage: LocalStorage) -> None:
    def weather(collected: datetime, temperature: float) -> pl.DataFrame:
        return pl.DataFrame(
            {"site_name": "s", "timestamp": [T0, T0 + timedelta(hours=1)], "temperature": temperature,
             "humidity": 1.0, "precipitation": 0.0, "wind_speed": 0.0, "conditions": "clear",
             "metadata": "{}", "collected_at": collected},
            schema=schemas.WEATHER,
        )  # fmt: skip

    lake.upsert(storage, WEATHER, "s", weather(T0, 1.0), ("site_name", "timestamp"))
    lake.upsert(storage, WEATHER, "s", weather(T0 + timedelta(hours=2), 2.0), ("site_name", "timestamp"))
    lake.upsert(
        storage, WEATHER, "s", weather(T0 + timedelta(hours=1), 3.0).head(1), ("site_name", "timestamp")
    )
    landed = lake.read(storage, WEATHER)
    assert landed.height == 2 and landed.get_column("temperature").to_list() == [2.0, 2.0]


def test_the_snapshot_lists_the_current_files_only(storage: LocalStorage) -> None:
    uri = storage.uri(TIMESERIES)
    assert lake.snapshot_files(uri).is_empty() and lake.read(storage, TIMESERIES).is_empty()
    lake.replace_range(storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), rows("s", T0, 60), attempt="a")
    lake.replace_range(storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), rows("s", T0, 60), attempt="b")
    files = lake.snapshot_files(uri)
    assert files.get_column("rows").sum() == 60 and files.get_column("site_name").unique().to_list() == ["s"]
    assert all(Path(p).is_file() and "/site_key=s/day=2024-03-01/" in p for p in files.get_column("path"))
    # The replaced files are still on disk (until vacuumed): a folder glob would read every sample twice.
    on_disk = glob.glob(f"{uri}/site_key=s/**/*.parquet", recursive=True)
    assert len(on_disk) == 2 * files.height
    assert pl.read_parquet(list(files.get_column("path"))).height == 60


def test_storage_options_come_from_the_aws_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    options = lake.storage_options("s3://bucket/prefix/landing/timeseries")
    assert options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1", "AWS_ALLOW_HTTP": "true",
    }  # fmt: skip
    assert lake.storage_options("/local/data/landing/timeseries") is None


def _commit_day(prefix: str, day: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    storage = S3Storage(f"s3://{BUCKET}/{prefix}")
    start = T0 + timedelta(hours=2 + 24 * day)  # midnight of day `day`
    barrier.wait()
    # Both replace the same range: one commit wins the race, the other is retried on its snapshot.
    lake.replace_range(
        storage, TIMESERIES, "s", start, start + timedelta(hours=1), rows("s", start, 60), attempt=f"d{day}"
    )


def test_two_processes_committing_to_one_table_on_s3_land_each_sample_once(
    s3_env: dict[str, str],
) -> None:
    storage = S3Storage(f"s3://{BUCKET}/lake")
    lake.replace_range(
        storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), rows("s", T0, 60), attempt="first"
    )
    # spawn: a process that used delta-rs and then forks can hang.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_commit_day, args=("lake", day % 2, barrier)) for day in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 4
    landed = held(storage)
    assert landed.height == 60 * 3 and landed.unique(list(KEY)).height == landed.height
    files = lake.snapshot_files(storage.uri(TIMESERIES))
    assert all(
        p.startswith(f"s3://{BUCKET}/lake/landing/timeseries/site_key=s/") for p in files.get_column("path")
    )


def _first_merge(data_dir: str, offset: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    storage = LocalStorage(Path(data_dir))
    barrier.wait()
    lake.insert_new(storage, TIMESERIES, "s", rows("s", T0 + timedelta(minutes=offset), 60), KEY)


def test_first_writers_racing_to_create_the_table_each_merge_once(storage: LocalStorage) -> None:
    """Heal or live runs of a new landing: each finds no table and creates it before merging. Only "it
    exists already" may be passed over; each merge then lands what the others did not."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_first_merge, args=(str(storage.root), 30 * i, barrier)) for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 4
    assert held(storage).equals(rows("s", T0, 30 * 3 + 60))


def _read_while_committing(data_dir: str, started: Any, done: Any, seen: Any) -> None:
    """A reader in its own process: read the table through its log until the writer is done; record every
    distinct (rows, values) it saw. One value across every row means one whole commit."""
    storage = LocalStorage(Path(data_dir))
    started.set()
    reads = 0
    while not done.is_set() or reads < 3:
        landed = lake.read(storage, TIMESERIES)
        seen.append((landed.height, sorted(set(landed.get_column("value").to_list()))))
        reads += 1


def test_a_reader_in_another_process_sees_a_whole_commit_never_half(storage: LocalStorage) -> None:
    # A two-day range: every commit adds two files (one per day partition) and removes two.
    start, end = T0, T0 + timedelta(days=2)
    lake.replace_range(storage, TIMESERIES, "s", start, end, rows("s", start, 2880, value=0.0), attempt="v0")
    context = multiprocessing.get_context("spawn")  # a process that used delta-rs and then forks can hang
    started, done, seen = context.Event(), context.Event(), context.Manager().list()
    reader = context.Process(target=_read_while_committing, args=(str(storage.root), started, done, seen))
    reader.start()
    assert started.wait(timeout=120)
    for version in range(1, 16):
        lake.replace_range(
            storage,
            TIMESERIES,
            "s",
            start,
            end,
            rows("s", start, 2880, value=float(version)),
            attempt=f"v{version}",
        )
    done.set()
    reader.join(timeout=300)
    assert reader.exitcode == 0
    snapshots = list(seen)
    assert len(snapshots) >= 3
    assert all(height == 2880 and len(values) == 1 for height, values in snapshots), [
        s for s in snapshots if s[0] != 2880 or len(s[1]) != 1
    ][:3]


# Run in a fresh process: the test session has imported pandas long since.
_COMMIT_PLACED_FILE = """
import json, sys
from datetime import UTC, datetime, timedelta
import polars as pl
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
storage, day = LocalStorage(sys.argv[1]), datetime(2024, 3, 1, tzinfo=UTC)
path = f"{TIMESERIES}/site_key={lake.site_key('s')}/day=2024-03-01/page_p000000.parquet"
storage.write_parquet_atomic(path, pl.read_parquet(sys.argv[2]))
lake.replace_days(storage, TIMESERIES, "s", day, day + timedelta(days=1), [path], attempt="a")
print(json.dumps({"pandas": "pandas" in sys.modules}))
"""


def test_a_commit_of_placed_files_records_exact_bounds_and_never_imports_pandas(tmp_path: Path) -> None:
    # pyarrow's `min` of a zoned timestamp statistic imports pandas: half a second of every run's first commit.
    start = datetime(2024, 3, 1, 0, 0, 0, 123457, tzinfo=UTC)
    page = rows("s", start, 1439, points=("a", "b")).with_columns(
        collected_at=pl.lit(datetime(2024, 3, 2, 0, 0, 0, 999999, tzinfo=UTC)), value=pl.int_range(2878) - 7.5
    )
    page.write_parquet(tmp_path / "page.parquet")
    root = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-c", _COMMIT_PLACED_FILE, str(root), str(tmp_path / "page.parquet")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == {"pandas": False}
    log = DeltaTable(str(root / TIMESERIES)).get_add_actions(flatten=True)
    actions = pl.DataFrame(log).to_dict(as_series=False)
    assert actions["num_records"] == [2878]
    for column in ("timestamp", "collected_at", "value"):
        assert (actions[f"min.{column}"], actions[f"max.{column}"]) == (
            [page[column].min()],
            [page[column].max()],
        ), column


def test_rows_missing_a_contract_column_are_refused_before_anything_is_written(storage: LocalStorage) -> None:
    partial = rows("s", T0, 60).drop("quality", "metadata")
    with pytest.raises(LakeError, match=r"missing \['quality', 'metadata'\]"):
        lake.replace_range(storage, TIMESERIES, "s", T0, T0 + timedelta(hours=1), partial, attempt="a")
    assert lake.version(storage, TIMESERIES) is None  # no table with a schema the warehouse cannot read


def test_a_writer_that_saw_no_table_while_another_created_it_lands_nothing_twice(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first writers of a table (two runs' weather, say) both find no table: the later must not append
    what the earlier one landed."""
    weather = lake.read(storage, WEATHER, schema=schemas.WEATHER).vstack(
        pl.DataFrame(
            {"site_name": ["hq"], "timestamp": [T0], "temperature": [1.0], "humidity": [1.0],
             "precipitation": [0.0], "wind_speed": [0.0], "conditions": ["clear"], "metadata": ["{}"],
             "collected_at": [T0]},
            schema=schemas.WEATHER,
        )
    )  # fmt: skip
    lake.upsert(storage, WEATHER, "hq", weather, ("site_name", "timestamp"))
    opened, looks = lake._open, []

    def stale_first(*args: Any, **kwargs: Any) -> Any:
        looks.append(args)  # the second writer's first look was taken before the first writer committed
        return None if len(looks) == 1 else opened(*args, **kwargs)

    monkeypatch.setattr(lake, "_open", stale_first)
    lake.upsert(storage, WEATHER, "hq", weather, ("site_name", "timestamp"))
    monkeypatch.undo()
    assert lake.read(storage, WEATHER).height == 1


def test_a_read_can_keep_to_points_and_to_one_snapshot(storage: LocalStorage) -> None:
    """What an export in parts needs: one version for every part, only the points it asked for."""
    end = T0 + timedelta(hours=1)
    lake.replace_range(
        storage, TIMESERIES, "s", T0, end, rows("s", T0, 60, points=("a", "b", "c")), attempt="1"
    )
    first = lake.version(storage, TIMESERIES)
    lake.replace_range(
        storage, TIMESERIES, "s", T0, end, rows("s", T0, 60, value=2.0, points=("a",)), attempt="2"
    )
    pinned = lake.read(storage, TIMESERIES, "s", T0, end, points=["a", "c"], at_version=first)
    assert pinned.group_by("point_name", "value").len().sort("point_name").rows() == [
        ("a", 1.0, 60),
        ("c", 1.0, 60),
    ]
    assert lake.read(storage, TIMESERIES, "s", points=["a", "c"]).get_column("value").unique().to_list() == [
        2.0
    ]


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_a_footers_time_bounds_widen_to_whole_microseconds(tmp_path: Path, unit: str) -> None:
    # A bound rounded inwards would let a reader skip a file holding a row of the range.
    first, last = 1_709_251_200_123_456_789, 1_709_251_260_987_654_321  # ns since the epoch
    per = {"ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    stamps = pa.array([first // per, last // per], pa.timestamp(unit, tz="UTC"))
    pq.write_table(pa.table({"t": stamps}), tmp_path / "t.parquet")
    stats = pq.read_metadata(tmp_path / "t.parquet").row_group(0).column(0).statistics
    low = lake._stat(stats.min_raw, stats.logical_type, high=False)
    high = lake._stat(stats.max_raw, stats.logical_type, high=True)
    expected = {
        "ms": ("2024-03-01T00:00:00.123000Z", "2024-03-01T00:01:00.987000Z"),
        "us": ("2024-03-01T00:00:00.123456Z", "2024-03-01T00:01:00.987654Z"),
        "ns": ("2024-03-01T00:00:00.123456Z", "2024-03-01T00:01:00.987655Z"),
    }
    assert (low, high) == expected[unit]
