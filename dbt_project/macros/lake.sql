{% macro lake_columns(dataset) -%}
{#- The contract columns of a landing Delta table's files (docs/DESIGN.md, "The lake"), with their types. -#}
{%- if dataset == 'timeseries' -%}
{%- do return({
    'site_name': 'varchar',
    'point_name': 'varchar',
    'timestamp': 'timestamptz',
    'value': 'double',
    'quality': 'varchar',
    'metadata': 'varchar',
    'collected_at': 'timestamptz',
}) -%}
{%- elif dataset == 'weather' -%}
{%- do return({
    'site_name': 'varchar',
    'timestamp': 'timestamptz',
    'temperature': 'double',
    'humidity': 'double',
    'precipitation': 'double',
    'wind_speed': 'double',
    'conditions': 'varchar',
    'metadata': 'varchar',
    'collected_at': 'timestamptz',
}) -%}
{%- else -%}
{%- do exceptions.raise_compiler_error("no Delta table named " ~ dataset) -%}
{%- endif -%}
{%- endmacro %}


{% macro lake_relation(name) -%}
{#- `internal.lake_snapshot` or `internal.lake_changes` without `ref()`: data tests read them through
    `get_where_subquery`, where dbt allows no ref the test did not declare. Models reading them declare
    `-- depends_on:` for the order. -#}
{%- do return(api.Relation.create(database=target.database, schema='internal', identifier=name)) -%}
{%- endmacro %}


{% macro lake_paths(dataset, scope='all', partitions=none) -%}
{#- The current snapshot's files of a landing Delta table (`lake_snapshot`, read from the Delta log): `all`
    of them, those of the partitions that `changed` since the last build and still have files
    (`lake_changes`), those overlapping the site-local days a build recomputes (`local_days`,
    `int_local_days`), those of each site's `newest` day, or those of the `partitions` a query selects
    (`site_key`, `day`). Read when the model or test runs. -#}
{%- set snapshot, changes = lake_relation('lake_snapshot'), lake_relation('lake_changes') -%}
{%- if not execute -%}
{%- do return([]) -%}
{%- endif -%}
{%- set query -%}
select path from {{ snapshot }} as files
where dataset = '{{ dataset }}'
{%- if scope == 'changed' %}
  and exists (
    select 1 from {{ changes }} as changes
    where changes.dataset = files.dataset and changes.site_key = files.site_key and changes.day = files.day
      and changes.present
)
{%- elif scope == 'local_days' %}
  and exists (
    select 1 from {{ lake_relation('int_local_days') }} as days
    where days.site_key = files.site_key
      and files.day between {{ utc_day('days.day_start') }} and {{ utc_day('days.day_end - interval 1 microsecond') }}
)
{%- elif scope == 'newest' %}
qualify day = max(day) over (partition by site_key)
{%- elif scope == 'partitions' %}
  and (site_key, day) in ({{ partitions }})
{%- endif %}
order by path
{%- endset -%}
{%- do return(run_query(query).columns[0].values()) -%}
{%- endmacro %}


{% macro lake_path_literal(path) -%}
{#- A file path as a SQL string literal that DuckDB, which also reads it as a glob, opens as is: `[`, `*` and
    `?` are escaped and quotes doubled. -#}
'{{ path | replace('[', '[[]') | replace('*', '[*]') | replace('?', '[?]') | replace("'", "''") }}'
{%- endmacro %}


{% macro lake_read(dataset, scope='all', partitions=none) -%}
{#- Typed rows of the listed files of a landing Delta table, as a subquery. The paths are SQL string
    literals (DuckDB saves no variable in the file, and a view cannot read a file list from a query), so a
    view built from this reads exactly this snapshot with no setup. No files: typed and empty. -#}
{%- set columns = lake_columns(dataset) -%}
{%- set paths = lake_paths(dataset, scope, partitions) -%}
(select
    {%- for name, type in columns.items() %}
    cast({{ adapter.quote(name) }} as {{ type }}) as {{ adapter.quote(name) }}{{ ',' if not loop.last }}
    {%- endfor %}
from
{%- if paths | length == 0 %}
    (select
        {%- for name, type in columns.items() %}
        null::{{ type }} as {{ adapter.quote(name) }}{{ ',' if not loop.last }}
        {%- endfor %}
    where false)
{%- else %}
    read_parquet([
        {%- for path in paths %}
        {{ lake_path_literal(path) }}{{ ',' if not loop.last }}
        {%- endfor %}
    ], hive_partitioning = false, union_by_name = false)
{%- endif %}
)
{%- endmacro %}


{% macro raw_rows(dataset, scope='all') -%}
{#- What timeseries_raw / weather_raw show: the Delta snapshot's rows with their contract columns. The
    snapshot holds each key once (ranges are replaced, heal and live insert only new keys, weather is
    upserted), so nothing is deduplicated here. -#}
{%- if dataset == 'timeseries' -%}
select
    {{ stable_id(['site_name', 'point_name', 'epoch_us("timestamp")']) }} as id,
    site_name,
    point_name,
    "timestamp",
    value,
    quality,
    try_cast(metadata as json) as metadata,
    collected_at,
    {{ lake_changed_at(dataset) }} as created_at
from {{ lake_read('timeseries', scope) }} as landed
{%- else -%}
select
    {{ stable_id(['site_name', 'epoch_us("timestamp")']) }} as id,
    site_name,
    "timestamp",
    temperature,
    humidity,
    precipitation,
    wind_speed,
    conditions,
    try_cast(metadata as json) as metadata,
    collected_at,
    {{ lake_changed_at(dataset) }} as created_at
from {{ lake_read('weather', scope) }} as landed
{%- endif -%}
{%- endmacro %}


{% macro lake_changed_at(dataset) -%}
{#- When the snapshot a raw view reads last changed (its newest file's commit time, from the log): the same
    for every row, and the same across builds of an unchanged landing. -#}
{%- set changed_at = none -%}
{%- if execute -%}
{%- set query = "select strftime(max(modified_at), '%Y-%m-%dT%H:%M:%S.%f+00:00') from " ~ lake_relation('lake_snapshot') ~ " where dataset = '" ~ dataset ~ "'" -%}
{%- set changed_at = run_query(query).columns[0].values()[0] -%}
{%- endif -%}
{%- if changed_at -%}
'{{ changed_at }}'::timestamptz
{%- else -%}
{{ build_started_at() }}
{%- endif -%}
{%- endmacro %}


{% macro changed_partitions(dataset, day=none, time=none) -%}
{#- Whether a row is in a partition of `dataset` that changed since the last build and still has files: the
    partitions an incremental model recomputes. The row's UTC day is `day` (an expression) or that of its
    timestamptz column `time`. The changed days' range is first written as constants on the column itself,
    which DuckDB checks against each row group's min and max: without it every statement scoped this way
    read the whole table, a cost that grows with history. -#}
{%- set day = day if time is none else utc_day(time) -%}
{%- set changes = lake_relation('lake_changes') -%}
{%- set span = none -%}
{%- if execute -%}
{%- set span = run_query("select strftime(min(day), '%Y-%m-%d'), strftime(max(day) + 1, '%Y-%m-%d') from " ~ changes ~ " where dataset = '" ~ dataset ~ "' and present").rows[0] -%}
{%- endif -%}
{%- if span is not none and span[0] is none -%}
false
{%- else -%}
(
{%- if span is not none -%}
{%- if time is not none -%}
{{ time }} >= timestamptz '{{ span[0] }} 00:00:00+00' and {{ time }} < timestamptz '{{ span[1] }} 00:00:00+00' and
{% else -%}
{{ day }} >= date '{{ span[0] }}' and {{ day }} < date '{{ span[1] }}' and
{% endif -%}
{%- endif -%}
(site_name, {{ day }}) in (
    select site_name, day from {{ changes }} where dataset = '{{ dataset }}' and present
))
{%- endif -%}
{%- endmacro %}


{% macro forget_changed_partitions(day=none, time=none, dataset='timeseries') -%}
{#- Pre-hook of a model recomputed by partition: drop its rows of the changed partitions that still have raw
    files. A partition whose files are all gone (retention) keeps its rows. -#}
{%- if is_incremental() -%}
delete from {{ this }} where {{ changed_partitions(dataset, day, time) }}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro forget_local_days() -%}
{#- Pre-hook of a model keyed by site-local day: drop its rows of the local days this build recomputes
    (int_local_days) and every row of the sites whose zone changed (int_site_zone_changes). -#}
{%- if is_incremental() -%}
delete from {{ this }}
where site_name in (select site_name from {{ lake_relation('int_site_zone_changes') }})
   or (site_name, day) in (select site_name, day from {{ lake_relation('int_local_days') }})
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
{#- Data tests follow the data that changed. A test configured with `meta: {partitions: changed, dataset: ..,
    day: <the UTC day of a row>}` looks only at the partitions this build changed: its key includes site and
    time, so that keeps it true over the whole table. `--vars '{full_check: true}'` (`ace-etl transform
    --full-check`) tests everything. `partitions: newest` looks at each site's newest day (freshness);
    `partitions: built` at the rows this build computed (a model recomputing more than the changed partitions,
    by site-local day). On the raw views a scope means reading only those partitions' files. Other tests
    keep dbt's `where`. -#}
{%- set meta = config.get('meta') or {} -%}
{%- set scope = meta.get('partitions') -%}
{%- set where = config.get('where') -%}
{%- if scope and not var('full_check', false) -%}
{%- if relation.identifier in ('timeseries_raw', 'weather_raw') -%}
{%- do return('(' ~ raw_rows(meta['dataset'], scope) ~ ') as dbt_subquery') -%}
{%- endif -%}
{%- if scope == 'built' -%}
{%- do return('(select * from ' ~ relation ~ ' where created_at = ' ~ build_started_at() ~ ') as dbt_subquery') -%}
{%- endif -%}
{%- do return('(select * from ' ~ relation ~ ' where ' ~ changed_partitions(meta['dataset'], meta.get('day'), meta.get('time')) ~ ') as dbt_subquery') -%}
{%- elif where -%}
{%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') as dbt_subquery') -%}
{%- else -%}
{%- do return(relation) -%}
{%- endif -%}
{%- endmacro %}


{% macro record_lake_snapshot(results) -%}
{#- on-run-end: the Delta snapshot this build read becomes what the next build's `lake_changes` compares
    with, once every model recomputed by partition (every model reading `lake_changes`) ran and succeeded in
    this invocation, and so do the sites' time zones their local days were computed with
    (`int_site_zone_changes` compares with them) and the committed ranges their rows were promoted with
    (`promote_complete` looks only at windows committed since). After a failed or partial build (`dbt run --select
    timeseries_raw`) the records stay, and the next build recomputes those partitions (and sites) too. -#}
{%- if execute -%}
{%- set waiting = [] -%}
{%- set succeeded = results | selectattr('status', 'equalto', 'success') | map(attribute='node.unique_id') | list -%}
{%- for node in graph.nodes.values() if node.resource_type == 'model' and 'model.ace_etl.lake_changes' in node.depends_on.nodes -%}
{%- if node.unique_id not in succeeded -%}
{%- do waiting.append(node.unique_id) -%}
{%- endif -%}
{%- endfor -%}
{%- if not waiting -%}
create or replace table internal.lake_snapshot_built as
select dataset, path, site_key, day, version from internal.lake_snapshot;
create or replace table internal.site_zones_built as
select site_name, time_zone from {{ api.Relation.create(database=target.database, schema=target.schema, identifier='sites') }};
create or replace table internal.complete_windows_built as
select site_name, range_start, range_end from {{ lake_relation('int_complete_windows') }}
{%- else -%}
select 1
{%- endif -%}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro drop_copy_registries() -%}
{#- on-run-end: the records of loaded files that the raw models kept while they were copies (and the single
    registry before them) are replaced by the Delta log: dropped from warehouses built by earlier versions. -#}
drop table if exists internal.timeseries_raw__landing_loads;
drop table if exists internal.weather_raw__landing_loads;
drop table if exists main.stg_landing__files
{%- endmacro %}
