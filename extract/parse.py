"""Pure transforms: page bytes -> raw frame -> (typed rows, rejects). No I/O, no Python loop over samples.

Both API shapes of docs/DESIGN.md are read in one pass: the schema lists the keys of both and Polars leaves the
absent ones null, which also tells us which shape arrived. The real API's compact spelling, by far the most
common page, first gets a faster and leaner reading as NDJSON (`_decode_compact_real`).

Every fetched sample ends up in exactly one of kept / filtered out / rejected, decided in this order:
1. no point name                      -> rejected `missing_point_name`
2. point not selected                 -> filtered out (a bad sample of an unwanted point is not our problem)
3. timestamp unreadable               -> rejected `bad_timestamp`
4. timestamp outside `[start, end)`   -> filtered out (it belongs to another window)
5. value null / text / NaN / infinite -> rejected `null_value` / `non_numeric_value` / `non_finite_value`
6. otherwise                          -> kept

Absent fields get explicit values rather than nulls: `quality` is `unknown` and `metadata` is `{}` (valid JSON
text, so readers can apply JSON functions without a null check).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import polars as pl

from extract import schemas
from extract.errors import InvalidBodyError, UnexpectedResponseError
from extract.points import PointSelector
from extract.windows import Window

# Every sample column is read as text: a real server may send numbers, numeric strings or booleans in
# `value`, and timestamps in several ISO spellings; coercion happens below, vectorized, with reasons.
RAW_COLUMNS = ("point_name", "timestamp", "value", "quality", "metadata")
RAW_SCHEMA = {name: pl.String() for name in RAW_COLUMNS}

_REAL_SAMPLE = pl.Struct({"name": pl.String(), "time": pl.String(), "value": pl.String()})
_SEED_SAMPLE = pl.Struct(
    {
        "point_name": pl.String(),
        "timestamp": pl.String(),
        "value": pl.String(),
        "quality": pl.String(),
        "metadata": pl.String(),
    }
)
_PAGINATION = pl.Struct({"next_cursor": pl.String(), "has_more": pl.Boolean()})


_PAGE_SCHEMA = {
    "point_samples": pl.List(_REAL_SAMPLE),
    "data": pl.List(_SEED_SAMPLE),
    "next_cursor": pl.String(),
    "has_more": pl.Boolean(),
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
    return _decode_compact_real(body) or _decode_any(body)


# The real API's compact spelling: `{"point_samples":[{"name":...},...],"next_cursor":...,"has_more":...}`.
_COMPACT_HEAD = b'{"point_samples":['
_COMPACT_TAIL = b'],"next_cursor":'
# In valid JSON this sequence only occurs between two sample objects: inside a string its `"` would have to
# be escaped, and a nested array split here would leave unbalanced lines, which fail to parse.
_RECORD_SEPARATOR = b'},{"name":'
_REAL_RECORD = {"name": pl.String(), "time": pl.String(), "value": pl.String()}


def _decode_compact_real(body: bytes) -> RawPage | None:
    """The compact real shape read as NDJSON (one sample per line): about three times faster than the general
    reader, with a third of its peak memory. None for any other spelling; the general reader then decides."""
    if not body.startswith(_COMPACT_HEAD):
        return None
    tail_at = body.rfind(_COMPACT_TAIL)
    if tail_at < len(_COMPACT_HEAD) - 1:
        return None
    records = body[len(_COMPACT_HEAD) : tail_at]
    if b"\n" in records:
        return None
    try:
        tail = json.loads(b"{" + body[tail_at + 2 :])
        samples = pl.read_ndjson(
            io.BytesIO(records.replace(_RECORD_SEPARATOR, b'}\n{"name":')), schema=_REAL_RECORD
        )
    except (ValueError, pl.exceptions.PolarsError):
        return None
    if not isinstance(tail, dict):
        return None
    next_cursor, has_more = tail.get("next_cursor"), tail.get("has_more")
    return RawPage(
        samples=samples.select(
            point_name="name",
            timestamp="time",
            value="value",
            quality=pl.lit(None, pl.String()),
            metadata=pl.lit(None, pl.String()),
        ),
        next_cursor=next_cursor or None,
        has_more=bool(has_more) if has_more is not None else next_cursor is not None,
    )


def _decode_any(body: bytes) -> RawPage:
    try:
        envelope = pl.read_json(io.BytesIO(body), schema=_PAGE_SCHEMA)
    except pl.exceptions.PolarsError:
        return _decode_irregular(body)
    if envelope.height != 1:
        raise _unexpected(body, "is not a JSON object")
    # Only the small fields go through Python: `row()` on the sample lists would build 100k dicts per page.
    row = envelope.select(
        real=pl.col("point_samples").is_not_null(),
        seed=pl.col("data").is_not_null(),
        next_cursor="next_cursor",
        has_more="has_more",
        pagination="pagination",
    ).row(0, named=True)
    if row["real"]:
        samples = (
            envelope.select(pl.col("point_samples").explode(empty_as_null=False))
            .unnest("point_samples")
            .rename({"name": "point_name", "time": "timestamp"})
            .with_columns(quality=pl.lit(None, pl.String()), metadata=pl.lit(None, pl.String()))
        )
        next_cursor, has_more = row["next_cursor"], row["has_more"]
    elif row["seed"]:
        samples = envelope.select(pl.col("data").explode(empty_as_null=False)).unnest("data")
        pagination = row["pagination"] or {}
        next_cursor, has_more = pagination.get("next_cursor"), pagination.get("has_more")
    else:
        raise _unexpected(body, "has neither 'point_samples' nor 'data'")
    return RawPage(
        samples=samples.select(pl.col(c).cast(pl.String()) for c in RAW_COLUMNS),
        next_cursor=next_cursor or None,
        has_more=bool(has_more) if has_more is not None else next_cursor is not None,
    )


def _unexpected(body: bytes, what: str) -> UnexpectedResponseError:
    # Whole JSON of the wrong shape will not change when asked again: not retried, unlike a truncated body.
    return UnexpectedResponseError(
        f"timeseries page {what} ({len(body)} bytes): not an ACE IoT API response; check that ACEIOT_API_URL "
        "is the API's base URL (it usually ends in /api)"
    )


def _decode_irregular(body: bytes) -> RawPage:
    """Valid JSON that the typed readers cannot hold, such as an object or array where text or a number is
    expected (seed-shape `metadata` objects, or a malformed `value`): read with the json module, every sample
    field as JSON text, so each sample is still kept or rejected with a reason. A Python loop, but only for
    such pages; truncated or malformed JSON raises InvalidBodyError, which the client retries."""
    try:
        page = json.loads(body)
    except ValueError as exc:
        raise InvalidBodyError(f"timeseries page is not valid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(page, dict):
        raise _unexpected(body, "is not a JSON object")
    keys: tuple[str | None, ...]
    if isinstance(page.get("point_samples"), list):
        records, keys = page["point_samples"], ("name", "time", "value", None, None)
        next_cursor, has_more = page.get("next_cursor"), page.get("has_more")
    elif isinstance(page.get("data"), list):
        records, keys = page["data"], ("point_name", "timestamp", "value", "quality", "metadata")
        pagination = page["pagination"] if isinstance(page.get("pagination"), dict) else {}
        next_cursor, has_more = pagination.get("next_cursor"), pagination.get("has_more")
    else:
        raise _unexpected(body, "has neither 'point_samples' nor 'data'")
    columns = {
        column: [_as_text(r.get(key)) if key and isinstance(r, dict) else None for r in records]
        for column, key in zip(RAW_COLUMNS, keys, strict=True)
    }
    return RawPage(
        samples=pl.DataFrame(columns, schema=RAW_SCHEMA),
        next_cursor=_as_text(next_cursor) or None,
        has_more=bool(has_more) if has_more is not None else next_cursor is not None,
    )


def _as_text(value: object) -> str | None:
    """A JSON value as the typed readers spell it in a text column: strings as is, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


