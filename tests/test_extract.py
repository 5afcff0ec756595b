"""End to end over the simulator: real loopback HTTP, real Parquet, rows checked exactly against
`served_samples` (what the server sent), across faults, crashes, cursor expiry, skips and forced re-runs."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, served_samples, site_points
from extract.api.client import AceClient, RequestStats
from extract.api.points import PointSelector
from extract.api.retry import RetryPolicy
from extract.errors import AuthError, InvalidBodyError, LeaseLostError, WindowFailed
from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import (
    REJECTS,
    RUNS,
    TIMESERIES,
    WEATHER,
    checkpoint_path,
    lease_path,
    points_path,
    sites_path,
)
from extract.lake.storage import LocalStorage, Storage
from extract.run.attempt import run_window
from extract.run.checkpoint import load_checkpoints
from extract.run.heal import Gap, heal_site
from extract.run.job import Job, Mode
from extract.run.lease import SiteLease
from extract.run.pipeline import (
    RunResult,
    ThreadRunner,
    extract_job,
    extract_window,
    resolve_selector,
    run_extract,
    threads,
)
from extract.windows import Window, split_windows
from tests.support import build

SITE = "demo-site"
START = datetime(2024, 3, 1, 22, tzinfo=UTC)  # crosses midnight: rows land under two dates
END = datetime(2024, 3, 2, 4, tzinfo=UTC)
WINDOW_HOURS = 3
PAGE_SIZE = 150
BASE = SimulatorConfig(sites=(SITE,), points=12, interval=300, api_key="demo", configured_fraction=0.75)
# A server that starts every page but the first with the last sample of the page before.
REPEATING = replace(BASE, faults=Faults(repeat_across_pages=True))
FAST_RETRIES = RetryPolicy(max_attempts=6, deadline=30, backoff_initial=0.01, backoff_max=0.05, jitter=0.01)
REASONS = {"text": "non_numeric_value", "null": "null_value", "bad_timestamp": "bad_timestamp"}
ROW_KEY = ["point_name", "timestamp"]


@contextmanager
def serving(cfg: SimulatorConfig) -> Iterator[tuple[Simulator, AceClient]]:
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, cfg.api_key, retry_policy=FAST_RETRIES, requests_per_minute=None) as client,
    ):
        yield sim, client


def job(cfg: SimulatorConfig = BASE, *, live: bool = False, **settings: Any) -> Job:
    """A job over the module's range; `extract_window` and `run_extract` land in the storage they are given,
    not in its data dir."""
    mode = Mode.LIVE if live else Mode.RUN
    return Job(sites=cfg.sites, span=Window(START, END), data_dir=Path("unused"), mode=mode, **settings)


def extract(client: AceClient, storage: Storage, cfg: SimulatorConfig = BASE, **options: Any) -> RunResult:
    settings = {"window_hours": WINDOW_HOURS, "page_size": PAGE_SIZE, "max_workers": 2, **options}
    return run_extract(client, storage, job(cfg, **settings))


def expected(
    cfg: SimulatorConfig, site: str = SITE, span: Window | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows and rejects a correct extract of `span` lands: configured points only, bad values by kind."""
    configured = [
        p.name for p in site_points(site, cfg.points, cfg.interval, cfg.configured_fraction) if p.configured
    ]
    span = span or Window(START, END)
    served = served_samples(cfg, site, span.start, span.end).filter(pl.col("name").is_in(configured))
    bad = pl.col("bad_kind").is_in(list(REASONS))
    rows = (
        served.filter(~bad.fill_null(False))
        .select(point_name="name", timestamp="time", value="value")
        .sort(ROW_KEY)
    )
    rejects = (
        served.filter(bad.fill_null(False))
        .select(point_name="name", reason=pl.col("bad_kind").replace_strict(REASONS))
        .sort("point_name", "reason")
    )
    return rows, rejects


def landed(storage: Storage, dataset: str) -> pl.DataFrame:
    if dataset in (TIMESERIES, WEATHER):  # Delta tables: their log's current snapshot
        return lake.read(storage, dataset)
    files = storage.list(dataset, "**/*.parquet")
    return (
        pl.concat([pl.read_parquet(storage.uri(f), hive_partitioning=False) for f in files])
        if files
        else pl.DataFrame()
    )


def landed_rows(storage: Storage) -> pl.DataFrame:
    return landed(storage, TIMESERIES).select("point_name", "timestamp", "value").sort(ROW_KEY)


def landed_rejects(storage: Storage) -> pl.DataFrame:
    frame = landed(storage, REJECTS)
    return frame.select("point_name", "reason").sort("point_name", "reason") if frame.height else frame


def snapshot(storage: Storage) -> dict[str, pl.DataFrame]:
    """The timeseries rows of each (site, UTC day) partition, sorted, and every landed rejects file by path
    without its attempt id (random per extraction), minus `collected_at` (a wall-clock time)."""
    timeseries = lake.read(storage, TIMESERIES, schema=schemas.TIMESERIES).drop("collected_at")
    days = timeseries.with_columns(day=pl.col("timestamp").dt.date()).partition_by(
        "site_name", "day", as_dict=True, include_key=False
    )
    files = storage.list(REJECTS, "**/*.parquet")
    return {
        **{f"{site}/{day}": part.sort(ROW_KEY) for (site, day), part in days.items()},
        **{
            re.sub(r"_[0-9a-f]{12}_p", "_p", f): pl.read_parquet(
                storage.uri(f), hive_partitioning=False
            ).drop("collected_at")
            for f in files
        },
    }


