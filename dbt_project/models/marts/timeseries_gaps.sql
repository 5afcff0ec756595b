{{ config(materialized='view') }}

-- Unnested first, then joined: written as `point_days, unnest(gaps) left join checks`, DuckDB binds the join
-- to the unnest as a lateral subquery per point-day, and every query of this view (and its tests) cost a
-- second per year of history even with no gap at all.
with found as (
    select site_name, point_name, expected_interval_s, day, unnest(gaps) as gap
    from {{ ref('int_timeseries__point_days') }}
    where len(gaps) > 0
)

select
    found.site_name,
    found.point_name,
    found.gap.gap_start,
    found.gap.gap_end,
    found.gap.missing_samples,
    found.expected_interval_s,
    found.day,
    coalesce(checks.heal_attempts, 0) as heal_attempts,
    checks.last_checked_at,
    -- confirmed: the API was asked again and again and has nothing for it; open: may still be filled
    case
        when coalesce(checks.heal_attempts, 0) >= {{ var('gap_confirmed_after') }} then 'confirmed'
        else 'open'
    end as status
from found
left join {{ ref('int_gap_checks') }} as checks
    on checks.site_name = found.site_name
    and checks.point_name = found.point_name
    and checks.gap_start = found.gap.gap_start
    and checks.gap_end = found.gap.gap_end
