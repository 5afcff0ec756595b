{% macro build_started_at() -%}
{#- Every row one dbt invocation writes gets the same created_at, so max(created_at) of a model says
    which upstream rows and landing files it has already seen. -#}
'{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}


{% macro last_write_of(relation) -%}
(select coalesce(max(created_at), '-infinity'::timestamptz) from {{ relation }})
{%- endmacro %}


{% macro written_since_last_build() -%}
{#- Upstream rows written after this model last ran: what an incremental build has to recompute. -#}
{%- if is_incremental() -%}
created_at > {{ last_write_of(this) }}
{%- else -%}
true
{%- endif -%}
{%- endmacro %}
