"""Prefect flows end to end under a local test harness (one temporary Prefect server for the session),
against the simulator over loopback, with a real `dbt build` through prefect-dbt; and prefect.yaml offline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import ArtifactSort
from prefect.flow_engine import run_flow
from prefect.flows import load_flow_from_entrypoint
from prefect.logging.handlers import APILogWorker
from prefect.states import Scheduled

from ace_etl import heap
from ace_etl.markdown import escape as markdown_escape
from ace_etl.simulator import Simulator, SimulatorConfig, site_points
from extract.api.client import AceClient
from extract.errors import AuthError, SiteNotFoundError, TransformError
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES
from extract.lake.storage import LocalStorage
from extract.run.pipeline import run_extract
from extract.windows import Window
from flows.etl import daily_etl, transform, weather_hourly
from flows.params import EtlParams, RetentionParams
from tests.landing_factory import samples, write_timeseries

ROOT = Path(__file__).resolve().parents[1]
SITES = ("hq", "plant-2")
CFG = SimulatorConfig(sites=SITES, points=8, interval=900, api_key="flow-secret-key-987")
START, END = datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(CFG) as running:
        yield running


def use_api(monkeypatch: pytest.MonkeyPatch, sim: Simulator) -> None:
    monkeypatch.setenv("ACEIOT_API_URL", sim.url)
    monkeypatch.setenv("ACEIOT_API_KEY", CFG.api_key)


def test_a_process_that_runs_the_flows_sets_the_garbage_collector_as_the_console_script_does() -> None:
    # A Prefect worker, or a Dask worker unpickling a task, imports the flows first: they build and extract.
    code = "import gc, flows.etl; print(gc.get_threshold()[0])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(heap.YOUNG_COLLECTION_THRESHOLD)


def test_prefect_yaml_loads_every_entrypoint_and_cron() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        names.add(deployment["name"])
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        flow.validate_parameters(deployment.get("parameters", {}))
        for schedule in deployment.get("schedules", []):
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    daily = next(d for d in spec["deployments"] if d["name"] == "daily")
    assert [(s["cron"], s["timezone"]) for s in daily["schedules"]] == [("0 0 * * *", "UTC")]
    assert {"daily", "weather-hourly", "backfill", "retention", "weekly-check"} <= names
    # Deleting data is never switched on by a `prefect deploy --all`: its schedule is off until chosen.
    kept = next(d for d in spec["deployments"] if d["name"] == "retention")
    assert [s["active"] for s in kept["schedules"]] == [False] and kept["parameters"]["keep_days"] >= 1
    with pytest.raises(ValueError, match="keep_days"):
        RetentionParams(keep_days=0)
    weekly = next(d for d in spec["deployments"] if d["name"] == "weekly-check")
    assert weekly["parameters"]["full_check"] is True and weekly["entrypoint"] == "flows/etl.py:transform"


def test_the_transform_flow_tests_every_row_with_full_check(harness: None, tmp_path: Path) -> None:
    write_timeseries(tmp_path, samples("hq", ["p1"], START, 120, collected_at=START), "day-1")
    transform(data_dir=tmp_path)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as by_hand:
        by_hand.execute("insert into timeseries_hourly select * from timeseries_hourly limit 1")
    transform(data_dir=tmp_path)  # nothing changed: the tests look at no partition
    with pytest.raises(TransformError, match="primary_key_timeseries_hourly"):
        transform(data_dir=tmp_path, full_check=True)


def test_the_transform_flow_applies_its_time_zone_parameters(harness: None, tmp_path: Path) -> None:
    write_timeseries(tmp_path, samples("hq", ["p1"], START, 60, collected_at=START), "day-1")
    sites_file = tmp_path / "sites.toml"
    sites_file.write_text(
        '[sites."hq"]\ntime_zone = "Europe/Paris"\n[sites."plant-2"]\ntime_zone = "Asia/Tokyo"\n'
    )
    transform(data_dir=tmp_path, sites_file=sites_file, time_zones={"hq": "America/Denver"})
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("select site_name, time_zone, time_zone_source from sites").fetchall() == [
            ("hq", "America/Denver", "override")
        ]


def test_a_run_parameter_replaces_one_deployment_value_and_keeps_the_others(harness: None) -> None:
    """What `prefect deployment run ace-etl-daily/daily --param page_size=500` does."""
    from prefect.deployments import run_deployment

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    daily = next(d for d in spec["deployments"] if d["name"] == "daily")
    daily_etl.to_deployment(name="daily", parameters=daily["parameters"]).apply()
    run = run_deployment("ace-etl-daily/daily", parameters={"page_size": 500}, timeout=0)
    assert run.parameters == {**daily["parameters"], "page_size": 500}
    assert daily["parameters"]["page_size"] != 500 and daily["parameters"]["sites"]


def test_params_default_to_the_lookback_before_as_of(tmp_path: Path) -> None:
    def span_at(params: EtlParams, as_of: datetime) -> Window | None:
        return params.job(as_of, data_dir=tmp_path, time_zones={}).span

    span = span_at(EtlParams(sites=["x"], lookback_days=3), datetime(2024, 6, 5, 7, 30, tzinfo=UTC))
    assert span is not None and (span.start, span.end) == (
        datetime(2024, 6, 2, tzinfo=UTC),
        datetime(2024, 6, 5, tzinfo=UTC),
    )
    hourly = span_at(
        EtlParams(sites=["x"], lookback_days=1, window_hours=6), datetime(2024, 6, 5, 7, 30, tzinfo=UTC)
    )
    assert hourly is not None and hourly.end == datetime(2024, 6, 5, 6, tzinfo=UTC)  # 06:00-12:00 is open
    with pytest.raises(ValueError, match="before"):
        EtlParams(sites=["x"], start=END, end=START)
    with pytest.raises(ValueError, match="only one of"):
        EtlParams(sites=["x"], points=["*/ahu-1/*"], points_from_api=True)


def test_daily_flow_lands_and_builds_both_sites_and_its_artifact_shows_a_warning_test(
    harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One point of the first site is silent for 3 hours: its gap makes the gap test warn.
    gappy = sorted(p.name for p in site_points(SITES[0], CFG.points, CFG.interval) if p.configured)[0]
    outage = ((gappy, "2024-06-01T06:00:00Z", "2024-06-01T09:00:00Z"),)
    params = EtlParams(
        sites=list(SITES), start=START, end=END, window_hours=12, page_size=200, data_dir=tmp_path, heal=False
    )
    with Simulator(replace(CFG, outages=outage)) as sim:
        use_api(monkeypatch, sim)
        results = daily_etl(**params.model_dump())
    assert sorted((r.site_name, r.status) for r in results) == [
        (s, "complete") for s in SITES for _ in range(2)
    ]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        counts = dict(con.execute("select site_name, count(*) from timeseries_raw group by 1").fetchall())
    per_day = 24 * 3600 // CFG.interval  # type: ignore[operator]
    silent = 3 * 3600 // CFG.interval  # type: ignore[operator]
    for site in SITES:
        configured = sum(
            p.configured for p in site_points(site, CFG.points, CFG.interval, CFG.configured_fraction)
        )
        assert counts[site] == configured * per_day - (silent if site == SITES[0] else 0)

    markdown, _ = latest_artifact("ace-etl-run-summary")
    assert all(f"| {site} | 2 | 0 | 0 |" in markdown for site in SITES), markdown
    # Each day closed long ago: its two windows' files are compacted into one.
    parts = lake.partitions(LocalStorage(tmp_path), TIMESERIES)
    assert parts.height == len(SITES) and parts.get_column("files").to_list() == [1] * len(SITES)

    # A run whose tests warn says so in the artifact's title (a clean one: see the unknown-site test).
    quality, description = latest_artifact("ace-etl-data-quality")
    assert description.startswith("WARN:"), description
    assert quality.splitlines()[0].startswith("# Data quality: 2 data-quality test(s) warn"), quality
    assert (
        f"| points_with_gaps | warn | {SITES[0]} | {markdown_escape(gappy)} (1 point(s)) | 1 |" in quality
    ), quality

    assert not [m for m in all_logs() if "\x1b[" in m]  # no terminal colour codes in Prefect's logs
    # The API gave its current conditions for a past range: one line for the run, not one per site or window.
    notes = [m for m in all_logs(results[0].run_id) if "weather history comes only from the hourly" in m]
    assert len(notes) == 1, notes


def all_logs(flow_run_id: str | None = None) -> list[str]:
    """Every log message the session's Prefect server holds, or a flow run's (the API hands them out a page
    at a time)."""
    from prefect.client.schemas.filters import LogFilterFlowRunId

    APILogWorker.drain_all(timeout=10)  # logs reach the Prefect API in batches
    wanted = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])) if flow_run_id else LogFilter()

    async def read() -> list[str]:
        messages: list[str] = []
        async with get_client() as client:
            while page := await client.read_logs(log_filter=wanted, limit=200, offset=len(messages)):
                messages += [log.message for log in page]
        return messages

    return asyncio.run(read())


def latest_artifact(key: str) -> tuple[str, str]:
    """The newest artifact with this key (data, description): tests of one session share the server."""

    async def read() -> tuple[str, str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
            )
            return str(artifacts[0].data), str(artifacts[0].description)

    return asyncio.run(read())


def test_a_late_daily_run_extracts_the_days_of_its_schedule(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run scheduled for 2024-06-02 00:00 that a worker picks up much later still covers the day before
    its schedule (and the lookback), not the days before the clock."""
    use_api(monkeypatch, sim)
    params = {
        "sites": [SITES[0]],
        "lookback_days": 1,
        "data_dir": str(tmp_path),
        "transform": False,
        "page_size": 500,
    }

    async def scheduled() -> FlowRun:
        async with get_client() as client:
            return await client.create_flow_run(
                daily_etl, parameters=params, state=Scheduled(scheduled_time=END)
            )

    results = run_flow(daily_etl, flow_run=asyncio.run(scheduled()), parameters=params)
    assert [(r.window_start, r.window_end, r.status) for r in results] == [(START, END, "complete")]  # type: ignore[union-attr]


