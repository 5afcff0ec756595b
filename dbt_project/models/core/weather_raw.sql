{{ config(materialized='view') }}

-- A view over the files of the landing's current Delta snapshot, like timeseries_raw.
-- depends_on: {{ ref('lake_snapshot') }}
-- Its key test looks at the partitions this build changed: it must not run before lake_changes lists them.
-- depends_on: {{ ref('lake_changes') }}

{{ raw_rows('weather') }}
