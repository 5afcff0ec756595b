"""Convert a landing written before the Delta tables, once: nothing lost, nothing fetched again.

Until the landing became Delta Lake, `landing/timeseries` and `landing/weather` held plain Parquet files,
`<dataset>/site_name=<encoded site>/date=<UTC day>/<window key>_<attempt>_p<page>.parquet` (heal and live
patches `..._h<id>.parquet`, weather `<window key>.parquet` or `current_<times>.parquet`), every fetch kept:
a re-fetched range left several files holding the same key, and the warehouse chose per key the latest
`collected_at`, ties going to the greater value, quality and metadata (as text), then to the later file name
(`latest_per_key` in dbt_project/macros/landing.sql). The conversion makes that same choice, with DuckDB's
own text casts, one (site, day) folder at a time, so a landing of any size is never in memory whole:

1. the folder's files (an unreadable one is quarantined with its window's checkpoint: fetched again) are
   read by groups of points (GROUP_ROWS), the latest fetch per key chosen, and each group written to the
   Delta table in one commit: appended while the folder's partitions held nothing, else merged keeping
   the latest `collected_at` (so running it again adds nothing, and rows a newer run landed stay);
2. a marker under `pre-delta/` records that the folder is in the table;
3. its files move to `pre-delta/<same path>` (outside `landing/`, so no reader lists them), the folder
   goes, then the marker.

A crash anywhere is finished by the next run: before the marker the folder is merged again (the same rows,
all files still there; groups already in are matched, not added), after it only the moves remain. The site's lease keeps two upgrading processes
apart. Checkpoints of version 2 stay as they are: a complete one reads as complete
(`extract.run.checkpoint`), so a run of its range fetches nothing; a `publishing` one (a commit an old run left
half done) first takes back the pages it had already moved into the landing, so that its own commit, by the
next run, holds them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, WEATHER, decode_site, staged
from extract.lake.quarantine import set_aside_unreadable
from extract.lake.storage import Storage
from extract.run.checkpoint import load_checkpoints
from extract.run.lease import SiteLease

log = logging.getLogger(__name__)

OLD_SITE = "site_name="
"""Old landing folders; the Delta tables' own are `site_key=` and `_delta_log`."""
ASIDE = "pre-delta"
# A (site, day) folder is converted in groups of points of about this many rows (one merge each): what
# is in memory at once, however large a site's day.
GROUP_ROWS = 500_000
_DONE = ".converted.json"


@dataclass(frozen=True)
class _Dataset:
    """What the old warehouse did with one dataset's files (its raw model's key and `latest_per_key`)."""

    table: str
    schema: pl.Schema
    key: tuple[str, ...]
    tie_break: tuple[str, ...]


DATASETS = (
    _Dataset(
        TIMESERIES,
        schemas.TIMESERIES,
        ("site_name", "point_name", "timestamp"),
        ("value", "quality", "metadata"),
    ),
    _Dataset(WEATHER, schemas.WEATHER, ("site_name", "timestamp"), ()),
)


@dataclass(frozen=True)
class Upgraded:
    """What one upgrade did: (site, day) folders converted, old files moved aside, rows in the tables."""

    folders: int = 0
    files: int = 0
    rows: int = 0

    def __add__(self, other: Upgraded) -> Upgraded:
        return Upgraded(self.folders + other.folders, self.files + other.files, self.rows + other.rows)


def pending(storage: Storage) -> bool:
    """Whether the data dir still holds an old Parquet landing (one folder listing per table)."""
    return any(_old_sites(storage, d) for d in DATASETS)


