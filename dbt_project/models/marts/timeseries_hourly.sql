{{ config(unique_key=['site_name', 'point_name', 'hour']) }}

-- Recomputes only the hours that received new or changed samples since this model last ran. The
-- bounds on "timestamp" let DuckDB skip every row group outside the touched hours.

with touched as (
    select distinct site_name, point_name, date_trunc('hour', "timestamp") as hour
    from {{ ref('timeseries_raw') }}
    where {{ written_since_last_build() }}
),

samples as (
    select site_name, point_name, date_trunc('hour', "timestamp") as hour, "timestamp", value
    from {{ ref('timeseries_raw') }}
    where "timestamp" >= (select min(hour) from touched)
      and "timestamp" < (select max(hour) from touched) + interval 1 hour
)

select
    site_name,
    point_name,
    hour,
    count(*) as sample_count,
    min(value) as value_min,
    max(value) as value_max,
    avg(value) as value_avg,
    arg_min(value, "timestamp") as value_first,
    arg_max(value, "timestamp") as value_last,
    {{ build_started_at() }} as created_at
from samples
semi join touched using (site_name, point_name, hour)
group by site_name, point_name, hour
order by site_name, point_name, hour
