"""Prefect flows: the daily ETL, a backfill for long ranges, and hourly weather.

Thin wiring of the `extract` library into tasks. Retries live in one place, the API client (429, 5xx,
network, truncated bodies, with backoff and a deadline); tasks have no retries of their own, because a task
retry would repeat the same failures the client already retried. A window that still fails is resumed from
its checkpoint by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.futures import wait as wait_for
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import SecretStr

from ace_etl import heap
from ace_etl.coverage_view import coverage_grid
from ace_etl.coverage_view import to_markdown as to_coverage_markdown
from ace_etl.excursions import known_ids, new_excursions
from ace_etl.healing import heal_sites
from ace_etl.pipeline import JobResult, run_job
from ace_etl.quality import Quality, TestResult, read_failing_rows, scoped
from ace_etl.quality import to_markdown as to_quality_markdown
from ace_etl.report import outcome, summarize, to_markdown
from ace_etl.transform import warehouse_file
from ace_etl.upkeep import RetentionResult, apply_retention
from extract.api.budget import budget_file
from extract.api.client import AceClient, use_own_retry_log
from extract.api.points import PointSelector
from extract.config import Settings
from extract.errors import AceEtlError, TransformError
from extract.lake.storage import Storage
from extract.run.datadir import open_storage
from extract.run.heal import HealResult
from extract.run.job import MAX_WORKERS, Job, Mode
from extract.run.metrics import WindowResult
from extract.run.pipeline import (
    WeatherResult,
    extract_weather,
    extract_window,
    land_points,
    land_site_record,
    recent_points,
)
from extract.windows import Window
from flows.alerts import emit_data_quality, emit_excursions
from flows.budget import PrefectBudget, limit_name
from flows.compat import share_settings_with_dbt_node_tasks
from flows.params import (
    BackfillParams,
    EtlParams,
    RetentionParams,
    SiteParams,
    TransformParams,
    flat_parameters,
)

LIVE_PREFIX = "ace-etl-live"


class _OneLinePerFailure(logging.Filter):
    """Prefect logs a failed task or flow run twice: the exception with its traceback, then the run's final
    state naming it. Our typed errors already say what failed and what to do in one line, so their
    traceback line goes to debug: one line per failure in the run's logs, the traceback still there at
    debug level. Other exceptions (bugs) keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, AceEtlError) and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


for _engine in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_engine).addFilter(_OneLinePerFailure())
# Where the flows' processes start (a worker, a Dask worker unpickling a task): one retry line, ours, and
# the garbage collector as the console script sets it (the flows build with dbt, extract with Polars).
use_own_retry_log()
heap.tune()


def _runner() -> TaskRunner[Any]:
    # Tasks are I/O bound and share one rate limit; the scheduler bounds memory by running one window per site.
    return ThreadPoolTaskRunner(max_workers=MAX_WORKERS)


# Tasks receive settings and plain values and build their own client and storage, so they run on threads
# of this process or on Dask workers elsewhere alike; processes on one machine share the key's budget file.
_task = task(cache_policy=NO_CACHE, retries=0)


@dataclass(frozen=True)
class _Api:
    """How a task reaches the API and the data dir: the settings (key, data dir) and how the key's request
    budget is shared (`SiteParams.budget_scope`)."""

    settings: Settings
    budget_scope: str
    requests_per_minute: float

    @contextmanager
    def connected(self) -> Iterator[tuple[AceClient, Storage]]:
        settings = self.settings
        if self.budget_scope == "prefect":
            key = settings.require_key()
            limiter = PrefectBudget(limit_name(settings.api_url, key.get_secret_value()))
            client = AceClient.from_settings(settings, rate_limiter=limiter)  # with ACE_ETL_MAX_RETRY_AFTER
        else:
            client = AceClient.from_settings(
                settings, requests_per_minute=self.requests_per_minute, budget=budget_file(settings)
            )
        with client:
            yield client, open_storage(settings.data_dir)


