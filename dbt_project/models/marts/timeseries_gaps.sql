{{ config(materialized='view') }}

select
    point_days.site_name,
    point_days.point_name,
    gap.gap_start,
    gap.gap_end,
    gap.missing_samples,
    point_days.expected_interval_s,
    point_days.day,
    coalesce(checks.heal_attempts, 0) as heal_attempts,
    checks.last_checked_at,
    -- confirmed: the API was asked again and again and has nothing for it; open: may still be filled
    case
        when coalesce(checks.heal_attempts, 0) >= {{ var('gap_confirmed_after') }} then 'confirmed'
        else 'open'
    end as status
from {{ ref('int_timeseries__point_days') }} as point_days,
    unnest(point_days.gaps) as gaps(gap)
left join {{ ref('int_gap_checks') }} as checks
    on checks.site_name = point_days.site_name
    and checks.point_name = point_days.point_name
    and checks.gap_start = gap.gap_start
    and checks.gap_end = gap.gap_end
