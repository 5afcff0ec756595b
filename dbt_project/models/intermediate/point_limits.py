"""Each point's limits: the first rule of the user's limits file (ACE_LIMITS_FILE, set by `ace-etl
transform --limits-file` and the flows' `limits_file`), then of the bundled defaults, that matches the
point's name, marker tags and units (ace_etl/limits.py). Rebuilt whole every build: a few rows per point.
`timeseries_excursions` recomputes every day of a point whose row here changed since its last build."""

import polars as pl

from ace_etl.limits import load_rules, resolve
from extract.lake.tables import site_key


def model(dbt, session):
    dbt.config(materialized="table", schema="internal")
    limits = resolve(load_rules(), dbt.ref("points").pl())
    # The Delta partition key of the site: which lake files hold the point's samples.
    keys = limits.get_column("site_name").map_elements(site_key, return_dtype=pl.String)
    return limits.with_columns(site_key=keys).to_arrow()
