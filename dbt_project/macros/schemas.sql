{% macro generate_schema_name(custom_schema_name, node) -%}
{#- A folder's +schema is the schema's whole name (`internal`), not a suffix of the target's (`main_internal`). -#}
{{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
