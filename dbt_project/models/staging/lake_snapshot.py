"""The current snapshot of the landing's Delta tables: one row per data file (from the Delta log, never a
directory listing, which would also find replaced files not vacuumed yet). The staging models read exactly
these files, and the raw models' load records compare them with what they have loaded."""

import os

import polars as pl

from extract import lake
from extract.storage import is_object_store, normalize_location

TABLES = ("timeseries", "weather")


def model(dbt, session):
    dbt.config(materialized="table", schema="internal")
    location = normalize_location(os.environ.get("ACE_ETL_DATA_DIR", "../data"))
    if not is_object_store(location):
        location = os.path.abspath(location)
    frames = [
        lake.snapshot_files(f"{location}/landing/{table}").with_columns(dataset=pl.lit(table))
        for table in TABLES
    ]
    return (
        pl.concat(frames).select("dataset", "path", "size_bytes", "modified_at", "rows", "version").to_arrow()
    )
