{{ config(
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ forget_local_days() }}",
    post_hook="{{ promote_complete('bucket.day_start', 'bucket.day_end') }}",
) }}

-- Site-local days (sites.time_zone) rolled up from timeseries_hourly (sixty times fewer rows than the
-- samples): an hour belongs to the local day it starts in, so in a zone whose offset is not a whole number
-- of hours (India, Newfoundland, ...) the hour that straddles midnight counts in the day it starts in. An
-- incremental build recomputes the local days overlapping the partitions that changed (int_local_days) and
-- every day of a site whose zone changed; built whole (a full refresh) from every hour, which keeps the
-- days whose raw samples are gone.
-- depends_on: {{ ref('lake_changes') }}
-- depends_on: {{ ref('int_site_zone_changes') }}
-- depends_on: {{ ref('int_local_days') }}

{%- set zones -%}
(select site_name, coalesce(time_zone, 'UTC') as time_zone from {{ ref('sites') }})
{%- endset %}

with hours as (
    select hourly.*, zones.time_zone, {{ local_day('hourly.hour', 'zones.time_zone') }} as day
    from {{ ref('timeseries_hourly') }} as hourly
    join {{ zones }} as zones using (site_name)
{%- if is_incremental() %}
    where hourly.site_name in (select site_name from {{ ref('int_site_zone_changes') }})
    -- int_local_days leaves those sites out: the two parts never hold the same hour
    union all
    select hourly.*, zones.time_zone, {{ local_day('hourly.hour', 'zones.time_zone') }} as day
    from {{ ref('timeseries_hourly') }} as hourly
    join {{ zones }} as zones using (site_name)
    -- the changed local days' span as constants on the column lets DuckDB skip the row groups of other days
    -- (a bound from a subquery is not checked against row groups: every build read all history's hours)
    where {{ local_days_span('hourly.hour') }}
      and (hourly.site_name, {{ local_day('hourly.hour', 'zones.time_zone') }}) in (
          select site_name, day from {{ ref('int_local_days') }}
      )
{%- endif %}
),

days as (
    select
        site_name,
        point_name,
        day,
        any_value(time_zone) as time_zone,
        sum(sample_count)::bigint as sample_count,
        min(value_min) as value_min,
        max(value_max) as value_max,
        sum(value_avg * sample_count) / sum(sample_count) as value_avg,
        arg_min(value_first, hour) as value_first,
        arg_max(value_last, hour) as value_last,
        arg_max(value_kind, hour) as value_kind,
        sum(covered_s) as covered_s,
        sum(energy_kwh) as energy_kwh,
        sum(on_seconds) as on_seconds
    from hours
    group by site_name, point_name, day
),

bounded as (
    select
        *,
        {{ local_midnight('day', 'time_zone') }} as day_start,
        {{ local_midnight('day + 1', 'time_zone') }} as day_end
    from days
)

select
    site_name,
    point_name,
    day,
    sample_count,
    value_min,
    value_max,
    value_avg,
    value_first,
    value_last,
    time_zone,
    day_start,
    day_end,
    value_kind,
    covered_s,
    energy_kwh,
    on_seconds,
    on_seconds / nullif(covered_s, 0) as on_ratio,
    {{ is_complete('bounded.site_name', 'bounded.day_start', 'bounded.day_end') }} as complete,
    {{ build_started_at() }} as created_at
from bounded
order by site_name, point_name, day