def assert_same_landing(left: Storage, right: Storage) -> None:
    a, b = snapshot(left), snapshot(right)
    assert sorted(a) == sorted(b)
    for path, frame in a.items():
        assert frame.equals(b[path]), path


def timeseries_requests(sim: Simulator) -> int:
    return sum("/timeseries/" in r["path"] for r in sim.requests)


def assert_accounting(result: RunResult) -> None:
    for row in result.windows:
        assert row.records_fetched == row.records_kept + row.records_filtered + row.records_rejected
    runs = pl.read_parquet(result_storage(result).uri(RUNS) + "/*.parquet")
    mine = runs.filter(pl.col("run_id") == result.run_id)
    assert mine.height == len(result.windows)
    assert (
        mine.get_column("records_fetched")
        == mine.get_column("records_kept")
        + mine.get_column("records_filtered")
        + mine.get_column("records_rejected")
    ).all()


_STORAGE_OF: dict[str, Storage] = {}


def result_storage(result: RunResult) -> Storage:
    return _STORAGE_OF[result.run_id]


def run(client: AceClient, storage: Storage, cfg: SimulatorConfig = BASE, **options: object) -> RunResult:
    result = extract(client, storage, cfg, **options)
    _STORAGE_OF[result.run_id] = storage
    result.raise_if_failed()
    assert_accounting(result)
    return result


@pytest.mark.parametrize("shape", ["real", "seed"])
@pytest.mark.parametrize("time_format", ["z", "mixed"])
def test_clean_run_lands_exactly_the_served_rows(tmp_path: Path, shape: str, time_format: str) -> None:
    cfg = replace(BASE, shape=shape, time_format=time_format)  # type: ignore[arg-type]
    storage = LocalStorage(tmp_path / "data")
    with serving(cfg) as (_, client):
        result = run(client, storage, cfg)
    rows, _ = expected(cfg)
    assert landed_rows(storage).equals(rows)
    assert landed(storage, REJECTS).height == 0
    assert [w.status for w in result.windows] == ["complete"] * 2
    assert sum(w.records_kept for w in result.windows) == rows.height
    served = served_samples(cfg, SITE, START, END).height
    assert sum(w.records_fetched for w in result.windows) == served
    assert sum(w.records_filtered for w in result.windows) == served - rows.height
    timeseries = landed(storage, TIMESERIES)
    assert timeseries.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert set(timeseries.get_column("quality")) == ({"good"} if shape == "seed" else {"unknown"})
    dates = {p.rsplit("/", 2)[1] for p in lake.snapshot_files(storage.uri(TIMESERIES)).get_column("path")}
    assert dates == {"day=2024-03-01", "day=2024-03-02"}
    points = pl.read_parquet(storage.uri(points_path(SITE)))
    assert points.height == sum(
        p.listed for p in site_points(SITE, cfg.points, cfg.interval, cfg.configured_fraction)
    )
    assert set(points.get_column("collect_interval")) == {300}


def test_bad_values_are_rejected_with_reasons(tmp_path: Path) -> None:
    cfg = replace(BASE, faults=Faults(bad_value_fraction=0.05), time_format="mixed")
    storage = LocalStorage(tmp_path / "data")
    with serving(cfg) as (_, client):
        result = run(client, storage, cfg)
    rows, rejects = expected(cfg)
    assert rejects.height > 0
    assert landed_rows(storage).equals(rows)
    assert landed_rejects(storage).equals(rejects)
    assert sum(w.records_rejected for w in result.windows) == rejects.height
    reject_dates = {p.split("/")[3] for p in storage.list(REJECTS, "**/*.parquet")}
    assert reject_dates <= {"date=2024-03-01", "date=2024-03-02"}


@pytest.mark.parametrize(
    "faults",
    [
        Faults(status_429_every=3, retry_after=0.01),
        Faults(status_500_every=4),
        Faults(drop_connection_every=5),
        Faults(truncate_every=4),
        Faults(rate_limit=5, rate_period=0.2, retry_after=0.05),
    ],
    ids=["429", "500", "drop", "truncate", "rate_limit"],
)
def test_each_fault_lands_the_same_rows_as_a_clean_run(tmp_path: Path, faults: Faults) -> None:
    clean, faulty = LocalStorage(tmp_path / "clean"), LocalStorage(tmp_path / "faulty")
    with serving(BASE) as (_, client):
        run(client, clean)
    with serving(replace(BASE, faults=faults)) as (_, client):
        result = run(client, faulty)
    assert_same_landing(clean, faulty)
    assert sum(w.retries for w in result.windows) > 0 or faults.rate_limit


