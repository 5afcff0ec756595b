"""Pure transform: weather JSON of either API shape -> rows of the landing's weather schema."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from extract.api.parse import EMPTY_METADATA, parse_timestamps
from extract.lake import schemas

WEATHER_COLUMNS = schemas.WEATHER_MEASURES


def parse_weather(body: Mapping[str, Any], *, site: str, collected_at: datetime) -> pl.DataFrame:
    """Weather JSON of either shape -> WEATHER_SCHEMA rows, sorted by time; a row whose time cannot be read
    keeps a null `timestamp` (the caller counts it and does not land it).

    Real API (current conditions, one row): each field is `{"value", "time", "units", "source", ...}`; the
    temperature comes from `temp` and the timestamp from its `time`. Seed shape: `{"data": [flat rows]}`.
    Everything not mapped to a column (other fields, units, source, ...) goes into `metadata` as JSON.
    """
    rows = [_seed_weather_row(r) for r in body["data"]] if is_series(body) else [_real_weather_row(body)]
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
        .with_columns(site_name=pl.lit(site, pl.String()), collected_at=pl.lit(collected_at, schemas.UTC_US))
        .select(schemas.WEATHER.names())
        .sort("timestamp", nulls_last=True, maintain_order=True)
    )


def is_series(body: Mapping[str, Any]) -> bool:
    """Whether the weather JSON is a series over the range asked (seed shape), not the current conditions
    the real API returns whatever the range."""
    return isinstance(body.get("data"), list)


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
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer no float can hold
        return None
    return number if math.isfinite(number) else None


def _json_text(obj: Mapping[str, Any]) -> str:
    # Sorted keys: the same input always lands the same bytes.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str) if obj else EMPTY_METADATA
