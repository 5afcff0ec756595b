{{ config(
    unique_key=['run_id', 'site_name', 'window_start'],
    pre_hook="{{ track_landing('runs') }}",
    post_hook="{{ landing_loaded() }}",
) }}

-- One landing file per run, so the files pile up like the samples do: loaded incrementally too.

with landed as (
    select * from {{ ref('stg_landing__runs') }}
    where {{ landed_since_last_build() }}
),

latest as (
    {{ latest_per_key('landed', ['run_id', 'site_name', 'window_start'], newest_by='finished_at') }}
)

select
    run_id,
    site_name,
    window_start,
    window_end,
    status,
    api_requests,
    retries,
    pages,
    bytes,
    records_fetched,
    records_kept,
    records_filtered,
    records_rejected,
    duration_s,
    error,
    started_at,
    finished_at,
    {{ build_started_at() }} as created_at
from latest
order by started_at, site_name, window_start
