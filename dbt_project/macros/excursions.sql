{% macro excursion_scope() -%}
{#- CTEs saying what an incremental build of timeseries_excursions recomputes (docs in its .sql):
    `near_days` (site, UTC day): the days of the Delta partitions that changed, and the day either side;
    `limit_changes` (site, point): points whose limits differ from those of the last build, or that have
    none any more; `stale`: the stored excursions those make out of date. -#}
{%- set built = adapter.get_relation(database=this.database, schema='internal', identifier='point_limits_built') -%}
{%- set limits = ref('point_limits') -%}
near_days as (
    select distinct site_name, (day + shift)::date as day
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
