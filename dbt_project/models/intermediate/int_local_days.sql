{{ config(materialized='table') }}

-- The site-local days an incremental build recomputes: those overlapping a (site, UTC day) partition of
-- the timeseries table that changed (lake_changes). A local day spans two UTC days, so a changed UTC day
-- recomputes the one or two local days it overlaps, reading every partition they overlap. Sites whose zone
-- changed (int_site_zone_changes) are recomputed whole instead, and are left out here.

with changed as (
    select changes.site_name, changes.site_key, changes.day, coalesce(sites.time_zone, 'UTC') as time_zone
    from {{ ref('lake_changes') }} as changes
    left join {{ ref('sites') }} as sites using (site_name)
    where changes.dataset = 'timeseries' and changes.present
      and changes.site_name not in (select site_name from {{ ref('int_site_zone_changes') }})
),

days as (
    select distinct
        site_name,
        site_key,
        time_zone,
        unnest(generate_series(
            {{ local_day('day::timestamptz', 'time_zone') }},
            {{ local_day('day::timestamptz + interval 1 day - interval 1 microsecond', 'time_zone') }},
            interval 1 day
        ))::date as day
    from changed
)

select
    site_name,
    site_key,
    day,
    time_zone,
    {{ local_midnight('day', 'time_zone') }} as day_start,
    {{ local_midnight('day + 1', 'time_zone') }} as day_end
from days
order by site_name, day
