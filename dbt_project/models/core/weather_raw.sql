{{ config(materialized='view') }}

-- A view over the files of the landing's current Delta snapshot, like timeseries_raw.
-- depends_on: {{ ref('lake_snapshot') }}

{{ raw_rows('weather') }}
