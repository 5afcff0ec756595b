{{ config(
    unique_key='id',
    pre_hook="{{ track_landing('rejects') }}",
    post_hook="{{ landing_loaded() }}",
) }}

-- A rejected sample has no trustworthy timestamp, so its identity is the raw text it came as.

with landed as (
    select
        {{ stable_id(['site_name', 'point_name', 'timestamp_raw', 'value_raw']) }} as id,
        *
    from {{ ref('stg_landing__rejects') }}
    where {{ landed_since_last_build() }}
),

latest as (
    {{ latest_per_key('landed', ['id'], tie_break=['reason']) }}
)

select
    id,
    site_name,
    point_name,
    timestamp_raw,
    value_raw,
    reason,
    collected_at,
    {{ build_started_at() }} as created_at
from latest
order by site_name, point_name, collected_at
