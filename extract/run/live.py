"""Live: keep the still-open window current, every few minutes, with about one request per site.

Any run, not only `run --live`, treats a window that has not ended at its as-of this way: the API cannot
have the part after as-of yet, so such a window is landed up to as-of and never called complete; a later
run (the next day's, or the same command again) continues it from there.

The open window gets a `live` checkpoint whose files cover `[window start, live_until)`. Each live run
fetches `[live_until, as-of)` only, inserts the new samples into the timeseries table in one commit (never
a sample the landing already holds) and its rejects as patch files of that checkpoint, and moves live_until
on; once it reaches the window's end the window is
complete, and the daily run finds only late data to settle (its heal step fetches the gaps late uploads
left). A window some other run already owns (a full extraction, or a selection the live checkpoint does
not cover) is left to the regular runs.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

import polars as pl

from extract.api.client import AceClient, RequestStats
from extract.api.pagination import iter_pages
from extract.api.parse import normalize_samples
from extract.api.points import PointSelector
from extract.lake.landing import REJECTS, TIMESERIES, selection_path
from extract.lake.schemas import KEY
from extract.lake.storage import Storage
from extract.run.attempt import SELECTIONS_SCHEMA, Outcome, covered, summed
from extract.run.checkpoint import Checkpoint, load_checkpoints, save_checkpoint
from extract.run.heal import Patch, land_patches, new_rows
from extract.run.job import Job
from extract.run.lease import SiteLease
from extract.windows import Window


def run_live(
    client: AceClient,
    storage: Storage,
    lease: SiteLease,
    job: Job,
    window: Window,
    selector: PointSelector,
    *,
    stats: RequestStats,
    configured: list[str],
    begin: bool = True,
) -> Outcome | None:
    """Bring the window's live checkpoint up to the job's as-of (the caller holds the lease), starting one
    when `begin` and the window has no checkpoint; None when the window belongs to a regular run."""
    site, as_of, page_size = lease.site, job.as_of, job.page_size
    near = load_checkpoints(storage, site, window)
    if covered(near, window, selector):
        return Outcome("skipped", summed([c for c in near if c.complete]))
    live = next((c for c in near if c.state == "live" and c.window == window), None)
    if live is None:
        if near or not begin:
            return None
        live = replace(
            Checkpoint.start(site, window, page_size, uuid.uuid4().hex[:12], selector),
            state="live",
            live_until=window.start.isoformat(),
        )
    elif not live.selector.covers(selector):
        return None
    since = datetime.fromisoformat(live.live_until or window.start.isoformat())
    until = min(as_of, window.end)
    if until > since:
        span = Window(since, until)
        patch = Patch(live)
        for page in iter_pages(client, site, since, until, page_size=page_size, stats=stats):
            rows = normalize_samples(
                page.samples,
                site=site,
                collected_at=as_of,
                window=span,
                selector=live.selector,
                held=patch.kept,  # a sample an earlier page sent is a reject, not a second insert
            )
            lease.check()
            kept = new_rows(storage, live, rows.kept, KEY, TIMESERIES)
            bad = new_rows(storage, live, rows.rejects, ("point_name", "timestamp_raw", "value_raw"), REJECTS)
            patch = replace(
                patch,
                kept=pl.concat([patch.kept, kept]),
                rejects=pl.concat([patch.rejects, bad]),
                filtered=patch.filtered + rows.fetched - kept.height - bad.height,
            )
        lease.check()
        (live,) = land_patches(storage, site, [patch])  # one commit for the run's new samples
        live = replace(live, live_until=until.isoformat(), next_page=live.next_page + 1)
    live = _asked(storage, live, configured)
    if until >= window.end:
        live = replace(live, state="complete")
    save_checkpoint(storage, live)
    return Outcome("complete" if live.complete else "live", live)


def _asked(storage: Storage, live: Checkpoint, configured: list[str]) -> Checkpoint:
    """(Re)write the window's selection file for what live runs have covered so far."""
    path = selection_path(live.site, live.window, live.attempt)
    names = sorted(set(live.selector.among(configured)) | set(live.names))
    until = datetime.fromisoformat(live.live_until or live.window.start.isoformat())
    frame = pl.DataFrame(
        {
            "site_name": [live.site] * len(names),
            "point_name": names,
            "window_start": [live.window.start] * len(names),
            "window_end": [until] * len(names),
        },
        schema=SELECTIONS_SCHEMA,
    )
    storage.write_parquet_atomic(path, frame)
    return live if path in live.files else replace(live, files=(*live.files, path))
