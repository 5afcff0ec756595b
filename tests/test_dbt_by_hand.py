"""`dbt build`, `dbt run --select` and `dbt docs generate` work by hand on what the extractor landed, the
landing-freshness test speaks up when its threshold is passed, and dbt run from the wrong folder refuses
to build an empty warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from ace_etl.simulator import Simulator, SimulatorConfig
from ace_etl.transform import DBT_PROJECT_DIR, PROJECT_DQ_SEVERITY, dbt_vars, release_dbt_database
from extract.api.client import AceClient
from extract.lake import landing
from extract.lake.storage import LocalStorage
from extract.run.job import Job
from extract.run.pipeline import run_extract
from extract.windows import Window

DBT = Path(sys.executable).parent / "dbt"
CFG = SimulatorConfig(sites=("lab",), points=6, interval=900)


@dataclass(frozen=True)
class Invocation:
    success: bool
    lines: list[str]


def dbt(
    *args: str, monkeypatch: pytest.MonkeyPatch, data_dir: Path | None = None, cwd: Path = DBT_PROJECT_DIR
) -> Invocation:
    """`dbt ARGS` as typed in `cwd` (dbt_project/ by default) with ACE_ETL_DATA_DIR set to `data_dir` (unset
    when None), through dbt's programmatic entry point (dbtRunner: the same commands and flags) in this
    process, which spares a dbt import per command. `dbt_command` runs the `dbt` console script itself."""
    from dbt.cli.main import dbtRunner

    work = data_dir or cwd
    with monkeypatch.context() as patch:
        patch.chdir(cwd)
        patch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        if data_dir is None:
            patch.delenv("ACE_ETL_DATA_DIR", raising=False)
            patch.setenv("ACE_ETL_DUCKDB_PATH", str(cwd / "w.duckdb"))
        else:
            patch.setenv("ACE_ETL_DATA_DIR", str(data_dir))
            patch.delenv("ACE_ETL_DUCKDB_PATH", raising=False)
        lines: list[str] = []
        result = dbtRunner(callbacks=[lambda event: lines.append(event.info.msg)]).invoke(
            [*args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(work / "by-hand-target"), "--log-path", str(work / "by-hand-logs")]
        )  # fmt: skip
        release_dbt_database()  # as the end of a `dbt` process would: the test reads the file next
    return Invocation(result.success, lines)


def dbt_command(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `dbt` console script in a new process, run from `cwd` with `env` added to this environment."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("ACE_ETL_DATA_DIR", "ACE_ETL_DUCKDB_PATH")
    }
    return subprocess.run(
        [str(DBT), *args], cwd=cwd, env={**environment, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def extract_day(data_dir: Path, day: int) -> None:
    with Simulator(CFG) as sim, AceClient(sim.url, CFG.api_key, requests_per_minute=None) as client:
        start = datetime(2024, 2, day, tzinfo=UTC)
        job = Job(sites=CFG.sites, span=Window(start, start + timedelta(days=1)), data_dir=data_dir)
        run_extract(client, LocalStorage(data_dir), job)


def raw_rows(data_dir: Path) -> int:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select count(*) from timeseries_raw").fetchall()[0][0]


def test_build_and_docs_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extract_day(tmp_path, 1)

    def freshness_warned(run: Invocation) -> bool:
        assert run.success, run.lines[-30:]
        return any("WARN" in line and "timeseries_landing_age_hours" in line for line in run.lines)

    # Landed just now (age 0 h): quiet with the default threshold (a warning once it is below: at the end).
    first = dbt("build", data_dir=tmp_path, monkeypatch=monkeypatch)
    assert not freshness_warned(first)
    # The dbt unit tests of the gap and coverage logic ran in it, and passed (else the build failed).
    unit_tests = [line for line in first.lines if " PASS " in line and "::" in line]
    assert len(unit_tests) == 3, first.lines[-40:]
    first_day = raw_rows(tmp_path)
    assert first_day > 0

    # A selection of one model loads what is new to it: each model keeps its own record of landed files.
    # `+` takes the landing's snapshot along (`lake_snapshot`, read from the Delta log anew).
    extract_day(tmp_path, 2)
    # This one is typed at a shell, in dbt_project/, as the README shows.
    run = dbt_command(
        "run", "--select", "+timeseries_raw", cwd=DBT_PROJECT_DIR,
        env={"ACE_ETL_DATA_DIR": str(tmp_path), "DBT_TARGET_PATH": str(tmp_path / "by-hand-target"),
             "DBT_LOG_PATH": str(tmp_path / "by-hand-logs")},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert raw_rows(tmp_path) == 2 * first_day

    docs = dbt("docs", "generate", data_dir=tmp_path, monkeypatch=monkeypatch)
    assert docs.success, docs.lines[-30:]
    assert (tmp_path / "by-hand-target" / "catalog.json").is_file()

    # Last: other --vars make dbt parse the project again, which the commands above share.
    late = dbt(
        "test", "--select", "timeseries_landing_age_hours", "--vars", "{freshness_warn_after_hours: -1}",
        data_dir=tmp_path, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert freshness_warned(late)


def test_a_hand_run_without_the_data_dir_refuses_to_build_an_empty_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from tmp_path, not dbt_project/: ../data is the wrong folder here.
    run = dbt("build", cwd=tmp_path, monkeypatch=monkeypatch)
    assert not run.success
    assert any("set ACE_ETL_DATA_DIR" in line for line in run.lines), run.lines[-20:]


def test_a_flow_s_default_severity_is_the_project_s_and_shares_the_cli_s_parse() -> None:
    # dbt parses anew for other vars: a flow passes dq_severity=warn, the project's own default.
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["vars"]["dq_severity"] == PROJECT_DQ_SEVERITY
    assert dbt_vars(dq_severity=PROJECT_DQ_SEVERITY) == dbt_vars()
    assert json.loads(dbt_vars(dq_severity="error")[1])["dq_severity"] == "error"


def test_a_hand_run_reads_the_landing_layout_that_ace_etl_passes() -> None:
    """dbt_project.yml's defaults are what `ace-etl` passes from the layout object: a hand-run build reads
    the same files (the build tests above read them with these defaults)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    layout = landing.dbt_vars()
    assert {name: project["vars"][name] for name in layout} == layout
