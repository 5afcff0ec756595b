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
    select * from {{ landing_location(source_relation) }}
)
where {{ is_landed_file('filename') }}
{%- endmacro %}


{% macro landing_location(source_relation) -%}
{#- A landing source with the data dir (ACE_ETL_DATA_DIR) in place of its placeholder, when the model runs:
    read while dbt parses (the sources' meta), a new data dir made dbt re-parse the sources and the models
    reading them, about a second per data dir. The data dir goes into SQL string literals that DuckDB reads
    as globs: as data, not as SQL or as a pattern, so its own `[`, `*` and `?` are one-character classes
    (`[[]` matches `[`) and its quotes are doubled. (DuckDB reads `\` in a path as `/`: ace_etl.transform
    refuses such a data dir.) -#}
{%- if execute -%}
{%- set data_dir = env_var('ACE_ETL_DATA_DIR', '../data') | replace('[', '[[]') | replace('*', '[*]')
    | replace('?', '[?]') | replace("'", "''") -%}
{{ source_relation | string | replace('@ACE_ETL_DATA_DIR@', data_dir) }}
{%- else -%}
{{ source_relation }}
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
{#- Pre-hook of a model fed from a plain Parquet dataset of the landing (rejects, selections, runs): list
    its files (read_blob stats them without reading them) and mark as pending those the model has not loaded
    in this version (path, size and modification time); a full refresh marks them all. The Delta tables
    need no such record: their log says what changed (`lake_changes`). -#}
{%- set loads = landing_loads() -%}
create table if not exists {{ loads }} (
    path varchar, size_bytes bigint, modified_at timestamptz, pending boolean
);
delete from {{ loads }} where pending;
insert into {{ loads }}
select filename, size, last_modified, true
from {{ landing_location(source('landing', 'files')) }} as files
where {{ is_landed_file('filename') }}
  and files.dataset = '{{ dataset }}'
{%- if is_incremental() %}
  and not exists (
    select 1 from {{ loads }} as known
    where not known.pending and known.path = files.filename
      and known.size_bytes = files.size and known.modified_at = files.last_modified
  )
{%- endif %}
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
select case when (select count(*) from glob('../data/{{ var("landing_dir") }}/**/*.parquet')) = 0 then error(
    'no landing under ../data (relative to ' || getenv('PWD') || '): set ACE_ETL_DATA_DIR to the data dir, '
    || 'e.g. ACE_ETL_DATA_DIR=$PWD/../data dbt build'
) end
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}