# The landing schemas live in extract.schemas; these names are this module's outputs.
TIMESERIES_SCHEMA, REJECTS_SCHEMA, WEATHER_SCHEMA = schemas.TIMESERIES, schemas.REJECTS, schemas.WEATHER
WEATHER_COLUMNS = schemas.WEATHER_MEASURES
UTC_US = schemas.UTC_US
UNKNOWN_QUALITY = "unknown"
EMPTY_METADATA = "{}"


class Reason(StrEnum):
    """Why a sample was rejected (the `reason` column of the rejects)."""

    MISSING_POINT_NAME = "missing_point_name"
    BAD_TIMESTAMP = "bad_timestamp"
    NULL_VALUE = "null_value"
    NON_NUMERIC_VALUE = "non_numeric_value"
    NON_FINITE_VALUE = "non_finite_value"


_TRUE_WORDS = ("true", "on", "active")
_FALSE_WORDS = ("false", "off", "inactive")
_BOOLEAN_WORDS = {**dict.fromkeys(_TRUE_WORDS, 1.0), **dict.fromkeys(_FALSE_WORDS, 0.0)}
# The real API's own spelling, which Polars parses several times faster than the general formats below.
_CANONICAL = "%Y-%m-%dT%H:%M:%SZ"
# `%.f` makes the fraction optional and `%#z` accepts `Z`, `+hh:mm`, `+hhmm` and `+hh`.
_WITH_OFFSET = "%Y-%m-%dT%H:%M:%S%.f%#z"
_WITHOUT_OFFSET = "%Y-%m-%dT%H:%M:%S%.f"