@_task
def land_points_task(api: _Api, site: str, job: Job) -> list[dict[str, Any]]:
    """Fetch and land the site's configured points (live runs reuse a list fetched within the hour)."""
    with api.connected() as (client, storage):
        items = (recent_points if job.live else land_points)(client, storage, site)
    get_run_logger().info("site %s: %d configured points", site, len(items))
    return items


@task(cache_policy=NO_CACHE, retries=0, task_run_name="site {site}")
def land_site_task(api: _Api, site: str, job: Job) -> None:
    """Land the site's record with its time zone (the job's time zones override)."""
    with api.connected() as (client, storage):
        land_site_record(client, storage, site, job.time_zones)


@task(cache_policy=NO_CACHE, retries=0, task_run_name="extract {site} {window.key}")
def extract_window_task(
    api: _Api, job: Job, site: str, window: Window, selector: PointSelector, configured: list[str]
) -> WindowResult:
    """Land one (site, window), resuming from its checkpoint."""
    logger = get_run_logger()

    def on_page(site: str, window: Window, page: int, samples: int) -> None:
        logger.info("site %s window %s: page %d landed (%d samples)", site, window.key, page, samples)

    with api.connected() as (client, storage):
        result = extract_window(client, storage, job, site, window, selector, configured, on_page)
    logger.info(
        "site %s window %s: %s, %d pages, %d kept, %d filtered out, %d rejected",
        site, window.key, result.status, result.pages, result.records_kept, result.records_filtered, result.records_rejected,
    )  # fmt: skip
    return result


@task(cache_policy=NO_CACHE, retries=0, task_run_name="weather {site}")
def weather_task(api: _Api, site: str, window: Window) -> WeatherResult:
    """Land the site's weather for the window (current conditions on the real API)."""
    with api.connected() as (client, storage):
        result = extract_weather(client, storage, site, window.start, window.end)
    get_run_logger().info("site %s: %d weather rows landed", site, result.rows)
    return result


@task(cache_policy=NO_CACHE, retries=0, task_run_name="heal {job.span.key}")
def heal_task(api: _Api, job: Job) -> list[HealResult]:
    """Re-fetch the ranges of the warehouse's gaps in the job's span (backoff for those checked recently)."""
    with api.connected() as (client, storage):
        results = heal_sites(client, storage, job)
    for r in results:
        get_run_logger().info(
            "site %s: %d gap(s), %d checked (%d in open windows, not recorded), %d not fetched (window being "
            "extracted), %d range(s) fetched in %d request(s), %d sample(s) landed",
            r.site_name, r.gaps, r.gaps - r.deferred - r.skipped, r.unsettled, r.skipped, r.ranges, r.requests,
            r.samples,
        )  # fmt: skip
    return results


def build_and_publish(
    data_dir: Path | str,
    dq_severity: str = "warn",
    sites: Collection[str] | None = None,
    *,
    full_check: bool = False,
    time_zones: dict[str, str] | None = None,
    limits_file: Path | None = None,
    node_tasks: bool = False,
) -> Path:
    """`dbt build` into the build database (through prefect-dbt, one Prefect task per dbt node, with
    `node_tasks`), publish it for analysts (see `ace_etl.transform`), and publish the data-quality artifact
    and event, and the event of new excursions, for `sites` (None: every site). The tests look at the
    partitions the build changed, or at every row with `full_check`; `time_zones` override the sites' time
    zones."""
    known = known_ids(warehouse_file(data_dir))
    build = _dbt_build(
        data_dir,
        dq_severity,
        full_check=full_check,
        time_zones=time_zones,
        limits_file=limits_file,
        node_tasks=node_tasks,
    )
    if build.error is None:
        _alert_new_excursions(build.warehouse, known, sites)
    return _published(build, sites)


@dataclass
class _Build:
    warehouse: Path
    tests: list[TestResult]
    error: AceEtlError | None


