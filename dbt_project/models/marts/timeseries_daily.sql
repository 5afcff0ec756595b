{{ config(
    incremental_strategy='append',
    pre_hook="{{ forget_changed_partitions('day') }}",
) }}

-- Rolled up from timeseries_hourly (sixty times fewer rows than the samples), recomputing only the
-- partitions (site, day) that changed since the last build. Built whole (a full refresh) from every hour,
-- which keeps the days whose raw samples are gone.
-- depends_on: {{ ref('lake_changes') }}

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
{%- if is_incremental() %}
-- the range lets DuckDB skip the row groups of other days; the partitions pick the changed ones
where hour >= (select min(day) from {{ ref('lake_changes') }} where present)::timestamptz
  and hour < (select max(day) from {{ ref('lake_changes') }} where present)::timestamptz + interval 1 day
  and {{ changed_partitions('timeseries', time='hour') }}
{%- endif %}
group by site_name, point_name, day
order by site_name, point_name, day
