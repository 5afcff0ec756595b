"""The upgrade of a landing written before the Delta tables (extract/run/upgrade.py): old Parquet files written
here as the old extractor wrote them (its folders, file names, zstd Parquet, version-2 checkpoints with their
manifests), converted once into the Delta tables, with the old warehouse's choice per key; then the real CLI
and the simulator show that nothing is fetched again and the warehouse builds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ace_etl.simulator import Simulator, SimulatorConfig
from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import (
    TIMESERIES,
    WEATHER,
    checkpoint_path,
    selection_path,
    site_dir,
    split_by_date,
    staged,
    timeseries_path,
)
from extract.lake.storage import LocalStorage, Storage
from extract.run import upgrade
from extract.run.checkpoint import load_checkpoints
from extract.windows import Window, compact_time
from tests.clihelp import ace_etl, expected_rows, spawn

ODD = "Bâtiment 2 (ß) ../x"
LONG = "campus-" + "ü" * 80
CFG = SimulatorConfig(sites=("hq", ODD), points=6, interval=900, api_key="upgrade-test-key-0123456789")
# What the old landing was fetched from: CFG's sites and a long name (a hashed folder).
SERVED = replace(CFG, sites=(*CFG.sites, LONG))
DAY, NEXT = "2024-06-10T00:00:00Z", "2024-06-11T00:00:00Z"
START = datetime(2024, 6, 10, tzinfo=UTC)
WINDOWS = (
    Window(START, START + timedelta(hours=12)),
    Window(START + timedelta(hours=12), START + timedelta(days=1)),
)
FIRST, SECOND, PATCHED = (datetime(2024, 6, 11, h, tzinfo=UTC) for h in (1, 2, 3))
KEY = ["site_name", "point_name", "timestamp"]


def kept_rows(site: str, window: Window, collected_at: datetime, shift: float = 0.0) -> pl.DataFrame:
    """The samples the simulator serves for the window, as the old extractor kept them."""
    served = expected_rows(SERVED, site, window.start.isoformat(), window.end.isoformat())
    return served.select(
        site_name=pl.lit(site),
        point_name="point_name",
        timestamp="timestamp",
        value=pl.col("value") + shift,
        quality=pl.when(pl.col("value") > 50).then(pl.lit("good")).otherwise(None),
        metadata=pl.lit('{"unit": "degF"}'),
        collected_at=pl.lit(collected_at, schemas.UTC_US),
    ).cast(dict(schemas.TIMESERIES))  # type: ignore[arg-type]


def write_old_attempt(
    storage: Storage, site: str, window: Window, attempt: str, rows: pl.DataFrame, *, pages: int = 2
) -> list[str]:
    """An attempt's pages as the old commit left them in the landing: split by UTC day, at their landing
    names (`extract.lake.landing.timeseries_path`), plus its selection file."""
    files = []
    for page, part in enumerate(_pages(rows, pages)):
        for day, rows_of_day in split_by_date(part).items():
            files.append(timeseries_path(site, day, window, attempt, page))
            storage.write_parquet_atomic(files[-1], rows_of_day)
    names = sorted(rows.get_column("point_name").unique())
    selection = selection_path(site, window, attempt)
    storage.write_parquet_atomic(
        selection,
        pl.DataFrame(
            {"site_name": site, "point_name": names, "window_start": window.start, "window_end": window.end},
            schema=schemas.SELECTIONS,
        ),
    )
    return [*files, selection]


def _pages(rows: pl.DataFrame, pages: int) -> list[pl.DataFrame]:
    size = -(-rows.height // pages)
    return [rows.slice(i * size, size) for i in range(pages)]


def write_v2_checkpoint(
    storage: Storage, site: str, window: Window, attempt: str, files: list[str], names: list[str], state: str
) -> None:
    """The old `Checkpoint.to_json`: version 2, a manifest of landing paths, no `commits`."""
    fields: dict[str, Any] = {
        "site": site,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
        "page_size": 100_000,
        "attempt": attempt,
        "names": sorted(names),
        "patterns": [],
        "state": state,
        "next_cursor": None,
        "next_page": 2,
        "records_fetched": 0,
        "records_kept": 0,
        "records_filtered": 0,
        "records_rejected": 0,
        "files": files,
        "live_until": None,
    }
    storage.write_bytes_atomic(
        checkpoint_path(site, window), json.dumps({"version": 2, **fields}, indent=1, sort_keys=True).encode()
    )


def weather_rows(site: str, collected_at: datetime, shift: float) -> pl.DataFrame:
    times = pl.datetime_range(
        START, START + timedelta(hours=23), timedelta(hours=1), eager=True, time_zone="UTC"
    )
    return pl.DataFrame(
        {
            "site_name": site,
            "timestamp": times,
            "temperature": [20.0 + i + shift for i in range(len(times))],
            "humidity": 0.5,
            "precipitation": None,
            "wind_speed": 3.0,
            "conditions": "clear",
            "metadata": "{}",
            "collected_at": collected_at,
        },
        schema=schemas.WEATHER,
    )


def write_old_weather(storage: Storage, site: str, rows: pl.DataFrame, stem: str) -> None:
    """The old `write_weather`: `<site folder>/date=<day>/<stem>.parquet`."""
    for day, part in split_by_date(rows).items():
        storage.write_parquet_atomic(f"{site_dir(WEATHER, site)}/date={day.isoformat()}/{stem}.parquet", part)


def old_landing(data_dir: Path | Storage, sites: tuple[str, ...] = CFG.sites) -> pl.DataFrame:
    """An old landing of DAY for `sites`: per window an attempt whose files are all landed and complete
    (version-2 checkpoint), the first window also with the files of an earlier fetch of it left beside
    (other values, older `collected_at`) and a heal patch fetched later; weather fetched twice, the later
    fetch in the `current_` file. Returns the rows the old warehouse would hold (timeseries)."""
    storage = LocalStorage(data_dir) if isinstance(data_dir, Path) else data_dir
    kept = []
    for site in sites:
        for n, window in enumerate(WINDOWS):
            rows = kept_rows(site, window, SECOND)
            files = write_old_attempt(storage, site, window, f"a{n}second", rows)
            names = rows.get_column("point_name").unique().to_list()
            if n == 0:
                write_old_attempt(storage, site, window, "a0first", kept_rows(site, window, FIRST, shift=0.5))
                patch = rows.head(3).with_columns(value=pl.col("value") * 2, collected_at=pl.lit(PATCHED))
                patched = f"{site_dir(TIMESERIES, site)}/date={DAY[:10]}/{window.key}_a0second_h0123456789ab.parquet"
                storage.write_parquet_atomic(patched, patch)
                files.append(patched)
                rows = pl.concat([patch, rows.slice(3)])
            write_v2_checkpoint(storage, site, window, f"a{n}second", files, names, "complete")
            kept.append(rows)
        write_old_weather(
            storage, site, weather_rows(site, FIRST, 0.0), Window(START, START + timedelta(days=1)).key
        )
        later = weather_rows(site, SECOND, 0.25).head(12)
        write_old_weather(storage, site, later, "current_" + compact_time(START))
    return pl.concat(kept).sort(KEY)


def old_weather(sites: tuple[str, ...] = CFG.sites) -> pl.DataFrame:
    frames = [
        pl.concat([weather_rows(s, SECOND, 0.25).head(12), weather_rows(s, FIRST, 0.0).slice(12)])
        for s in sites
    ]
    return pl.concat(frames).sort("site_name", "timestamp")


def table(data_dir: Path, name: str = TIMESERIES) -> pl.DataFrame:
    schema = schemas.TIMESERIES if name == TIMESERIES else schemas.WEATHER
    order = KEY if name == TIMESERIES else ["site_name", "timestamp"]
    return lake.read(LocalStorage(data_dir), name, schema=schema).sort(order)


def old_files(data_dir: Path) -> list[Path]:
    return sorted(
        p for d in ("timeseries", "weather") for p in (data_dir / "landing" / d).glob("site_name=*/**/*")
    )


def run_hq_day(data: Path) -> list[dict[str, Any]]:
    """`ace-etl run` of site hq over DAY in 12 h windows against the simulator; the requests it made."""
    with Simulator(replace(CFG, sites=("hq",))) as sim:
        env = {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key}
        run = ace_etl(
            "run", "--site", "hq", "--start", DAY, "--end", NEXT, "--window-hours", "12", "--data-dir", str(data),
            "--no-transform", env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        return list(sim.requests)


def test_an_old_landing_is_converted_once_with_the_old_warehouse_choice_and_nothing_is_fetched_again(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    expected = old_landing(data)
    before = {p.relative_to(data).as_posix() for p in old_files(data) if p.is_file()}

    first = ace_etl("upgrade", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    assert "converted" in first.stdout
    assert table(data).equals(expected)  # every column: values, quality, metadata, collected_at
    assert table(data, WEATHER).equals(old_weather())
    # The old files are aside, all of them, and no reader of the landing finds them.
    assert not old_files(data)
    assert {
        p.relative_to(data / upgrade.ASIDE).as_posix() for p in (data / upgrade.ASIDE).rglob("*.parquet")
    } == before

    version = lake.version(LocalStorage(data), TIMESERIES)
    again = ace_etl("upgrade", "--data-dir", str(data))
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout, again.stderr
    assert lake.version(LocalStorage(data), TIMESERIES) == version

    with Simulator(CFG) as sim:
        env = {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key}
        run = ace_etl(
            "run", *(a for s in CFG.sites for a in ("--site", s)), "--start", DAY, "--end", NEXT,
            "--window-hours", "12", "--data-dir", str(data), env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        fetched = [r["path"] for r in sim.requests if "/timeseries/" in r["path"] or "/weather" in r["path"]]
    assert fetched == []  # the windows are complete: only each site's points list (and record) was asked for
    assert table(data).equals(expected)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        built = con.execute(
            "select site_name, point_name, timestamp, value, quality, metadata::varchar, collected_at "
            "from timeseries_raw order by all"
        ).fetchall()
    assert built == expected.rows()


@pytest.mark.parametrize("command", ["status", "transform"])
def test_the_first_command_on_an_old_landing_converts_it_and_says_so(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    expected = old_landing(data, ("hq",))
    result = ace_etl(command, "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "converting the Parquet landing" in result.stderr and "landing converted" in result.stderr
    assert table(data).equals(expected)
    if command == "status":
        assert f"{expected.height:,}" in result.stdout  # the rows landed, read from the Delta table
    else:
        with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
            assert con.execute("select count(*) from timeseries_raw").fetchone() == (expected.height,)


def test_the_latest_fetch_wins_as_the_old_warehouse_chose_ties_included(tmp_path: Path) -> None:
    """`latest_per_key`: latest collected_at, then value, quality and metadata compared as DuckDB's text
    (so 9.0 beats 10.0), then the later file name."""
    storage = LocalStorage(tmp_path)
    at = datetime(2024, 6, 10, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "site_name": "s",
            "point_name": ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"],
            "timestamp": at,
            "value": [10.0, 9.0, 1.0, 1.0, 2.0, 2.0, 5.0, 1.0],
            "quality": ["good", "good", "bad", "good", None, None, None, None],
            "metadata": ["{}", "{}", "{}", "{}", '{"b": 1}', '{"a": 1}', "{}", "{}"],
            "collected_at": [FIRST, FIRST, FIRST, FIRST, FIRST, FIRST, FIRST, SECOND],
        },
        schema=schemas.TIMESERIES,
    )
    for name, part in (("b.parquet", rows[0::2]), ("a.parquet", rows[1::2])):
        storage.write_parquet_atomic(f"{site_dir(TIMESERIES, 's')}/date=2024-06-10/{name}", part)
    storage.write_parquet_atomic(f"{site_dir(TIMESERIES, 's')}/date=2024-06-10/c.parquet", rows[6:7])
    upgrade.upgrade(storage)
    chosen = table(tmp_path).select("point_name", "value", "quality", "metadata")
    assert chosen.rows() == [
        ("p1", 9.0, "good", "{}"),
        ("p2", 1.0, "good", "{}"),
        ("p3", 2.0, None, '{"b": 1}'),
        ("p4", 1.0, None, "{}"),
    ]


class Crash(Exception):
    pass


CRASH_SITES = ("hq", ODD, LONG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The old landing of CRASH_SITES upgraded in one go: what every crashed and rerun upgrade must end with.
    The tests only read it."""
    data = tmp_path_factory.mktemp("upgraded") / "data"
    old_landing(data, CRASH_SITES)
    upgrade.upgrade(LocalStorage(data))
    return data


