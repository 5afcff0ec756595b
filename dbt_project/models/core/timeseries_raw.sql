{{ config(
    unique_key=['site_name', 'point_name', 'timestamp'],
    pre_hook="{{ track_landing('timeseries') }}",
    post_hook="{{ landing_loaded() }}",
) }}

-- Each batch goes in sorted by site, point and time. DuckDB keeps min/max per row group, so analysts'
-- filters on site, point or a time range skip most of the table, and so do the incremental delete and
-- the superseded check, which join on this key.

with landed as (
    select * from {{ ref('stg_landing__timeseries') }}
    where {{ landed_since_last_build() }}
),

latest as (
    {{ latest_per_key('landed', ['site_name', 'point_name', 'timestamp'], tie_break=['value', 'quality', 'metadata']) }}
)

select
    {{ stable_id(['site_name', 'point_name', 'epoch_us("timestamp")']) }} as id,
    site_name,
    point_name,
    "timestamp",
    value,
    quality,
    try_cast(metadata as json) as metadata,
    collected_at,
    {{ build_started_at() }} as created_at
from latest
order by site_name, point_name, "timestamp"
