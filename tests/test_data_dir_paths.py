"""A data dir's path is data wherever it goes (issue 15, item 5): a real `ace-etl run` against the simulator,
a real dbt build and `ace-etl status` into folders whose names hold glob characters and quotes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ace_etl.simulator import Simulator, SimulatorConfig
from tests.clihelp import ace_etl, error_line

SITE = "hq"
START, END = "2024-05-01T00:00:00Z", "2024-05-01T12:00:00Z"
CFG = SimulatorConfig(sites=(SITE,), points=6, interval=600, api_key="paths-key-0123456789")
TABLES = (
    "timeseries_raw",
    "timeseries_hourly",
    "timeseries_coverage",
    "timeseries_gaps",
    "points",
    "etl_runs",
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(CFG) as running:
        yield running


def run(sim: Simulator, data: Path, *args: str) -> tuple[int, str]:
    result = ace_etl(
        "run", "--site", SITE, "--start", START, "--end", END, "--data-dir", str(data), *args,
        env={"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key},
    )  # fmt: skip
    return result.returncode, result.stderr


def counts(data: Path) -> dict[str, int]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        return {name: con.execute(f"select count(*) from {name}").fetchone()[0] for name in TABLES}  # type: ignore[index]


@pytest.fixture(scope="module")
def plain(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    data = tmp_path_factory.mktemp("plain") / "data"
    code, stderr = run(sim, data)
    assert code == 0, stderr
    return counts(data)


@pytest.mark.parametrize("name", ["dd*1", "it's", 'a*b{c} "d" e'])
def test_a_data_dir_with_glob_characters_or_quotes_builds_the_same_tables(
    name: str, plain: dict[str, int], sim: Simulator, tmp_path: Path
) -> None:
    # What `dd*1` would match as a pattern: a decoy landing (half the range) the build must not read.
    assert run(sim, tmp_path / "dd1", "--no-transform", "--end", "2024-05-01T06:00:00Z")[0] == 0
    data = tmp_path / name
    code, stderr = run(sim, data)
    assert code == 0, stderr
    assert "warning" not in stderr, stderr  # an empty build warns that the landing is stale
    assert counts(data) == plain and plain["timeseries_raw"] > 0
    status = ace_etl("status", "--data-dir", str(data))
    assert status.returncode == 0, status.stderr
    assert "damaged" not in status.stdout and f"{plain['timeseries_raw']:,}" in status.stdout


def test_a_question_mark_or_hash_needs_the_warehouse_elsewhere(
    plain: dict[str, int], sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dbt-duckdb reads `?` and `#` in its database path as a URL's: refused before anything lands...
    data = tmp_path / "what?#now"
    code, stderr = run(sim, data)
    assert code == 2 and "ACE_ETL_DUCKDB_PATH" in error_line(stderr)
    assert not (data / "landing").exists()
    # ...and builds with the warehouse elsewhere, the landing read through the escaped glob.
    monkeypatch.setenv("ACE_ETL_DUCKDB_PATH", str(tmp_path / "warehouse" / "warehouse.duckdb"))
    code, stderr = run(sim, data)
    assert code == 0, stderr
    assert counts(tmp_path / "warehouse") == plain


@pytest.mark.parametrize("name", ["dd[1]", "50%"])
def test_a_bracket_or_percent_in_the_data_dir_is_one_line_before_anything_lands(
    name: str, sim: Simulator, tmp_path: Path
) -> None:
    data = tmp_path / name
    code, stderr = run(sim, data, "--no-transform")
    assert code == 2 and error_line(stderr).startswith("error: data dir") and "delta-rs" in stderr
    assert not (data / "landing").exists()


def test_a_backslash_in_the_data_dir_is_one_line_before_anything_lands(
    sim: Simulator, tmp_path: Path
) -> None:
    data = tmp_path / "back\\slash"
    code, stderr = run(sim, data)
    assert code == 2 and error_line(stderr).startswith("error: data dir") and "backslash" in stderr
    assert not (data / "landing").exists()
