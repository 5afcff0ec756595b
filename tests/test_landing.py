"""Landing layout, site-name encoding, atomic storage and the runs row."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from extract.api.parse import normalize_samples
from extract.api.points import PointSelector
from extract.errors import ConfigError, LeaseLostError
from extract.lake.landing import (
    REJECTS,
    TIMESERIES,
    StagedKeys,
    decode_site,
    encode_site,
    file_window,
    rejects_path,
    selection_path,
    split_by_date,
    staged,
    staging_dir,
    timeseries_path,
    window_files,
    write_page,
)
from extract.lake.storage import LocalStorage
from extract.run.datadir import open_storage
from extract.run.lease import SiteLease
from extract.run.metrics import RUNS_SCHEMA, WindowResult, runs_frame
from extract.windows import Window, lookback_range, resolve_range, split_windows

WINDOW = Window(datetime(2024, 3, 1, 12, tzinfo=UTC), datetime(2024, 3, 2, 12, tzinfo=UTC))


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("demo-site", "demo-site"),
        ("Site_1.a", "Site_1.a"),
        ("../x", "%2E%2E%2Fx"),
        ("a/b", "a%2Fb"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        (".hidden.x", "%2Ehidden.x"),
        ("100%", "100%25"),
        ("a b~é", "a%20b%7E%C3%A9"),
        ("a\\b", "a%5Cb"),
    ],
)
def test_site_names_are_one_safe_folder(name: str, encoded: str) -> None:
    assert encode_site(name) == encoded
    assert decode_site(encoded) == name


@pytest.mark.parametrize("name", ["Б" * 35, "x" * 300, "a/" * 200, "é" * 1000])
def test_a_long_site_name_stays_within_file_name_limits(tmp_path: Path, name: str) -> None:
    encoded = encode_site(name)
    assert len(encoded.encode()) <= 120 and "/" not in encoded
    assert encoded != encode_site(name + "x")  # the digest keeps long names apart
    storage = LocalStorage(tmp_path)
    path = timeseries_path(name, date(2024, 3, 1), WINDOW, "0123456789ab", 3)
    storage.write_parquet_atomic(path, pl.DataFrame({"a": [1]}))  # no OSError: File name too long
    assert storage.list(TIMESERIES) == [path]


def test_empty_site_name_is_rejected() -> None:
    with pytest.raises(ConfigError):
        encode_site("")


def test_paths_follow_the_hive_layout() -> None:
    assert (
        timeseries_path("../x", date(2024, 3, 2), WINDOW, "0123456789ab", 3)
        == "landing/timeseries/site_name=%2E%2E%2Fx/date=2024-03-02/20240301T120000Z_20240302T120000Z_0123456789ab_p000003.parquet"
    )
    assert rejects_path("s", WINDOW, "a", 0).startswith("landing/rejects/site_name=s/date=2024-03-01/")
    assert file_window(timeseries_path("s", date(2024, 3, 2), WINDOW, "0123456789ab", 3)) == WINDOW
    assert file_window(selection_path("s", WINDOW, "0123456789ab")) == WINDOW
    folder = "landing/rejects/site_name=s/date=2024-03-01"
    assert file_window(f"{folder}/{WINDOW.key}_0123456789ab_h00ff.parquet") == WINDOW
    # A name without its attempt is no file of a window: nothing writes one.
    for name in (f"{WINDOW.key}.parquet", "copy.parquet"):
        assert file_window(f"{folder}/{name}") is None


def test_storage_refuses_paths_outside_its_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", ".."):
        with pytest.raises(ConfigError):
            storage.write_bytes_atomic(bad, b"x")


def test_storage_round_trip_and_listing(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    storage.write_bytes_atomic("state/a.json", b"1")
    storage.write_bytes_atomic("state/a.json", b"2")
    storage.write_parquet_atomic("landing/x/date=1/f.parquet", pl.DataFrame({"a": [1]}))
    (tmp_path / "landing/x/date=1/.f.parquet.dead.tmp").write_bytes(b"partial")  # a crashed write
    assert storage.read_bytes("state/a.json") == b"2"
    assert storage.exists("state/a.json") and not storage.exists("state/b.json")
    assert storage.list("landing") == ["landing/x/date=1/f.parquet"]
    assert storage.list("nowhere") == []
    assert pl.read_parquet(storage.uri("landing/x/date=1/f.parquet")).to_dicts() == [{"a": 1}]
    storage.delete(["state/a.json", "state/missing.json"])
    storage.delete_prefix("landing/x")
    assert storage.list("") == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("state/a.json")


class ObservedStorage(LocalStorage):
    """A local storage that notes which files it reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read_parquet(self, rel_path: str, columns: list[str] | None = None) -> pl.DataFrame:
        self.reads.append(rel_path)
        return super().read_parquet(rel_path, columns)


