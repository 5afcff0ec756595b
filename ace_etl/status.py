"""`ace-etl status`: what is landed, which windows are live (still open) or unfinished (a run stopped in
them), the failures no later run has made good, the last runs, and the warehouse."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ace_etl.transform import reading, warehouse_file
from extract.errors import WarehouseError
from extract.lake import tables as lake
from extract.lake.landing import QUARANTINE, TIMESERIES, checkpoint_files, quarantined, reason_path, run_files
from extract.lake.storage import Storage
from extract.run.checkpoint import Checkpoint
from extract.run.datadir import open_storage

DAMAGED = "damaged"


def landed_rows(storage: Storage) -> dict[str, tuple[int, int]]:
    """Per site: (files, rows) of the timeseries table's current snapshot, from its Delta log only."""
    files = lake.snapshot_files(storage.uri(TIMESERIES))
    counts = files.group_by("site_name").agg(pl.len(), pl.col("rows").sum())
    return {site: (int(n), int(rows)) for site, n, rows in counts.iter_rows()}


def window_states(storage: Storage) -> dict[str, Counter[str]]:
    """Per site: how many windows are complete, `live` (still open, landed up to a live run's as-of) and
    `unfinished` (a run stopped part-way: they resume on the next run); unreadable checkpoints count under
    `damaged` (the next run of their site sets them aside)."""
    states: dict[str, Counter[str]] = {}
    for path in checkpoint_files(storage):
        try:
            checkpoint = Checkpoint.from_json(storage.read_bytes(path))
        except (ValueError, OSError):
            states.setdefault(DAMAGED, Counter())["unfinished"] += 1
            continue
        state = "complete" if checkpoint.complete else "live" if checkpoint.state == "live" else "unfinished"
        states.setdefault(checkpoint.site, Counter())[state] += 1
    return states


def unresolved_failures(runs: pl.DataFrame) -> pl.DataFrame:
    """The (site, window)s whose latest run failed, newest first: they stay in view until a later run of
    the same window succeeds, however many runs of other sites came since."""
    if not runs.height:
        return runs
    latest = runs.sort("finished_at").group_by("site_name", "window_start").last()
    return latest.filter(pl.col("status") == "failed").sort("finished_at", descending=True)


def all_runs(storage: Storage) -> pl.DataFrame:
    """Every landed runs row, newest first."""
    frames = []
    for path in run_files(storage):
        try:
            frames.append(storage.read_parquet(path))
        except Exception:
            continue  # a damaged runs row is left for `ace-etl transform` to set aside
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="vertical_relaxed").sort("finished_at", descending=True)


def print_status(data_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    storage = open_storage(data_dir)
    console.print(f"Data dir: {storage.uri()}", markup=False)
    landed, states, history = landed_rows(storage), window_states(storage), all_runs(storage)
    if not landed and not states and not history.height:
        console.print(
            "Nothing landed yet. Run `ace-etl demo`, or `ace-etl run --site NAME` with ACEIOT_API_KEY set."
        )
        return
    sites = Table(
        "site", "files", "rows landed", "windows complete", "live (open) windows", "windows unfinished",
        title="Landing",
        caption="live: the still-open window, landed up to the last live run; unfinished: a run stopped in it",
    )  # fmt: skip
    for site in sorted(set(landed) | set(states)):
        files, rows = landed.get(site, (0, 0))
        state = states.get(site, Counter())
        sites.add_row(
            escape(site), f"{files:,}", f"{rows:,}", str(state["complete"]), str(state["live"]), str(state["unfinished"])
        )  # fmt: skip
    console.print(sites)
    failing = unresolved_failures(history)
    if failing.height:
        table = Table(
            "failed", "site", "window start", title="Failing (until a later run of the window succeeds)"
        )
        table.add_column("error", max_width=80, overflow="ellipsis", no_wrap=True)
        for r in failing.iter_rows(named=True):
            table.add_row(
                f"{r['finished_at']:%Y-%m-%d %H:%M:%S}", escape(r["site_name"]), f"{r['window_start']:%Y-%m-%d %H:%M}",
                escape(r["error"] or ""),
            )  # fmt: skip
        console.print(table)
    runs = history.head(10)
    if runs.height:
        table = Table(
            "finished", "site", "window start", "status", "pages", "kept", "rejected", title="Last runs"
        )
        table.add_column("error", max_width=60, overflow="ellipsis", no_wrap=True)
        for r in runs.iter_rows(named=True):
            table.add_row(
                f"{r['finished_at']:%Y-%m-%d %H:%M:%S}", escape(r["site_name"]), f"{r['window_start']:%Y-%m-%d %H:%M}",
                r["status"], str(r["pages"]), f"{r['records_kept']:,}", f"{r['records_rejected']:,}", escape(r["error"] or ""),
            )  # fmt: skip
        console.print(table)
    aside = quarantined(storage)
    if aside:
        console.print(
            f"Quarantine: {len(aside)} damaged file(s) set aside under {storage.uri(QUARANTINE)} "
            f"(each with a {reason_path('')}; the data they held was fetched again)",
            markup=False,
        )
    console.print(f"Warehouse: {warehouse_state(warehouse_file(data_dir))}", markup=False)


def warehouse_state(warehouse: Path) -> str:
    """Where the published warehouse is and when it was published, or why analysts cannot read it."""
    if not warehouse.exists():
        return "not built yet (`ace-etl transform`)."
    built = datetime.fromtimestamp(warehouse.stat().st_mtime, UTC)
    try:
        with reading(warehouse) as con:
            con.execute("select 1 from timeseries_gaps limit 0")
    except WarehouseError as error:
        return f"{warehouse} (published {built:%Y-%m-%d %H:%M:%S} UTC) cannot be read: {error}"
    return f"{warehouse} (published {built:%Y-%m-%d %H:%M:%S} UTC)"