def test_complete_windows_are_skipped_and_force_re_extracts_without_duplicates(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    with serving(BASE) as (sim, client):
        first = run(client, storage)
        before = timeseries_requests(sim)
        sim.clear_requests()
        again = run(client, storage)
        # Nothing new to extract: only the configured points are asked for (no timeseries, no weather).
        assert {r["path"].rsplit("/", 1)[-1] for r in sim.requests} == {"configured_points"}
        assert [w.status for w in again.windows] == ["skipped"] * 2
        assert [w.records_kept for w in again.windows] == [w.records_kept for w in first.windows]
        forced = run(client, storage, force=True)
        assert timeseries_requests(sim) == before
    assert [w.status for w in forced.windows] == ["complete"] * 2
    assert landed_rows(storage).equals(expected(BASE)[0])
    runs = landed(storage, RUNS)
    assert runs.height == 6 and runs.get_column("run_id").n_unique() == 3


@pytest.mark.parametrize("cfg", [BASE, REPEATING], ids=["clean", "repeating"])
def test_a_resumed_window_requests_fewer_pages_and_lands_the_same(
    tmp_path: Path, cfg: SimulatorConfig
) -> None:
    """An in-process stand-in for a crash right after a checkpoint: the progress callback raises. A
    repeating server sends the last sample of the second page again on the third, the first of the
    resumed run."""
    clean, crashed = LocalStorage(tmp_path / "clean"), LocalStorage(tmp_path / "crashed")
    window = split_windows(START, END, WINDOW_HOURS)[0]

    def crash_after_two_pages(site: str, w: Window, page: int, fetched: int) -> None:
        if page == 1:
            raise KeyboardInterrupt  # not an Exception: like a kill, no failed row is written

    with serving(cfg) as (sim, client):
        selector = resolve_selector(None, client.configured_points(SITE))
        extract_window(client, clean, job(run_id="clean", page_size=PAGE_SIZE), SITE, window, selector)
        fresh = timeseries_requests(sim)
        with pytest.raises(KeyboardInterrupt):
            extract_window(
                client,
                crashed,
                job(run_id="a", page_size=PAGE_SIZE),
                SITE,
                window,
                selector,
                on_page=crash_after_two_pages,
            )
        before = timeseries_requests(sim)
        resumed = extract_window(
            client, crashed, job(run_id="b", page_size=PAGE_SIZE), SITE, window, selector
        )
        assert timeseries_requests(sim) - before == fresh - 2
    assert resumed.status == "complete" and resumed.pages == fresh
    assert_same_landing(clean, crashed)
    if cfg is REPEATING:
        repeats = sent_twice(cfg, window)
        assert repeats.height == 2  # the last samples of the first and the second page
        rows = expected(BASE)[0].filter(pl.col("timestamp") < window.end)
        assert_each_sample_once_and_repeats_rejected(crashed, rows, repeats)
        assert (resumed.records_kept, resumed.records_rejected) == (landed_rows(crashed).height, 2)


def test_a_resume_with_another_page_size_starts_the_window_over(tmp_path: Path) -> None:
    clean, changed = LocalStorage(tmp_path / "clean"), LocalStorage(tmp_path / "changed")
    window = split_windows(START, END, WINDOW_HOURS)[0]

    def stop_after_first_page(site: str, w: Window, page: int, fetched: int) -> None:
        raise KeyboardInterrupt

    with serving(BASE) as (_, client):
        selector = resolve_selector(["*"])
        extract_window(client, clean, job(run_id="clean", page_size=100), SITE, window, selector)
        with pytest.raises(KeyboardInterrupt):
            extract_window(
                client,
                changed,
                job(run_id="a", page_size=PAGE_SIZE),
                SITE,
                window,
                selector,
                on_page=stop_after_first_page,
            )
        result = extract_window(client, changed, job(run_id="b", page_size=100), SITE, window, selector)
    assert result.status == "complete"
    assert_same_landing(clean, changed)


def test_an_expired_cursor_restarts_the_window_without_duplicates(tmp_path: Path) -> None:
    """A run stops after its first page; by the time it resumes, the saved cursor has expired."""
    clean, expired = LocalStorage(tmp_path / "clean"), LocalStorage(tmp_path / "expired")
    window = split_windows(START, END, WINDOW_HOURS)[0]

    def stop_after_first_page(site: str, w: Window, page: int, fetched: int) -> None:
        raise KeyboardInterrupt

    with serving(BASE) as (sim, client):
        selector = resolve_selector(None, client.configured_points(SITE))
        extract_window(client, clean, job(run_id="clean", page_size=PAGE_SIZE), SITE, window, selector)
        fresh = timeseries_requests(sim)
        with pytest.raises(KeyboardInterrupt):
            extract_window(
                client,
                expired,
                job(run_id="x", page_size=PAGE_SIZE),
                SITE,
                window,
                selector,
                on_page=stop_after_first_page,
            )
        sim.expire_cursors()  # the pause outlasted the saved cursor's lifetime
        sim.clear_requests()
        result = extract_window(client, expired, job(run_id="y", page_size=PAGE_SIZE), SITE, window, selector)
        statuses = [r["status"] for r in sim.requests if "/timeseries/" in r["path"]]
    assert statuses == [400] + [200] * fresh  # the expired cursor, then the whole window again
    assert result.status == "complete" and result.pages == fresh
    assert_same_landing(clean, expired)
    assert result.records_fetched == result.records_kept + result.records_filtered + result.records_rejected


def test_a_site_name_cannot_leave_the_landing_folder(tmp_path: Path) -> None:
    cfg = replace(BASE, sites=("../x", "a/b", ".x"))
    root = tmp_path / "nest" / "data"
    storage = LocalStorage(root)
    with serving(cfg) as (_, client):
        run(client, storage, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nest"]
    assert sorted(p.name for p in (tmp_path / "nest").iterdir()) == ["data"]
    sites = sorted(p.name for p in (root / TIMESERIES).iterdir() if p.name != "_delta_log")
    assert sites == sorted(f"site_key={lake.site_key(s)}" for s in ("../x", "a/b", ".x"))
    assert set(landed(storage, TIMESERIES).get_column("site_name")) == {"../x", "a/b", ".x"}
    rows, _ = expected(cfg, "../x")
    assert landed_rows(storage).filter(pl.col("point_name").str.starts_with("../x/")).equals(rows)


@pytest.mark.parametrize("shape", ["real", "seed"])
def test_weather_of_both_shapes(tmp_path: Path, shape: str) -> None:
    cfg = replace(BASE, shape=shape)  # type: ignore[arg-type]
    storage = LocalStorage(tmp_path / "data")
    with serving(cfg) as (_, client):
        result = run(client, storage, cfg)
    weather = landed(storage, WEATHER)
    assert (result.weather[0].rows, result.weather[0].rejected) == (weather.height, 0)
    if shape == "real":
        assert weather.height == 1
        assert json.loads(weather.get_column("metadata")[0])["pressure"]["units"] == "hPa"
    else:
        assert weather.height == 6  # hourly over six hours
        assert weather.get_column("timestamp").min() == START
        assert set(weather.get_column("conditions")) <= {"rain", "cloudy", "partly cloudy", "clear"}
    assert weather.get_column("temperature").is_not_null().all()


def test_points_from_a_list_and_a_file(tmp_path: Path) -> None:
    points_file = tmp_path / "points.txt"
    points_file.write_text("# every AHU point\n*/ahu-1/*\n")
    by_list, by_file = LocalStorage(tmp_path / "list"), LocalStorage(tmp_path / "file")
    with serving(BASE) as (_, client):
        run(client, by_list, points=["*/ahu-1/*"])
        run(client, by_file, points=points_file)
    names = set(landed_rows(by_list).get_column("point_name"))
    assert names == {p.name for p in site_points(SITE, BASE.points, BASE.interval) if "/ahu-1/" in p.name}
    assert_same_landing(by_list, by_file)


def test_a_rejected_key_fails_with_a_failed_row(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    with Simulator(BASE) as sim, AceClient(sim.url, "wrong", requests_per_minute=None) as client:
        result = extract(client, storage, points=["*"])
        with pytest.raises(AuthError):
            result.raise_if_failed()
        window = split_windows(START, END, WINDOW_HOURS)[0]
        with pytest.raises(WindowFailed) as failed:
            extract_window(client, storage, job(run_id="r"), SITE, window, resolve_selector(["*"]))
    # The typed failure carries the window's row (as landed) and the error that failed it.
    assert isinstance(failed.value.__cause__, AuthError) and "HTTP 401" in str(failed.value)
    assert (failed.value.result.run_id, failed.value.result.status) == ("r", "failed")
    # Dask workers hand it back pickled: the row and the cause survive.
    back = pickle.loads(pickle.dumps(failed.value))
    assert back.result == failed.value.result and isinstance(back.__cause__, AuthError)
    runs = landed(storage, RUNS)
    assert set(runs.get_column("status")) == {"failed"}
    assert runs.get_column("error").str.contains("AuthError").all()


@pytest.mark.parametrize("cfg", [BASE, REPEATING], ids=["clean", "repeating"])
def test_kill_9_mid_window_then_resume_lands_what_a_clean_run_lands(
    tmp_path: Path, cfg: SimulatorConfig
) -> None:
    clean, killed = LocalStorage(tmp_path / "clean"), LocalStorage(tmp_path / "killed")
    window = Window(START, END)  # one long window, so the kill lands mid-window
    with serving(cfg) as (sim, client):
        extract_window(
            client, clean, job(run_id="clean", page_size=PAGE_SIZE), SITE, window, resolve_selector(["*"])
        )
        fresh = timeseries_requests(sim)
    # A slow server for the child, so there is time to kill it between pages.
    with Simulator(replace(cfg, faults=replace(cfg.faults, latency=0.15))) as slow:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("crash_child.py")), slow.url, str(killed.root), SITE,
             START.isoformat(), END.isoformat(), str(PAGE_SIZE)],
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            state = Path(killed.uri(checkpoint_path(SITE, window)))
            while not (state.exists() and json.loads(state.read_bytes())["next_page"] >= 2):
                assert child.poll() is None, "the child ended before it could be killed"
                assert time.monotonic() < deadline, "no checkpoint within 60 s"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
    assert json.loads(state.read_bytes())["state"] == "landing"
    with serving(cfg) as (sim, client):
        resumed = extract_window(
            client, killed, job(run_id="resume", page_size=PAGE_SIZE), SITE, window, resolve_selector(["*"])
        )
        assert 0 < timeseries_requests(sim) < fresh
    assert resumed.status == "complete" and resumed.pages == fresh
    assert_same_landing(clean, killed)
    if cfg is REPEATING:  # the resumed run's first page repeats the last sample the killed one staged
        served = served_samples(cfg, SITE, START, END).select(
            point_name="name", timestamp="time", value="value"
        )
        repeats = sent_twice(cfg, window, every_point=True)
        assert_each_sample_once_and_repeats_rejected(killed, served.sort(ROW_KEY), repeats)


def test_a_replacing_attempt_keeps_every_point_of_every_window_it_replaces(tmp_path: Path) -> None:
    """A forced run for 2 points over a range whose first window was landed for every point: the attempt
    replaces both windows' files, so it fetches the union of their selections and loses nothing."""
    storage = LocalStorage(tmp_path / "data")
    first, second = split_windows(START, END, WINDOW_HOURS)
    with serving(BASE) as (_, client):
        everything = resolve_selector(None, client.configured_points(SITE))
        two = resolve_selector(sorted(everything.names)[:2])
        extract_window(client, storage, job(run_id="a", page_size=PAGE_SIZE), SITE, first, everything)
        extract_window(client, storage, job(run_id="b", page_size=PAGE_SIZE), SITE, second, two)
        forced = extract_window(client, storage, job(run_id="c", force=True), SITE, Window(START, END), two)
    assert forced.status == "complete"
    rows, _ = expected(BASE)
    in_first = pl.col("timestamp") < second.start
    assert landed_rows(storage).filter(in_first).equals(rows.filter(in_first))
    assert landed_rows(storage).height == landed_rows(storage).unique(ROW_KEY).height
    assert len(storage.list("state/checkpoints")) == 1  # the replaced windows' checkpoints are gone


@contextmanager
def stand_in(answer: Callable[[str], bytes]) -> Iterator[str]:
    """A stand-in API on loopback answering each GET with `answer(request path)` as JSON; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answer(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/api"
        finally:
            server.shutdown()


def test_a_sample_a_server_sends_twice_in_a_page_lands_once_and_is_counted(tmp_path: Path) -> None:
    # A server (here a stand-in on loopback that answers every request with one page) repeats samples.
    samples = [
        {"name": "a", "time": "2024-03-01T23:00:00Z", "value": 1},
        {"name": "b", "time": "2024-03-01T23:00:00Z", "value": 5},
        {"name": "a", "time": "2024-03-01T23:00:00Z", "value": 2},  # the server's later word: kept
        {"name": "b", "time": "2024-03-01T23:00:00Z", "value": 5},  # the very same sample again
    ]
    body = json.dumps({"point_samples": samples, "next_cursor": None, "has_more": False}).encode()
    storage = LocalStorage(tmp_path)
    with (
        stand_in(lambda _: body) as url,
        AceClient(url, "key", retry_policy=FAST_RETRIES, requests_per_minute=None) as client,
    ):
        result = extract_window(
            client, storage, job(run_id="r"), SITE, Window(START, END), resolve_selector(["a", "b"])
        )
    landed = lake.read(storage, TIMESERIES)
    assert landed.select("point_name", "value").rows() == [("a", 2.0), ("b", 5.0)]
    rejects = pl.read_parquet(tmp_path / REJECTS / "**" / "*.parquet", hive_partitioning=False)
    assert rejects.select("point_name", "value_raw", "reason").sort("point_name").rows() == [
        ("a", "1", "duplicate_sample"),
        ("b", "5", "duplicate_sample"),
    ]
    assert (result.records_fetched, result.records_kept, result.records_rejected) == (4, 2, 2)
    assert result.records_fetched == result.records_kept + result.records_filtered + result.records_rejected


def test_a_page_whose_samples_do_not_decode_fails_the_window_unretried_and_the_next_run_resumes_there(
    tmp_path: Path,
) -> None:
    # A stand-in server on loopback. Its second page has a whole tail (so its cursor is read at once and the
    # body was not cut short) but samples that are not JSON: the same request would get the same page, so it
    # is not asked for again; the window fails with the typed error and the next run asks for that page.
    def page(samples: str, next_cursor: str | None) -> bytes:
        tail = json.dumps({"next_cursor": next_cursor, "has_more": next_cursor is not None})[1:]
        return f'{{"point_samples":[{samples}],{tail}'.encode()

    first = page('{"name":"a","time":"2024-03-01T23:00:00Z","value":1}', "c1")
    broken = page('{"name":"a","time":"2024-03-01T23:01:00Z","value":2},{"name":oops}', None)
    fixed = page('{"name":"a","time":"2024-03-01T23:01:00Z","value":2}', None)
    served = {None: first, "c1": broken}
    asked: list[str | None] = []

    def answer(path: str) -> bytes:
        cursor = re.search(r"cursor=(\w+)", path)
        asked.append(cursor and cursor.group(1))
        return served[cursor and cursor.group(1)]

    storage = LocalStorage(tmp_path)
    with (
        stand_in(answer) as url,
        AceClient(url, "key", retry_policy=FAST_RETRIES, requests_per_minute=None) as client,
    ):
        with pytest.raises(WindowFailed) as failed:
            extract_window(
                client, storage, job(run_id="r"), SITE, Window(START, END), resolve_selector(["a"])
            )
        assert isinstance(failed.value.__cause__, InvalidBodyError), failed.value
        assert "not valid JSON" in str(failed.value)
        assert asked == [None, "c1"]
        served["c1"] = fixed
        result = extract_window(
            client, storage, job(run_id="r2"), SITE, Window(START, END), resolve_selector(["a"])
        )
    assert asked == [None, "c1", "c1"]  # resumed at the page that failed
    landed = lake.read(storage, TIMESERIES).sort("timestamp")
    assert landed.select("point_name", "value").rows() == [("a", 1.0), ("a", 2.0)]
    assert (result.status, result.records_fetched, result.records_kept) == ("complete", 2, 2)


def sent_twice(
    cfg: SimulatorConfig, window: Window, page_size: int = PAGE_SIZE, *, every_point: bool = False
) -> pl.DataFrame:
    """The samples (of configured points, or of every one) a `repeat_across_pages` server sends again on the
    next page: the last of each page but the last (the pages of `window` move `page_size` samples on)."""
    points = site_points(SITE, cfg.points, cfg.interval, cfg.configured_fraction)
    asked = [p.name for p in points if p.configured or every_point]
    served = served_samples(cfg, SITE, window.start, window.end).with_row_index("at")
    last_of_page = (pl.col("at") + 1) % page_size == 0
    return (
        served.filter(last_of_page, pl.col("at") + 1 < served.height, pl.col("name").is_in(asked))
        .select(point_name="name", timestamp="time")
        .sort(ROW_KEY)
    )


def assert_each_sample_once_and_repeats_rejected(
    storage: Storage, rows: pl.DataFrame, repeats: pl.DataFrame
) -> None:
    assert landed_rows(storage).equals(rows)
    rejects = landed(storage, REJECTS)
    assert set(rejects.get_column("reason")) == {"duplicate_sample"}
    as_rows = rejects.select(
        "point_name", timestamp=pl.col("timestamp_raw").str.to_datetime(time_zone="UTC", time_unit="us")
    )
    assert as_rows.sort(ROW_KEY).equals(repeats)


def test_a_sample_a_server_repeats_on_the_next_page_lands_once_and_is_counted(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    with serving(REPEATING) as (_, client):
        result = run(client, storage, REPEATING)
    repeats = pl.concat([sent_twice(REPEATING, w) for w in split_windows(START, END, WINDOW_HOURS)]).sort(
        ROW_KEY
    )
    # Repeats on both UTC days of the range; the later copy of each is the reject.
    assert repeats.get_column("timestamp").dt.date().n_unique() == 2
    assert_each_sample_once_and_repeats_rejected(storage, expected(BASE)[0], repeats)
    kept, rejected = (sum(getattr(w, f"records_{n}") for w in result.windows) for n in ("kept", "rejected"))
    assert (kept, rejected) == (expected(BASE)[0].height, repeats.height)
    stage = build(tmp_path / "data", "built")  # dbt build: the raw view's uniqueness test among its tests
    assert stage.rows("select count(*) from timeseries_raw") == [(expected(BASE)[0].height,)]
    assert stage.rows("select reason, count(*) from timeseries_rejects group by 1") == [
        ("duplicate_sample", repeats.height)
    ]


def assert_counts_match_the_landing(storage: Storage) -> None:
    """Every window's checkpoint counts what the landing holds: a sample kept twice would count twice."""
    done = load_checkpoints(storage, SITE)
    assert sum(c.records_kept for c in done) == landed_rows(storage).height
    assert sum(c.records_rejected for c in done) == landed(storage, REJECTS).height


def test_live_runs_land_a_sample_repeated_across_their_pages_once_and_count_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    window, as_of, small = Window(START, END), datetime(2024, 3, 1, 23, tzinfo=UTC), 50
    with serving(REPEATING) as (_, client):
        for moment in (as_of, END):  # the window open, then the rest once it has ended
            result = run(client, storage, REPEATING, window_hours=6, page_size=small, as_of=moment, live=True)
            assert [w.status for w in result.windows] == ["live" if moment == as_of else "complete"]
    repeats = pl.concat(
        [sent_twice(REPEATING, Window(START, as_of), small), sent_twice(REPEATING, Window(as_of, END), small)]
    ).sort(ROW_KEY)
    assert repeats.height > 2
    assert_each_sample_once_and_repeats_rejected(storage, expected(BASE)[0], repeats)
    assert_counts_match_the_landing(storage)
    assert [c.state for c in load_checkpoints(storage, SITE, window)] == ["complete"]


def test_heal_lands_a_sample_repeated_across_its_pages_once_and_counts_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    late = datetime(2024, 3, 2, 2, tzinfo=UTC)  # the gateway had uploaded up to here at the first run
    points = site_points(SITE, BASE.points, BASE.interval, BASE.configured_fraction)
    configured = [p.name for p in points if p.configured]
    with serving(replace(REPEATING, upload_horizon=late)) as (sim, client):
        run(client, storage, REPEATING)
        before = landed_rows(storage)
        sim.set_upload_horizon(None)
        gaps = [Gap(name, late, END) for name in configured]
        with SiteLease(storage, SITE, "heal") as lease:
            healed = heal_site(
                client, storage, lease, gaps, PointSelector.from_list(configured), page_size=50, force=True
            )
    repeats = sent_twice(REPEATING, Window(late, END), 50)
    assert repeats.height > 1
    assert (healed.samples, healed.rejected) == (expected(BASE)[0].height - before.height, repeats.height)
    assert landed_rows(storage).equals(expected(BASE)[0])
    healed_rejects = landed(storage, REJECTS).filter(pl.col("timestamp_raw") >= "2024-03-02T02")
    assert set(healed_rejects.get_column("reason")) == {"duplicate_sample"}
    assert healed_rejects.height == repeats.height
    assert_counts_match_the_landing(storage)


def test_each_window_attempt_is_one_delta_commit_even_when_the_run_dies_right_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "data")
    committed = lake.replace_range

    def commit_then_die(*args: Any, **kwargs: Any) -> int:
        committed(*args, **kwargs)
        raise OSError("killed after the Delta commit, before the checkpoint says so")

    monkeypatch.setattr(lake, "replace_range", commit_then_die)
    with serving(BASE) as (_, client):
        died = extract(client, storage)
        assert {w.status for w in died.windows} != {"complete"}
        assert lake.version(storage, TIMESERIES) == 1  # two windows: versions 0 and 1
        monkeypatch.setattr(lake, "replace_range", committed)
        resumed = run(client, storage)
    # The next run finishes the interrupted commits (then skips the windows, complete): it finds their
    # attempts in the log, so no second commit, and each sample once.
    assert [w.status for w in resumed.windows] == ["skipped"] * 2
    assert lake.version(storage, TIMESERIES) == 1
    assert landed_rows(storage).equals(expected(BASE)[0])