def raw_page(samples: list[tuple[str, str]]) -> pl.DataFrame:
    names = ["point_name", "timestamp", "value", "quality", "metadata"]
    return pl.DataFrame(
        [(point, time, "1", None, None) for point, time in samples],
        schema=dict.fromkeys(names, pl.String),
        orient="row",
    )


def test_a_page_is_compared_with_the_staged_files_that_may_hold_its_keys(tmp_path: Path) -> None:
    storage = ObservedStorage(tmp_path)
    times = ["2024-03-01T23:00:00Z", "2024-03-02T01:00:00Z"]  # two UTC days: two files a page

    def stage(number: int, samples: list[tuple[str, str]]) -> tuple[list[str], pl.DataFrame]:
        rows = normalize_samples(
            raw_page(samples), site="s", collected_at=WINDOW.start, window=WINDOW,
            selector=PointSelector.from_list(["*"]),
        )  # fmt: skip
        return write_page(storage, "s", WINDOW, "att", number, rows), rows.kept

    keys, files = StagedKeys(storage, "s", "att", ()), []
    for number in range(4):  # a server paging point-major: points p<page>0 to p<page>3, every time
        written, kept = stage(number, [(f"p{number}{j}", t) for j in range(4) for t in times])
        keys.add(written, kept)
        files += written
    # The next page starts with the last sample of the page before.
    _, page = stage(4, [("p33", times[1]), *((f"p4{j}", t) for j in range(4) for t in times)])
    storage.reads.clear()
    assert keys.held(page).rows() == [("p33", datetime(2024, 3, 2, 1, tzinfo=UTC))]
    assert storage.reads == []  # the page before is the only one that may hold its keys, and is at hand
    # A resumed attempt finds the ranges in its staged files, and reads only the files that may hold its keys.
    resumed = StagedKeys(storage, "s", "att", files)
    storage.reads.clear()
    assert resumed.held(page).equals(keys.held(page))
    assert sorted(storage.reads) == sorted(staged("s", "att", p) for p in files if "_p000003" in p)


def test_a_page_spanning_midnight_lands_per_date_and_is_replaced_on_rewrite(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    raw = pl.DataFrame(
        {
            "point_name": ["p", "p", "q", "p"],
            "timestamp": ["2024-03-01T23:59:00Z", "2024-03-02T00:00:00Z", "2024-03-01T23:00:00Z", "bad"],
            "value": ["1", "2", "3", "4"],
            "quality": [None] * 4,
            "metadata": [None] * 4,
        },
        schema=dict.fromkeys(["point_name", "timestamp", "value", "quality", "metadata"], pl.String),
    )
    rows = normalize_samples(
        raw, site="s", collected_at=datetime.now(UTC), window=WINDOW, selector=PointSelector.from_list(["*"])
    )
    written = write_page(storage, "s", WINDOW, "att", 7, rows)
    write_page(storage, "s", WINDOW, "att", 7, rows)
    # Staged, not landed: readers of the landing see nothing until the window is committed.
    assert storage.list("landing") == []
    assert sorted(staged("s", "att", p) for p in written) == storage.list(staging_dir("s", "att"))
    for path in written:
        storage.rename(staged("s", "att", path), path)
    # The timeseries pages go to the Delta table on commit; only the rejects are window files.
    assert sorted(p for p in written if p.startswith(REJECTS)) == sorted(window_files(storage, "s", WINDOW))
    later = Window(WINDOW.end, WINDOW.end + (WINDOW.end - WINDOW.start))
    assert window_files(storage, "s", later) == []
    day1 = pl.read_parquet(storage.uri(timeseries_path("s", date(2024, 3, 1), WINDOW, "att", 7)))
    day2 = pl.read_parquet(storage.uri(timeseries_path("s", date(2024, 3, 2), WINDOW, "att", 7)))
    assert day1.select("point_name", "value").rows() == [("p", 1.0), ("q", 3.0)]
    assert day2.get_column("value").to_list() == [2.0]
    assert pl.read_parquet(storage.uri(rejects_path("s", WINDOW, "att", 7))).get_column(
        "reason"
    ).to_list() == ["bad_timestamp"]
    metadata = (
        __import__("pyarrow.parquet", fromlist=["x"])
        .ParquetFile(storage.uri(timeseries_path("s", date(2024, 3, 1), WINDOW, "att", 7)))
        .metadata
    )
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_split_by_date_keeps_order() -> None:
    frame = pl.DataFrame(
        {"timestamp": [datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)], "v": [1, 2]}
    )
    assert {d: f.get_column("v").to_list() for d, f in split_by_date(frame).items()} == {
        date(2024, 1, 2): [1],
        date(2024, 1, 1): [2],
    }
    assert split_by_date(frame.clear()) == {}


