"""The current snapshot of the landing's Delta tables: one row per data file (from the Delta log, never a
directory listing, which would also find replaced files not vacuumed yet), with its partition and the
table version read. The raw views read exactly these files; `lake_changes` compares them with what the last
build read. Kept in the published warehouse: retention never vacuums a file newer than `version`."""

import os

import polars as pl

from extract.lake import tables as lake
from extract.lake.landing import TABLES, dataset_name
from extract.lake.storage import is_object_store, normalize_location
from extract.run import upgrade
from extract.run.datadir import open_storage


def model(dbt, session):
    dbt.config(materialized="table", schema="internal")
    location = normalize_location(os.environ.get("ACE_ETL_DATA_DIR", "../data"))
    if not is_object_store(location):
        location = os.path.abspath(location)
    # `ace-etl` converts an old landing when it opens the data dir; a hand-run dbt does not, and would
    # otherwise build raw views without the old samples and say nothing.
    storage = open_storage(location, upgrade=False)
    if upgrade.pending(storage):
        raise RuntimeError(
            f"the landing under {location} was written before the Delta tables: convert it first with "
            f"`ace-etl upgrade --data-dir {location}`"
        )
    frames = [
        lake.snapshot_files(storage.uri(table)).with_columns(dataset=pl.lit(dataset_name(table)))
        for table in TABLES
    ]
    return (
        pl.concat(frames)
        .select(
            "dataset", "path", "site_key", "site_name", "day", "size_bytes", "modified_at", "rows", "version"
        )
        .to_arrow()
    )