def upgrade(storage: Storage, *, on_site: Callable[[str, str], None] | None = None) -> Upgraded:
    """Convert every old (site, day) folder of `landing/timeseries` and `landing/weather` into the Delta
    tables; `on_site(table, site)` is told before each site. Idempotent: nothing old, nothing done."""
    run_id = f"upgrade-{uuid.uuid4().hex[:12]}"
    done = Upgraded()
    for dataset in DATASETS:
        for folder in _old_sites(storage, dataset):
            site_dir = f"{dataset.table}/{folder}"
            site = _site_name(storage, site_dir)
            if site is None:
                if not storage.list(site_dir):  # empty folders: what a crash after the last move left
                    storage.delete_prefix(site_dir)
                continue
            if on_site is not None:
                on_site(dataset.table, site)
            with SiteLease(storage, site, run_id) as lease:
                if dataset.table == TIMESERIES:
                    _take_back_unpublished(storage, site)
                for day in storage.folders(site_dir):
                    done += _convert(storage, lease, dataset, f"{site_dir}/{day}")
                # Files outside a day folder were never read by the warehouse: kept aside all the same.
                for path in storage.list(site_dir):
                    storage.rename(path, f"{ASIDE}/{path}")
                storage.delete_prefix(site_dir)
    return done


_CHECKED: set[str] = set()
_CHECKING = threading.Lock()  # the tasks of a flow open their storage on several threads at once


def upgrade_once(storage: Storage) -> None:
    """The automatic upgrade, when a command first opens a data dir in this process: a folder listing when
    there is nothing to do, else the upgrade, announced on the log."""
    with _CHECKING:
        if storage.uri() in _CHECKED:
            return
        if pending(storage):
            log.warning(
                "converting the Parquet landing of %s into its Delta tables (once; nothing is fetched again)",
                storage.uri(),
            )
            done = upgrade(
                storage, on_site=lambda table, site: log.warning("converting %s of site %r", table, site)
            )
            log.warning(
                "landing converted: %d (site, day) folders, %d rows; the old files are in %s",
                done.folders,
                done.rows,
                storage.uri(ASIDE),
            )
        _CHECKED.add(storage.uri())


def _old_sites(storage: Storage, dataset: _Dataset) -> list[str]:
    return [f for f in storage.folders(dataset.table) if f.startswith(OLD_SITE)]


def _site_name(storage: Storage, site_dir: str) -> str | None:
    """The site of an old folder, whose lease guards its conversion: its decoded name, or for a long name
    (hashed) the `site_name` its files carry; None when it has no file to read (another process moved them
    meanwhile: that one converts it)."""
    encoded = site_dir.rsplit("/", 1)[-1].removeprefix(OLD_SITE)
    files = storage.list(site_dir)
    if files and "~" not in encoded:
        with contextlib.suppress(UnicodeDecodeError):
            return decode_site(encoded)
    for path in (f for f in files if _landed(f)):
        with contextlib.suppress(FileNotFoundError):
            return str(storage.read_parquet(path, columns=["site_name"]).get_column("site_name")[0])
    return None


def _take_back_unpublished(storage: Storage, site: str) -> None:
    """A version-2 checkpoint stopped mid-commit had moved some of its pages into the landing already: move
    them back to its staging folder, so they are not converted but committed with the rest of the attempt
    (which replaces what the conversion brings of its window)."""
    for checkpoint in load_checkpoints(storage, site):
        if checkpoint.state != "publishing" or TIMESERIES in checkpoint.commits:
            continue
        for path in checkpoint.files:
            waiting = staged(site, checkpoint.attempt, path)
            if path.startswith(TIMESERIES + "/") and not storage.exists(waiting) and storage.exists(path):
                storage.rename(path, waiting)


def _convert(storage: Storage, lease: SiteLease, dataset: _Dataset, folder: str) -> Upgraded:
    """One old (site, day) folder into the table, then aside (see the module's steps)."""
    marker = f"{ASIDE}/{folder}/{_DONE}"
    rows = 0
    if not storage.exists(marker):
        landed = [f for f in storage.list(folder) if _landed(f)]
        unreadable = set(set_aside_unreadable(storage, landed))
        files = [f for f in landed if f not in unreadable]
        keys = _keys(storage, files, dataset)
        # Partitions the table has nothing in yet (the usual case) take plain appends: a merge reads the
        # whole partition each time. Once one holds rows (a re-run after a crash, rows a newer run landed),
        # merges: the latest fetch wins, nothing is added twice.
        fresh = not any(
            lake.holds(storage, dataset.table, str(site), part.get_column("timestamp").dt.date().unique())
            for (site,), part in keys.partition_by("site_name", as_dict=True).items()
        )
        for points in _point_groups(keys):
            chosen = latest(storage, files, dataset, points)
            lease.check()
            if fresh:
                lake.append(storage, dataset.table, chosen)
            else:
                for (site,), part in chosen.partition_by("site_name", as_dict=True).items():
                    lake.upsert(storage, dataset.table, str(site), part, dataset.key)
            rows += chosen.height
        storage.write_bytes_atomic(marker, json.dumps({"rows": rows}).encode())
    files = storage.list(folder)
    for path in files:
        storage.rename(path, f"{ASIDE}/{path}")
    storage.delete_prefix(folder)
    storage.delete([marker])
    return Upgraded(1, len(files), rows)


