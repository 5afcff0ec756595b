"""Pure transforms: page bytes -> raw frame -> (typed rows, rejects). No I/O, no Python loop over samples.

Both API shapes of DESIGN.md are read in one pass: the schema lists the keys of both and Polars leaves the
absent ones null, which also tells us which shape arrived.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from extract.errors import InvalidBodyError

# Every sample column is read as text: a real server may send numbers, numeric strings or booleans in
# `value`, and timestamps in several ISO spellings; coercion happens below, vectorized, with reasons.
RAW_COLUMNS = ("point_name", "timestamp", "value", "quality", "metadata")
RAW_SCHEMA = {name: pl.String for name in RAW_COLUMNS}

_REAL_SAMPLE = pl.Struct({"name": pl.String, "time": pl.String, "value": pl.String})
_SEED_SAMPLE = pl.Struct(
    {"point_name": pl.String, "timestamp": pl.String, "value": pl.String, "quality": pl.String, "metadata": pl.String}
)
_SEED_SAMPLE_NO_METADATA = pl.Struct(
    {"point_name": pl.String, "timestamp": pl.String, "value": pl.String, "quality": pl.String}
)
_PAGINATION = pl.Struct({"next_cursor": pl.String, "has_more": pl.Boolean})


def _page_schema(seed_sample: pl.Struct) -> dict[str, pl.DataType]:
    return {
        "point_samples": pl.List(_REAL_SAMPLE),
        "data": pl.List(seed_sample),
        "next_cursor": pl.String,
        "has_more": pl.Boolean,
        "pagination": _PAGINATION,
    }


@dataclass(frozen=True)
class RawPage:
    """One decoded page: samples as text columns (RAW_COLUMNS) plus the pagination fields."""

    samples: pl.DataFrame
    next_cursor: str | None
    has_more: bool


def decode_timeseries_page(body: bytes) -> RawPage:
    """Decode a timeseries page of either shape. Raises InvalidBodyError (retryable) on truncated or
    malformed JSON or an unknown shape."""
    try:
        envelope = pl.read_json(io.BytesIO(body), schema=_page_schema(_SEED_SAMPLE))
        seed_metadata: pl.Series | None = None
    except pl.exceptions.PolarsError:
        # Seed-shape metadata may be a JSON object rather than a string; a String schema cannot hold it,
        # so read without it and re-encode the inferred structs to JSON text (slower, seed shape only).
        envelope, seed_metadata = _decode_with_object_metadata(body)
    if envelope.height != 1:
        raise InvalidBodyError(f"timeseries page is not a JSON object ({len(body)} bytes)")
    row = envelope.row(0, named=True)
    if row["point_samples"] is not None:
        samples = (
            envelope.select(pl.col("point_samples").explode(empty_as_null=False))
            .unnest("point_samples")
            .rename({"name": "point_name", "time": "timestamp"})
            .with_columns(quality=pl.lit(None, pl.String), metadata=pl.lit(None, pl.String))
        )
        next_cursor, has_more = row["next_cursor"], row["has_more"]
    elif row["data"] is not None:
        samples = envelope.select(pl.col("data").explode(empty_as_null=False)).unnest("data")
        if seed_metadata is not None:
            samples = samples.with_columns(metadata=seed_metadata)
        pagination = row["pagination"] or {}
        next_cursor, has_more = pagination.get("next_cursor"), pagination.get("has_more")
    else:
        raise InvalidBodyError(
            f"timeseries page has neither 'point_samples' nor 'data' ({len(body)} bytes): not an ACE IoT API response"
        )
    return RawPage(
        samples=samples.select(pl.col(c).cast(pl.String) for c in RAW_COLUMNS),
        next_cursor=next_cursor or None,
        has_more=bool(has_more) if has_more is not None else next_cursor is not None,
    )


def _decode_with_object_metadata(body: bytes) -> tuple[pl.DataFrame, pl.Series]:
    try:
        envelope = pl.read_json(io.BytesIO(body), schema=_page_schema(_SEED_SAMPLE_NO_METADATA))
        inferred = pl.read_json(io.BytesIO(body), infer_schema_length=None)
        metadata = inferred.select(pl.col("data").explode().struct.field("metadata")).to_series()
    except pl.exceptions.PolarsError as exc:
        raise InvalidBodyError(f"timeseries page is not valid JSON ({len(body)} bytes): {exc}".splitlines()[0]) from exc
    if metadata.dtype != pl.String:
        metadata = metadata.to_frame().select(pl.col("metadata").struct.json_encode()).to_series()
    return envelope, metadata
