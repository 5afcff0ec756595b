{{ config(unique_key=['site_name', 'point_name', 'day']) }}

-- Rolled up from timeseries_hourly (sixty times fewer rows than the samples), recomputing only the days
-- holding an hour that changed since this model last ran.

with new_hours as (
    select min(hour) as first_at, max(hour) as last_at
    from {{ ref('timeseries_hourly') }}
    where {{ written_since_last_build() }}
)

select
    site_name,
    point_name,
    {{ utc_day('hour') }} as day,
    sum(sample_count)::bigint as sample_count,
    min(value_min) as value_min,
    max(value_max) as value_max,
    sum(value_avg * sample_count) / sum(sample_count) as value_avg,
    arg_min(value_first, hour) as value_first,
    arg_max(value_last, hour) as value_last,
    {{ build_started_at() }} as created_at
from {{ ref('timeseries_hourly') }}
where hour >= (select {{ utc_day('first_at') }} from new_hours)
  and hour < (select {{ utc_day('last_at') }} + interval 1 day from new_hours)
group by site_name, point_name, day
having bool_or({{ written_since_last_build() }})
order by site_name, point_name, day
