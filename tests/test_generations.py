"""Publishing by generations (ace_etl.generations), through `building()`, the path every build takes.

The "build" here writes one table with DuckDB instead of running dbt: which file a build writes, what gets
copied and what analysts see do not depend on what dbt puts in it (test_dbt.py runs the real thing).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ace_etl import generations
from ace_etl.transform import build_dir, building, warehouse_file

NOTEBOOK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
sys.stdin.read()
print(connection.execute("select v from t").fetchall())
"""


def build(data_dir: Path, value: int, *, full_refresh: bool = False) -> Path:
    with building(data_dir, full_refresh=full_refresh) as database, duckdb.connect(str(database)) as db:
        db.execute("create or replace table t as select ? as v", [value])
    return database


def published_value(data_dir: Path) -> int:
    with duckdb.connect(str(warehouse_file(data_dir)), read_only=True) as analyst:
        return analyst.execute("select v from t").fetchall()[0][0]


def generation_files(data_dir: Path) -> list[str]:
    return sorted(path.parent.name for path in build_dir(data_dir).glob("generation-*/warehouse.duckdb"))


def copies(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings that a build had to start from a copy."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.getMessage().startswith("copying the warehouse")
    ]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="extract")
    # These builds take milliseconds, so a copy would always look cheaper: catch up unless a test says so.
    monkeypatch.setattr(generations, "COPY_BYTES_PER_S", 1e-9)


def test_a_small_warehouse_is_copied_rather_than_caught_up_and_the_disk_holds_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(generations, "COPY_BYTES_PER_S", float("inf"))  # any copy beats any build
    for value in (1, 2, 3, 4):
        build(tmp_path, value)
        assert published_value(tmp_path) == value and len(generation_files(tmp_path)) <= 2
    # From the third build on, the file behind is replaced by a fresh copy of the published one.
    assert generation_files(tmp_path) == ["generation-3", "generation-4"]
    assert [r.getMessage() for r in caplog.records if "cheaper than catching up" in r.getMessage()] != []
    assert copies(caplog) == []  # nothing anyone needs to act on


def test_builds_alternate_between_two_files_and_publish_by_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inodes = []
    for value in range(1, 6):
        database = build(tmp_path, value)
        assert published_value(tmp_path) == value
        assert warehouse_file(tmp_path).stat().st_ino == database.stat().st_ino  # a link, not a copy
        assert len(generation_files(tmp_path)) <= 2
        inodes.append(database.stat().st_ino)
    # The first two builds make the two files; from then on each build reuses the one behind, in place.
    assert inodes[2] == inodes[0] and inodes[4] == inodes[0] and inodes[3] == inodes[1]
    assert generation_files(tmp_path) == ["generation-1", "generation-2"]
    assert copies(caplog) == []


def test_a_reader_holding_the_previous_generation_costs_a_copy_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build(tmp_path, 1)
    # Another process, as a notebook is (DuckDB's file locks do not stop the process that holds them).
    notebook = subprocess.Popen(
        [sys.executable, "-c", NOTEBOOK, str(warehouse_file(tmp_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert notebook.stdout is not None and notebook.stdout.readline() == "open\n"
    build(tmp_path, 2)
    third = build(tmp_path, 3)  # the file behind is the one the notebook holds: built on a copy
    assert notebook.communicate("", timeout=30)[0] == "[(1,)]\n"
    assert published_value(tmp_path) == 3 and third.parent.name == "generation-3"
    assert [m.split(": ", 1)[1] for m in copies(caplog)] == [
        "the previous build is still open elsewhere (close old connections to free it)"
    ]
    assert generation_files(tmp_path) == ["generation-2", "generation-3"]


def test_a_published_file_written_by_hand_is_the_base_of_the_next_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build(tmp_path, 1)
    build(tmp_path, 2)
    with duckdb.connect(str(warehouse_file(tmp_path))) as by_hand:  # e.g. a `dbt run` on the published file
        by_hand.execute("create table notes as select 'kept' as note")
    build(tmp_path, 3)
    with duckdb.connect(str(warehouse_file(tmp_path)), read_only=True) as analyst:
        assert analyst.execute("select note, (select v from t) from notes").fetchall() == [("kept", 3)]
    assert len(copies(caplog)) == 1 and "written outside a build" in copies(caplog)[0]
    assert generation_files(tmp_path) == ["generation-2", "generation-3"]


def test_a_full_refresh_keeps_no_generation_behind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for value in (1, 2):
        build(tmp_path, value)
    build(tmp_path, 3, full_refresh=True)
    assert len(generation_files(tmp_path)) == 1  # the one behind has the old logic: never built on again
    third = warehouse_file(tmp_path).stat().st_ino
    build(tmp_path, 4)
    assert warehouse_file(tmp_path).stat().st_ino != third and published_value(tmp_path) == 4
    assert copies(caplog) == []  # a copy made for a reason nobody needs to act on is not a warning


def test_a_failed_build_publishes_nothing_and_is_built_on_next_time(tmp_path: Path) -> None:
    build(tmp_path, 1)
    build(tmp_path, 2)
    published = warehouse_file(tmp_path).stat().st_ino
    with pytest.raises(RuntimeError), building(tmp_path) as database, duckdb.connect(str(database)) as db:
        db.execute("create or replace table t as select 99 as v")
        raise RuntimeError("a model failed")
    assert warehouse_file(tmp_path).stat().st_ino == published and published_value(tmp_path) == 2
    assert build(tmp_path, 3) == database  # no copy: the failed build's file is a state to continue from


def test_a_damaged_record_trusts_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build(tmp_path, 1)
    build(tmp_path, 2)
    (build_dir(tmp_path) / "generations.json").write_text("{not json")
    assert build(tmp_path, 3).parent.name == "generation-3"
    assert published_value(tmp_path) == 3 and len(copies(caplog)) == 1


def test_the_single_build_file_of_earlier_versions_becomes_the_first_generation(tmp_path: Path) -> None:
    old = build_dir(tmp_path) / "warehouse.duckdb"
    old.parent.mkdir(parents=True)
    with duckdb.connect(str(old)) as db:
        db.execute("create table history as select 'incremental state' as s")
    with building(tmp_path) as database, duckdb.connect(str(database)) as db:
        assert db.execute("select s from history").fetchall() == [("incremental state",)]
    assert not old.exists() and generation_files(tmp_path) == ["generation-1"]


def test_dbt_sees_one_path_for_every_generation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = []
    for value in (1, 2, 3):
        with building(data) as database:
            # What dbt's profile reads (dbt_project/profiles.yml): the same path, the file being built.
            path = Path(os.environ["ACE_ETL_BUILD_DATABASE"])
            seen.append((path, path.resolve() == database.resolve()))
            with duckdb.connect(str(path)) as db:
                db.execute("create or replace table t as select ? as v", [value])
    assert [ok for _, ok in seen] == [True, True, True] and len({path for path, _ in seen}) == 1
    assert len(set(generation_files(data))) == 2 and published_value(data) == 3
