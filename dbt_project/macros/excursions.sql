{% macro excursion_scope() -%}
{#- CTEs saying what an incremental build of timeseries_excursions recomputes (docs in its .sql):
    `near_days` (site, UTC day): the days of the Delta partitions that changed, and the day either side;
    `limit_changes` (site, point): points whose limits differ from those of the last build, or that have
    none any more; `stale`: the stored excursions those make out of date. -#}
{%- set built = adapter.get_relation(database=this.database, schema='internal', identifier='point_limits_built') -%}
{%- set limits = ref('point_limits') -%}
near_days as (
    select distinct site_name, (day + shift * interval 1 day)::date as day
    from {{ ref('lake_changes') }}, range(-1, 2) as shifts(shift)
    where dataset = 'timeseries' and present
),

limit_changes as (
{%- if built is none %}
    select site_name, point_name from {{ limits }}
    union
    select site_name, point_name from {{ this }}
{%- else %}
    select site_name, point_name from (
        (select * from {{ limits }} except select * from {{ built }})
        union all
        (select * from {{ built }} except select * from {{ limits }})
    )
    union
    select site_name, point_name from {{ this }}
    where (site_name, point_name) not in (select site_name, point_name from {{ limits }})
{%- endif %}
),

stale as (
    select site_name, point_name, excursion_start, excursion_end
    from {{ this }} as stored
    where exists (
        select 1 from near_days
        where near_days.site_name = stored.site_name
          and stored.excursion_start < near_days.day::timestamptz + interval 1 day
          and stored.excursion_end >= near_days.day::timestamptz
    )
    or (site_name, point_name) in (select site_name, point_name from limit_changes)
)
{%- endmacro %}


{% macro forget_stale_excursions() -%}
{#- Post-hook: drop the stored excursions this build recomputed (those it wrote carry its created_at). -#}
{%- if is_incremental() -%}
delete from {{ this }}
where created_at <> {{ build_started_at() }}
  and (site_name, point_name, excursion_start) in (
    with {{ excursion_scope() }}
    select site_name, point_name, excursion_start from stale
)
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro record_point_limits() -%}
{#- Post-hook: the limits this build applied, which the next build compares with. -#}
create or replace table internal.point_limits_built as select * from {{ ref('point_limits') }}
{%- endmacro %}


{% macro anomaly_scope() -%}
{#- CTEs saying what an incremental build of timeseries_anomalies recomputes (docs in its .sql): per site,
    `changed` [range_start, range_end]: from the day before its first changed day to the last day whose
    baseline reads a changed day; `stale`: the stored anomalies touching it; `extended` [read_start,
    read_end): the range widened to those anomalies and a day either side. -#}
{%- set weeks = var('anomaly_weeks') -%}
changed as (
    select
        site_name,
        min(day)::timestamptz - interval 1 day as range_start,
        max(day)::timestamptz + interval {{ 7 * (weeks + 1) + 1 }} day as range_end
    from {{ ref('lake_changes') }}
    where dataset = 'timeseries' and present
    group by site_name
),

stale as (
    select stored.site_name, stored.point_name, stored.anomaly_start, stored.anomaly_end
    from {{ this }} as stored
    join changed using (site_name)
    where stored.anomaly_start <= changed.range_end and stored.anomaly_end >= changed.range_start
),

extended as (
    select
        changed.site_name,
        changed.range_start,
        changed.range_end,
        least(changed.range_start, min(stale.anomaly_start)) - interval 1 day as read_start,
        greatest(changed.range_end, max(stale.anomaly_end)) + interval 1 day as read_end
    from changed
    left join stale using (site_name)
    group by changed.site_name, changed.range_start, changed.range_end
)
{%- endmacro %}


{% macro anomaly_read_span(column) -%}
{#- Whether the timestamptz `column` lies within the hours an incremental build of timeseries_anomalies
    reads (every site's `extended` range and the weeks of baseline before it), written as constants so that
    DuckDB skips timeseries_hourly's row groups of other days; false when nothing changed. The per-site join
    keeps the exact bounds. -#}
{%- set query -%}
with {{ anomaly_scope() }}
select min(read_start) - interval {{ 7 * (var('anomaly_weeks') + 1) }} day, max(read_end) from extended
{%- endset -%}
{{ constant_span(column, query) }}
{%- endmacro %}


{% macro forget_stale_anomalies() -%}
{#- Post-hook: drop the stored anomalies this build recomputed (those it wrote carry its created_at). -#}
{%- if is_incremental() -%}
delete from {{ this }}
where created_at <> {{ build_started_at() }}
  and (site_name, point_name, anomaly_start) in (
    with {{ anomaly_scope() }}
    select site_name, point_name, anomaly_start from stale
)
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
