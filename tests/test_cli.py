"""The `ace-etl` command line end to end: real processes, real loopback HTTP to the simulator, real Parquet
and a real `dbt build`. Exit statuses and messages are what scripts and schedulers see."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ace_etl import heap
from ace_etl.simulator import Simulator, SimulatorConfig, served_samples, site_points
from tests.clihelp import BIN, ace_etl, ace_etl_script, error_line

SITES = ("north campus", "south/annex")  # a space and a slash: names must stay one folder each
START, END = "2024-05-01T00:00:00Z", "2024-05-01T12:00:00Z"
CFG = SimulatorConfig(sites=SITES, points=10, interval=600, api_key="sim-secret-key-123")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(CFG) as running:
        yield running


def api_env(sim: Simulator, key: str = CFG.api_key) -> dict[str, str]:
    return {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": key}


def expected_rows(site: str) -> pl.DataFrame:
    configured = {
        p.name for p in site_points(site, CFG.points, CFG.interval, CFG.configured_fraction) if p.configured
    }
    served = served_samples(CFG, site, START, END)
    return (
        served.filter(pl.col("name").is_in(configured))
        .select(point_name="name", timestamp="time", value="value")
        .sort("point_name", "timestamp")
    )


def table(db: Path, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]


# The analysts' tables of docs/DESIGN.md, less `etl_runs`, which gains a row per window on every run by design.
DATA_TABLES = (
    "timeseries_raw", "weather_raw", "timeseries_rejects", "points",
    "timeseries_hourly", "timeseries_daily", "timeseries_gaps", "timeseries_coverage",
)  # fmt: skip


def all_tables(db: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(db), read_only=True) as con:
        names = DATA_TABLES
        return {
            n: pl.from_arrow(con.sql(f'select * from "{n}" order by all').to_arrow_table()) for n in names
        }  # type: ignore[misc]


def test_help_imports_nothing_heavy() -> None:
    code = "import sys, ace_etl.cli; print(sorted(m for m in ('polars', 'prefect', 'dbt', 'duckdb', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = ace_etl_script("--help")  # the installed console script
    assert result.returncode == 0
    for command in ("demo", "run", "transform", "simulator", "status"):
        assert command in result.stdout


def test_a_command_collects_garbage_less_often_and_ends_without_a_last_walk_of_its_heap(
    tmp_path: Path,
) -> None:
    # The console script collects the young generation every 10,000 allocations rather than 700
    # (ace_etl/heap.py), and freezes what is alive when its command ends: the interpreter's last garbage
    # collection skips it (0.14 s of every run). Exit handlers, which close and flush, run after it.
    seen = tmp_path / "at-exit"
    code = (
        "import atexit, gc, sys\n"
        f"atexit.register(lambda: open({str(seen)!r}, 'w').write(f'{{gc.get_freeze_count() > 0}} {{gc.get_threshold()[0]}}'))\n"
        "sys.argv = ['ace-etl', '--help']\n"
        "from ace_etl.console import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "run" in done.stdout, done.stderr
    assert seen.read_text() == f"True {heap.YOUNG_COLLECTION_THRESHOLD}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run"], "--site"),
        (["run", "--site", "x", "--start", "yesterday"], "--start"),
        (["run", "--site", "x", "--start", "2024-05-02", "--end", "2024-05-01"], "must be before"),
        (["run", "--site", "x", "--points", "a", "--points-from-api"], "only one of"),
        (["run", "--site", "x", "--page-size", "200000"], "page-size"),
        (["run", "--site", "x", "--points-file", "/nonexistent/points.txt"], "points file"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_usage_exits_2(args: list[str], needle: str, sim: Simulator, tmp_path: Path) -> None:
    result = (
        ace_etl(*args, "--data-dir", str(tmp_path), env=api_env(sim)) if args[0] == "run" else ace_etl(*args)
    )
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr


def test_missing_key_exits_2_with_a_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACEIOT_API_KEY"}
    result = subprocess.run(
        [str(BIN / "ace-etl"), "run", "--site", "x", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no API key: set ACEIOT_API_KEY to your ACE IoT API key (or try `ace-etl demo`, which needs none)"
    )


def test_rejected_key_exits_1_and_never_shows_the_key(sim: Simulator, tmp_path: Path) -> None:
    wrong = "wrong-key-SHOULD-NOT-LEAK-42"
    result = ace_etl("run", "--site", SITES[0], "--start", START, "--end", END, "--data-dir", str(tmp_path),
                     env=api_env(sim, wrong))  # fmt: skip
    assert result.returncode == 1
    assert (
        error_line(result.stderr)
        == "error: the API key was rejected (HTTP 401): set ACEIOT_API_KEY to a valid key"
    )
    assert wrong not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes(), path


def test_unknown_site_exits_1(sim: Simulator, tmp_path: Path) -> None:
    result = ace_etl("run", "--site", "atlantis", "--start", START, "--end", END, "--data-dir", str(tmp_path),
                     "--no-transform", env=api_env(sim))  # fmt: skip
    assert result.returncode == 1
    assert "error: no such site 'atlantis' (HTTP 404)" in result.stderr


def test_two_sites_land_and_build_exactly_and_rerun_changes_nothing(sim: Simulator, tmp_path: Path) -> None:
    args = ["run", *(a for s in SITES for a in ("--site", s)), "--start", START, "--end", END,
            "--window-hours", "6", "--page-size", "500", "--data-dir", str(tmp_path)]  # fmt: skip
    first = ace_etl(*args, env=api_env(sim))
    assert first.returncode == 0, first.stderr
    assert CFG.api_key not in first.stdout + first.stderr
    db = tmp_path / "warehouse.duckdb"
    for site in SITES:
        landed = table(
            db,
            f"select point_name, timestamp, value from timeseries_raw where site_name = '{site}' order by all",
        )
        assert landed.with_columns(pl.col("timestamp").dt.convert_time_zone("UTC")).equals(
            expected_rows(site)
        )
        assert site in first.stdout  # the summary has a row per site
    before = all_tables(db)

    second = ace_etl(*args, env=api_env(sim))
    assert second.returncode == 0, second.stderr
    runs = table(db, "select status, count(*) as n from etl_runs group by all order by all")
    assert runs.to_dicts() == [{"status": "complete", "n": 4}, {"status": "skipped", "n": 4}]
    after = all_tables(db)
    for name, frame in before.items():
        assert after[name].equals(frame), f"{name} changed on a re-run"


def test_demo_runs_end_to_end_twice(tmp_path: Path) -> None:
    args = ("demo", "--data-dir", str(tmp_path), "--points", "20", "--hours", "6")
    first = ace_etl(*args)
    assert first.returncode == 0, first.stderr
    assert "run summary" in first.stdout and "Samples and average value per device" in first.stdout
    db = tmp_path / "warehouse.duckdb"
    before = all_tables(db)
    assert before["timeseries_raw"].height > 0
    second = ace_etl(*args)
    assert second.returncode == 0, second.stderr
    after = all_tables(db)
    assert table(db, "select count(*) as n from etl_runs where status = 'skipped'").item() == 1
    for name, frame in before.items():
        assert after[name].equals(frame), f"{name} changed on the second demo run"
    status = ace_etl("status", "--data-dir", str(tmp_path))
    assert status.returncode == 0 and "demo-site" in status.stdout


def test_status_on_an_empty_data_dir(tmp_path: Path) -> None:
    result = ace_etl("status", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert "Nothing landed yet" in result.stdout
