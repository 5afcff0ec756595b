{{ config(materialized='table') }}

-- The extractor keeps one points file per site, replaced on each fetch: small, so read whole every build.

select
    site_name,
    point_name,
    collect_enabled,
    collect_interval,
    collected_at
from {{ ref('stg_landing__points') }}
qualify row_number() over (
    partition by site_name, point_name order by collected_at desc, landing_file desc
) = 1
order by site_name, point_name
