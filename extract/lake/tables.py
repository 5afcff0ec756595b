"""The landing's Delta Lake tables (delta-rs): every Delta read and write goes through here.

`landing/timeseries` and `landing/weather` are Delta tables partitioned by `site_key` and `day` (the UTC
date of `timestamp`), so one site's day is one partition. `site_key` and `day` exist only in the log and
the folder names; every contract column (`site_name`, `timestamp`, ...) stays in the files, so a reader of
the snapshot's file list needs no hive parsing. Readers go through the log's current snapshot, never a
directory glob: replaced files stay on disk until vacuumed.

Writes are single commits: a window attempt replaces its site's time range (a predicate overwrite), heal
and live runs insert only the samples the table does not hold (a merge), weather keeps the latest fetch per
(site, time) (a merge). Concurrent writers are settled by the log (the store's conditional put): the loser
of a race reloads and tries again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from extract.errors import ConfigError, LakeError
from extract.lake import schemas
from extract.lake.landing import dataset_name, partition_of, table_path
from extract.lake.storage import Storage, is_object_store

if TYPE_CHECKING:
    import pyarrow as pa

# Partition columns: in the log and the paths only.
PARTITIONS = ["site_key", "day"]
# A commit that lost a race against another writer reloads the table and tries again this often.
COMMIT_ATTEMPTS = 5
# How far back a finished attempt's commit is looked for in the log (one site's lease serialises its own).
HISTORY_DEPTH = 50
ATTEMPT_KEY = "ace_etl.attempt"

log = logging.getLogger(__name__)

_SAFE_KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")


def site_key(site: str) -> str:
    """The partition value of a site: its name when it is made of `[A-Za-z0-9._-]` only, does not start
    with a dot and fits 64 bytes; else an ASCII head, `-` and 16 hex digits of its sha256. No character
    needs escaping in a path, and the key stays far below file-system name limits."""
    if not site:
        raise ConfigError("site name must not be empty")
    if _SAFE_KEY.fullmatch(site) and not site.startswith("."):
        return site
    head = re.sub(r"[^A-Za-z0-9_-]+", "_", site.encode("ascii", "ignore").decode()).strip("_")[:40]
    return f"{head}-{hashlib.sha256(site.encode()).hexdigest()[:16]}"


def storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs options for a table at `uri`: for `s3://`, the standard AWS variables (plain HTTP allowed for
    an http endpoint, e.g. a local S3 server); None for a local path."""
    if not is_object_store(uri):
        return None
    names = (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
    )
    options = {name: os.environ[name] for name in names if os.environ.get(name)}
    if "AWS_REGION" not in options and os.environ.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    if options.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


def table_uri(storage: Storage, table: str) -> str:
    return storage.uri(table)


def _open(uri: str, version: int | None = None) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, version=version, storage_options=storage_options(uri))
    except TableNotFoundError:
        return None


def _with_partitions(rows: pl.DataFrame, table: str) -> pl.DataFrame:
    """`rows` with the partition columns added, once they are checked to be the table's contract: a frame
    missing a column would otherwise become a table schema the warehouse cannot read."""
    expected = schemas.LANDING[dataset_name(table)].names()
    missing = [c for c in expected if c not in rows.columns]
    unexpected = [c for c in rows.columns if c not in expected]
    if missing or unexpected:
        raise LakeError(
            f"rows for {table} do not match its columns (missing {missing}, unexpected {unexpected}): "
            "write exactly the columns of extract.lake.schemas"
        )
    keys = {s: site_key(s) for s in rows.get_column("site_name").unique().to_list()}
    return rows.with_columns(
        site_key=pl.col("site_name").replace_strict(keys, return_dtype=pl.String),
        day=pl.col("timestamp").dt.date(),
    )


def _literal(value: str | datetime) -> str:
    if isinstance(value, datetime):
        return f"'{value.astimezone(UTC).isoformat()}'"
    return "'" + value.replace("'", "''") + "'"


def _site_predicate(site: str, prefix: str = "") -> str:
    return f"{prefix}site_key = {_literal(site_key(site))} AND {prefix}site_name = {_literal(site)}"


def _range_predicate(start: datetime, end: datetime, prefix: str = "") -> str:
    days = (
        f"{prefix}day >= '{start.astimezone(UTC).date()}' AND {prefix}day <= '{end.astimezone(UTC).date()}'"
    )
    return f'{days} AND {prefix}"timestamp" >= {_literal(start)} AND {prefix}"timestamp" < {_literal(end)}'


