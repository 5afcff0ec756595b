{{ config(materialized='table', schema='internal') }}

-- The partitions (dataset, site, UTC day) whose files differ between the Delta snapshot this build reads and
-- the one the last complete build read (`internal.lake_snapshot_built`, written at the end of a build that
-- ran every model recomputed by partition): files added or removed, both from the log, never a listing.
-- `present`: the partition still has files, and `site_name` is read from them (the log's statistics cut long
-- names short); a partition whose files are all gone (retention) is not recomputed: its aggregates stay.
-- The first build and a full refresh take every partition that has files.

{%- set built = adapter.get_relation(database=this.database, schema='internal', identifier='lake_snapshot_built') %}
{%- set snapshot = ref('lake_snapshot') %}

{%- set changed -%}
with current_files as (
    select dataset, site_key, day, path from {{ snapshot }}
),

{% if built is none or flags.FULL_REFRESH -%}
changed as (
    select distinct dataset, site_key, day from current_files
)
{%- else -%}
built_files as (
    select dataset, site_key, day, path from {{ built }}
),

changed as (
    select dataset, site_key, day from (select * from current_files except select * from built_files)
    union
    select dataset, site_key, day from (select * from built_files except select * from current_files)
)
{%- endif %}
{%- endset %}

{%- set paths = [] %}
{%- if execute %}
{%- set query -%}
{{ changed }}
select path from current_files semi join changed using (dataset, site_key, day) order by path
{%- endset %}
{%- set paths = run_query(query).columns[0].values() %}
{%- endif %}

{{ changed }},

names as (
{%- if paths | length == 0 %}
    select null::varchar as dataset, null::varchar as site_key, null::date as day, null::varchar as site_name
    where false
{%- else %}
    select distinct files.dataset, files.site_key, files.day, landed.site_name
    from read_parquet([
        {%- for path in paths %}
        {{ lake_path_literal(path) }}{{ ',' if not loop.last }}
        {%- endfor %}
    ], hive_partitioning = false, union_by_name = false, filename = true) as landed
    join current_files as files on files.path = landed.filename
{%- endif %}
)

select
    changed.dataset,
    changed.site_key,
    changed.day,
    names.site_name,
    names.site_name is not null as present
from changed
left join names using (dataset, site_key, day)
order by all