def _keys(storage: Storage, files: list[str], dataset: _Dataset) -> pl.DataFrame:
    """The key columns of every row of `files`."""
    schema = pl.Schema({c: dataset.schema[c] for c in dataset.key})
    frames = [_typed(storage.read_parquet(f, columns=list(dataset.key)), schema) for f in files]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def _point_groups(keys: pl.DataFrame) -> list[pl.Expr]:
    """Filters that split a folder's rows by point into groups of about GROUP_ROWS rows (a point's rows all
    in one group, so each key is chosen among all its fetches): a large site's day is never whole in
    memory. Weather (a few rows a day) is one group."""
    if "point_name" not in keys.columns:
        return [pl.lit(True)]
    counts = keys.group_by("point_name").len().sort("point_name")
    groups = counts.select("point_name", group=(pl.col("len").cum_sum() - 1) // GROUP_ROWS)
    return [
        pl.col("point_name").is_in(part.get_column("point_name").implode())
        for part in groups.partition_by("group", maintain_order=True)
    ]


def _landed(path: str) -> bool:
    """What the old warehouse read: `*.parquet`, without writers' hidden `.x` and `_x` names."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def latest(
    storage: Storage, files: list[str], dataset: _Dataset, rows: pl.Expr | None = None
) -> pl.DataFrame:
    """The rows of `files` (those matching `rows`) the old warehouse kept: one per key, as `latest_per_key`
    ordered them, in the dataset's schema and key order."""
    # The files' rank stands for their names (`storage.list` sorts them): one small integer per row.
    frames = [
        _typed(storage.read_parquet(f).filter(True if rows is None else rows), dataset.schema).with_columns(
            landing_file=pl.lit(i, pl.UInt32)
        )
        for i, f in enumerate(sorted(files))
    ]
    if not frames:
        return pl.DataFrame(schema=dataset.schema)
    landed = pl.concat(frames)
    del frames
    # A key fetched more than once is rare (a re-fetch whose old files stayed): only those are ranked.
    contested = landed.select(pl.struct(dataset.key).is_duplicated()).to_series()
    if contested.any():
        landed = pl.concat([landed.filter(~contested), _rank(landed.filter(contested), dataset)])
    return landed.drop("landing_file").sort(dataset.key)


def _rank(landed: pl.DataFrame, dataset: _Dataset) -> pl.DataFrame:
    """The first row per key in `latest_per_key`'s order, in DuckDB: tie-breaks compare values as its text
    (`9.0` after `10.0`), exactly as the old warehouse did."""
    import duckdb

    key = ", ".join(f'"{c}"' for c in dataset.key)
    order = ", ".join(
        [
            "collected_at desc",
            *(f"coalesce(\"{c}\"::varchar, '') desc" for c in dataset.tie_break),
            "landing_file desc",
        ]
    )
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.register("landed", landed.to_arrow())
        chosen: Any = con.sql(
            f"select * from landed qualify row_number() over (partition by {key} order by {order}) = 1"
        ).arrow()
    return pl.DataFrame(pl.from_arrow(chosen)).cast(dict(landed.schema))  # type: ignore[arg-type]


def _typed(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """The contract's columns with their types, as the old staging models cast them (a column an old file
    lacks is null)."""
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )
