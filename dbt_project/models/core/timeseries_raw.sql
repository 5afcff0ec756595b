{{ config(materialized='view') }}

-- A view over the files of the landing's current Delta snapshot, listed by path: the warehouse holds no copy
-- of the samples, and a reader needs no extension (a local landing) to query it.
-- depends_on: {{ ref('lake_snapshot') }}

{{ raw_rows('timeseries') }}
