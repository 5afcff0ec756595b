"""Pure transform: raw text samples (`extract.api.decode`) -> (typed rows, rejects). No I/O, no Python loop over
samples. (Weather has its own reader, `extract.api.weather`.)

Every fetched sample ends up in exactly one of kept / filtered out / rejected, decided in this order:
1. no point name                      -> rejected `missing_point_name`
2. point not selected                 -> filtered out (a bad sample of an unwanted point is not our problem)
3. timestamp unreadable               -> rejected `bad_timestamp`
4. timestamp outside `[start, end)`   -> filtered out (it belongs to another window)
5. value null / text / NaN / infinite -> rejected `null_value` / `non_numeric_value` / `non_finite_value`
6. sent again later in the page (same point, same instant however spelled), or already kept from an
   earlier page of the same fetch (`held`)
                                      -> rejected `duplicate_sample`: of a point's samples at one instant,
                                         the last one the page sent is kept, unless an earlier page's was:
                                         that one may be staged or committed already, so it stays
7. otherwise                          -> kept

Absent fields get explicit values rather than nulls: `quality` is `unknown` and `metadata` is `{}` (valid JSON
text, so readers can apply JSON functions without a null check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import polars as pl

from extract.api.points import PointSelector
from extract.lake import schemas
from extract.windows import Window

# The landing schemas live in extract.lake.schemas; these names are this module's outputs.
TIMESERIES_SCHEMA, REJECTS_SCHEMA = schemas.TIMESERIES, schemas.REJECTS
UTC_US = schemas.UTC_US
UNKNOWN_QUALITY = "unknown"
EMPTY_METADATA = "{}"
_REJECTS_ORDER = ("point_name", "timestamp_raw")
# What identifies a sample: the landing holds one row per key and site.


class Reason(StrEnum):
    """Why a sample was rejected (the `reason` column of the rejects)."""

    MISSING_POINT_NAME = "missing_point_name"
    BAD_TIMESTAMP = "bad_timestamp"
    NULL_VALUE = "null_value"
    NON_NUMERIC_VALUE = "non_numeric_value"
    NON_FINITE_VALUE = "non_finite_value"
    DUPLICATE_SAMPLE = "duplicate_sample"


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
    raw: pl.DataFrame,
    *,
    site: str,
    collected_at: datetime,
    window: Window,
    selector: PointSelector,
    held: pl.DataFrame | None = None,
) -> PageRows:
    """Raw text samples (RAW_COLUMNS) -> kept rows (TIMESERIES_SCHEMA, sorted by point_name, timestamp),
    rejects (REJECTS_SCHEMA, with reasons) and the count filtered out; see the module docstring for the rules.
    `held`: the keys (`point_name`, `timestamp`) earlier pages of the fetch kept, whose samples this page
    sends again."""
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
            classified.with_row_index("_row")
            .filter(is_kept)
            .select(
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
                _row="_row",
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
            .sort(*_REJECTS_ORDER, nulls_last=True, maintain_order=True),
        ]
    )
    kept, duplicates = _latest_per_key(sorted_by_point_and_time(kept), held)
    if duplicates.len():
        rejects = pl.concat(
            [
                rejects,
                raw.with_row_index("_row")
                .filter(pl.col("_row").is_in(duplicates.implode()))
                .select(
                    site_name=site_lit,
                    point_name=name,
                    timestamp_raw=pl.col("timestamp"),
                    value_raw=pl.col("value"),
                    reason=pl.lit(Reason.DUPLICATE_SAMPLE.value),
                    collected_at=collected_lit,
                ),
            ]
        ).sort(*_REJECTS_ORDER, nulls_last=True, maintain_order=True)
    return PageRows(
        kept=kept,
        rejects=rejects,
        filtered=raw.height - kept.height - rejects.height,
        fetched=raw.height,
    )


def _latest_per_key(rows: pl.DataFrame, held: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.Series]:
    """Rows sorted by (point_name, timestamp), stably, with their page position in `_row` -> one row per key
    `held` does not hold, the last the page sent (the server's latest word), and the page positions of the
    others."""
    name, timestamp = pl.col("point_name"), pl.col("timestamp")
    superseded = (name == name.shift(-1)) & (timestamp == timestamp.shift(-1))
    flags = rows.select(superseded.fill_null(False)).to_series()
    if held is not None and held.height:
        again = rows.join(held.select(schemas.KEY), on=list(schemas.KEY), how="semi").get_column("_row")
        flags = flags | rows.get_column("_row").is_in(again.implode())
    if not flags.any():
        return rows.drop("_row"), pl.Series("_row", [], pl.UInt32())
    return rows.filter(~flags).drop("_row"), rows.get_column("_row").filter(flags)


def sorted_by_point_and_time(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows ordered by (point_name, timestamp), stably. Pages usually arrive in that order already, and
    checking it costs a fraction of a sort on text keys (time and, above all, memory)."""
    name, timestamp = pl.col("point_name"), pl.col("timestamp")
    previous = name.shift(1)
    in_order = (name > previous) | ((name == previous) & (timestamp >= timestamp.shift(1)))
    if rows.select(in_order.fill_null(True).all()).item():
        return rows
    return rows.sort("point_name", "timestamp", maintain_order=True)