def _writer_properties() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD")


def _retrying(uri: str, action: str, write: Any) -> Any:
    """Run `write` until it commits: a commit that lost a race (or two writers creating the table at once)
    is retried on the new snapshot, at most COMMIT_ATTEMPTS times."""
    from deltalake.exceptions import CommitFailedError, DeltaError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return write()
        except (CommitFailedError, DeltaError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # not delta-rs's own (it sets no errno): e.g. a staged page that could not be read
            code = _os_errno(exc)
            if code == errno.ENOSPC:
                # delta-rs words a full disk as a DeltaError or an errno-less OSError: the CLI's "no space
                # left" line wants the errno.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), uri) from None
            if attempt == COMMIT_ATTEMPTS or not _conflict(exc):
                fix = "make the data dir writable" if code in _NOT_WRITABLE else "run again"
                raise LakeError(f"{action} in {uri} failed: {_reason(exc, code)}; {fix}") from None
    raise AssertionError("unreachable")


# How delta-rs spells the OS error under a failure: `... (os error 30)` or `Os { code: 30, ... }`.
_OS_ERROR = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _os_errno(exc: Exception) -> int | None:
    found = _OS_ERROR.search(str(exc))
    return None if found is None else int(found.group(1) or found.group(2))


def _reason(exc: Exception, code: int | None) -> str:
    """The failure's first line, and the OS error under it (delta-rs may put that on a later line)."""
    first = _first_line(exc)
    return first if code is None or f"(os error {code})" in first else f"{first}: {os.strerror(code)}"


def _conflict(exc: Exception) -> bool:
    from deltalake.exceptions import CommitFailedError

    # Two writers creating the table at once: the second finds version 0 taken.
    return isinstance(exc, CommitFailedError) or "already exists" in str(exc).lower()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def committed(storage: Storage, table: str, attempt: str) -> bool:
    """Whether a recent commit of `table` was this attempt's (a commit interrupted before its checkpoint
    said so)."""
    dt = _open(table_uri(storage, table))
    if dt is None:
        return False
    return any(entry.get(ATTEMPT_KEY) == attempt for entry in dt.history(limit=HISTORY_DEPTH))


def replace_range(
    storage: Storage,
    table: str,
    site: str,
    start: datetime,
    end: datetime,
    rows: pl.DataFrame | Callable[[], Iterable[pl.DataFrame]],
    *,
    attempt: str,
) -> int:
    """Replace every row of `site` in `[start, end)` with `rows`, in one commit; returns its version.

    `rows` may be a frame, or a function giving the frames one at a time (at least one, maybe empty), e.g. a
    window's staged pages: they are streamed into the commit, so a window is never held in memory whole.
    No rows at all delete the range."""
    from deltalake import CommitProperties, write_deltalake

    uri = table_uri(storage, table)
    predicate = f"{_site_predicate(site)} AND {_range_predicate(start, end)}"
    frames = (lambda: [rows]) if isinstance(rows, pl.DataFrame) else rows

    def write() -> int:
        failure: list[BaseException] = []
        try:
            write_deltalake(
                uri,
                _stream(table, frames, failure),
                mode="overwrite",
                predicate=predicate,
                partition_by=PARTITIONS,
                storage_options=storage_options(uri),
                writer_properties=_writer_properties(),
                commit_properties=CommitProperties(custom_metadata={ATTEMPT_KEY: attempt}),
            )
        except Exception:
            # A page that could not be read fails the commit from inside delta-rs: raise what it was.
            if failure:
                raise failure[0] from None
            raise
        return int(_open(uri).version())

    return int(_retrying(uri, f"replacing {start.isoformat()}..{end.isoformat()} of site {site!r}", write))


def replace_days(
    storage: Storage,
    table: str,
    site: str,
    start: datetime,
    end: datetime,
    files: Sequence[str],
    *,
    attempt: str,
) -> int:
    """Make the site's whole UTC days of `[start, end)` hold exactly the rows of `files`, in one commit;
    returns its version. `files` (paths in the data dir) are Parquet files of the table's columns, one
    site's rows of one day each, already in their partition's folder (`extract.lake.landing.placed_path`):
    the commit adds them as they are, with their statistics from their footers, and removes every other
    file of those partitions. What `replace_range` does for such a range, without writing the rows again."""
    from deltalake import CommitProperties, Schema
    from deltalake.exceptions import DeltaError
    from deltalake.transaction import create_table_with_add_actions

    if not whole_days(start, end):
        raise ValueError(f"not whole days: {start.isoformat()}..{end.isoformat()}")
    uri = table_uri(storage, table)
    key = site_key(site)
    days = [d.isoformat() for d in pl.date_range(start.date(), end.date(), closed="left", eager=True)]
    actions = [_add_action(storage, table, path, key, site) for path in files]
    commit = CommitProperties(custom_metadata={ATTEMPT_KEY: attempt})

    def write() -> int:
        dt = _open(uri)
        if dt is None:
            # The schema write_deltalake would give the table: the contract's columns and the partitions.
            empty = _with_partitions(pl.DataFrame(schema=schemas.LANDING[dataset_name(table)]), table)
            try:
                create_table_with_add_actions(
                    uri, Schema.from_arrow(empty.to_arrow().schema), actions,
                    mode="error", partition_by=PARTITIONS, storage_options=storage_options(uri),
                    commit_properties=commit,
                )  # fmt: skip
                return 0
            except DeltaError:
                dt = _open(uri)
                if dt is None:
                    raise
        dt.create_write_transaction(
            actions, mode="overwrite", schema=dt.schema(), partition_by=PARTITIONS,
            partition_filters=[("site_key", "=", key), ("day", "in", days)], commit_properties=commit,
        )  # fmt: skip
        return int(_open(uri).version())

    return int(_retrying(uri, f"replacing {start.isoformat()}..{end.isoformat()} of site {site!r}", write))


def whole_days(start: datetime, end: datetime) -> bool:
    """Whether `[start, end)` is whole UTC days (the partitions `replace_days` replaces)."""
    return start < end and all(_midnight(moment) == moment for moment in (start, end))


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# Statistics a commit of placed files records beyond row and null counts: those readers prune by (time and
# value ranges) and the site (`snapshot_files` reads it). Strings' bounds from a footer may be truncated, so
# the other text columns have none: a reader then reads the file rather than skip it wrongly.
_BOUNDED = ("timestamp", "collected_at", "value")


def _add_action(storage: Storage, table: str, path: str, key: str, site: str) -> Any:
    """The add action of a placed file, its statistics from its Parquet footer (delta-rs's own, written by
    Polars)."""
    from deltalake.transaction import AddAction

    footer, size = storage.parquet_footer(path)
    groups = [footer.row_group(i) for i in range(footer.num_row_groups)]
    columns = {
        groups[0].column(c).path_in_schema: [g.column(c).statistics for g in groups]
        for c in range(groups[0].num_columns if groups else 0)
    }
    nulls: dict[str, int] = {}
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    for name, stats in columns.items():
        if all(s is not None and s.has_null_count for s in stats):
            nulls[name] = sum(s.null_count for s in stats)
        if name in _BOUNDED and all(s is not None and s.has_min_max for s in stats):
            lows[name] = _stat(min(s.min_raw for s in stats), stats[0].logical_type, high=False)
            highs[name] = _stat(max(s.max_raw for s in stats), stats[0].logical_type, high=True)
    if footer.num_rows:
        lows["site_name"] = highs["site_name"] = site
    summary = {"numRecords": footer.num_rows, "minValues": lows, "maxValues": highs, "nullCount": nulls}
    in_table = table_path(table, path)
    partition = partition_of(in_table)
    if partition.get("site_key") != key:
        raise LakeError(f"{path} is not in a partition of site {site!r}: place it with extract.lake.landing")
    return AddAction(
        path=in_table,
        size=size,
        partition_values=partition,
        modification_time=int(datetime.now(UTC).timestamp() * 1000),
        data_change=True,
        stats=json.dumps(summary),
    )


def _stat(raw: Any, logical: Any, *, high: bool) -> Any:
    """A footer's raw bound as the Delta log writes it. Timestamps are converted here, not by pyarrow:
    its `min` of a zoned timestamp imports pandas (half a second of every process's first commit)."""
    if logical.type != "TIMESTAMP":
        return raw
    unit = json.loads(logical.to_json())["timeUnit"]
    # Exact, to the microsecond: a bound rounded the wrong way would let a reader skip a file it needs.
    if unit == "nanoseconds":
        micros = -(-raw // 1000) if high else raw // 1000
    else:
        micros = raw * 1000 if unit == "milliseconds" else raw
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stream(
    table: str, frames: Callable[[], Iterable[pl.DataFrame]], failure: list[BaseException]
) -> pa.RecordBatchReader:
    """The frames with their partition columns, as one Arrow stream that reads the next frame only when
    delta-rs asks for it; what a frame raised is kept in `failure`."""
    # pyarrow (and numpy under it) is imported where it is used, not with this module: a run's first
    # request does not wait for it.
    import pyarrow as pa

    pages = iter(frames())
    first = _with_partitions(next(pages), table).to_arrow()

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from first.to_batches()
            for page in pages:
                batch = _with_partitions(page, table).to_arrow()
                yield from batch.select(first.schema.names).cast(first.schema).to_batches()
        except BaseException as exc:
            failure.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(first.schema, batches())


def append(storage: Storage, table: str, rows: pl.DataFrame) -> int:
    """Add `rows` as they are (any sites), in one commit; returns the new version. For loaders that keep
    every fetch and leave the choice to the warehouse (tests, benchmarks, upgrades)."""
    from deltalake import write_deltalake

    uri = table_uri(storage, table)

    def write() -> int:
        write_deltalake(
            uri,
            _with_partitions(rows, table).to_arrow(),
            mode="append",
            partition_by=PARTITIONS,
            storage_options=storage_options(uri),
            writer_properties=_writer_properties(),
        )
        return int(_open(uri).version())

    return int(_retrying(uri, "appending rows", write))


def new_rows(storage: Storage, table: str, site: str, rows: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """The rows of `rows` (one site's) whose key the table's current snapshot does not hold."""
    if rows.is_empty():
        return rows
    start, end = rows.get_column("timestamp").min(), rows.get_column("timestamp").max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    held = read(storage, table, site, start, end, columns=list(key), inclusive_end=True)
    if held.is_empty():
        return rows
    return rows.join(held, on=list(key), how="anti", nulls_equal=True)


def insert_new(storage: Storage, table: str, site: str, rows: pl.DataFrame, key: Sequence[str]) -> int:
    """Add the rows whose key the table does not hold, in one commit (none when there are none); returns
    how many were added. A merge, so a row a concurrent writer added meanwhile is not added twice."""
    if rows.is_empty():
        return 0
    return _merge(storage, table, site, rows, key, update=False)


def upsert(storage: Storage, table: str, site: str, rows: pl.DataFrame, key: Sequence[str]) -> int:
    """Insert new keys and overwrite held ones with a fetch at least as recent (`collected_at`): the table
    keeps the latest fetch per key, and a slow re-run never overwrites a newer one. One commit."""
    if rows.is_empty():
        return 0
    return _merge(storage, table, site, rows, key, update=True)


def _merge(
    storage: Storage, table: str, site: str, rows: pl.DataFrame, key: Sequence[str], *, update: bool
) -> int:
    from deltalake import DeltaTable

    uri = table_uri(storage, table)
    data = _with_partitions(rows.unique(subset=list(key), keep="last", maintain_order=True), table).to_arrow()
    start, end = rows.get_column("timestamp").min(), rows.get_column("timestamp").max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    days = sorted({f"'{d}'" for d in data.column("day").to_pylist()})
    on = " AND ".join(
        [_site_predicate(site, "t."), f"t.day IN ({', '.join(days)})", *(f't."{k}" = s."{k}"' for k in key)]
    )

    def write() -> int:
        dt = _open(uri)
        if dt is None:
            # Create the table empty, then merge: appending the rows to a missing table would race another
            # writer doing the same (both see no table; the second append lands every row again). A table
            # made meanwhile is left as it is; losing the race to make it is a conflict, retried (merging
            # into the other writer's table); any other failure is this write's.
            DeltaTable.create(
                uri, data.schema, mode="ignore", partition_by=PARTITIONS, storage_options=storage_options(uri)
            )
            dt = _open(uri)
        merger = dt.merge(
            data, on, source_alias="s", target_alias="t", writer_properties=_writer_properties()
        )
        if update:
            merger = merger.when_matched_update_all(predicate="s.collected_at >= t.collected_at")
        metrics = merger.when_not_matched_insert_all().execute()
        return int(metrics.get("num_target_rows_inserted", 0))

    return int(_retrying(uri, f"merging rows of site {site!r}", write))


def read(
    storage: Storage,
    table: str,
    site: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    columns: list[str] | None = None,
    schema: pl.Schema | None = None,
    inclusive_end: bool = False,
    points: Collection[str] | None = None,
    at_version: int | None = None,
) -> pl.DataFrame:
    """The table's current rows (of `site`, of `points`, in `[start, end)` when given), without the
    partition columns; an empty frame (of `schema`, when given) when the table does not exist yet. Reads
    that must agree with each other (one export in parts) pin the snapshot with `at_version` (`version`)."""
    uri = table_uri(storage, table)
    dt = _open(uri, at_version)
    if dt is None:
        empty = pl.DataFrame(schema=schema) if schema is not None else pl.DataFrame()
        return empty.select(columns) if columns and schema is not None else empty
    frame = pl.scan_delta(dt)
    if site is not None:
        frame = frame.filter(pl.col("site_key") == site_key(site), pl.col("site_name") == site)
    if points is not None:
        frame = frame.filter(
            pl.col("point_name").is_in(pl.Series(sorted(points), dtype=pl.String()).implode())
        )
    if start is not None:
        frame = frame.filter(pl.col("day") >= start.astimezone(UTC).date(), pl.col("timestamp") >= start)
    if end is not None:
        frame = frame.filter(
            pl.col("day") <= end.astimezone(UTC).date(),
            pl.col("timestamp") <= end if inclusive_end else pl.col("timestamp") < end,
        )
    names = columns or [c for c in frame.collect_schema().names() if c not in PARTITIONS]
    return frame.select(names).collect()


def snapshot_files(uri: str) -> pl.DataFrame:
    """The current snapshot's data files of the table at `uri`: `path` (absolute, as readers open it),
    `size_bytes`, `modified_at` (UTC), `rows` and `site_name` (from the log's statistics: every file holds
    one site), the partition (`site_key`, `day`) and the snapshot's `version`; empty when the table does not
    exist yet."""
    schema = pl.Schema(
        {
            "path": pl.String(),
            "size_bytes": pl.Int64(),
            "modified_at": pl.Datetime("us", "UTC"),
            "rows": pl.Int64(),
            "site_name": pl.String(),
            "site_key": pl.String(),
            "day": pl.Date(),
            "version": pl.Int64(),
        }
    )
    dt = _open(uri)
    if dt is None:
        return pl.DataFrame(schema=schema)
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    if actions.is_empty():
        return pl.DataFrame(schema=schema)
    base = uri.rstrip("/")
    return actions.select(
        path=pl.lit(base + "/") + pl.col("path"),
        size_bytes=pl.col("size_bytes").cast(pl.Int64),
        modified_at=pl.from_epoch(pl.col("modification_time"), time_unit="ms")
        .dt.replace_time_zone("UTC")
        .cast(pl.Datetime("us", "UTC")),
        rows=pl.col("num_records").cast(pl.Int64),
        site_name=pl.col("min.site_name").cast(pl.String),
        site_key=pl.col("partition.site_key").cast(pl.String),
        day=pl.col("partition.day").cast(pl.Date),
        version=pl.lit(int(dt.version()), dtype=pl.Int64),
    ).sort("path")


def holds(storage: Storage, table: str, site: str, days: Iterable[date]) -> bool:
    """Whether the table's current snapshot has a file in any of the site's `days` (from its log only)."""
    dt = _open(table_uri(storage, table))
    wanted = sorted({day.isoformat() for day in days})
    if dt is None or not wanted:
        return False
    return bool(
        dt.file_uris(file_pruning_predicate=[("site_key", "=", site_key(site)), ("day", "in", wanted)])
    )


def version(storage: Storage, table: str) -> int | None:
    dt = _open(table_uri(storage, table))
    return None if dt is None else int(dt.version())


def partitions(storage: Storage, table: str) -> pl.DataFrame:
    """The current snapshot's partitions: `site_key`, `site_name`, `day`, `files` and `rows` (from the log)."""
    schema = pl.Schema(
        {
            "site_key": pl.String(),
            "site_name": pl.String(),
            "day": pl.Date(),
            "files": pl.Int64(),
            "rows": pl.Int64(),
        }
    )
    dt = _open(table_uri(storage, table))
    if dt is None:
        return pl.DataFrame(schema=schema)
    actions = pl.DataFrame(dt.get_add_actions(flatten=True))
    if actions.is_empty():
        return pl.DataFrame(schema=schema)
    return (
        actions.group_by(
            site_key=pl.col("partition.site_key"),
            site_name=pl.col("min.site_name").cast(pl.String),
            day=pl.col("partition.day").cast(pl.Date),
        )
        .agg(files=pl.len().cast(pl.Int64), rows=pl.col("num_records").sum().cast(pl.Int64))
        .sort("site_key", "site_name", "day")
    )


def compact_closed(
    storage: Storage, table: str, *, sites: Sequence[str] | None = None, since: date | None = None
) -> list[tuple[str, date]]:
    """Rewrite the small files of every closed day partition (before today, UTC) holding more than one
    file (of `sites`, from `since`, when given) into as few as possible: one commit per partition, no row
    changed. Live runs and heal leave a file per merge; readers of a day then open one file, not hundreds.

    The open day is never touched: a live run is still merging into it. A window commit or a merge of
    another day goes through whatever the compaction does; the compaction itself loses to any commit that
    removed files since its snapshot (delta-rs's optimize checks the whole table) and is retried on the new
    snapshot. Returns the partitions compacted."""
    uri = table_uri(storage, table)
    today = datetime.now(UTC).date()
    held = partitions(storage, table).filter(pl.col("day") < today, pl.col("files") > 1)
    if sites is not None:
        held = held.filter(pl.col("site_name").is_in(list(sites)))
    if since is not None:
        held = held.filter(pl.col("day") >= since)
    done = []
    for key, day in held.select("site_key", "day").unique(maintain_order=True).iter_rows():
        filters = [("site_key", "=", key), ("day", "=", day.isoformat())]

        def write(filters: Any = filters) -> Any:
            return _open(uri).optimize.compact(
                partition_filters=filters, writer_properties=_writer_properties()
            )

        _retrying(uri, f"compacting day {day} of {key!r}", write)
        done.append((key, day))
    return done


def delete_before(storage: Storage, table: str, before: date, site: str | None = None) -> int:
    """Delete every row of the days before `before` (of `site` when given) in one commit: whole day
    partitions, so no file is rewritten. Returns the rows deleted."""
    uri = table_uri(storage, table)
    if _open(uri) is None:
        return 0
    predicate = f"day < '{before.isoformat()}'"
    if site is not None:
        predicate = f"{_site_predicate(site)} AND {predicate}"

    def write() -> int:
        metrics = _open(uri).delete(predicate, writer_properties=_writer_properties())
        return int(metrics.get("num_deleted_rows", 0))

    return int(_retrying(uri, f"deleting the days before {before}", write))


def commit_time(storage: Storage, table: str, version: int) -> datetime | None:
    """When `version` of the table was committed, from its log; None when the log no longer holds it."""
    dt = _open(table_uri(storage, table))
    if dt is None or version > dt.version():
        return None
    entries = dt.history(limit=dt.version() - version + 1)
    found = [e["timestamp"] for e in entries if e.get("version") == version and "timestamp" in e]
    return datetime.fromtimestamp(found[0] / 1000, UTC) if found else None


# Writers on other machines stamp a removal with their own clock: keep an hour more than the arithmetic says.
CLOCK_MARGIN_HOURS = 1


def vacuum(
    storage: Storage, table: str, *, keep_removed_since: datetime | None, keep: Collection[str] = ()
) -> list[str]:
    """Delete the files no snapshot needs any more, keeping every file removed at or after
    `keep_removed_since` (None: delta's own retention, 7 days by default), and never a file of `keep`
    (paths as `snapshot_files` gives them): when the retention would delete one, nothing is deleted (a
    warning says so). Waits for warehouse builds reading the landing. Returns the files deleted."""
    uri = table_uri(storage, table)
    dt = _open(uri)
    if dt is None:
        return []
    hours = None
    if keep_removed_since is not None:
        age = (datetime.now(UTC) - keep_removed_since).total_seconds() / 3600
        hours = max(0, math.ceil(age)) + CLOCK_MARGIN_HOURS
    base = uri.rstrip("/") + "/"

    def sweep(dry_run: bool) -> list[str]:
        found = dt.vacuum(retention_hours=hours, dry_run=dry_run, enforce_retention_duration=hours is None)
        return [p if "://" in p or p.startswith("/") else base + p for p in found]

    with storage.removing_from_landing():
        needed = sorted(set(sweep(dry_run=True)) & set(keep))
        if needed:
            log.warning(
                "vacuum of %s would delete %d file(s) the published warehouse reads (e.g. %s): nothing deleted; "
                "run `ace-etl transform`, then vacuum again",
                uri, len(needed), needed[0],
            )  # fmt: skip
            return []
        return sweep(dry_run=False)