def test_a_window_not_ended_at_the_scheduled_time_is_landed_but_not_complete(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow run's as-of is its scheduled time, for an explicit range too: the window still open then is
    landed up to it and left `live`, for a later run to finish."""
    use_api(monkeypatch, sim)
    params = {
        "sites": [SITES[0]],
        "start": START.isoformat(),
        "end": END.isoformat(),
        "data_dir": str(tmp_path),
        "transform": False,
        "page_size": 500,
    }
    noon = datetime(2024, 6, 1, 12, tzinfo=UTC)

    async def scheduled() -> FlowRun:
        async with get_client() as client:
            return await client.create_flow_run(
                daily_etl, parameters=params, state=Scheduled(scheduled_time=noon)
            )

    results = run_flow(daily_etl, flow_run=asyncio.run(scheduled()), parameters=params)
    assert [(r.window_start, r.status) for r in results] == [(START, "live")]  # type: ignore[union-attr]
    landed = pl.read_parquet(
        tmp_path / "landing" / "timeseries" / "**" / "*.parquet", hive_partitioning=False
    )
    assert landed["timestamp"].max() < noon <= landed["timestamp"].max() + timedelta(seconds=CFG.interval)


def test_daily_flow_with_a_rejected_key_fails_typed_and_never_logs_it(
    harness: None,
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-flow-key-MUST-NOT-LEAK"
    monkeypatch.setenv("ACEIOT_API_URL", sim.url)
    monkeypatch.setenv("ACEIOT_API_KEY", wrong)
    with pytest.raises(AuthError, match="HTTP 401"):
        daily_etl(sites=[SITES[0]], start=START, end=END, data_dir=tmp_path, transform=False)

    messages = all_logs()
    assert any("HTTP 401" in m for m in messages)
    assert not any(wrong in m for m in messages)
    assert "HTTP 401" in caplog.text and wrong not in caplog.text


def test_the_daily_flow_runs_its_tasks_on_a_local_dask_cluster(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, sim)
    params = EtlParams(
        sites=list(SITES), start=START, end=END, window_hours=12, page_size=200, data_dir=tmp_path,
        transform=False, dask_workers=2,
    )  # fmt: skip
    results = daily_etl(**params.model_dump())
    assert sorted((r.site_name, r.status) for r in results) == [
        (s, "complete") for s in SITES for _ in range(2)
    ]
    landed = lake.read(LocalStorage(tmp_path), TIMESERIES)  # through the log: compaction left replaced files
    for site in SITES:
        configured = sum(
            p.configured for p in site_points(site, CFG.points, CFG.interval, CFG.configured_fraction)
        )
        assert landed.filter(pl.col("site_name") == site).height == configured * 24 * 3600 // CFG.interval  # type: ignore[operator]


def test_the_key_comes_from_a_secret_block_when_there_is_one(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.setenv("ACEIOT_API_URL", sim.url)
    monkeypatch.delenv("ACEIOT_API_KEY", raising=False)  # a worker on another machine has no key of its own
    Secret(value=CFG.api_key).save("ace-etl-test-key", overwrite=True)
    results = weather_hourly(sites=[SITES[0]], data_dir=str(tmp_path), api_key_block="ace-etl-test-key")
    assert [r.rows for r in results] == [1]


def test_weather_hourly_lands_current_conditions(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, sim)
    results = weather_hourly(sites=list(SITES), data_dir=tmp_path)
    assert sorted((r.site_name, r.rows) for r in results) == [(s, 1) for s in SITES]
    assert len(list((tmp_path / "landing" / "weather").rglob("*.parquet"))) == len(SITES)


def test_daily_flow_with_an_unknown_site_fails_typed(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.schemas.filters import LogFilterFlowRunId

    use_api(monkeypatch, sim)
    state = daily_etl(
        sites=["atlantis"], start=START, end=END, data_dir=tmp_path, transform=False, return_state=True
    )
    with pytest.raises(SiteNotFoundError, match="no such site 'atlantis'"):
        state.result()
    # One line per failure (each failed task run, and the flow run), no traceback: the message says it all.
    APILogWorker.drain_all(timeout=10)
    run_id = flow_run_of(state).id

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
            )
            return [log.message for log in logs if log.level >= 40]

    errors = asyncio.run(read())
    assert errors and all("atlantis" in m and "\n" not in m for m in errors), errors


def test_a_prefect_budget_spaces_requests_across_workers(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cross-machine budget: a global concurrency limit with slot decay, created by the setup step."""
    import time

    from extract.errors import ConfigError
    from flows.budget import PrefectBudget, limit_name, setup_budget

    name = setup_budget(sim.url, CFG.api_key, requests_per_minute=120)
    assert name == limit_name(sim.url, CFG.api_key) and CFG.api_key not in name
    setup_budget(sim.url, CFG.api_key, requests_per_minute=60)  # updated in place: one request a second
    budget = PrefectBudget(name)
    budget.acquire()
    started = time.monotonic()
    for _ in range(3):
        budget.acquire()
    # Paced, not a minute's budget at once: a server counting over 10 s would reject a burst of 60.
    assert time.monotonic() - started >= 2.5
    with pytest.raises(ConfigError, match="prefect-setup"):
        PrefectBudget("ace-etl-api-missing").acquire()
    use_api(monkeypatch, sim)
    results = weather_hourly(sites=[SITES[0]], data_dir=tmp_path, budget_scope="prefect")
    assert [r.rows for r in results] == [1]


def test_a_429_seen_by_one_worker_pauses_every_worker_of_the_key(
    harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry-After reaches workers on other machines: here, two budgets that share nothing but Prefect."""
    import logging
    import time

    from flows.budget import PAUSE_POLL_S, PrefectBudget, limit_name, pause_name, setup_budget
    from tests.support import assert_waits_until_cancelled

    name = setup_budget("http://pause-test/api", "key-one", requests_per_minute=600)
    other = setup_budget("http://pause-test/api", "key-two", requests_per_minute=600)
    here, there, other_key = PrefectBudget(name), PrefectBudget(name), PrefectBudget(other)
    there.acquire()
    time.sleep(PAUSE_POLL_S)  # what `there` read of the pause (nothing) is now a second old: it reads again
    here.pause(3600.0)  # longer than any test may take: waiting for it would never end
    other_key.acquire()  # one key's 429s never slow another key's sites: this returns
    caplog.set_level(logging.WARNING, logger="extract")
    assert_waits_until_cancelled(there.acquire, look=3 * PAUSE_POLL_S)  # the same key's other worker waits
    # ... and says so once, rather than look hung
    said = [r.getMessage() for r in caplog.records if "before the next API request" in r.getMessage()]
    assert len(said) == 1 and "asked (Retry-After) that this key pause" in said[0], said
    assert "key-one" not in pause_name(name) and pause_name(name) != limit_name(
        "http://pause-test/api", "key-one"
    )


def test_a_prefect_pause_beyond_the_cap_is_cut_to_it(harness: None) -> None:
    """A year-long pause (an older version's, or a worker's with a longer cap) never blocks a key for good."""
    import threading
    import time

    from prefect.variables import Variable

    from extract import cancel
    from flows.budget import PrefectBudget, pause_name, setup_budget
    from tests.support import withdraw_stop_request

    name = setup_budget("http://pause-test/api", "key-capped", requests_per_minute=600)
    Variable.set(pause_name(name), time.time() + 31_536_000, overwrite=True)
    waiter = threading.Thread(target=PrefectBudget(name).acquire, kwargs={"max_pause": 0.5})
    waiter.start()
    waiter.join(60)  # generous: the cut pause is half a second
    if waiter.is_alive():
        cancel.request()
        waiter.join(60)
        withdraw_stop_request()
        pytest.fail("a year-long pause was waited out instead of cut to the client's cap")
    stored = Variable.get(pause_name(name))
    assert isinstance(stored, float) and stored <= time.time()  # cut for every worker, too


def landed(data_dir: Path, dataset: str, drop: tuple[str, ...]) -> pl.DataFrame:
    if dataset == "timeseries":  # a Delta table: through its log (compaction leaves replaced files behind)
        frame = lake.read(LocalStorage(data_dir), TIMESERIES)
    else:
        files = sorted((data_dir / "landing" / dataset).rglob("*.parquet"))
        frame = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="diagonal")
    return frame.drop(drop).sort(frame.drop(drop).columns)


def test_the_flows_prefect_units_land_what_threads_land_with_a_failed_site(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pipeline, two kinds of unit: Prefect tasks (each gets the job pickled) or threads of this process
    (`run_extract`, as the command line runs them). The same job lands the same rows and etl_runs rows
    (timings aside)."""
    use_api(monkeypatch, sim)
    params = EtlParams(
        sites=[SITES[0], "atlantis"], start=START, end=END, window_hours=12, page_size=500,
        data_dir=tmp_path / "flow", transform=False,
    )  # fmt: skip
    with pytest.raises(SiteNotFoundError, match="atlantis"):
        daily_etl(**params.model_dump())
    job = params.job(datetime.now(UTC), data_dir=tmp_path / "threads", time_zones={})
    with AceClient(sim.url, CFG.api_key, requests_per_minute=None) as client:
        threads = run_extract(client, LocalStorage(tmp_path / "threads"), job)
    assert {type(f.error) for f in threads.failures} == {SiteNotFoundError}  # points and weather
    timing = ("run_id", "started_at", "finished_at", "duration_s")
    for dataset, drop in (("timeseries", ("collected_at",)), ("runs", timing), ("points", ("collected_at",))):
        flow_rows, thread_rows = (landed(tmp_path / front, dataset, drop) for front in ("flow", "threads"))
        assert flow_rows.height > 0 and flow_rows.equals(thread_rows), dataset
    runs = landed(tmp_path / "flow", "runs", timing)
    assert runs.group_by("site_name", "status").len().sort("site_name").rows() == [
        ("atlantis", "failed", 2),
        (SITES[0], "complete", 2),
    ]


class Receiver:
    """An HTTP endpoint on loopback that keeps what is POSTed to it: where alerts go in tests."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("content-length", 0))).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received:
                if text in message:
                    return message
            time.sleep(0.2)
        raise AssertionError(f"no alert containing {text!r} in {self.received}")


def test_alerts_for_a_failed_run_and_for_data_quality_are_set_up_by_one_command(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from prefect import flow
    from typer.testing import CliRunner

    from ace_etl.cli import app
    from flows.alerts import emit_data_quality

    use_api(monkeypatch, sim)
    receiver = Receiver()
    for _ in range(2):  # run twice: the automations are replaced, not doubled
        setup = CliRunner().invoke(app, ["prefect-setup", "--alert-webhook", receiver.url])
        assert setup.exit_code == 0, setup.output
    assert "ace-etl: a run failed" in setup.output and "data-quality" in setup.output

    with pytest.raises(SiteNotFoundError):
        daily_etl(sites=["atlantis"], start=START, end=END, data_dir=tmp_path, transform=False)
    alert = json.loads(receiver.wait_for("ace-etl-daily"))["text"]
    assert "ace-etl: a run failed" in alert and "Failed" in alert and "atlantis" in alert
    assert_links_to_a_flow_run(alert)

    @flow(name="ace-etl-dq-probe")
    def probe() -> None:
        from prefect.runtime import flow_run

        emit_data_quality(
            "warn",
            "1 data-quality test(s) warn or fail",
            ["points_with_gaps (warn)"],
            (str(flow_run.get_id()), "probe-run"),
        )

    probe()
    alert = json.loads(receiver.wait_for("points_with_gaps"))["text"]
    assert "did not pass" in alert and "probe-run" in alert
    assert_links_to_a_flow_run(alert)
    assert len([m for m in receiver.received if "a run failed" in m]) == 1  # one automation, not two

    saved = CliRunner().invoke(app, ["prefect-setup", "--alert-block", "custom-webhook/ace-etl-alerts"])
    assert saved.exit_code == 0, saved.output  # the block the webhook setup saved, found by its name
    for missing in ("slack-webhook/missing", "no-type"):
        bad = CliRunner().invoke(app, ["prefect-setup", "--alert-block", missing])
        assert bad.exit_code == 2 and f"no notification block {missing!r}" in bad.output
    bad = CliRunner().invoke(
        app, ["prefect-setup", "--alert-webhook", receiver.url, "--ui-url", "prefect-host"]
    )
    error = bad.output.strip().splitlines()[-1]
    assert bad.exit_code == 2 and error.startswith("error: alerts need the Prefect UI's address"), bad.output
    assert "--ui-url" in error


def assert_links_to_a_flow_run(alert: str) -> None:
    """The alert ends in a link to the run on the Prefect server the tests use (never `None`)."""
    import re

    import httpx
    from prefect.settings import PREFECT_API_URL

    assert "None" not in alert, alert
    link = re.search(r"(https?://\S+)/runs/flow-run/([0-9a-f-]{36})$", alert)
    assert link is not None, alert
    api = str(PREFECT_API_URL.value())
    assert link.group(1) == api.removesuffix("/api"), (alert, api)
    # The id is the run's: the server knows it.
    assert httpx.get(f"{api}/flow_runs/{link.group(2)}").status_code == 200


def test_one_unknown_site_still_builds_the_others_then_fails_naming_it(
    harness: None, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, sim)
    params = EtlParams(
        sites=[SITES[0], "atlantis"], start=START, end=END, page_size=500, data_dir=tmp_path, heal=False
    )
    with pytest.raises(SiteNotFoundError, match="atlantis"):
        daily_etl(**params.model_dump())
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select distinct site_name from timeseries_raw").fetchall() == [(SITES[0],)]
    quality, description = latest_artifact("ace-etl-data-quality")  # what landed is clean
    assert description.startswith("OK: all"), description
    assert "points_with_gaps" in next(line for line in quality.splitlines() if line.startswith("Passing"))


def test_the_retention_flow_deletes_the_old_days_and_keeps_weather(harness: None, tmp_path: Path) -> None:
    from flows.etl import retention
    from tests.test_upkeep import land, midnight, weather_at

    storage = LocalStorage(tmp_path)
    today = datetime.now(UTC).date()
    for offset in (3, 1):
        land(storage, "hq", today - timedelta(days=offset), merges=0)
    lake.upsert(
        storage,
        "landing/weather",
        "hq",
        weather_at(midnight(today - timedelta(days=3))),
        ("site_name", "timestamp"),
    )
    result = retention(keep_days=2, data_dir=str(tmp_path))
    assert (result.deleted, result.keep_from) == (60, today - timedelta(days=2))
    assert lake.read(storage, TIMESERIES).get_column("timestamp").min() == midnight(today - timedelta(days=1))
    assert lake.read(storage, "landing/weather").height == 1


def flow_run_of(state: object) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[attr-defined]

    return asyncio.run(read())
