{{ config(unique_key=['site_name', 'point_name', 'day']) }}

-- Rolled up from timeseries_hourly (sixty times fewer rows than the samples), recomputing only the days
-- whose hours changed since this model last ran.

with touched as (
    select distinct site_name, point_name, {{ utc_day('hour') }} as day
    from {{ ref('timeseries_hourly') }}
    where {{ written_since_last_build() }}
),

hours as (
    select *, {{ utc_day('hour') }} as day
    from {{ ref('timeseries_hourly') }}
    where hour >= (select min(day) from touched)
      and hour < (select max(day) from touched) + interval 1 day
)

select
    site_name,
    point_name,
    day,
    sum(sample_count)::bigint as sample_count,
    min(value_min) as value_min,
    max(value_max) as value_max,
    sum(value_avg * sample_count) / sum(sample_count) as value_avg,
    arg_min(value_first, hour) as value_first,
    arg_max(value_last, hour) as value_last,
    {{ build_started_at() }} as created_at
from hours
semi join touched using (site_name, point_name, day)
group by site_name, point_name, day
order by site_name, point_name, day
