"""Never "complete" while samples are missing: what a careless or unlucky operator does, with the real CLI,
real processes, the simulator over loopback and real Parquet. One test (or more) per way it went wrong."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, site_points
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, window_files
from extract.lake.storage import LocalStorage, host_name
from extract.redact import redact, register
from extract.windows import Window
from tests.clihelp import (
    BIN,
    ace_etl,
    assert_landed_once,
    cli_env,
    error_line,
    expected_rows,
    spawn,
    window_statuses,
)

SITE = "hq"
DAY1, DAY2, DAY3 = "2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z", "2024-06-03T00:00:00Z"
CFG = SimulatorConfig(sites=(SITE,), points=30, interval=300, api_key="trust-key-0123456789")
KEY = ("point_name", "timestamp")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(CFG) as running:
        yield running


@pytest.fixture(scope="module")
def slow() -> Iterator[Simulator]:
    """Slow enough that concurrent runs overlap and kills land mid-window."""
    with Simulator(replace(CFG, faults=Faults(latency=0.04))) as running:
        yield running


def env_of(sim: Simulator, **extra: str) -> dict[str, str]:
    return {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key, **extra}


def run(
    sim: Simulator, data: Path, *args: str, start: str = DAY1, end: str = DAY3
) -> subprocess.CompletedProcess[str]:
    return ace_etl(
        "run", "--site", SITE, "--start", start, "--end", end, "--data-dir", str(data), "--no-transform", *args,
        env=env_of(sim),
    )  # fmt: skip


def checkpoints(data: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_bytes()) for p in sorted((data / "state" / "checkpoints").rglob("*.json"))]


# 1. Two runs of the same range at once.
def test_two_runs_of_the_same_range_at_once_land_each_sample_once(slow: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    common = [
        "run",
        "--site",
        SITE,
        "--start",
        DAY1,
        "--end",
        DAY3,
        "--data-dir",
        str(data),
        "--no-transform",
    ]
    runs = [spawn(*common, "--page-size", size, env=env_of(slow)) for size in ("500", "700")]
    outputs = [r.communicate(timeout=240) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))
    assert [c["state"] for c in checkpoints(data)] == ["complete", "complete"]
    # One of them extracted each window; the other found it complete once the lease was free.
    assert sorted(window_statuses(data)) == ["complete", "complete", "skipped", "skipped"]


# 2. A forced run killed mid-run while another run lands the same window.
def test_a_killed_forced_run_never_costs_another_run_its_files(slow: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(slow, data).returncode == 0
    base = ["run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data), "--no-transform"]
    forced = spawn(*base, "--force", "--page-size", "400", env=env_of(slow))
    other = spawn(*base, "--force", "--page-size", "900", env=env_of(slow))
    deadline = time.monotonic() + 60
    while not list((data / "state" / "staging").rglob("*.parquet")):  # a forced attempt is mid-window
        assert time.monotonic() < deadline and forced.poll() is None
        time.sleep(0.01)
    forced.send_signal(signal.SIGKILL)
    forced.wait()
    assert other.wait(timeout=240) == 0, other.stderr.read() if other.stderr else ""
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))
    assert all(c["state"] == "complete" for c in checkpoints(data))


# 3. A selection change after a window is complete.
def test_a_window_complete_for_some_points_is_not_complete_for_others(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    configured = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)
    five = configured[:5]
    assert run(sim, data, "--points", ",".join(five)).returncode == 0
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3, set(five)))
    # Now every configured point: the window is fetched again, not "skipped".
    again = run(sim, data)
    assert again.returncode == 0, again.stderr
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))
    assert window_statuses(data)[-2:] == ["complete", "complete"]
    # A narrower selection later is covered by what is landed: skipped, nothing lost.
    assert run(sim, data, "--points", five[0]).returncode == 0
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))
    selections = pl.read_parquet(data / "landing" / "selections" / "**" / "*.parquet")
    assert sorted(set(selections["point_name"])) == configured


def test_a_selection_that_matches_nothing_is_an_error(sim: Simulator, tmp_path: Path) -> None:
    result = run(sim, tmp_path / "data", "--points", "*/no-such-device/*")
    assert result.returncode == 2
    assert "matches none of site 'hq'" in error_line(result.stderr)
    assert not (tmp_path / "data" / "landing" / "timeseries").exists()


def test_a_site_with_no_enabled_points_is_an_error(tmp_path: Path) -> None:
    with Simulator(replace(CFG, configured_fraction=0.0)) as empty:
        result = run(empty, tmp_path / "data")
    assert result.returncode == 1
    assert "no configured points with collect_enabled" in error_line(result.stderr)


# 4. Configuration is checked before the first request, and the key never shows.
@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ACEIOT_API_KEY", CFG.api_key + "\n", "whitespace"),
        ("ACEIOT_API_KEY", " " + CFG.api_key, "whitespace"),
        ("ACEIOT_API_KEY", CFG.api_key + "\x07", "control"),
        ("ACEIOT_API_URL", "localhost:8080/api", "not an http(s) URL"),
        ("ACEIOT_API_URL", "http:///api", "not an http(s) URL"),
        ("ACEIOT_API_URL", "ftp://example.org/api", "not an http(s) URL"),
    ],
)
def test_bad_configuration_is_exit_2_before_any_request(
    sim: Simulator, tmp_path: Path, variable: str, value: str, needle: str
) -> None:
    sim.clear_requests()
    result = ace_etl(
        "run", "--site", SITE, "--start", DAY1, "--end", DAY2, "--data-dir", str(tmp_path / "data"),
        env={**env_of(sim), variable: value},
    )  # fmt: skip
    assert result.returncode == 2
    assert needle in error_line(result.stderr)
    assert sim.requests == []
    assert CFG.api_key not in result.stderr + result.stdout


def test_redaction_covers_every_form_of_the_key() -> None:
    key = "s3cr3t-key\n"
    register(key)
    for text in (
        key,
        repr(key),
        repr(key.encode()),
        json.dumps(key),
        "Bearer s3cr3t-key%0A",
        f"b'Bearer {key}'",
    ):
        assert "s3cr3t-key" not in redact(f"Illegal header value {text}"), text


# 5. Any site name the API accepts.
def test_a_long_non_ascii_site_name_works(tmp_path: Path) -> None:
    site = "Б" * 35 + " корпус/" + "ж" * 60
    cfg = replace(CFG, sites=(site,), points=4)
    data = tmp_path / "data"
    with Simulator(cfg) as server:
        result = ace_etl(
            "run", "--site", site, "--start", DAY1, "--end", DAY2, "--data-dir", str(data),
            env={"ACEIOT_API_URL": server.url, "ACEIOT_API_KEY": CFG.api_key},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all(len(p.name.encode()) <= 255 for p in data.rglob("*"))
    assert set(pl.read_parquet(data / "landing" / "timeseries" / "**" / "*.parquet")["site_name"]) == {site}
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select distinct site_name from timeseries_raw").fetchall() == [(site,)]


# 6. Damaged state is set aside and fetched again; no command shows a traceback.
@pytest.mark.parametrize(
    "content", [b"", b"null", b'"text"', os.urandom(64)], ids=["empty", "null", "string", "random"]
)
def test_a_damaged_checkpoint_is_quarantined_and_its_window_fetched_again(
    sim: Simulator, tmp_path: Path, content: bytes
) -> None:
    data = tmp_path / "data"
    assert run(sim, data, end=DAY2).returncode == 0
    (checkpoint,) = (data / "state" / "checkpoints").rglob("*.json")
    checkpoint.write_bytes(content)
    status = ace_etl("status", "--data-dir", str(data))
    assert status.returncode == 0 and "damaged" in status.stdout and "Traceback" not in status.stderr
    again = run(sim, data, end=DAY2)
    assert again.returncode == 0, again.stderr
    assert "set aside" in again.stderr
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY2))
    assert [c["state"] for c in checkpoints(data)] == ["complete"]
    assert len(list((data / "quarantine").rglob("*.json"))) == 1
    assert "Quarantine: 1 damaged file" in ace_etl("status", "--data-dir", str(data)).stdout


def test_truncated_landing_and_points_files_are_set_aside_and_fetched_again(
    sim: Simulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert run(sim, data, end=DAY2).returncode == 0
    # A window's selection file (plain Parquet; the Delta tables' files are only read through their log).
    page = sorted((data / "landing" / "selections").rglob("*.parquet"))[0]
    page.write_bytes(page.read_bytes()[:100])
    points = next((data / "landing" / "points").rglob("*.parquet"))
    points.write_bytes(points.read_bytes()[:50])
    status = ace_etl("status", "--data-dir", str(data))
    assert status.returncode == 0 and "Traceback" not in status.stderr
    built = ace_etl(
        "transform", "--data-dir", str(data)
    )  # sets the page and its window aside, builds the rest
    assert built.returncode == 0, built.stderr
    again = run(sim, data, end=DAY2)
    assert again.returncode == 0, again.stderr
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY2))
    assert pl.read_parquet(points).height == sum(
        p.listed for p in site_points(SITE, CFG.points, CFG.interval)
    )


def test_a_file_where_a_folder_belongs_is_set_aside(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "state").mkdir(parents=True)
    (data / "state" / "checkpoints").write_text("oops")
    result = run(sim, data, end=DAY2)
    assert result.returncode == 0, result.stderr
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY2))
    assert (data / "quarantine").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--window-hours", "inf"], "window length"),
        (["--window-hours", "nan"], "--window-hours"),
        (["--start", "9999-12-31", "--end", None], "9999"),
        (["--start", "2999-01-01", "--end", None], "not in the past"),
    ],
)
def test_impossible_ranges_are_exit_2(
    sim: Simulator, tmp_path: Path, args: list[str | None], needle: str
) -> None:
    options = {"--start": DAY1, "--end": DAY2}
    extra: list[str] = []
    for name, value in zip(args[::2], args[1::2], strict=True):
        assert name is not None
        if name in options:
            options.pop(name)
        if value is not None:
            extra += [name, value]
    flat = [x for pair in options.items() for x in pair]
    result = ace_etl(
        "run", "--site", SITE, "--data-dir", str(tmp_path / "data"), *flat, *extra, env=env_of(sim)
    )
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_data_dir_is_one_line(sim: Simulator) -> None:
    result = ace_etl(
        "run", "--site", SITE, "--start", DAY1, "--end", DAY2, "--data-dir", "/proc/ace-etl", env=env_of(sim)
    )
    assert result.returncode == 1
    assert "check the data dir" in error_line(result.stderr)
    for command in (["status"], ["transform"]):
        result = ace_etl(*command, "--data-dir", "/proc/ace-etl")
        assert "Traceback" not in result.stderr, result.stderr


# 7. Ctrl-C, duplicate sites, leftovers, retry lines, overlapping window lengths, gaps of selected points.
def test_ctrl_c_stops_a_wait_and_the_run_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = replace(CFG, faults=Faults(status_429_every=5, retry_after=600, latency=0.02))
    with Simulator(cfg) as server:
        child = spawn(
            "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data), "--no-transform",
            "--page-size", "500", env=env_of(server),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(r["status"] == 429 for r in server.requests):  # now waiting out a 600 s Retry-After
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        # Ending at all proves the stop: the wait it interrupted had ten minutes to go.
        _, stderr = child.communicate(timeout=120)
    assert child.returncode != 0, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    with Simulator(CFG) as server:
        assert run(server, data).returncode == 0
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))


def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    # The server accepts and never answers, so a worker is always inside a request: after the first
    # Ctrl-C the run can only end when its grace period runs out, which prints `error: interrupted`. The
    # second press ends it before that, silently. A machine slow enough to let the grace period run out
    # between the two presses proves nothing either way: the scenario is run again, a bounded number of times.
    for _ in range(5):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(120)  # a hang guard, not a bound under test
            port = listener.getsockname()[1]
            env = {"ACEIOT_API_URL": f"http://127.0.0.1:{port}/api", "ACEIOT_API_KEY": CFG.api_key}
            child = spawn(
                "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(tmp_path / "data"),
                "--no-transform", env=env,
            )  # fmt: skip
            try:
                connection, _ = listener.accept()  # a worker waits for an answer from now on
                with connection:
                    child.send_signal(signal.SIGINT)
                    assert child.stderr is not None
                    told = [child.stderr.readline()]
                    while told[-1] and not told[-1].startswith("stopping"):
                        told.append(child.stderr.readline())
                    assert "Ctrl-C again to quit at once" in told[-1], told
                    child.send_signal(signal.SIGINT)
                    _, rest = child.communicate(timeout=120)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        stderr = "".join(told) + rest
        # 130 from our handler, or -SIGINT when the second press lands while the interpreter is already
        # tearing down: either way not the 1 of a run that stopped by itself.
        assert child.returncode in (130, -signal.SIGINT), stderr
        assert "Traceback" not in stderr
        if "error: interrupted" not in stderr:  # the grace period never ran out: the second press ended it
            return
    pytest.fail(f"the second Ctrl-C never ended the run before the grace period did: {stderr}")


def test_a_repeated_site_is_extracted_once(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = ace_etl(
        "run", "--site", SITE, "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data),
        "--no-transform", env=env_of(sim),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(data / "landing" / "runs" / "*.parquet").height == 2
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))


def test_leftovers_of_killed_processes_are_cleaned(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(sim, data, end=DAY2).returncode == 0
    gone = "999999"  # no such process
    host = host_name()
    left = [
        data / f".warehouse.duckdb.{host}.{gone}.abc.tmp",
        next((data / "landing" / "selections").rglob("date=*")) / f".x.parquet.{host}.{gone}.abc.tmp",
        data / "state" / "staging" / "site_name=hq" / "deadbeef0000" / "landing" / "x.parquet",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert run(sim, data, start=DAY2).returncode == 0
    assert ace_etl("transform", "--data-dir", str(data)).returncode == 0
    assert [p for p in left if p.exists()] == []


def test_each_retry_is_one_readable_line(tmp_path: Path) -> None:
    with Simulator(replace(CFG, faults=Faults(status_500_every=3))) as server:
        result = run(server, tmp_path / "data", end=DAY2)
    assert result.returncode == 0, result.stderr
    retries = [line for line in result.stderr.splitlines() if "retrying GET" in line]
    assert retries and all("HTTP 500" in line and " in " in line for line in retries)
    assert "stamina" not in result.stderr


def test_runs_with_other_window_lengths_still_land_each_sample_once(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(sim, data, "--window-hours", "6", end="2024-06-01T12:00:00Z").returncode == 0
    assert run(sim, data, "--window-hours", "24").returncode == 0  # overlaps the 6 h windows
    assert run(sim, data, "--window-hours", "5", "--force", start="2024-06-01T10:00:00Z").returncode == 0
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))


def test_gaps_and_coverage_cover_the_selected_points(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    configured = sorted(p.name for p in site_points(SITE, CFG.points, CFG.interval) if p.configured)
    result = ace_etl(
        "run", "--site", SITE, "--start", DAY1, "--end", DAY2, "--data-dir", str(data),
        "--points", ",".join(configured[:3]), env=env_of(sim),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        covered = con.execute("select distinct point_name from timeseries_coverage order by 1").fetchall()
        gaps = con.execute("select count(*) from timeseries_gaps").fetchall()
    assert [name for (name,) in covered] == configured[:3]
    assert gaps == [(0,)]


# The chaos test: overlapping, forced, concurrent and killed runs, then one final run.
def test_chaos_ends_exactly_like_one_clean_run(slow: Simulator, sim: Simulator, tmp_path: Path) -> None:
    rng = random.Random(8)
    data = tmp_path / "chaos"
    ranges = [
        (DAY1, DAY3, "24"), ("2024-06-01T12:00:00Z", "2024-06-02T12:00:00Z", "6"), (DAY1, DAY3, "12"),
        ("2024-06-01T06:00:00Z", DAY2, "9"), (DAY2, DAY3, "24"),
    ]  # fmt: skip
    for round_ in range(3):
        children = []
        for start, end, hours in rng.sample(ranges, 3):
            extra = ["--force"] if rng.random() < 0.4 else []
            size = str(rng.choice([300, 700, 2000]))
            children.append(
                spawn(
                    "run",
                    "--site",
                    SITE,
                    "--start",
                    start,
                    "--end",
                    end,
                    "--window-hours",
                    hours,
                    "--page-size",
                    size,
                    "--data-dir",
                    str(data),
                    "--no-transform",
                    "--max-requests-per-minute",
                    "100000",  # concurrency is under test here, not the shared budget
                    *extra,
                    env=env_of(slow),
                )
            )
        kills = {i: rng.uniform(0.2, 2.5) for i in range(len(children)) if rng.random() < 0.5}
        started = time.monotonic()
        while any(c.poll() is None for c in children):
            for i, delay in list(kills.items()):
                if time.monotonic() - started >= delay:
                    children[i].send_signal(signal.SIGKILL if round_ % 2 else signal.SIGINT)
                    del kills[i]
            time.sleep(0.02)
            assert time.monotonic() - started < 300
        for i, child in enumerate(children):
            _, stderr = child.communicate()
            assert "Traceback" not in stderr, (i, stderr)
    final = ace_etl(
        "run", "--site", SITE, "--start", DAY1, "--end", DAY3, "--data-dir", str(data),
        "--max-requests-per-minute", "100000",  # the runs above spent the key's budget of the last minute
        env=env_of(sim),
    )  # fmt: skip
    assert final.returncode == 0, final.stderr
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY3))
    # The warehouse holds what one clean run of the range lands, complete for every selected point-day.
    expected = expected_rows(CFG, SITE, DAY1, DAY3)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        raw = pl.from_arrow(
            con.sql("select point_name, timestamp, value from timeseries_raw order by all").to_arrow_table()
        )
        coverage = con.execute(
            "select point_name, day, expected_samples, received_samples from timeseries_coverage"
        ).fetchall()
        (time_zone,) = con.execute("select time_zone from sites").fetchone() or ("UTC",)
    assert raw.equals(expected)
    # Coverage is per day of the building (the simulator places the site in a time zone).
    local_day = pl.col("timestamp").dt.convert_time_zone(time_zone).dt.date().alias("day")
    per_day = expected.group_by("point_name", local_day).len()
    assert sorted(coverage) == sorted((name, day, n, n) for name, day, n in per_day.iter_rows())


# Transform beside forced runs: a commit removes the files it replaced.
def test_a_forced_run_removes_no_landing_file_while_a_build_reads_the_landing(
    sim: Simulator, tmp_path: Path
) -> None:
    # A build lists the landing's plain Parquet files (a window's selection and rejects, one set per attempt)
    # when it starts and reads them later; a forced run's commit replaces them. This process holds the read
    # lock as a build does: the forced run must wait for it, saying so, before removing a file.
    data = tmp_path / "data"
    assert run(sim, data, end=DAY2).returncode == 0
    storage, day = LocalStorage(data), Window(datetime.fromisoformat(DAY1), datetime.fromisoformat(DAY2))
    first_attempt = set(window_files(storage, SITE, day))
    assert first_attempt
    with storage.reading_landing():
        forced = spawn("run", "--site", SITE, "--start", DAY1, "--end", DAY2, "--data-dir", str(data),
                       "--no-transform", "--force", env=env_of(sim))  # fmt: skip
        assert forced.stderr is not None
        said = ""
        while "waiting for the warehouse build reading the landing" not in said:
            line = forced.stderr.readline()
            assert line, f"the forced run did not wait for the build reading the landing:\n{said}"
            said += line
        assert first_attempt <= set(window_files(storage, SITE, day))  # nothing removed under the build
    _, rest = forced.communicate(timeout=120)
    assert forced.returncode == 0, said + rest
    assert not first_attempt & set(window_files(storage, SITE, day))  # then the replaced files are gone
    assert_landed_once(data, expected_rows(CFG, SITE, DAY1, DAY2))


def test_transform_beside_forced_runs_never_fails(tmp_path: Path) -> None:
    # Two sites in hour windows, unthrottled: every forced run commits 48 windows, each replacing the rows
    # and files of the attempt before, while the build lists and reads the landing's snapshot. Runs and the
    # build interleave freely (the test above pins the one order in which a removed file would break the
    # build); whatever the interleaving, no build may fail and no run may lose a window.
    cfg = replace(CFG, sites=("s0", "s1"), points=8)
    data, stop = tmp_path / "data", tmp_path / "stop"
    sites = [arg for site in cfg.sites for arg in ("--site", site)]
    hourly = [*sites, "--start", DAY1, "--end", DAY2, "--data-dir", str(data), "--window-hours", "1",
              "--max-requests-per-minute", "100000", "--no-transform"]  # fmt: skip
    with Simulator(cfg) as server:
        assert ace_etl("run", *hourly, env=env_of(server)).returncode == 0
        script = shlex.join([str(BIN / "ace-etl"), "run", *hourly, "--force"])
        loop = subprocess.Popen(
            [
                "bash",
                "-c",
                f"for i in $(seq 30); do [ -e {shlex.quote(str(stop))} ] && exit 0; {script} || exit; done",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(env_of(server)),
        )
        try:
            build = ace_etl("transform", "--data-dir", str(data))
        finally:
            stop.touch()
            _, looped = loop.communicate(timeout=600)
    assert build.returncode == 0, build.stderr
    assert loop.returncode == 0, looped
    for site in cfg.sites:  # each sample of each site landed exactly once
        landed = lake.read(LocalStorage(data), TIMESERIES, site).select("point_name", "timestamp", "value")
        assert landed.sort(KEY).equals(expected_rows(cfg, site, DAY1, DAY2))