def _dbt_build(
    data_dir: Path | str,
    dq_severity: str,
    *,
    full_check: bool = False,
    time_zones: dict[str, str] | None = None,
    limits_file: Path | None = None,
    node_tasks: bool = False,
) -> _Build:
    """One build; its error is returned, not raised, so that a run publishes one data-quality verdict, for
    its last build, failed or not."""
    from ace_etl.transform import warehouse_file

    results: list[Any] = []
    try:
        warehouse = _run_dbt_build(
            data_dir,
            dq_severity,
            results,
            full_check=full_check,
            time_zones=time_zones,
            limits_file=limits_file,
            node_tasks=node_tasks,
        )
    except TransformError as error:
        # The failing rows of an unpublished build cannot be read: its failing tests count for every site.
        return _Build(warehouse_file(data_dir), read_failing_rows(None, results), error)
    return _Build(warehouse, read_failing_rows(warehouse, results), None)


def _run_dbt_build(
    data_dir: Path | str,
    dq_severity: str,
    results: list[Any],
    *,
    full_check: bool = False,
    time_zones: dict[str, str] | None = None,
    limits_file: Path | None = None,
    node_tasks: bool = False,
) -> Path:
    """`dbt build` into the build database and publish it for analysts (see `ace_etl.transform`), through
    prefect-dbt with `node_tasks`; dbt's run results go into `results`, for failed builds too."""
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

    from ace_etl.transform import (
        DBT_PROJECT_DIR,
        NIGHTLY_EXCLUDES,
        build_dir,
        building,
        dbt_build,
        dbt_vars,
        failure_message,
        shared_parse,
        warehouse_file,
    )

    with building(data_dir, limits_file):
        if not node_tasks:
            # One step: a task per node (Prefect's engine and API calls) makes the demo's 46-node build
            # take 3x as long (4x the CPU), which the live runs every five minutes would pay for nothing.
            dbt_build(
                data_dir,
                full_check=full_check,
                time_zones=time_zones,
                dq_severity=dq_severity,
                results=results,
            )
            return warehouse_file(data_dir)
        work = build_dir(data_dir)
        settings = PrefectDbtSettings(
            project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target_path=work / "target"
        )
        # No colour codes: these lines go to Prefect's logs, not to a terminal.
        args = [
            "build",
            "--no-use-colors",
            "--log-path",
            str(work / "logs"),
            *dbt_vars(full_check=full_check, dq_severity=dq_severity, time_zones=time_zones),
            *NIGHTLY_EXCLUDES,
        ]
        share_settings_with_dbt_node_tasks()
        # Not raising inside the runner: the data-quality artifact and event go out for failed builds too.
        with shared_parse(work / "target", args):
            outcome = PrefectDbtRunner(settings=settings, raise_on_failure=False).invoke(args)
        results += list(getattr(getattr(outcome, "result", None), "results", []) or [])
        if not outcome.success:
            raise TransformError(failure_message(outcome.exception, results, work / "logs" / "dbt.log"))
    return warehouse_file(data_dir)


def _published(build: _Build, sites: Collection[str] | None) -> Path:
    """Publish the build's data quality for `sites`, then raise its error."""
    _publish_build(build, sites, "ace-etl", changed=True)
    if build.error is not None:
        raise build.error
    return build.warehouse


def _publish_build(
    build: _Build,
    sites: Collection[str] | None,
    prefix: str,
    changed: bool = True,
    seen: str | None = None,
) -> Quality | None:
    """The build's data quality for `sites`: artifact, warning and event (None: no test ran). A run that
    changed nothing (`changed` False) emits no event: its problems were an earlier run's to alert. With
    `seen` (a Prefect variable), the event goes out only when the problems differ from those it recorded."""
    if not build.tests:
        return None
    quality = scoped(build.tests, sites)
    if changed and seen is not None:
        from prefect.variables import Variable

        changed = Variable.get(seen, default=None) != quality.digest
        Variable.set(seen, quality.digest, overwrite=True)
    _publish_data_quality(quality, prefix, changed)
    return quality


