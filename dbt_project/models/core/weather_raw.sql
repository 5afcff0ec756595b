{{ config(
    unique_key=['site_name', 'timestamp'],
    pre_hook="{{ track_landing('weather') }}",
    post_hook="{{ landing_loaded() }}",
) }}

with landed as (
    select * from {{ ref('stg_landing__weather') }}
    where {{ landed_since_last_build() }}
),

latest as (
    {{ latest_per_key('landed', ['site_name', 'timestamp']) }}
)

select
    {{ stable_id(['site_name', 'epoch_us("timestamp")']) }} as id,
    site_name,
    "timestamp",
    temperature,
    humidity,
    precipitation,
    wind_speed,
    conditions,
    try_cast(metadata as json) as metadata,
    collected_at,
    {{ build_started_at() }} as created_at
from latest
order by site_name, "timestamp"
