"""`cd dbt_project && dbt build` and `dbt docs generate` work by hand on what the extractor landed, and the
landing-freshness test speaks up when its threshold is passed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ace_etl.simulator import Simulator, SimulatorConfig
from ace_etl.transform import DBT_PROJECT_DIR
from extract.client import AceClient
from extract.pipeline import run_extract
from extract.storage import LocalStorage

DBT = Path(sys.executable).parent / "dbt"
CFG = SimulatorConfig(sites=("lab",), points=6, interval=900)


def dbt(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACE_ETL_DATA_DIR": str(data_dir),
        "DBT_TARGET_PATH": str(data_dir / "by-hand-target"),
        "DBT_LOG_PATH": str(data_dir / "by-hand-logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("ACE_ETL_DUCKDB_PATH", None)
    return subprocess.run(
        [str(DBT), *args],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_build_and_docs_by_hand(tmp_path: Path) -> None:
    with Simulator(CFG) as sim, AceClient(sim.url, CFG.api_key, requests_per_minute=None) as client:
        run_extract(
            client,
            LocalStorage(tmp_path),
            CFG.sites,
            datetime(2024, 2, 1, tzinfo=UTC),
            datetime(2024, 2, 2, tzinfo=UTC),
        )

    def freshness_warned(run: subprocess.CompletedProcess[str]) -> bool:
        assert run.returncode == 0, run.stdout[-3000:]
        lines = run.stdout.splitlines()
        return any("WARN" in line and "timeseries_landing_age_hours" in line for line in lines)

    # Landed just now (age 0 h): quiet with the default threshold, a warning once the threshold is below it.
    assert not freshness_warned(dbt("build", data_dir=tmp_path))
    assert freshness_warned(dbt("build", "--vars", "{freshness_warn_after_hours: -1}", data_dir=tmp_path))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from timeseries_raw").fetchall()[0][0] > 0

    docs = dbt("docs", "generate", data_dir=tmp_path)
    assert docs.returncode == 0, docs.stdout[-3000:]
    assert (tmp_path / "by-hand-target" / "catalog.json").is_file()


def test_a_hand_run_without_the_data_dir_refuses_to_build_an_empty_warehouse(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACE_ETL_DATA_DIR"}
    run = subprocess.run(
        [str(DBT), "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        cwd=tmp_path,  # not dbt_project/: ../data is the wrong folder here
        env={**env, "ACE_ETL_DUCKDB_PATH": str(tmp_path / "w.duckdb"), "DBT_TARGET_PATH": str(tmp_path / "t"),
             "DBT_LOG_PATH": str(tmp_path / "l"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode != 0
    assert "set ACE_ETL_DATA_DIR" in run.stdout