def _seen_by_live(params: EtlParams) -> str | None:
    """Where live runs of these sites record the problems they last reported: a live run every 5 minutes
    alerts when the problems change, not on every run while they last (the daily run reports them daily)."""
    if not params.live:
        return None
    import hashlib

    return f"ace-etl-live-quality-{hashlib.sha256(repr(sorted(params.sites)).encode()).hexdigest()[:12]}"


def _publish_data_quality(quality: Quality, prefix: str, alert: bool) -> None:
    create_markdown_artifact(
        markdown=to_quality_markdown(quality),
        key=f"{prefix}-data-quality",
        description=("OK: " if quality.status == "pass" else "WARN: ") + quality.title,
    )
    if quality.findings:
        get_run_logger().warning(
            "data quality: %s (%s)", quality.title, "; ".join(f.describe() for f in quality.findings)
        )
    if not alert:
        get_run_logger().info("data quality: nothing new since the last report, so no data-quality event")
        return
    run_id = flow_run.get_id()
    emit_data_quality(
        quality.status,
        quality.title,
        [f.describe() for f in quality.findings],
        (str(run_id), str(flow_run.get_name())) if run_id else None,
    )


def _alert_new_excursions(warehouse: Path, known: Collection[int], sites: Collection[str] | None) -> None:
    """One event (one alert) for the excursions of `sites` that the warehouse holds and `known` did not."""
    found = [e.describe() for e in new_excursions(warehouse, known, sites)]
    if not found:
        return
    get_run_logger().warning("%d new excursion(s): %s", len(found), "; ".join(found))
    run_id = flow_run.get_id()
    emit_excursions(found, (str(run_id), str(flow_run.get_name())) if run_id else None)


def _settings(params: SiteParams) -> Settings:
    settings = Settings()
    update: dict[str, Any] = {"data_dir": params.data_dir or settings.data_dir}
    if params.api_key_block and (key := _block_key(params.api_key_block)) is not None:
        update["api_key"] = key
    return settings.model_copy(update=update)


def _block_key(name: str) -> SecretStr | None:
    """The API key from a Prefect Secret block (how workers on other machines get it), or None when no
    such block exists (then ACEIOT_API_KEY). Never a flow parameter: parameters are stored in plain text."""
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:
        block: Any = Secret.load(name)  # sync here: flows are synchronous
    except (ValueError, ObjectNotFound):
        return None
    return SecretStr(str(block.get()))


@contextmanager
def _task_runner(params: SiteParams) -> Iterator[TaskRunner[Any] | None]:
    """Where tasks run: a Dask cluster (an existing scheduler, or a local one of N worker processes) when the
    parameters name one, else the flow's own thread pool (None)."""
    if params.dask_address is None and params.dask_workers is None:
        yield None
        return
    from prefect_dask import DaskTaskRunner

    runner = (
        DaskTaskRunner(address=params.dask_address)
        if params.dask_address
        else DaskTaskRunner(
            cluster_kwargs={"n_workers": params.dask_workers, "processes": True, "threads_per_worker": 1}
        )
    )
    with runner:
        yield runner


@dataclass
class _PrefectRunner:
    """The scheduler's units as Prefect tasks: on the flow's threads, or on a Dask cluster."""

    task_runner: TaskRunner[Any] | None
    api: _Api
    job: Job

    def points(self, site: str) -> PrefectFuture[Any]:
        return self._submit(land_points_task, api=self.api, site=site, job=self.job)

    def site(self, site: str) -> PrefectFuture[Any]:
        return self._submit(land_site_task, api=self.api, site=site, job=self.job)

    def weather(self, site: str, span: Window) -> PrefectFuture[Any]:
        return self._submit(weather_task, api=self.api, site=site, window=span)

    def window(
        self, site: str, window: Window, selector: PointSelector, configured: list[str]
    ) -> PrefectFuture[Any]:
        return self._submit(
            extract_window_task, api=self.api, job=self.job, site=site, window=window, selector=selector,
            configured=configured,
        )  # fmt: skip

    # The scheduler only hands back what this runner returned: Prefect futures.
    def wait(self, pending: Collection[Any], timeout: float) -> Collection[Any]:
        return wait_for(list(pending), timeout=timeout).done

    def cancel(self, handle: Any) -> bool:
        return False  # a submitted task runs; the scheduler stops submitting more

    def _submit(self, work: Any, **parameters: Any) -> PrefectFuture[Any]:
        if self.task_runner is None:
            return work.submit(**parameters)
        return self.task_runner.submit(work, parameters=parameters)


