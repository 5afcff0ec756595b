"""Upkeep of the landing's Delta tables: compaction of closed days, retention, vacuum. What the CLI and the
flows share.

Vacuum deletes files the current snapshot no longer needs, but the published warehouse reads the files of
the snapshot its build listed (`internal.lake_snapshot`, with the Delta `version` read): every file removed
since that version was committed is kept, and vacuum deletes nothing when it cannot tell which version that
is (a warehouse locked, unreadable, or built before the column existed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from extract.errors import AceEtlError, ConfigError, WarehouseError
from extract.lake import retention
from extract.lake import tables as lake
from extract.lake.landing import TABLES as LANDING_TABLES
from extract.lake.landing import dataset_name
from extract.run.datadir import open_storage

TABLES = {dataset_name(table): table for table in LANDING_TABLES}


@dataclass(frozen=True)
class Published:
    version: int
    paths: frozenset[str]


@dataclass
class Vacuumed:
    files: dict[str, int] = field(default_factory=dict)
    """Files deleted per table."""
    warnings: list[str] = field(default_factory=list)
    """Why a table was not vacuumed, one line each."""


def published(data_dir: Path | str) -> dict[str, Published]:
    """Per dataset, the Delta version the published warehouse's build read and the files it lists; empty
    when nothing is published yet. Raises WarehouseError when it cannot be read."""
    from ace_etl.transform import reading, warehouse_file

    warehouse = warehouse_file(data_dir)
    if not warehouse.exists():
        return {}
    with reading(warehouse) as con:
        columns = {c for (c,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'internal' and table_name = 'lake_snapshot'"
        ).fetchall()}  # fmt: skip
        if "version" not in columns:
            raise WarehouseError(
                f"the warehouse {warehouse} does not say which Delta version it reads (built by an older version): "
                "run `ace-etl transform` first"
            )
        rows = con.execute("select dataset, version, path from internal.lake_snapshot").fetchall()
    found: dict[str, tuple[set[int], set[str]]] = {}
    for dataset, version, path in rows:
        versions, paths = found.setdefault(dataset, (set(), set()))
        versions.add(int(version))
        paths.add(path)
    return {d: Published(min(versions), frozenset(paths)) for d, (versions, paths) in found.items()}


def vacuum(data_dir: Path | str) -> Vacuumed:
    """Vacuum both Delta tables, keeping every file the published warehouse may read (see the module)."""
    storage = open_storage(data_dir)
    result = Vacuumed()
    try:
        reads = published(data_dir)
    except AceEtlError as exc:
        result.warnings.append(f"vacuum skipped, nothing deleted: {exc}")
        return result
    for dataset, table in TABLES.items():
        read = reads.get(dataset)
        since = None if read is None else lake.commit_time(storage, table, read.version)
        if read is not None and since is None:
            result.warnings.append(
                f"vacuum of {dataset} skipped, nothing deleted: the published warehouse reads version "
                f"{read.version}, which the Delta log no longer holds; run `ace-etl transform` first"
            )
            continue
        keep = read.paths if read is not None else frozenset()
        result.files[dataset] = len(lake.vacuum(storage, table, keep_removed_since=since, keep=keep))
    return result


@dataclass(frozen=True)
class RetentionResult:
    keep_from: date
    deleted: int
    """Raw samples deleted."""
    vacuumed: Vacuumed


def apply_retention(
    data_dir: Path | str, keep_days: int, sites: list[str] | None = None, *, today: date | None = None
) -> RetentionResult:
    """Delete the raw samples (timeseries) of the days before `today - keep_days` (UTC), then vacuum.
    Weather is kept: one row per site and hour, and no aggregate keeps its history."""
    if keep_days < 1:
        raise ConfigError(
            f"--keep-days must be at least 1, got {keep_days}: give how many days of raw samples to keep"
        )
    keep_from = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    deleted = retention.delete_before(open_storage(data_dir), keep_from, sites)
    return RetentionResult(keep_from, deleted, vacuum(data_dir))


def compact(data_dir: Path | str, sites: list[str] | None = None, days: int | None = None) -> dict[str, int]:
    """Compact the closed days (of `sites`; of the last `days` closed days) of both tables; returns how
    many day partitions were compacted per table."""
    if days is not None and days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}: give how many closed days to look back")
    storage = open_storage(data_dir)
    since = None if days is None else datetime.now(UTC).date() - timedelta(days=days)
    return {
        dataset: len(lake.compact_closed(storage, table, sites=sites, since=since))
        for dataset, table in TABLES.items()
    }
