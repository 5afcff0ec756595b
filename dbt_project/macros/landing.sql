{% macro landing_read(source_relation, columns) -%}
{#- Typed rows of one landing dataset plus the file each row came from.
    The typed, empty select keeps the columns when the folder holds no file yet: read_parquet with
    allow_empty then yields a lone `empty` column, which the outer select drops. -#}
select
    {%- for name, type in columns.items() %}
    cast({{ adapter.quote(name) }} as {{ type }}) as {{ adapter.quote(name) }},
    {%- endfor %}
    filename as landing_file
from (
    select
        {%- for name, type in columns.items() %}
        null::{{ type }} as {{ adapter.quote(name) }},
        {%- endfor %}
        null::varchar as filename
    where false
    union all by name
    select * from {{ source_relation }}
)
where {{ is_landed_file('filename') }}
{%- endmacro %}


{% macro lake_files(dataset) -%}
{#- The current snapshot's files of a landing Delta table, as a relation with a `filename` column, for
    `landing_read`. The file list is read (when the model runs) from `lake_snapshot`, itself read from the
    Delta log; each path is a SQL string literal that DuckDB also reads as a glob, so its `[`, `*` and `?`
    are escaped and its quotes doubled. A model using this declares `-- depends_on: ref('lake_snapshot')`. -#}
{%- set paths = [] -%}
{%- if execute -%}
{%- set listed = run_query("select path from " ~ ref('lake_snapshot') ~ " where dataset = '" ~ dataset ~ "' order by path") -%}
{%- set paths = listed.columns[0].values() -%}
{%- endif -%}
{%- if paths | length == 0 -%}
(select null::varchar as filename where false)
{%- else -%}
read_parquet([
    {%- for path in paths %}
    '{{ path | replace('[', '[[]') | replace('*', '[*]') | replace('?', '[?]') | replace("'", "''") }}'{{ ',' if not loop.last }}
    {%- endfor %}
], hive_partitioning = false, filename = true, union_by_name = false)
{%- endif -%}
{%- endmacro %}


{% macro landing_listing(dataset) -%}
{#- The files a model fed from `dataset` may load: the Delta table's current snapshot for `timeseries` and
    `weather`, else the landing folder's listing. -#}
{%- if dataset in ('timeseries', 'weather') -%}
(select path as filename, size_bytes as size, modified_at as last_modified
 from {{ ref('lake_snapshot') }} where dataset = '{{ dataset }}')
{%- else -%}
{{ source('landing', 'files') }}
{%- endif -%}
{%- endmacro %}


{% macro is_landed_file(path) -%}
{#- Hidden names (`.x`, `_x`) are writers' temporary files, not landed ones. DuckDB evaluates this
    against the file list, so such files are never opened. -#}
not regexp_matches({{ path }}, '/[._][^/]*$')
{%- endmacro %}


{% macro landed_since_last_build() -%}
{#- Rows from the files this model has not loaded yet (new, or re-landed under the same name), as
    `track_landing` listed them before the model ran. Each model keeps its own record, so any selection
    (`dbt run --select timeseries_raw`) loads what is new to that model. DuckDB turns the semi-join into a
    file filter, so older files are never opened. A full build reads every file. -#}
{%- if is_incremental() -%}
landing_file in (select path from {{ landing_loads() }} where pending)
{%- else -%}
true
{%- endif -%}
{%- endmacro %}


{% macro landing_loads() -%}
{#- The files a model fed from the landing has loaded, and those it is loading (pending). Bookkeeping:
    kept in the `internal` schema, out of analysts' way. -#}
internal.{{ this.identifier }}__landing_loads
{%- endmacro %}


{% macro track_landing(dataset) -%}
{#- Pre-hook of a model fed from the landing: list the dataset's files (the Delta snapshot's for timeseries
    and weather; read_blob stats the others without reading them) and mark as pending those the model has
    not loaded in this version (path, size and modification time); a full refresh marks them all. -#}
{%- set loads = landing_loads() -%}
create table if not exists {{ loads }} (
    path varchar, size_bytes bigint, modified_at timestamptz, pending boolean
);
{{ adopt_old_registry(dataset, loads) }}
delete from {{ loads }} where pending;
insert into {{ loads }}
select filename, size, last_modified, true
from {{ landing_listing(dataset) }} as files
where {{ is_landed_file('filename') }}
  and regexp_extract(filename, '.*/landing/([^/]+)/', 1) = '{{ dataset }}'
{%- if is_incremental() %}
  and not exists (
    select 1 from {{ loads }} as known
    where not known.pending and known.path = files.filename
      and known.size_bytes = files.size and known.modified_at = files.last_modified
  )
{%- endif %}
{%- endmacro %}


{% macro adopt_old_registry(dataset, loads) -%}
{#- Warehouses built before per-model records kept one registry, main.stg_landing__files: a model that
    has no record yet starts from the files registered before its own last write, so upgrading does not
    reload the whole landing. -#}
{%- set old = adapter.get_relation(database=this.database, schema=this.schema, identifier='stg_landing__files') -%}
{%- if old is not none and is_incremental() -%}
insert into {{ loads }}
select path, size_bytes, modified_at, false
from {{ old }}
where dataset = '{{ dataset }}'
  and registered_at <= {{ last_write_of(this) }}
  and not exists (select 1 from {{ loads }});
{%- endif -%}
{%- endmacro %}


{% macro drop_old_registry() -%}
{#- on-run-end: drop main.stg_landing__files once every model fed from the landing has its own record. -#}
{%- if execute -%}
{%- set old = adapter.get_relation(database=target.database, schema=target.schema, identifier='stg_landing__files') -%}
{%- set waiting = [] -%}
{%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
{%- for hook in node.config.pre_hook if 'track_landing' in hook.sql -%}
{%- if adapter.get_relation(database=target.database, schema='internal', identifier=node.name ~ '__landing_loads') is none -%}
{%- do waiting.append(node.name) -%}
{%- endif -%}
{%- endfor -%}
{%- endfor -%}
{%- if old is not none and not waiting -%}
drop table {{ old }}
{%- else -%}
select 1
{%- endif -%}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro landing_loaded() -%}
{#- Post-hook (it runs only when the model was written): the pending files are loaded now. -#}
{%- set loads = landing_loads() -%}
delete from {{ loads }} where not pending and path in (select path from {{ loads }} where pending);
update {{ loads }} set pending = false where pending
{%- endmacro %}


{% macro latest_per_key(relation, key, newest_by='collected_at', tie_break=[]) -%}
{#- One row per key, the latest `newest_by` winning both among the rows read now and against rows already
    loaded (a slow re-run must not overwrite a newer fetch). Equal `newest_by` goes to the greater
    `tie_break` columns (compared as text), then to the later file name, so the outcome depends neither on
    read order nor on which build loaded which file. -#}
select * from {{ relation }} as landed
{%- if is_incremental() %}
where not exists (
    select 1 from {{ this }} as loaded
    where {% for column in key %}loaded.{{ column }} = landed.{{ column }} and {% endfor -%}
        ({{ rank_of('loaded', newest_by, tie_break) }}) > ({{ rank_of('landed', newest_by, tie_break) }})
)
{%- endif %}
qualify row_number() over (
    partition by {{ key | join(', ') }}
    order by {{ rank_of('landed', newest_by, tie_break, ' desc') }}, landing_file desc
) = 1
{%- endmacro %}


{% macro rank_of(alias, newest_by, tie_break, suffix='') -%}
{#- What `latest_per_key` orders a key's rows by, best last: `newest_by`, then the tie-breaks as text. -#}
{{ alias }}.{{ newest_by }}{{ suffix }}
{%- for column in tie_break %}, coalesce({{ alias }}.{{ column }}::varchar, ''){{ suffix }}{% endfor %}
{%- endmacro %}


{% macro require_landing() -%}
{#- A hand-run `dbt build` without ACE_ETL_DATA_DIR reads ../data relative to where it runs: from anywhere
    but dbt_project/ that is the wrong folder, and an empty landing there would build an empty warehouse
    without a word. So, unset, the landing must exist; `ace-etl transform` always sets it. -#}
{%- if env_var('ACE_ETL_DATA_DIR', '') == '' -%}
select case when (select count(*) from glob('../data/landing/**/*.parquet')) = 0 then error(
    'no landing under ../data (relative to ' || getenv('PWD') || '): set ACE_ETL_DATA_DIR to the data dir, '
    || 'e.g. ACE_ETL_DATA_DIR=$PWD/../data dbt build'
) end
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