@dataclass
class _Flow:
    """The pipeline's front in a flow: its units as Prefect tasks (threads or Dask), dbt through prefect-dbt,
    progress in the run's logs, the outcome as artifacts and events."""

    params: EtlParams
    api: _Api
    known: Collection[int] | None = None
    """The excursions the warehouse held before the run's first build: only new ones alert."""

    @contextmanager
    def runner(self, job: Job) -> Iterator[_PrefectRunner]:
        span = job.span
        assert span is not None
        self.note(
            f"as of {job.as_of.isoformat()}: covering {span.start.isoformat()} to {span.end.isoformat()}"
        )
        with _task_runner(self.params) as task_runner:
            yield _PrefectRunner(task_runner, self.api, job)

    def on_window(self, row: WindowResult) -> None:
        pass  # each window's task logs its own line

    def heal(self, job: Job) -> list[HealResult]:
        return heal_task(self.api, job)

    def build(self, job: Job) -> _Build:
        if self.known is None:
            self.known = known_ids(warehouse_file(job.data_dir))
        return _dbt_build(
            job.data_dir,
            self.params.dq_severity,
            time_zones=dict(job.time_zones),
            limits_file=job.limits_file,
            node_tasks=self.params.dbt_node_tasks,
        )

    def note(self, message: str, *, warning: bool = False) -> None:
        logger = get_run_logger()
        (logger.warning if warning else logger.info)("%s", message)

    def report(self, result: JobResult) -> None:
        job = result.job
        # Live runs every 5 minutes publish under keys of their own, so the daily run's artifacts stay in view.
        prefix = LIVE_PREFIX if job.live else "ace-etl"
        build, quality = result.build, None
        if isinstance(build, _Build):
            # One data-quality verdict per run; an alert only when the run fetched or healed something.
            quality = _publish_build(
                build, job.sites, prefix, changed=result.changed, seen=_seen_by_live(self.params)
            )
            if build.error is None:
                _alert_new_excursions(build.warehouse, self.known or (), job.sites)
                if job.mode is not Mode.HEAL:
                    create_markdown_artifact(
                        markdown=to_coverage_markdown(coverage_grid(build.warehouse), job.sites),
                        key=f"{prefix}-coverage",
                        description="Coverage of the run's sites per point and day: problem points first",
                    )
        if job.mode is Mode.HEAL:
            return  # heal_task logged each site's outcome
        summaries = summarize(result.windows, result.gaps)
        verdict = outcome(
            summaries, failed=result.failed, warnings=quality is not None and quality.status != "pass"
        )
        summary = to_markdown(summaries, verdict, title="ace-etl live run" if job.live else "ace-etl run")
        create_markdown_artifact(
            markdown=summary, key=f"{prefix}-run-summary", description=f"ace-etl run: {verdict}"
        )
        get_run_logger().info("\n%s", summary)