def test_a_window_replaces_what_another_writer_committed_to_its_range_while_its_pages_landed(
    tmp_path: Path,
) -> None:
    # Another writer commits to the window's range while its pages land. delta-rs does not see a conflict
    # between an overwrite and a file added after the snapshot it read (it commits beside it): the window's
    # commit must read the table only once its pages are staged.
    storage = LocalStorage(tmp_path / "data")
    window = split_windows(START, END, WINDOW_HOURS)[0]
    stranger = pl.DataFrame(
        {"site_name": [SITE], "point_name": ["p-stranger"], "timestamp": [window.start], "value": [1.0]},
        schema_overrides={"timestamp": schemas.UTC_US},
    ).with_columns(quality=None, metadata=None, collected_at=pl.lit(window.start, schemas.UTC_US))

    def another_writer_commits(site: str, w: Window, page: int, fetched: int) -> None:
        if page == 1:
            lake.replace_range(
                storage, TIMESERIES, SITE, w.start, w.end, stranger.cast(schemas.TIMESERIES), attempt="x"
            )

    with serving(BASE) as (_, client):
        selector = resolve_selector(None, client.configured_points(SITE))
        done = extract_window(
            client, storage, job(page_size=PAGE_SIZE), SITE, window, selector, on_page=another_writer_commits
        )
    assert done.status == "complete" and done.pages > 2
    assert lake.version(storage, TIMESERIES) == 1  # the other writer's commit, then the window's
    rows = expected(BASE)[0].filter(pl.col("timestamp") < window.end)
    assert landed_rows(storage).equals(rows)


