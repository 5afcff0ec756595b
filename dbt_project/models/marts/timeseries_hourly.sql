{{ config(unique_key=['site_name', 'point_name', 'hour']) }}

-- Recomputes only the hours that received new or changed samples since this model last ran: one pass
-- over the time span of those samples (DuckDB skips row groups outside it), keeping the hours that hold
-- at least one of them.

with new_samples as (
    select min("timestamp") as first_at, max("timestamp") as last_at
    from {{ ref('timeseries_raw') }}
    where {{ written_since_last_build() }}
)

select
    site_name,
    point_name,
    date_trunc('hour', "timestamp") as hour,
    count(*) as sample_count,
    min(value) as value_min,
    max(value) as value_max,
    avg(value) as value_avg,
    arg_min(value, "timestamp") as value_first,
    arg_max(value, "timestamp") as value_last,
    {{ build_started_at() }} as created_at
from {{ ref('timeseries_raw') }}
where "timestamp" >= (select date_trunc('hour', first_at) from new_samples)
  and "timestamp" < (select date_trunc('hour', last_at) + interval 1 hour from new_samples)
group by site_name, point_name, hour
having bool_or({{ written_since_last_build() }})
order by site_name, point_name, hour
