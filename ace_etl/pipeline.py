"""The one pipeline: what `ace-etl run`, `heal` and `demo` and the flows (daily, live, backfill, heal) do
with a job (`extract.run.job.Job`), in this order:

1. Nothing, when no window of the job has closed yet.
2. Extract every (site, window) on the front's runner (`extract.run.pipeline.extract_job`).
3. Compact the sites' closed days, when the job asks (the daily deployment; never live).
4. Build the warehouse when anything landed, even when a site failed: what landed is served, and the run
   still fails at the end, naming the site.
5. Heal, when the job heals (not live), nothing failed and the build passed: re-fetch the ranges of the
   gaps in the job's range. It comes after the build because it reads the gaps from the warehouse that
   build published; the job's sites without gaps cost no request. Build again when healing landed
   samples (its empty checks show in the next run's build). A heal job (`Mode.HEAL`) is this step alone,
   then a build when it fetched anything: its report reads the gaps still open, checks included.
6. Report, then raise the first extraction failure, else the build's error (typed: exit status, task state).

The front supplies only how units run and how progress is reported: `ace_etl.runner.Cli` (threads of this
process, rich output) and the flows' (`flows.etl`: Prefect tasks, logs and artifacts).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ace_etl.report import gaps_by_site, weather_history_note
from extract.errors import AceEtlError
from extract.run.datadir import open_storage
from extract.run.heal import HealResult
from extract.run.job import Job, Mode
from extract.run.metrics import WindowResult
from extract.run.pipeline import extract_job
from extract.run.scheduler import Runner, RunResult


class Built(Protocol):
    """A build's outcome: its error is returned, not raised, so a run reports before it fails."""

    @property
    def warehouse(self) -> Path: ...

    @property
    def error(self) -> AceEtlError | None: ...


class Front(Protocol):
    """How a job's units run and how its progress and outcome are reported."""

    def runner(self, job: Job) -> AbstractContextManager[Runner]:
        """Where the extraction's units run, for as long as the extraction lasts."""
        ...

    def on_window(self, row: WindowResult) -> None:
        """A window is done (any status)."""
        ...

    def heal(self, job: Job) -> list[HealResult]:
        """Heal the job's sites over its span (`ace_etl.healing.heal_sites`)."""
        ...

    def build(self, job: Job) -> Built:
        """Build and publish the warehouse."""
        ...

    def report(self, result: JobResult) -> None:
        """The job's outcome, before a failure is raised."""
        ...

    def note(self, message: str, *, warning: bool = False) -> None:
        """One line about the run."""
        ...


@dataclass
class JobResult:
    """What a job did. `gaps` are per site in the warehouse of the last build (None: none published)."""

    job: Job
    extracted: RunResult | None = None
    """The extraction (None: a heal job, or nothing to do)."""
    healed: list[HealResult] = field(default_factory=list)
    build: Built | None = None
    gaps: dict[str, int] | None = None

    @property
    def windows(self) -> list[WindowResult]:
        return self.extracted.windows if self.extracted is not None else []

    @property
    def changed(self) -> bool:
        """The job fetched or healed something (not only found every window complete)."""
        fetched = any(w.status != "skipped" and w.api_requests for w in self.windows)
        return fetched or _landed(self.healed)

    @property
    def failed(self) -> bool:
        return (self.extracted is not None and not self.extracted.ok) or self.build_error is not None

    @property
    def build_error(self) -> AceEtlError | None:
        return self.build.error if self.build is not None else None

    def raise_if_failed(self) -> None:
        """The first extraction failure's error, else the build's."""
        if self.extracted is not None:
            self.extracted.raise_if_failed()
        if self.build_error is not None:
            raise self.build_error


def run_job(job: Job, front: Front) -> JobResult:
    """Run the job through the pipeline's steps (see the module) on `front`; raises the first failure typed,
    after the report."""
    result = JobResult(job)
    if job.span is None:
        front.note(
            f"Nothing to extract: no {job.window_hours:g} h window has closed by {job.as_of.isoformat()}."
        )
        return result
    if job.transform:
        from ace_etl.transform import check_build_paths, checked_limits_file

        check_build_paths(job.data_dir)  # before landing anything the build could not read
        checked_limits_file(job.limits_file)
    if job.mode is Mode.HEAL:
        result.healed = front.heal(job)
        if job.transform and any(r.ranges for r in result.healed):
            result.build = front.build(job)
    else:
        with front.runner(job) as runner:
            result.extracted = extract_job(open_storage(job.data_dir), job, runner, front.on_window)
        if note := weather_history_note(result.extracted.weather, datetime.now(UTC)):
            front.note(note)
        if job.compact and not job.live:
            _compact(job, front)
        if job.transform and any(w.status != "failed" for w in result.windows):
            result.build = front.build(job)
            if job.heal and not job.live and result.extracted.ok and result.build.error is None:
                result.healed = front.heal(job)
                if _landed(result.healed):
                    result.build = front.build(job)
    if result.build is not None and result.build.error is None:
        result.gaps = gaps_by_site(result.build.warehouse)
    front.report(result)
    result.raise_if_failed()
    return result


def _landed(healed: Sequence[HealResult]) -> bool:
    return any(r.samples or r.rejected for r in healed)


def _compact(job: Job, front: Front) -> None:
    """Compact the job's sites' closed days with many small files (live runs' and heal's merges), then
    vacuum what earlier compactions replaced once no published build reads it (compaction alone must not
    double the lake when no retention is scheduled). Upkeep: a failure is a warning, the next run tries
    again; the data landed either way."""
    from ace_etl.upkeep import compact, vacuum

    try:
        done = compact(job.data_dir, list(job.sites))
    except AceEtlError as exc:
        front.note(f"compaction skipped: {exc}", warning=True)
        return
    front.note(f"compacted day partitions: {done}")
    vacuumed = vacuum(job.data_dir)
    for warning in vacuumed.warnings:
        front.note(warning, warning=True)
    front.note(f"vacuumed files: {vacuumed.files}")