DAY = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


def test_a_window_of_whole_days_commits_its_staged_pages_as_the_table_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    uri = storage.uri(TIMESERIES)
    rows = expected(BASE, span=DAY)[0]
    with serving(BASE) as (_, client):
        selector = resolve_selector(None, client.configured_points(SITE))
        first = extract_window(client, storage, job(page_size=PAGE_SIZE), SITE, DAY, selector)
        files = lake.snapshot_files(uri)
        assert first.status == "complete" and first.pages > 2
        # The pages themselves, not rows written again: a file per page that kept rows, named after it.
        assert 2 < files.height <= first.pages
        assert all(re.search(r"_p\d{6}\.parquet$", p) for p in files["path"])
        assert files["rows"].sum() == rows.height and set(files["site_name"]) == {SITE}
        assert landed_rows(storage).equals(rows)
        # Their statistics are exact: a reader pruning files by them finds every row of a range.
        end = rows["timestamp"].max()
        for low, high in ((DAY.start, DAY.end), (datetime(2024, 3, 1, 9, 5, tzinfo=UTC), end)):
            pruned = pl.scan_delta(uri).filter(pl.col("timestamp").is_between(low, high, closed="both"))
            within = rows.filter(pl.col("timestamp").is_between(low, high, closed="both"))
            assert pruned.select("point_name", "timestamp", "value").sort(ROW_KEY).collect().equals(within)
        forced = extract_window(client, storage, job(page_size=PAGE_SIZE, force=True), SITE, DAY, selector)
    assert forced.status == "complete" and lake.version(storage, TIMESERIES) == 1
    assert landed_rows(storage).equals(rows)  # the forced attempt's files replaced the first's
    assert set(lake.snapshot_files(uri)["path"]).isdisjoint(files["path"])