def test_windows_are_half_open_and_cover_the_range() -> None:
    start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, 6, tzinfo=UTC)
    windows = split_windows(start, end, 12)
    assert [(w.start.hour, w.end.hour) for w in windows] == [(0, 12), (12, 0), (0, 6)]
    assert windows[0].end == windows[1].start
    assert split_windows(datetime(2024, 3, 1), datetime(2024, 3, 2))[0].start.tzinfo == UTC
    with pytest.raises(ConfigError):
        split_windows(end, start)
    with pytest.raises(ConfigError):
        split_windows(start, end, 0)
    for hours in (float("inf"), float("nan"), 1e9):
        with pytest.raises(ConfigError, match="window length"):
            split_windows(start, end, hours)
    with pytest.raises(ConfigError, match="at most"):
        split_windows(datetime(2000, 1, 1, tzinfo=UTC), end, 0.01)
    for hours in (float("inf"), 0):
        with pytest.raises(ConfigError, match="window length"):
            lookback_range(end, 7, hours)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(9999, 12, 31, tzinfo=UTC), None, "9999"),
        (datetime(2030, 1, 1, tzinfo=UTC), None, "not in the past"),
        (datetime(2024, 3, 2, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), "before end"),
    ],
)
def test_impossible_ranges_are_config_errors(start: datetime, end: datetime | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_range(start, end, datetime(2026, 11, 30, tzinfo=UTC))


def test_compare_and_swap_lets_one_writer_win(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    first = storage.write_if("state/l.json", b"a", None)
    assert first is not None
    assert storage.write_if("state/l.json", b"b", None) is None  # exists already
    second = storage.write_if("state/l.json", b"c", first)
    assert second is not None and second != first
    assert storage.write_if("state/l.json", b"d", first) is None  # stale version
    assert storage.read_versioned("state/l.json") == (b"c", second)
    assert not storage.delete_if("state/l.json", first)
    assert storage.delete_if("state/l.json", second)
    assert storage.read_versioned("state/l.json") is None


def test_temporaries_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    import subprocess
    import sys

    from extract.lake.storage import temporary_name

    storage = LocalStorage(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    mine = tmp_path / "landing" / temporary_name("a.parquet")
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"being written")
    name = temporary_name("b.parquet").split(".")
    name[-3] = dead.stdout.strip()  # the pid field: a process that has exited
    abandoned = mine.with_name(".".join(name))
    abandoned.write_bytes(b"partial")
    assert storage.clean_temporaries("landing") == 1
    assert mine.exists() and not abandoned.exists()


def test_a_killed_process_not_yet_reaped_is_not_alive() -> None:
    # A zombie answers signals, but it will never renew a lease: other runs must not wait out the TTL.
    import signal
    import subprocess
    import sys
    import time

    from extract.lake.storage import process_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(child.pid):  # dead, but not reaped until child.wait() below
            assert time.monotonic() < deadline, "a zombie counted as alive"
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists()  # still a zombie: only its state says it is gone
    finally:
        child.kill()
        child.wait()


def test_window_result_mirrors_the_runs_schema() -> None:
    assert [f.name for f in dataclasses.fields(WindowResult)] == RUNS_SCHEMA.names()
    now = datetime.now(UTC)
    row = WindowResult(
        "r", "s", WINDOW.start, WINDOW.end, "failed", 1, 0, 0, 10, 0, 0, 0, 0, 0.5, "boom", now, now
    )
    assert runs_frame([row]).schema == RUNS_SCHEMA


class _FailingRenewals(LocalStorage):
    """A real folder whose compare-and-swap fails once `broken` is set, as a full disk or an object-store
    outage would fail the lease's heartbeat."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.broken = False
        self.raised = threading.Event()

    def write_if(self, rel_path: str, data: bytes, version: str | None) -> str | None:
        if self.broken:
            self.raised.set()
            raise OSError(28, "No space left on device")
        return super().write_if(rel_path, data, version)


def test_a_lease_that_cannot_be_renewed_reads_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _FailingRenewals(tmp_path)
    lease = SiteLease(storage, "s", "run-1", ttl_s=0.3)
    with lease:
        lease.check()
        storage.broken = True
        assert storage.raised.wait(60), "the heartbeat never tried to renew"
        deadline = time.monotonic() + 60  # the heartbeat records the loss right after the failed write
        with pytest.raises(LeaseLostError) as lost:
            while time.monotonic() < deadline:
                lease.check()
                time.sleep(0.01)
    message = str(lost.value)
    assert "\n" not in message and "cannot renew" in message and "No space left on device" in message
    (record,) = [r for r in caplog.records if r.name == "extract.run.lease"]
    assert "cannot renew" in record.getMessage() and "\n" not in record.getMessage()
