{% macro stable_id(expressions) -%}
{#- md5 of the key as a JSON array: unlike hash() it is the same in every DuckDB version, and the array
    keeps ('a|b', 'c') and ('a', 'b|c') apart. Pass timestamps as epoch_us(...), never as text, which
    would depend on the session time zone. -#}
md5_number(json_array({{ expressions | join(', ') }})::varchar)
{%- endmacro %}


{% macro utc_day(timestamp) -%}
cast(timezone('UTC', {{ timestamp }}) as date)
{%- endmacro %}


{% macro sql_text(value) -%}
{#- A value as a SQL string literal (quotes doubled), e.g. a name from a var. -#}
'{{ value | string | replace("'", "''") }}'
{%- endmacro %}
