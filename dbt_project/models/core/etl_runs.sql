{{ config(materialized='table') }}

-- Small (one row per run, site and window), so rebuilt whole on every build.

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
    finished_at
from {{ ref('stg_landing__runs') }}
qualify row_number() over (
    partition by run_id, site_name, window_start order by finished_at desc, landing_file desc
) = 1
order by started_at, site_name, window_start
