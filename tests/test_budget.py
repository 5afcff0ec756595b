"""One request budget per API key across processes: several real processes against a rate-limited simulator."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig
from extract.api.budget import SharedBudget, key_id
from extract.errors import AceEtlError, BudgetError
from tests.clihelp import ace_etl, spawn
from tests.landing_factory import samples, write_timeseries
from tests.support import assert_waits_until_cancelled


def test_processes_sharing_a_budget_are_never_throttled_and_lose_no_time(tmp_path: Path) -> None:
    # The server allows 20 requests per 3 s for the key; 3 processes page through 3 sites, 20 pages each.
    sites = ("s1", "s2", "s3")
    cfg = SimulatorConfig(
        sites=sites, points=10, interval=60, api_key="demo", faults=Faults(rate_limit=20, rate_period=3.0)
    )
    budget = tmp_path / "budget.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = str(Path(__file__).with_name("budget_child.py"))
    with Simulator(cfg) as sim:
        SharedBudget(budget, key_id(sim.url, "demo"), 20, 3.0)  # the file exists before the clock starts
        started = time.monotonic()
        runs = [
            subprocess.Popen(
                [sys.executable, child, sim.url, site, str(budget)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for site in sites
        ]
        pages = [int(run.communicate(timeout=120)[0]) for run in runs]
        elapsed = time.monotonic() - started
        statuses = [r["status"] for r in sim.requests if "/timeseries/" in r["path"]]
    assert pages == [20, 20, 20] and len(statuses) == 60
    assert statuses.count(429) == 0
    # 60 requests at 20 per 3 s: two full windows of waiting at least (how close: benchmarks/scale.py).
    assert elapsed >= 6.0, elapsed


def test_processes_sharing_a_minute_budget_never_burst_past_a_shorter_server_window(tmp_path: Path) -> None:
    # 60 a minute shared by 3 processes, against a server allowing 10 per 9 s: a budget that let its
    # minute's requests go at once would send all 12 requests together and get two 429s. Paced, 11
    # requests span over 10 s: more than a second of slack for requests delayed on a loaded machine.
    sites = ("s1", "s2", "s3")
    cfg = SimulatorConfig(
        sites=sites, points=10, interval=60, api_key="demo", faults=Faults(rate_limit=10, rate_period=9.0)
    )
    budget = tmp_path / "budget.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = str(Path(__file__).with_name("budget_child.py"))
    with Simulator(cfg) as sim:
        runs = [
            subprocess.Popen(
                [sys.executable, child, sim.url, site, str(budget), "60", "60", "150"],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for site in sites
        ]
        pages = [int(run.communicate(timeout=300)[0]) for run in runs]
        statuses = [r["status"] for r in sim.requests]
    assert pages == [4, 4, 4]
    assert statuses == [200] * 12


def test_a_budget_file_deleted_mid_run_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "state" / "budget.sqlite"
    budget = SharedBudget(path, "key", 6000, 60.0)
    budget.settle(budget.acquire())
    path.unlink()
    budget.settle(budget.acquire())
    shutil.rmtree(path.parent)  # the whole folder, too
    budget.pause(0.01)
    budget.settle(budget.acquire())
    assert path.exists()


def test_a_budget_file_locked_too_long_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    budget = SharedBudget(path, "key", 100, 60.0, lock_timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin exclusive")  # a hung process in the middle of its transaction
    try:
        with pytest.raises(BudgetError) as info:
            budget.acquire()
    finally:
        holder.execute("rollback")
        holder.close()
    assert str(info.value) == (
        f"the request budget file {path} stayed locked for over 0.2 s: another process holds it (a hung run?); "
        "stop that process, or set ACE_ETL_BUDGET_PATH to another file"
    )
    assert isinstance(info.value, AceEtlError) and info.value.exit_code == 1
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("begin exclusive")
    try:  # a run that starts while the file is held says the same
        with pytest.raises(BudgetError, match=r"stayed locked for over 0\.2 s"):
            SharedBudget(path, "key", 100, 60.0, lock_timeout=0.2)
    finally:
        holder.execute("rollback")
        holder.close()


def test_a_budget_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    budget = SharedBudget(path, "key", 100, 60.0)
    path.write_bytes(b"not a database, " * 1000)
    with pytest.raises(
        BudgetError, match=r"cannot use the request budget file .*: file is not a database; remove it"
    ):
        budget.acquire()


def test_a_pause_seen_by_one_process_holds_every_process_of_the_key(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    first, second = SharedBudget(path, "key-a", 100, 60.0), SharedBudget(path, "key-a", 100, 60.0)
    other = SharedBudget(path, "key-b", 100, 60.0)
    first.pause(3600.0)  # longer than any test may take: waiting for it would never end
    other.acquire()  # one key's 429s never slow another key's sites: this returns
    assert_waits_until_cancelled(second.acquire, look=1.0)  # the same key's other process waits for the pause


def test_the_budget_file_never_holds_the_key(tmp_path: Path) -> None:
    path = tmp_path / "budget.sqlite"
    budget = SharedBudget.per_minute(path, "http://x/api", "super-secret-key-42", 100)
    budget.acquire()
    budget.pause(0.01)
    assert b"super-secret-key-42" not in path.read_bytes()


def test_two_builds_at_once_both_succeed(tmp_path: Path) -> None:
    """A backfill's build finishing during the nightly one: the second waits, says so, then builds."""
    data = tmp_path / "data"
    day = datetime(2025, 1, 1, tzinfo=UTC)
    write_timeseries(data, samples("s", ["p1", "p2"], day, 600, collected_at=day), "first")
    # The second a weekly check: it tests every row, the nightly one the partitions it changed.
    builds = [spawn("transform", "--data-dir", str(data), *extra) for extra in ([], ["--full-check"])]
    outputs = [b.communicate(timeout=300) for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outputs
    assert any("waiting for the build running in pid" in err for _, err in outputs), outputs
    assert not any("Could not set lock" in err for _, err in outputs)
    status = ace_etl("status", "--data-dir", str(data))
    assert "Warehouse:" in status.stdout
