{{ config(materialized='view') }}

select
    point_days.site_name,
    point_days.point_name,
    gap.gap_start,
    gap.gap_end,
    gap.missing_samples,
    point_days.expected_interval_s,
    point_days.day
from {{ ref('int_timeseries__point_days') }} as point_days,
    unnest(point_days.gaps) as gaps(gap)