def _etl(params: EtlParams, mode: Mode | None = None) -> JobResult:
    """The flow run's job through the one pipeline (`ace_etl.pipeline.run_job`), with Prefect tasks."""
    settings = _settings(params)
    # The instant the run is for: its scheduled time, not when a worker got to it, so a late or
    # caught-up run covers the days of its schedule.
    # (Prefect hands a pendulum DateTime; plain datetime arithmetic from here on.)
    scheduled = datetime.fromtimestamp(flow_run.get_scheduled_start_time().timestamp(), UTC)
    run_id = flow_run.get_id()
    job = params.job(
        scheduled,
        data_dir=settings.data_dir,
        # Read once (a sites file is on this machine, not necessarily on a Dask worker's).
        time_zones=params.site_time_zones(),
        mode=mode,
        run_id=str(run_id) if run_id else None,
    )
    api = _Api(settings, params.budget_scope, job.requests_per_minute)
    # Typed, and after the build: Prefect marks the run failed, the data is in.
    return run_job(job, _Flow(params, api))


def _run_name() -> str:
    """Live runs are named apart (`live-...`) from daily ones in the UI's list of runs."""
    from prefect.utilities.names import generate_slug

    return f"{'live' if flow_run.get_parameters().get('live') else 'daily'}-{generate_slug(2)}"


@flow(name="ace-etl-daily", task_runner=_runner(), log_prints=True, flow_run_name=_run_name)
@flat_parameters(EtlParams)
def daily_etl(params: EtlParams) -> list[WindowResult]:
    """Extract every site for the range (default: every window not yet complete in the lookback before the
    scheduled time), land it, build the warehouse, heal the range's gaps."""
    return _etl(params).windows


@flow(name="ace-etl-backfill", task_runner=_runner(), log_prints=True)
@flat_parameters(BackfillParams)
def backfill(params: BackfillParams) -> list[WindowResult]:
    """A long range, window by window (each a task and a checkpoint; complete ones are skipped), then one
    dbt build at the end rather than one per day."""
    return _etl(params).windows


@flow(name="ace-etl-heal", task_runner=_runner(), log_prints=True)
@flat_parameters(EtlParams)
def heal(params: EtlParams) -> list[HealResult]:
    """Heal the gaps of a long range (default: the lookback before the scheduled time), then rebuild."""
    return _etl(params, Mode.HEAL).healed


@flow(name="ace-etl-transform", log_prints=True)
@flat_parameters(TransformParams)
def transform(params: TransformParams) -> str:
    """Build the warehouse from what has landed, without extracting: with `full_check`, the data tests look
    at every row instead of the partitions the build changed (the weekly deployment)."""
    data_dir = params.data_dir or Settings().data_dir
    return str(
        build_and_publish(
            data_dir,
            params.dq_severity,
            full_check=params.full_check,
            time_zones=params.site_time_zones(),
            limits_file=params.limits_file,
            node_tasks=params.dbt_node_tasks,
        )
    )


@flow(name="ace-etl-weather-hourly", task_runner=_runner())
@flat_parameters(SiteParams)
def weather_hourly(params: SiteParams) -> list[WeatherResult]:
    """Land the current weather of every site. The real API only returns current conditions, so history
    comes from calling it often."""
    from datetime import timedelta

    api = _Api(_settings(params), params.budget_scope, params.max_requests_per_minute)
    now = datetime.now(UTC)
    hour = Window(now - timedelta(hours=1), now)
    futures = [weather_task.submit(api, site, hour) for site in params.sites]
    return [f.result() for f in futures]


@flow(name="ace-etl-retention", log_prints=True)
@flat_parameters(RetentionParams)
def retention(params: RetentionParams) -> RetentionResult:
    """Delete the raw samples (timeseries) of the days before today minus keep_days, then vacuum the Delta
    tables, keeping every file the published warehouse reads. Hourly and daily aggregates keep their history."""
    result = apply_retention(params.data_dir or Settings().data_dir, params.keep_days, params.sites)
    logger = get_run_logger()
    for warning in result.vacuumed.warnings:
        logger.warning("%s", warning)
    logger.info(
        "deleted %d raw sample(s) of the days before %s; vacuumed %s",
        result.deleted, result.keep_from, result.vacuumed.files,
    )  # fmt: skip
    return result
