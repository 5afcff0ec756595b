"""Heal gaps: re-fetch only the time ranges where samples are missing, and land what the API now has.

Gaps come from the warehouse (`timeseries_gaps`); the caller passes them in. Ranges are fetched site-wide
(the API has no per-point bulk path), coalesced so that nearby gaps of many points cost one pagination.
What comes back is compared with what the landing already holds for that range, and only samples it does
not hold yet are landed: inserted into the timeseries Delta table in one commit (a merge on the sample's
key, so a concurrent writer's rows are not added twice), and rejects as a patch file of the committed
window, added to its manifest. The landing still holds each sample once, and a later re-extraction of the
window replaces the patch too.

Every gap of a complete window that was checked is recorded (`landing/gap_checks`), with how many samples
the check found, so a gap the API cannot fill is retried with backoff, not on every run forever, and
analysts can tell an open gap from one confirmed by repeated checks. A window not complete yet is not
settled: the gaps in the landed part of a `live` window are fetched and what the API has is landed in it (as
a live run would), but no check is recorded, so none of them is ever `confirmed` while its window is open;
gaps where nothing is landed to patch (a window being extracted) are not fetched at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from extract.api import MAX_PAGE_SIZE
from extract.api.client import AceClient, RequestStats
from extract.api.pagination import iter_pages
from extract.api.parse import normalize_samples
from extract.api.points import PointSelector
from extract.lake import retention, schemas
from extract.lake import tables as lake
from extract.lake.landing import (
    REJECTS,
    TIMESERIES,
    gap_check_files,
    gap_checks_path,
    in_dataset,
    patch_path,
    window_files,
)
from extract.lake.schemas import KEY, KEY_SCHEMA
from extract.lake.storage import Storage
from extract.run.checkpoint import Checkpoint, load_checkpoints, save_checkpoint
from extract.run.lease import SiteLease
from extract.windows import Window

# Gaps closer than this are fetched as one range: a request costs more than a few extra samples.
MERGE_WITHIN = timedelta(hours=1)
# Wait before re-checking a gap that a check did not fill: doubles per check, up to a week.
FIRST_RECHECK = timedelta(hours=1)
MAX_RECHECK = timedelta(days=7)

GAP_CHECKS_SCHEMA = schemas.GAP_CHECKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    point_name: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class HealResult:
    site_name: str
    gaps: int
    """Gaps found in the range."""
    deferred: int
    """Gaps not checked this time: checked recently without result (backoff)."""
    unsettled: int
    """Gaps in windows still open: fetched and landed, but not recorded as checked."""
    skipped: int
    """Gaps in windows with nothing landed to patch (not complete, not live): not fetched."""
    ranges: int
    """Time ranges fetched after coalescing."""
    requests: int
    samples: int
    """Samples landed that the landing did not hold."""
    rejected: int


def merge_ranges(gaps: Sequence[Gap], within: timedelta = MERGE_WITHIN) -> list[Window]:
    """The time ranges to fetch: the gaps of every point, merged when they overlap or lie `within` apart."""
    merged: list[Window] = []
    for gap in sorted(gaps, key=lambda g: g.start):
        if merged and gap.start - merged[-1].end <= within:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, gap.end))
        else:
            merged.append(Window(gap.start, gap.end))
    return merged


def due(gaps: Sequence[Gap], checks: pl.DataFrame, now: datetime) -> list[Gap]:
    """The gaps worth checking now: never checked, or last checked long enough ago for their count of
    fruitless checks (the wait doubles each time)."""
    if checks.is_empty():
        return list(gaps)
    history = (
        checks.filter(pl.col("samples_found") == 0)
        .group_by("point_name", "gap_start", "gap_end")
        .agg(pl.len().alias("attempts"), pl.col("checked_at").max().alias("last"))
    )
    seen = {(r["point_name"], r["gap_start"], r["gap_end"]): r for r in history.iter_rows(named=True)}
    ready = []
    for gap in gaps:
        row = seen.get((gap.point_name, gap.start, gap.end))
        if row is None:
            ready.append(gap)
            continue
        wait = min(MAX_RECHECK, FIRST_RECHECK * 2 ** (row["attempts"] - 1))
        if now - row["last"] >= wait:
            ready.append(gap)
    return ready


def load_checks(storage: Storage, site: str) -> pl.DataFrame:
    files = gap_check_files(storage, site)
    if not files:
        return pl.DataFrame(schema=GAP_CHECKS_SCHEMA)
    return pl.concat([storage.read_parquet(f) for f in files], how="vertical_relaxed")


def heal_site(
    client: AceClient,
    storage: Storage,
    lease: SiteLease,
    gaps: Sequence[Gap],
    selector: PointSelector,
    *,
    page_size: int = MAX_PAGE_SIZE,
    force: bool = False,
) -> HealResult:
    """Fetch the site's gap ranges (the caller holds the site's lease) and land the samples that are new.
    The days before the site's retention cutoff were deleted on purpose: no gap there is fetched."""
    site = lease.site
    now = datetime.now(UTC)
    gaps = after_cutoff(gaps, retention.cutoff(storage, site))
    known = (
        load_checkpoints(storage, site, Window(min(g.start for g in gaps), max(g.end for g in gaps)))
        if gaps
        else []
    )
    complete = [(c.window.start, c.window.end) for c in known if c.complete]
    held = [s for s in (_landed(c) for c in known) if s is not None]
    settled: list[Gap] = []
    unsettled: list[Gap] = []
    for gap in gaps:
        if _within(gap, complete):
            settled.append(gap)
        elif _within(gap, held):
            unsettled.append(gap)
    skipped = len(gaps) - len(settled) - len(unsettled)
    if unsettled:
        log.warning(
            "site %r: %d gap(s) lie in windows still open: what the API has is landed, no check is recorded "
            "until the window is complete",
            site, len(unsettled),
        )  # fmt: skip
    if skipped:
        log.warning(
            "site %r: %d gap(s) lie in windows with nothing landed to patch (an extraction under way or to be "
            "redone): not fetched, no check recorded; the run that lands those windows fetches their samples",
            site, skipped,
        )  # fmt: skip
    checked = list(settled) if force else due(settled, load_checks(storage, site), now)
    stats = RequestStats()
    landed = rejected = 0
    found = pl.DataFrame(schema=KEY_SCHEMA)  # the keys landed so far
    patches: dict[Window, Patch] = {}
    ranges = merge_ranges([*checked, *unsettled])
    for span in ranges:
        # Only what a window's files hold can be patched; what was never asked for is not a gap to fill.
        targets = [(c, s[1]) for c in load_checkpoints(storage, site, span) if (s := _landed(c)) is not None]
        for page in iter_pages(client, site, span.start, span.end, page_size=page_size, stats=stats):
            # A sample an earlier page sent is a reject, not a second insert.
            rows = normalize_samples(
                page.samples, site=site, collected_at=now, window=span, selector=selector, held=found
            )
            for i, (c, reach) in enumerate(targets):
                lease.check()
                # A live window's files cover it up to live_until; its next live run lands the rest.
                before = rows.kept.filter(pl.col("timestamp") < reach)
                kept = new_rows(storage, c, before, KEY, TIMESERIES)
                # A reject's time may be unreadable: the range's first window keeps them, once.
                bad = (
                    new_rows(storage, c, rows.rejects, ("point_name", "timestamp_raw", "value_raw"), REJECTS)
                    if i == 0
                    else rows.rejects.clear()
                )
                patch = patches.get(c.window, Patch(c))
                patches[c.window] = replace(
                    patch, kept=pl.concat([patch.kept, kept]), rejects=pl.concat([patch.rejects, bad])
                )
                landed += kept.height
                rejected += bad.height
                found = pl.concat([found, kept.select(KEY)])
    land_patches(storage, site, list(patches.values()))
    _record_checks(storage, site, checked, found, now)
    return HealResult(
        site, len(gaps), len(settled) - len(checked), len(unsettled), skipped, len(ranges), stats.requests,
        landed, rejected,
    )  # fmt: skip