def parse_timestamps(text: pl.Series) -> pl.Series:
    """ISO-8601 text -> UTC microseconds; null where unreadable. No offset means UTC; `T` or space separator,
    any fraction, `Z`/`z` or a numeric offset. Only the rows the canonical format misses take the slow path."""
    fast = text.str.to_datetime(_CANONICAL, time_unit="us", time_zone="UTC", strict=False, cache=False)
    misses = fast.is_null() & text.is_not_null()
    if not misses.any():
        return fast
    rest = text.filter(misses).str.strip_chars().str.to_uppercase().str.replace(" ", "T", literal=True)
    slow = pl.select(
        pl.coalesce(
            rest.str.to_datetime(_WITH_OFFSET, time_unit="us", time_zone="UTC", strict=False),
            rest.str.to_datetime(_WITHOUT_OFFSET, time_unit="us", strict=False).dt.replace_time_zone("UTC"),
        )
    ).to_series()
    return fast.scatter(misses.arg_true(), slow)


def coerce_values(text: pl.Series) -> pl.Series:
    """Value text -> float64: numbers and numeric strings parsed, boolean words (any case) to 1.0/0.0, anything
    else null. NaN and infinities pass through as such; `reject_reason` turns them into rejects. Only the rows
    that are not plain numbers take the slower path."""
    numbers = text.cast(pl.Float64(), strict=False)
    misses = numbers.is_null() & text.is_not_null()
    if not misses.any():
        return numbers
    rest = text.filter(misses).str.strip_chars()
    words = rest.str.to_lowercase().replace_strict(_BOOLEAN_WORDS, default=None, return_dtype=pl.Float64())
    return numbers.scatter(misses.arg_true(), rest.cast(pl.Float64(), strict=False).fill_null(words))


def reject_reason(name: pl.Expr, timestamp: pl.Expr, value_raw: pl.Expr, value: pl.Expr) -> pl.Expr:
    """The first thing wrong with a sample, or null when it is usable."""
    return (
        pl.when(name.is_null() | (name.str.len_bytes() == 0))
        .then(pl.lit(Reason.MISSING_POINT_NAME.value))
        .when(timestamp.is_null())
        .then(pl.lit(Reason.BAD_TIMESTAMP.value))
        .when(value_raw.is_null())
        .then(pl.lit(Reason.NULL_VALUE.value))
        .when(value.is_null())
        .then(pl.lit(Reason.NON_NUMERIC_VALUE.value))
        .when(~value.is_finite())
        .then(pl.lit(Reason.NON_FINITE_VALUE.value))
    )


@dataclass(frozen=True)
class PageRows:
    """One page split three ways. `fetched == kept.height + filtered + rejects.height` always holds."""

    kept: pl.DataFrame
    rejects: pl.DataFrame
    filtered: int
    fetched: int


def normalize_samples(
    raw: pl.DataFrame, *, site: str, collected_at: datetime, window: Window, selector: PointSelector
) -> PageRows:
    """Raw text samples (RAW_COLUMNS) -> kept rows (TIMESERIES_SCHEMA, sorted by point_name, timestamp),
    rejects (REJECTS_SCHEMA, with reasons) and the count filtered out; see the module docstring for the rules."""
    name, timestamp = pl.col("point_name"), pl.col("_timestamp")
    classified = (
        raw.lazy()
        .with_columns(
            _timestamp=parse_timestamps(raw.get_column("timestamp")),
            _value=coerce_values(raw.get_column("value")),
            _selected=selector.expr("point_name"),
        )
        .with_columns(
            _reason=reject_reason(name, timestamp, pl.col("value"), pl.col("_value")),
            _in_window=(timestamp >= window.start) & (timestamp < window.end),
        )
    )
    reason, in_window, selected = pl.col("_reason"), pl.col("_in_window"), pl.col("_selected")
    missing_name = reason == Reason.MISSING_POINT_NAME.value
    is_reject = missing_name | (selected & (timestamp.is_null() | (in_window & reason.is_not_null())))
    is_kept = selected & in_window.fill_null(False) & reason.is_null()
    site_lit, collected_lit = pl.lit(site, pl.String()), pl.lit(collected_at, UTC_US)
    kept, rejects = pl.collect_all(
        [
            classified.filter(is_kept).select(
                site_name=site_lit,
                point_name=name,
                timestamp=timestamp,
                value=pl.col("_value"),
                quality=pl.col("quality").fill_null(UNKNOWN_QUALITY),
                # Object metadata re-encoded by the decoder reads `null` where a sample had none.
                metadata=pl.when(pl.col("metadata") != "null")
                .then(pl.col("metadata"))
                .otherwise(pl.lit(EMPTY_METADATA)),
                collected_at=collected_lit,
            ),
            classified.filter(is_reject.fill_null(False))
            .select(
                site_name=site_lit,
                point_name=name,
                timestamp_raw=pl.col("timestamp"),
                value_raw=pl.col("value"),
                reason=reason,
                collected_at=collected_lit,
            )
            .sort("point_name", "timestamp_raw", nulls_last=True, maintain_order=True),
        ]
    )
    return PageRows(
        kept=sorted_by_point_and_time(kept),
        rejects=rejects,
        filtered=raw.height - kept.height - rejects.height,
        fetched=raw.height,
    )


