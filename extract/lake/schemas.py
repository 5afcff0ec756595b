"""The landing's file schemas, defined once: every writer (extract, heal, the test factory) uses these, and
a test checks that the dbt staging models read the same columns with the same types (docs/DESIGN.md,
"Landing layout")."""

from __future__ import annotations

import polars as pl

UTC_US = pl.Datetime("us", "UTC")

TIMESERIES = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "timestamp": UTC_US,
        "value": pl.Float64(),
        "quality": pl.String(),
        "metadata": pl.String(),
        "collected_at": UTC_US,
    }
)
REJECTS = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "timestamp_raw": pl.String(),
        "value_raw": pl.String(),
        "reason": pl.String(),
        "collected_at": UTC_US,
    }
)
WEATHER_MEASURES = ("temperature", "humidity", "precipitation", "wind_speed")
WEATHER = pl.Schema(
    {
        "site_name": pl.String(),
        "timestamp": UTC_US,
        **{name: pl.Float64() for name in WEATHER_MEASURES},
        "conditions": pl.String(),
        "metadata": pl.String(),
        "collected_at": UTC_US,
    }
)
POINTS = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "collect_enabled": pl.Boolean(),
        "collect_interval": pl.Int64(),
        "collected_at": UTC_US,
        "point_id": pl.Int64(),
        "point_type": pl.String(),
        "units": pl.String(),
        "marker_tags": pl.String(),
        "kv_tags": pl.String(),
        "device_name": pl.String(),
        "device_id": pl.String(),
        "device_address": pl.String(),
        "object_type": pl.String(),
        "object_index": pl.Int64(),
        "object_name": pl.String(),
        "created": UTC_US,
        "updated": UTC_US,
        "api_item": pl.String(),
    }
)
"""A site's configured points: the API's fields read into typed columns (`marker_tags` a JSON list, `kv_tags`
a JSON object), and `api_item`, the whole item as the API sent it (JSON), so no field is ever lost."""
SITES = pl.Schema(
    {
        "site_name": pl.String(),
        "site_id": pl.Int64(),
        "nice_name": pl.String(),
        "address": pl.String(),
        "latitude": pl.Float64(),
        "longitude": pl.Float64(),
        "archived": pl.Boolean(),
        "time_zone": pl.String(),
        "time_zone_source": pl.String(),
        "api_item": pl.String(),
        "collected_at": UTC_US,
    }
)
"""A site's record (`GET /sites/{site}`) and its time zone; `api_item` is the record as the API sent it."""
RUNS = pl.Schema(
    {
        "run_id": pl.String(),
        "site_name": pl.String(),
        "window_start": UTC_US,
        "window_end": UTC_US,
        "status": pl.String(),
        "api_requests": pl.Int64(),
        "retries": pl.Int64(),
        "pages": pl.Int64(),
        "bytes": pl.Int64(),
        "records_fetched": pl.Int64(),
        "records_kept": pl.Int64(),
        "records_filtered": pl.Int64(),
        "records_rejected": pl.Int64(),
        "duration_s": pl.Float64(),
        "error": pl.String(),
        "started_at": UTC_US,
        "finished_at": UTC_US,
    }
)
SELECTIONS = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "window_start": UTC_US,
        "window_end": UTC_US,
    }
)
GAP_CHECKS = pl.Schema(
    {
        "site_name": pl.String(),
        "point_name": pl.String(),
        "gap_start": UTC_US,
        "gap_end": UTC_US,
        "checked_at": UTC_US,
        "samples_found": pl.Int64(),
    }
)

# Landing folder -> schema.
LANDING = {
    "timeseries": TIMESERIES,
    "rejects": REJECTS,
    "weather": WEATHER,
    "points": POINTS,
    "sites": SITES,
    "runs": RUNS,
    "selections": SELECTIONS,
    "gap_checks": GAP_CHECKS,
}

KEY = ("point_name", "timestamp")
"""A sample's key within its site (the site is the timeseries table's partition)."""
KEY_SCHEMA = pl.Schema({name: TIMESERIES[name] for name in KEY})