@pytest.mark.parametrize("where", ["before the commit", "after the commit", "amid the moves"])
def test_a_crash_anywhere_then_a_rerun_ends_with_the_same_tables(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    sites = CRASH_SITES
    data = tmp_path / "data"
    expected = old_landing(data, sites)
    storage = LocalStorage(data)
    commits, moves = [0], [0]
    real_rename = storage.rename

    def committing(write: Any) -> Any:
        def commit(*args: Any, **kwargs: Any) -> int:
            commits[0] += 1
            if where == "before the commit" and commits[0] == 3:
                raise Crash
            done = int(write(*args, **kwargs))
            if where == "after the commit" and commits[0] == 3:
                raise Crash
            return done

        return commit

    def rename(src: str, dst: str) -> None:
        moves[0] += 1
        if where == "amid the moves" and moves[0] == 5:
            raise Crash
        real_rename(src, dst)

    monkeypatch.setattr(lake, "append", committing(lake.append))
    monkeypatch.setattr(lake, "upsert", committing(lake.upsert))
    monkeypatch.setattr(storage, "rename", rename)
    with pytest.raises(Crash):
        upgrade.upgrade(storage)
    assert upgrade.pending(storage)
    monkeypatch.undo()
    upgrade.upgrade(LocalStorage(data))

    assert not upgrade.pending(LocalStorage(data))
    assert table(data).equals(expected) and table(data).equals(table(reference))
    assert table(data, WEATHER).equals(table(reference, WEATHER))
    assert not old_files(data)
    assert sorted(p.relative_to(data) for p in (data / upgrade.ASIDE).rglob("*")) == sorted(
        p.relative_to(reference) for p in (reference / upgrade.ASIDE).rglob("*")
    )


def test_an_attempt_an_old_run_left_mid_commit_is_committed_from_its_pages_without_a_fetch(
    tmp_path: Path,
) -> None:
    """Version 2 moved a window's pages into the landing one by one: a crash between left some there and
    the rest staged. The upgrade gives the landed ones back to the attempt, whose commit (by the next run)
    replaces the window with exactly its pages."""
    data = tmp_path / "data"
    storage = LocalStorage(data)
    window = WINDOWS[0]
    write_old_attempt(storage, "hq", window, "old", kept_rows("hq", window, FIRST, shift=0.5))
    rows = kept_rows("hq", window, SECOND)
    files = write_old_attempt(storage, "hq", window, "new", rows)
    names = rows.get_column("point_name").unique().to_list()
    write_v2_checkpoint(storage, "hq", window, "new", files, names, "publishing")
    for path in files[1:]:  # the first page had been moved in; the others wait in staging
        storage.rename(path, staged("hq", "new", path))
    write_v2_checkpoint(
        storage,
        "hq",
        WINDOWS[1],
        "b",
        write_old_attempt(storage, "hq", WINDOWS[1], "b", kept_rows("hq", WINDOWS[1], SECOND)),
        names,
        "complete",
    )

    assert ace_etl("upgrade", "--data-dir", str(data)).returncode == 0
    # Its window was not complete, so the run asked for the day's weather too, as the old one would have.
    assert [r["path"] for r in run_hq_day(data) if "timeseries" in r["path"]] == []
    assert table(data).equals(pl.concat([rows, kept_rows("hq", WINDOWS[1], SECOND)]).sort(KEY))
    assert all(c.complete for c in load_checkpoints(storage, "hq"))


def test_nothing_to_upgrade_on_a_new_or_empty_data_dir(tmp_path: Path) -> None:
    result = ace_etl("upgrade", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0 and "nothing to upgrade" in result.stdout, result.stderr
    assert not upgrade.pending(LocalStorage(tmp_path / "data"))


def test_two_processes_upgrading_at_once_convert_each_folder_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    expected = old_landing(data, ("hq", ODD, LONG))
    children = [spawn("upgrade", "--data-dir", str(data)) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert table(data).equals(expected)
    assert table(data, WEATHER).equals(old_weather(("hq", ODD, LONG)))
    assert not upgrade.pending(LocalStorage(data)) and not old_files(data)


@pytest.mark.parametrize(("where", "nth"), [("commit", 2), ("move", 4)])
def test_a_kill_9_mid_upgrade_then_a_rerun_ends_with_the_same_tables(
    tmp_path: Path, where: str, nth: int
) -> None:
    data = tmp_path / "data"
    expected = old_landing(data, ("hq", ODD))
    child = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("upgrade_child.py")), str(data), where, str(nth)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert upgrade.pending(LocalStorage(data))
    rerun = ace_etl("upgrade", "--data-dir", str(data))  # takes over the dead process's lease at once
    assert rerun.returncode == 0 and "converted" in rerun.stdout, rerun.stderr
    assert table(data).equals(expected)
    assert table(data, WEATHER).equals(old_weather(("hq", ODD)))
    assert not upgrade.pending(LocalStorage(data)) and not old_files(data)


def test_an_unreadable_old_file_is_set_aside_with_its_window_which_the_next_run_fetches_again(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    expected = old_landing(data, ("hq",))
    damaged = next(
        (data / "landing" / "timeseries").glob(f"site_name=hq/date=*/{WINDOWS[1].key}_*_p*.parquet")
    )
    lost = pl.read_parquet(damaged).select(KEY)
    damaged.write_bytes(damaged.read_bytes()[:100])
    result = ace_etl("upgrade", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "set aside" in result.stderr
    assert table(data).equals(expected.join(lost, on=KEY, how="anti"))  # the rest of its window is there
    assert [c.window for c in load_checkpoints(LocalStorage(data), "hq")] == [WINDOWS[0]]

    asked = [r["params"]["start_time"] for r in run_hq_day(data) if "timeseries" in r["path"]]
    assert asked and all(t.startswith(WINDOWS[1].start.strftime("%Y-%m-%dT%H")) for t in asked), asked
    fetched = (
        table(data).filter(pl.col("timestamp") >= WINDOWS[1].start).select("point_name", "timestamp", "value")
    )
    assert fetched.equals(expected.filter(pl.col("timestamp") >= WINDOWS[1].start).select(fetched.columns))


def test_a_folder_goes_in_groups_of_points_and_a_crash_between_groups_is_finished_by_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    expected = old_landing(data, ("hq",))
    storage = LocalStorage(data)
    monkeypatch.setattr(
        upgrade, "GROUP_ROWS", 50
    )  # every point has over 50 rows in a day folder: one group each
    appended = []
    real_append = lake.append

    def append(*args: Any, **kwargs: Any) -> int:
        appended.append(args[2].get_column("point_name").unique().to_list())
        if len(appended) == 2:
            raise Crash  # the folder's first group is in, the second not
        return real_append(*args, **kwargs)

    monkeypatch.setattr(lake, "append", append)
    with pytest.raises(Crash):
        upgrade.upgrade(storage)
    assert len(appended[0]) == 1 and appended[1] != appended[0]
    monkeypatch.setattr(lake, "append", real_append)
    upgrade.upgrade(storage)
    assert table(data).equals(expected)
    assert table(data, WEATHER).equals(old_weather(("hq",)))


def test_a_hand_run_dbt_build_on_an_old_landing_says_to_upgrade_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_dbt_by_hand import dbt

    data = tmp_path / "data"
    old_landing(data)
    run = dbt("build", "--select", "lake_snapshot", data_dir=data, monkeypatch=monkeypatch)
    assert not run.success
    assert any("ace-etl upgrade --data-dir" in line for line in run.lines), run.lines[-20:]
    assert upgrade.pending(LocalStorage(data))  # nothing was half-converted behind the user's back
