"""The landing schemas are defined once (extract.lake.schemas): the dbt staging models read exactly those columns
with the same types, and the core tables' contracts keep the types of the columns they take over."""

from __future__ import annotations

import re

import polars as pl
import pytest
import yaml

from ace_etl.transform import DBT_PROJECT_DIR
from extract.lake import schemas

DUCKDB_TYPES = {
    pl.String(): "varchar",
    pl.Float64(): "double",
    pl.Int64(): "bigint",
    pl.Boolean(): "boolean",
    schemas.UTC_US: "timestamptz",
}
# Core columns that deliberately change type on the way in.
CONVERTED = {
    ("timeseries_raw", "metadata"): "json",
    ("weather_raw", "metadata"): "json",
    ("points", "marker_tags"): "varchar[]",
    ("points", "kv_tags"): "json",
    ("points", "api_item"): "json",
    ("sites", "api_item"): "json",
}


def as_duckdb(schema: pl.Schema) -> dict[str, str]:
    return {name: DUCKDB_TYPES[dtype] for name, dtype in schema.items()}


@pytest.mark.parametrize("dataset", sorted(schemas.LANDING))
def test_staging_reads_the_landing_schema(dataset: str) -> None:
    staging = DBT_PROJECT_DIR / "models" / "staging" / f"stg_landing__{dataset}.sql"
    if staging.exists():
        sql = staging.read_text()
        assert f"source('landing', '{dataset}')" in sql
    else:
        # A Delta table has no staging model: the raw views read its snapshot's files with the columns
        # `lake_columns` declares.
        macros = (DBT_PROJECT_DIR / "macros" / "lake.sql").read_text()
        sql = macros.split(f"dataset == '{dataset}'", 1)[1].split("})", 1)[0]
    declared = dict(re.findall(r"'(\w+)': '(\w+)'", sql))
    assert declared == as_duckdb(schemas.LANDING[dataset])
    assert list(declared) == schemas.LANDING[dataset].names()


def test_core_contracts_keep_the_landing_types() -> None:
    sources = {"timeseries_raw": "timeseries", "weather_raw": "weather", "timeseries_rejects": "rejects",
               "etl_runs": "runs", "points": "points", "sites": "sites"}  # fmt: skip
    checked = 0
    for path in (DBT_PROJECT_DIR / "models" / "core").glob("*.yml"):
        for model in yaml.safe_load(path.read_text())["models"]:
            landing = as_duckdb(schemas.LANDING[sources[model["name"]]])
            for column in model["columns"]:
                if column["name"] in landing:
                    expected = CONVERTED.get((model["name"], column["name"]), landing[column["name"]])
                    assert column["data_type"] == expected, (model["name"], column["name"])
                    checked += 1
    assert checked >= 30