def sorted_by_point_and_time(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows ordered by (point_name, timestamp), stably. Pages usually arrive in that order already, and
    checking it costs a fraction of a sort on text keys (time and, above all, memory)."""
    name, timestamp = pl.col("point_name"), pl.col("timestamp")
    previous = name.shift(1)
    in_order = (name > previous) | ((name == previous) & (timestamp >= timestamp.shift(1)))
    if rows.select(in_order.fill_null(True).all()).item():
        return rows
    return rows.sort("point_name", "timestamp", maintain_order=True)


def parse_weather(body: Mapping[str, Any], *, site: str, collected_at: datetime) -> pl.DataFrame:
    """Weather JSON of either shape -> WEATHER_SCHEMA rows, sorted by time; a row whose time cannot be read
    keeps a null `timestamp` (the caller counts it and does not land it).

    Real API (current conditions, one row): each field is `{"value", "time", "units", "source", ...}`; the
    temperature comes from `temp` and the timestamp from its `time`. Seed shape: `{"data": [flat rows]}`.
    Everything not mapped to a column (other fields, units, source, ...) goes into `metadata` as JSON.
    """
    records = body.get("data")
    rows = [_seed_weather_row(r) for r in records] if isinstance(records, list) else [_real_weather_row(body)]
    frame = pl.DataFrame(
        rows,
        schema={
            "timestamp": pl.String(),
            **{n: pl.Float64() for n in WEATHER_COLUMNS},
            "conditions": pl.String(),
            "metadata": pl.String(),
        },
        orient="row",
    )
    return (
        frame.with_columns(timestamp=parse_timestamps(frame.get_column("timestamp")))
        .with_columns(site_name=pl.lit(site, pl.String()), collected_at=pl.lit(collected_at, UTC_US))
        .select(WEATHER_SCHEMA.names())
        .sort("timestamp", nulls_last=True, maintain_order=True)
    )


# Real-API field names -> our columns (only the temperature differs).
_REAL_WEATHER_FIELDS = {"temp": "temperature", **{n: n for n in WEATHER_COLUMNS if n != "temperature"}}


def _real_weather_row(body: Mapping[str, Any]) -> tuple[Any, ...]:
    fields = {key: value if isinstance(value, Mapping) else {"value": value} for key, value in body.items()}
    times = [f.get("time") for key in ("temp", *fields) if (f := fields.get(key)) and f.get("time")]
    columns = {
        column: _to_float(fields.get(key, {}).get("value")) for key, column in _REAL_WEATHER_FIELDS.items()
    }
    conditions = fields.get("conditions", {}).get("value")
    metadata = {
        key: {k: v for k, v in field.items() if k != "value"}
        if key in _REAL_WEATHER_FIELDS or key == "conditions"
        else field
        for key, field in fields.items()
    }
    metadata = {key: field for key, field in metadata.items() if field}
    return (
        times[0] if times else None,
        *(columns[c] for c in WEATHER_COLUMNS),
        None if conditions is None else str(conditions),
        _json_text(metadata),
    )


def _seed_weather_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    mapped = {"timestamp", *WEATHER_COLUMNS, "conditions"}
    conditions = record.get("conditions")
    return (
        record.get("timestamp"),
        *(_to_float(record.get(c)) for c in WEATHER_COLUMNS),
        None if conditions is None else str(conditions),
        _json_text({k: v for k, v in record.items() if k not in mapped}),
    )


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_text(obj: Mapping[str, Any]) -> str:
    # Sorted keys: the same input always lands the same bytes.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str) if obj else EMPTY_METADATA
