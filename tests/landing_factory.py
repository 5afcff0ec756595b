"""Synthetic landing files, written exactly as docs/DESIGN.md's "Landing layout" says.

Tests and benchmarks use this to feed dbt without the extractor: the same Delta tables (through
`extract.lake.tables`), folders, column names, Arrow types, row order and compression, and for the plain Parquet
datasets the same atomic write (temporary hidden name, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from extract.lake import schemas
from extract.lake import tables as lake
from extract.lake.storage import LocalStorage


def _arrow(schema: pl.Schema) -> pa.Schema:
    return pl.DataFrame(schema=schema).to_arrow().schema


# The extractor's own schemas (extract.lake.schemas), as Arrow types.
TIMESERIES, WEATHER, REJECTS, POINTS, SITES, RUNS, SELECTIONS = (
    _arrow(s)
    for s in (
        schemas.TIMESERIES,
        schemas.WEATHER,
        schemas.REJECTS,
        schemas.POINTS,
        schemas.SITES,
        schemas.RUNS,
        schemas.SELECTIONS,
    )
)

_DEFAULTS = {"quality": "unknown", "metadata": "{}"}


def site_folder(site: str) -> str:
    """A folder name no site name can escape (`../x` stays one folder); dbt never reads it back."""
    return "site_name=" + quote(site, safe="")


def samples(
    site: str,
    points: Sequence[str],
    start: datetime,
    count: int,
    *,
    collected_at: datetime,
    every: timedelta = timedelta(minutes=1),
) -> pl.DataFrame:
    """`count` samples per point, one every `every` from `start`, in landing column order. The value says
    where a sample belongs: point index x 10,000 + minute of the UTC day."""
    steps = pl.int_range(0, count, eager=True, dtype=pl.Int64)
    frame = pl.DataFrame({"point_index": range(len(points))}).join(pl.DataFrame({"step": steps}), how="cross")
    timestamp = pl.lit(start) + pl.col("step") * every
    return frame.select(
        site_name=pl.lit(site),
        point_name=pl.Series(list(points)).gather(frame["point_index"]),
        timestamp=timestamp,
        value=(pl.col("point_index") * 10_000 + timestamp.dt.hour() * 60 + timestamp.dt.minute()).cast(
            pl.Float64
        ),
        collected_at=pl.lit(collected_at),
    )


def write_timeseries(data_dir: Path, rows: pl.DataFrame, name: str, *, merge: bool = True) -> list[Path]:
    """Land rows in the timeseries Delta table as the extractor keeps them, each key once: per site, one
    merge that keeps the latest fetch of a key (`collected_at`; an older fetch landing late loses). With
    `merge=False`, one plain append (rows with keys the table does not hold yet, or a planted duplicate).
    Returns the files it added; `name` only tells batches apart in a test's text."""
    return _land(data_dir, "landing/timeseries", rows, TIMESERIES, ["point_name", "timestamp"], merge=merge)


def timeseries_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with every landing column of the timeseries table, typed as the extractor writes them (for
    writing through `extract.lake.tables` directly)."""
    return pl.DataFrame(pl.from_arrow(_typed(rows, TIMESERIES)))


def write_weather(data_dir: Path, rows: pl.DataFrame, name: str) -> list[Path]:
    return _land(data_dir, "landing/weather", rows, WEATHER, ["timestamp"], merge=True)


def _land(
    data_dir: Path, table: str, rows: pl.DataFrame, schema: pa.Schema, sort: list[str], *, merge: bool
) -> list[Path]:
    storage = LocalStorage(data_dir)
    before = set(lake.snapshot_files(storage.uri(table)).get_column("path"))
    typed: pl.DataFrame = pl.from_arrow(_typed(rows.sort(["site_name", *sort]), schema))  # type: ignore[assignment]
    if merge:
        for (site,), part in typed.partition_by("site_name", as_dict=True, maintain_order=True).items():
            lake.upsert(storage, table, str(site), part, ["site_name", *sort])
    else:
        lake.append(storage, table, typed)
    after = lake.snapshot_files(storage.uri(table)).get_column("path")
    return [Path(p) for p in after if p not in before]


def write_rejects(data_dir: Path, rows: pl.DataFrame, name: str) -> list[Path]:
    """Rejects are filed under the day they were collected: their own timestamp may be unreadable."""
    day = rows["collected_at"].dt.date()
    return _write_partitions(data_dir / "landing" / "rejects", rows, name, REJECTS, [], day)


def write_points(data_dir: Path, rows: pl.DataFrame, name: str) -> list[Path]:
    """The metadata columns the rows leave out land as the extractor lands a point the API says nothing
    more about: null, and `[]` for marker_tags."""
    rows = rows.with_columns(
        pl.lit("[]" if column == "marker_tags" else None, dtype).alias(column)
        for column, dtype in schemas.POINTS.items()
        if column not in rows.columns
    )
    written = []
    for (site,), part in rows.partition_by("site_name", as_dict=True, maintain_order=True).items():
        path = data_dir / "landing" / "points" / site_folder(site) / f"{name}.parquet"
        written.append(_write(part, POINTS, path))
    return written


def write_sites(data_dir: Path, rows: pl.DataFrame) -> list[Path]:
    """One file per site, as the extractor lands it; columns the rows leave out are null, except
    `time_zone_source`: `override` where a time zone is given, else `default` with `time_zone` UTC."""
    given = "time_zone" in rows.columns
    rows = rows.with_columns(
        time_zone=pl.col("time_zone") if given else pl.lit("UTC"),
        time_zone_source=pl.lit("override" if given else "default"),
        collected_at=pl.col("collected_at")
        if "collected_at" in rows.columns
        else pl.lit(datetime(2024, 1, 1, tzinfo=UTC)),
    )
    rows = rows.with_columns(
        pl.lit(None, dtype).alias(column)
        for column, dtype in schemas.SITES.items()
        if column not in rows.columns
    )
    written = []
    for (site,), part in rows.partition_by("site_name", as_dict=True, maintain_order=True).items():
        written.append(
            _write(part, SITES, data_dir / "landing" / "sites" / site_folder(site) / "site.parquet")
        )
    return written


def write_selections(data_dir: Path, rows: pl.DataFrame, name: str) -> list[Path]:
    """The points a window was asked for, filed under the date of the window's start."""
    day = rows["window_start"].dt.date()
    return _write_partitions(data_dir / "landing" / "selections", rows, name, SELECTIONS, [], day)


def write_runs(data_dir: Path, rows: pl.DataFrame, name: str) -> Path:
    return _write(rows, RUNS, data_dir / "landing" / "runs" / f"{name}.parquet")


def _write_partitions(
    root: Path, rows: pl.DataFrame, name: str, schema: pa.Schema, sort: list[str], day: pl.Series
) -> list[Path]:
    written = []
    keyed = rows.with_columns(_day=day)
    for (site, date), part in keyed.partition_by(["site_name", "_day"], as_dict=True).items():
        path = root / site_folder(site) / f"date={date.isoformat()}" / f"{name}.parquet"
        ordered = part.drop("_day").sort(sort) if sort else part.drop("_day")
        written.append(_write(ordered, schema, path))
    return written


def _typed(rows: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    missing = {
        column: value
        for column, value in _DEFAULTS.items()
        if column in schema.names and column not in rows.columns
    }
    table = rows.with_columns(**{column: pl.lit(value) for column, value in missing.items()}).select(
        schema.names
    )
    return table.to_arrow().cast(schema)


def _write(rows: pl.DataFrame, schema: pa.Schema, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(_typed(rows, schema), temporary, compression="zstd")
    os.replace(temporary, path)
    return path