def after_cutoff(gaps: Sequence[Gap], keep_from: date | None) -> list[Gap]:
    """The gaps, or their parts, from the first day retention keeps."""
    if keep_from is None:
        return list(gaps)
    floor = datetime.combine(keep_from, time(), UTC)
    return [replace(g, start=max(g.start, floor)) for g in gaps if g.end > floor]


Span = tuple[datetime, datetime]


def _landed(checkpoint: Checkpoint) -> Span | None:
    """The time range the checkpoint's landed files cover: a complete window, or a live one's part up to
    live_until; None when its files are not in the landing (an extraction under way)."""
    start = checkpoint.window.start
    if checkpoint.complete:
        return start, checkpoint.window.end
    if checkpoint.state == "live" and checkpoint.live_until is not None:
        until = datetime.fromisoformat(checkpoint.live_until)
        return (start, until) if until > start else None
    return None


def _within(gap: Gap, spans: Sequence[Span]) -> bool:
    """Whether the spans together cover all of the gap."""
    reach = gap.start
    for start, end in sorted(spans):
        if start > reach:
            break
        reach = max(reach, end)
    return reach >= gap.end


def new_rows(
    storage: Storage, checkpoint: Checkpoint, rows: pl.DataFrame, key: tuple[str, ...], dataset: str
) -> pl.DataFrame:
    """The rows of `rows` inside the checkpoint's window that its landed files do not hold yet."""
    window = checkpoint.window
    inside = (
        rows.filter(pl.col("timestamp").is_between(window.start, window.end, closed="left"))
        if dataset == TIMESERIES
        else rows
    )
    if dataset == TIMESERIES:
        return lake.new_rows(storage, TIMESERIES, checkpoint.site, inside, key)
    # Every file of the window's range, not only its manifest: a patch written just before a crash (and so
    # missing from the manifest) must not be landed twice.
    files = [f for f in window_files(storage, checkpoint.site, window) if in_dataset(f, dataset)]
    if inside.is_empty() or not files:
        return inside
    held = pl.concat([storage.read_parquet(f, columns=list(key)) for f in files], how="vertical_relaxed")
    return inside.join(held, on=list(key), how="anti", nulls_equal=True)


