"""One window of one site, start to finish, under the site's lease: plan, stage pages, commit.

Planning reads the site's checkpoints (`extract.run.checkpoint`). A window is skipped only when complete
checkpoints cover all of it *for the selection asked*. Otherwise one attempt extracts the hull of the
window and of every checkpoint overlapping it, for the union of their selections, so a re-extraction never
loses points an earlier one kept, and committed windows never overlap: the landing holds each sample once
whatever window lengths earlier runs used.

Pages are staged under `state/staging/` and checkpointed after each one. A sample that an earlier page of
the attempt staged (the API may send one again on a later page) is a `duplicate_sample` reject, found
through the staged files (`StagedKeys`), so it holds across a crash and resume. The commit writes the staged
timeseries rows to the Delta table in one commit, a predicate overwrite of the site's time range (readers
see the old rows or the new ones, never a mix: the log switches snapshots at once), then moves the rejects
and selection files into the landing and removes the older ones of the range (once no warehouse build is
reading the landing: `Storage.removing_from_landing`), and only then marks the window complete. The next
run finishes an interrupted commit before anything else, and finds a Delta commit already made by its
attempt id in the log, so an attempt is never committed twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial

import polars as pl

from extract.api.client import AceClient, RequestStats
from extract.api.pagination import Page, iter_pages
from extract.api.parse import PageRows, normalize_samples
from extract.api.points import PointSelector
from extract.api.prefetch import Prefetched
from extract.errors import CursorError, DamagedStateError
from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import (
    LANDING_DIRS,
    LEASES,
    RUNS,
    TIMESERIES,
    StagedKeys,
    checkpoint_path,
    in_dataset,
    placed_path,
    selection_path,
    site_folders,
    staged,
    staged_attempts,
    staging_dir,
    window_files,
    with_parents,
    write_page,
)
from extract.lake.quarantine import quarantine
from extract.lake.storage import Storage
from extract.run.checkpoint import Checkpoint, clear_checkpoint, load_checkpoints, save_checkpoint
from extract.run.job import Job
from extract.run.lease import SiteLease
from extract.windows import Window

# An expired cursor restarts its window; a server whose cursors expire faster than we can page would loop.
MAX_CURSOR_RESTARTS = 3

# Progress callback: (site, window, page number, samples fetched in that page).
OnPage = Callable[[str, Window, int, int], None]


@dataclass(frozen=True)
class Outcome:
    """What happened to a requested window: `skipped` (already complete for the selection) or `complete`,
    with the counts of the attempt(s) that hold its data."""

    status: str
    progress: Checkpoint


def overlapping(checkpoints: Sequence[Checkpoint], window: Window) -> list[Checkpoint]:
    return [c for c in checkpoints if c.window.start < window.end and window.start < c.window.end]


def covered(checkpoints: Sequence[Checkpoint], window: Window, selector: PointSelector | None = None) -> bool:
    """Whether complete checkpoints cover every instant of `window` (for `selector`, when given)."""
    reach = window.start
    for c in sorted(overlapping(checkpoints, window), key=lambda c: c.window.start):
        if not c.complete or (selector is not None and not c.selector.covers(selector)):
            continue
        if c.window.start > reach:
            return False
        reach = max(reach, c.window.end)
    return reach >= window.end


def run_window(
    client: AceClient,
    storage: Storage,
    lease: SiteLease,
    job: Job,
    window: Window,
    selector: PointSelector,
    *,
    stats: RequestStats,
    configured: Sequence[str] = (),
    on_page: OnPage | None = None,
) -> Outcome | None:
    """Bring `window` to complete for `selector` (the caller holds `lease`), in pages of the job's size,
    again when the job forces. None when the attempt would reach past the job's as-of, the instant the run
    is for: an open window is never complete (`extract.run.live`)."""
    site, page_size, force, as_of = lease.site, job.page_size, job.force, job.as_of
    tidy(storage, site, lease.run_id)
    for c in load_checkpoints(storage, site, window):
        if c.state == "publishing":
            commit(storage, lease, c, configured)  # an earlier run stopped mid-commit
    near = load_checkpoints(storage, site, window)
    if not force and covered(near, window, selector):
        return Outcome("skipped", summed([c for c in near if c.complete]))
    # The hull grows until no other checkpoint overlaps it: the attempt replaces every window it touches,
    # so it must keep every point any of them kept.
    hull = window
    while True:
        grown = Window(
            min([hull.start, *(c.window.start for c in near)]), max([hull.end, *(c.window.end for c in near)])
        )
        if grown == hull:
            break
        hull, near = grown, load_checkpoints(storage, site, grown)
    if hull.end > as_of:
        return None
    union = selector
    for c in near:
        union = union.union(c.selector)
    resumable = [
        c for c in near if c.window == hull and not force and c.resumes(page_size=page_size, selector=union)
    ]
    progress = resumable[0] if resumable else None
    for c in near:
        if c.state == "landing" and c is not progress:
            _discard(storage, c)
    restarts = 0
    while True:
        if progress is None:
            progress = Checkpoint.start(site, hull, page_size, uuid.uuid4().hex[:12], union)
            save_checkpoint(storage, progress)
        try:
            progress = _land_pages(client, storage, lease, progress, stats, on_page)
            break
        except CursorError:
            restarts += 1
            if restarts > MAX_CURSOR_RESTARTS:
                raise
            _discard(storage, progress)
            progress = None
    return Outcome("complete", commit(storage, lease, progress, configured))


def commit(storage: Storage, lease: SiteLease, progress: Checkpoint, configured: Sequence[str]) -> Checkpoint:
    """Commit a fully staged attempt: its timeseries rows replace the window's time range in one Delta
    commit, then its rejects and selection files move into the landing and replace the older ones, then it
    is marked complete. Idempotent: a crash anywhere is finished by running it again (the Delta commit is
    not repeated once the log holds it)."""
    site, attempt = progress.site, progress.attempt
    lease.check()
    selection = selection_path(site, progress.window, attempt)
    files = progress.files if selection in progress.files else (*progress.files, selection)
    if selection not in progress.files:
        _stage_selection(storage, progress, selection, configured)
        progress = replace(progress, files=files)
        save_checkpoint(storage, progress)
    placing = lake.whole_days(progress.window.start, progress.window.end)
    for path in progress.files:
        timeseries = in_dataset(path, TIMESERIES)
        if timeseries and TIMESERIES in progress.commits:
            continue
        # Where an interrupted commit put the file: rejects and selections in the landing, timeseries pages
        # of whole days in the table's folder (the others are read from staging).
        there = path if not timeseries else _placed(progress, path) if placing else None
        if not storage.exists(staged(site, attempt, path)) and not (there and storage.exists(there)):
            quarantine_checkpoint(storage, progress, f"staged file {path} is missing")
            raise DamagedStateError(
                f"window {progress.window.key} of site {site!r} lost a staged file; it is fetched again on the next run"
            )
    if TIMESERIES not in progress.commits:
        version = _commit_timeseries(storage, lease, progress)
        progress = replace(progress, commits={**progress.commits, TIMESERIES: version})
        save_checkpoint(storage, progress)
    moved = [p for p in progress.files if not in_dataset(p, TIMESERIES)]
    for path in moved:
        if storage.exists(staged(site, attempt, path)):
            storage.rename(staged(site, attempt, path), path)
    keep = set(moved)
    replaced = [p for p in window_files(storage, site, progress.window) if p not in keep]
    if replaced:
        with storage.removing_from_landing():  # not under a build that may have listed them
            lease.check()  # waiting for a long build may have cost the lease: the next run finishes then
            storage.delete(replaced)
    for other in load_checkpoints(storage, site, progress.window):
        if other.window != progress.window:
            _discard(storage, other)
    progress = replace(progress, state="complete")
    save_checkpoint(storage, progress)
    storage.delete_prefix(staging_dir(site, attempt))
    return progress


def _commit_timeseries(storage: Storage, lease: SiteLease, progress: Checkpoint) -> int:
    """One Delta commit: the window's time range of the site now holds exactly the staged rows. Skipped
    (the log's version returned) when a run that crashed before its checkpoint said so already made it."""
    site, attempt = progress.site, progress.attempt
    if lake.committed(storage, TIMESERIES, attempt):
        return lake.version(storage, TIMESERIES) or 0
    files = [p for p in progress.files if in_dataset(p, TIMESERIES)]
    window = progress.window
    if lake.whole_days(window.start, window.end):
        # The staged pages become the table's files as they are: the commit writes no row again.
        placed = []
        for path in files:
            placed.append(_placed(progress, path))
            if storage.exists(staged(site, attempt, path)):
                storage.rename(staged(site, attempt, path), placed[-1])
        lease.check()
        return lake.replace_days(storage, TIMESERIES, site, window.start, window.end, placed, attempt=attempt)

    def pages() -> Iterator[pl.DataFrame]:
        yield pl.DataFrame(schema=schemas.TIMESERIES)  # the stream's schema, even for a window without rows
        for path in files:
            yield storage.read_parquet(staged(site, attempt, path))

    lease.check()
    return lake.replace_range(storage, TIMESERIES, site, window.start, window.end, pages, attempt=attempt)


def _placed(progress: Checkpoint, staged_page: str) -> str:
    return placed_path(lake.site_key(progress.site), staged_page)


def quarantine_checkpoint(storage: Storage, progress: Checkpoint, reason: str) -> None:
    path = checkpoint_path(progress.site, progress.window)
    if storage.exists(path):
        quarantine(storage, path, reason)


# The run that last tidied each (data dir, site). Process-wide because a run's windows take the site's lease
# one by one, in threads or Prefect tasks that share only this process and the run id; keyed by data dir
# and site (so bounded by the sites), it lets each new run of a long-lived worker tidy once again.
_TIDIED: dict[tuple[str, str], str] = {}


def tidy(storage: Storage, site: str, run_id: str) -> None:
    """Before a site's work: set aside files sitting where folders belong, and remove what killed runs left
    (temporary files, staging folders no checkpoint refers to)."""
    for folder in with_parents((*LANDING_DIRS, *site_folders(site))):
        if storage.exists(folder):
            quarantine(storage, folder, "a file where a folder belongs")
    # Walking the site's folders once per run is enough, not once per window; a long-lived process (a
    # Prefect worker) serves many runs, and each must clear what a run killed since left behind.
    if _TIDIED.get((storage.uri(), site)) != run_id:
        for folder in (RUNS, LEASES, *site_folders(site)):
            storage.clean_temporaries(folder)
        _TIDIED[(storage.uri(), site)] = run_id
    waiting = staged_attempts(storage, site)
    if waiting:  # rare: only after a crash or while a window is running
        live = {c.attempt for c in load_checkpoints(storage, site) if not c.complete}
        for attempt in waiting - live:
            storage.delete_prefix(staging_dir(site, attempt))


def _discard(storage: Storage, checkpoint: Checkpoint) -> None:
    clear_checkpoint(storage, checkpoint)
    storage.delete_prefix(staging_dir(checkpoint.site, checkpoint.attempt))


def summed(done: Sequence[Checkpoint]) -> Checkpoint:
    first = done[0]
    return replace(
        first,
        next_page=sum(c.next_page for c in done),
        records_fetched=sum(c.records_fetched for c in done),
        records_kept=sum(c.records_kept for c in done),
        records_filtered=sum(c.records_filtered for c in done),
        records_rejected=sum(c.records_rejected for c in done),
    )


def _stage_selection(storage: Storage, progress: Checkpoint, path: str, configured: Sequence[str]) -> None:
    """The points this attempt was asked for, one row each: what coverage and gaps are measured against."""
    names = sorted(set(progress.selector.among(configured)) | set(progress.names))
    frame = pl.DataFrame(
        {
            "site_name": [progress.site] * len(names),
            "point_name": names,
            "window_start": [progress.window.start] * len(names),
            "window_end": [progress.window.end] * len(names),
        },
        schema=SELECTIONS_SCHEMA,
    )
    storage.write_parquet_atomic(staged(progress.site, progress.attempt, path), frame)


SELECTIONS_SCHEMA = schemas.SELECTIONS


def _land_pages(
    client: AceClient,
    storage: Storage,
    lease: SiteLease,
    progress: Checkpoint,
    stats: RequestStats,
    on_page: OnPage | None,
) -> Checkpoint:
    site, window = progress.site, progress.window
    if progress.state == "publishing":
        return progress
    pages = iter_pages(
        client,
        site,
        window.start,
        window.end,
        page_size=progress.page_size,
        cursor=progress.next_cursor,
        first_page_number=progress.next_page,
        stats=stats,
    )
    keys = StagedKeys(storage, site, progress.attempt, progress.files)
    normalize = partial(normalize_samples, site=site, window=window, selector=progress.selector)

    def normalized(page: Page) -> tuple[Page, PageRows]:
        return page, normalize(page.samples, collected_at=_now())

    # Three stages, each on a thread of its own: page n+2 is fetched while page n+1 is decoded and normalized
    # (Polars, mostly off the GIL) and page n staged. Each stage holds one page, so a window still never
    # holds more than a few pages, whatever its length.
    with Prefetched(pages) as fetched, Prefetched(map(normalized, fetched)) as ahead:
        for page, rows in ahead:
            progress = _land_page(storage, lease, normalize, progress, page, rows, keys, on_page)
            del page, rows  # not alive while the next one is awaited
    return progress


def _land_page(
    storage: Storage,
    lease: SiteLease,
    normalize: Callable[..., PageRows],
    progress: Checkpoint,
    page: Page,
    rows: PageRows,
    keys: StagedKeys,
    on_page: OnPage | None,
) -> Checkpoint:
    """Stage the page's files, then the checkpoint that says they are there. A sample an earlier page
    already staged is a reject: the window's commit holds each key once. `normalize` made `rows`."""
    site, window = progress.site, progress.window
    held = keys.held(rows.kept)
    if held.height:  # rare: normalized again, now knowing what the earlier pages hold
        rows = normalize(page.samples, collected_at=_now(), held=held)
    lease.check()
    files = write_page(storage, site, window, progress.attempt, page.number, rows)
    keys.add(files, rows.kept)
    progress = progress.after_page(rows, files, next_cursor=page.next_cursor, has_more=page.has_more)
    save_checkpoint(storage, progress)
    if on_page is not None:
        on_page(site, window, page.number, rows.fetched)
    return progress


def _now() -> datetime:
    return datetime.now(UTC)
