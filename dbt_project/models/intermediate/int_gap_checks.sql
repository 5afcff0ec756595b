{{ config(materialized='table') }}

-- Small (one row per checked gap), so read whole each build.

select
    site_name,
    point_name,
    gap_start,
    gap_end,
    count(*) filter (where samples_found = 0) as heal_attempts,
    max(checked_at) as last_checked_at
from {{ ref('stg_landing__gap_checks') }}
group by site_name, point_name, gap_start, gap_end
