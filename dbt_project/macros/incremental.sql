{% macro build_started_at() -%}
{#- Every row one dbt invocation writes gets the same created_at: which rows a build recomputed. -#}
'{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}