@dataclass(frozen=True)
class Patch:
    """What a heal or live run found for one landed window: samples and rejects it does not hold yet."""

    checkpoint: Checkpoint
    kept: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=schemas.TIMESERIES))
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=schemas.REJECTS))
    filtered: int = 0


def land_patches(storage: Storage, site: str, patches: Sequence[Patch]) -> list[Checkpoint]:
    """Insert every new sample of the run into the timeseries table in one commit (none when there are
    none), then land each window's new rejects and counts (`patch_window`)."""
    kept = [p.kept for p in patches if p.kept.height]
    if kept:
        found = pl.concat(kept).sort(KEY)
        lake.insert_new(storage, TIMESERIES, site, found, KEY)
    return [patch_window(storage, p.checkpoint, p.kept, p.rejects, filtered=p.filtered) for p in patches]


def patch_window(
    storage: Storage, checkpoint: Checkpoint, kept: pl.DataFrame, rejects: pl.DataFrame, *, filtered: int = 0
) -> Checkpoint:
    """Land the new rejects as a file of the window's committed attempt, added to its manifest, and count
    the new samples (`land_patches` inserted them)."""
    if kept.is_empty() and rejects.is_empty() and not filtered:
        return checkpoint
    site, window = checkpoint.site, checkpoint.window
    written = []
    if rejects.height:
        written.append(patch_path(site, window, checkpoint.attempt, uuid.uuid4().hex[:12]))
        storage.write_parquet_atomic(written[-1], rejects)
    patched = replace(
        checkpoint,
        files=(*checkpoint.files, *written),
        records_kept=checkpoint.records_kept + kept.height,
        records_rejected=checkpoint.records_rejected + rejects.height,
        records_fetched=checkpoint.records_fetched + kept.height + rejects.height + filtered,
        records_filtered=checkpoint.records_filtered + filtered,
    )
    save_checkpoint(storage, patched)
    return patched


def _record_checks(
    storage: Storage, site: str, gaps: Sequence[Gap], found: pl.DataFrame, now: datetime
) -> None:
    if not gaps:
        return
    frame = pl.DataFrame(
        {
            "site_name": [site] * len(gaps),
            "point_name": [g.point_name for g in gaps],
            "gap_start": [g.start for g in gaps],
            "gap_end": [g.end for g in gaps],
            "checked_at": [now] * len(gaps),
        },
        schema={k: v for k, v in GAP_CHECKS_SCHEMA.items() if k != "samples_found"},
    )
    if found.is_empty():
        counted = frame.with_columns(samples_found=pl.lit(0, pl.Int64))
    else:
        pairs = frame.join(found, on="point_name", how="left").filter(
            pl.col("timestamp").is_between(pl.col("gap_start"), pl.col("gap_end"), closed="none")
        )
        hits = pairs.group_by("point_name", "gap_start", "gap_end").agg(samples_found=pl.len().cast(pl.Int64))
        counted = frame.join(hits, on=["point_name", "gap_start", "gap_end"], how="left").with_columns(
            pl.col("samples_found").fill_null(0)
        )
    path = gap_checks_path(site, now, uuid.uuid4().hex[:8])
    storage.write_parquet_atomic(path, counted.select(GAP_CHECKS_SCHEMA.names()))