@pytest.mark.parametrize("dies", ["before", "after"])
def test_a_whole_day_commit_interrupted_before_or_after_its_delta_commit_lands_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dies: str
) -> None:
    storage = LocalStorage(tmp_path / "data")
    commit = lake.replace_days

    def interrupted(*args: Any, **kwargs: Any) -> int:
        if dies == "after":
            commit(*args, **kwargs)
        raise OSError(f"killed {dies} the Delta commit, the pages already in the table's folder")

    monkeypatch.setattr(lake, "replace_days", interrupted)
    with serving(BASE) as (_, client):
        selector = resolve_selector(None, client.configured_points(SITE))
        with pytest.raises(WindowFailed):
            extract_window(client, storage, job(page_size=PAGE_SIZE), SITE, DAY, selector)
        monkeypatch.setattr(lake, "replace_days", commit)
        finished = extract_window(client, storage, job(page_size=PAGE_SIZE), SITE, DAY, selector)
    assert finished.status == "skipped"  # finished the interrupted commit, then found the window complete
    assert lake.version(storage, TIMESERIES) == 0  # one commit, whoever made it
    assert landed_rows(storage).equals(expected(BASE, span=DAY)[0])


class _LeaseStoreFails(LocalStorage):
    """A real data dir whose lease file stops taking writes once `broken` is set (a full disk, an object
    store gone): the heartbeat's renewal raises at the storage boundary, every other write still works."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.broken = False

    def write_if(self, rel_path: str, data: bytes, version: str | None) -> str | None:
        if self.broken and rel_path == lease_path(SITE):
            raise OSError(28, "No space left on device", str(self.root / rel_path))
        return super().write_if(rel_path, data, version)


def test_a_window_whose_lease_cannot_be_renewed_stops_before_its_commit(tmp_path: Path) -> None:
    storage = _LeaseStoreFails(tmp_path / "data")
    window = split_windows(START, END, WINDOW_HOURS)[0]
    configured = [
        p.name
        for p in site_points(SITE, BASE.points, BASE.interval, BASE.configured_fraction)
        if p.configured
    ]
    lease = SiteLease(storage, SITE, "run-1", ttl_s=0.3)

    def break_the_store_after_the_first_page(site: str, _w: Window, number: int, _fetched: int) -> None:
        if number != 0:
            return
        storage.broken = True
        deadline = time.monotonic() + 120  # until the heartbeat has tried (every ttl/3) and failed
        while time.monotonic() < deadline:
            try:
                lease.check()
            except LeaseLostError:
                return
            time.sleep(0.02)
        pytest.fail("the heartbeat never reported the failed renewal")

    with serving(BASE) as (_, client), lease, pytest.raises(LeaseLostError) as lost:
        run_window(
            client, storage, lease, job(page_size=PAGE_SIZE), window, PointSelector.from_list(configured),
            stats=RequestStats(), on_page=break_the_store_after_the_first_page,
        )  # fmt: skip
    assert "cannot renew" in str(lost.value) and "No space left on device" in str(lost.value)
    (checkpoint,) = load_checkpoints(storage, SITE, window)
    assert (
        checkpoint.state == "landing" and checkpoint.next_page == 1
    )  # the second page was fetched, never staged
    assert lake.version(storage, TIMESERIES) is None  # nothing committed, so nothing reads as complete


def test_a_sites_windows_start_without_waiting_for_its_record(tmp_path: Path) -> None:
    # The site's record (its time zone) is landed beside the points and the windows, not before them: here
    # the server answers it only once a timeseries page was asked for, which a run landing it first never does.
    storage = LocalStorage(tmp_path / "data")
    paged, waited = threading.Event(), []
    with serving(BASE) as (sim, client):
        handle = sim._api.handle

        def answer(method: str, path: str, params: dict[str, str], now: float) -> Any:
            if "/timeseries/" in path:
                paged.set()
            elif path.rstrip("/").endswith(f"/sites/{SITE}"):
                waited.append(paged.wait(timeout=60))
            return handle(method, path, params, now)

        sim._api.handle = answer  # type: ignore[method-assign]
        result = extract(client, storage)
    result.raise_if_failed()
    assert waited == [True]
    assert storage.exists(sites_path(SITE)) and storage.exists(points_path(SITE))


def test_a_site_whose_points_fail_lands_no_record(tmp_path: Path) -> None:
    # An unknown site (a typo) would otherwise join the sites table for good, with a UTC default.
    storage = LocalStorage(tmp_path / "data")
    with serving(BASE) as (sim, client):
        result = run_extract(client, storage, replace(job(), sites=("atlantis",)))
    assert {f.site_name for f in result.failures} == {"atlantis"}
    assert not storage.exists(sites_path("atlantis"))
    assert not any(r["path"].endswith("/sites/atlantis") for r in sim.requests)


def test_live_runs_land_the_sites_record_only_when_it_is_due(tmp_path: Path) -> None:
    # Every few minutes a live run would otherwise ask for the record (a Prefect task in the flows).
    storage = LocalStorage(tmp_path / "data")
    submitted: list[str] = []

    @contextmanager
    def counting(client: AceClient, live: Job) -> Iterator[ThreadRunner]:
        with threads(client, storage, live) as runner:
            land = runner.site
            runner.site = lambda site: (submitted.append(site), land(site))[1]  # type: ignore[method-assign]
            yield runner

    as_of = datetime(2024, 3, 1, 23, tzinfo=UTC)
    with serving(BASE) as (_, client):
        for _ in range(2):
            live = job(live=True, as_of=as_of, window_hours=6)
            with counting(client, live) as runner:
                extract_job(storage, live, runner).raise_if_failed()
    assert submitted == [SITE]  # the first run found no record; the second, a fresh one
    assert storage.exists(sites_path(SITE))
