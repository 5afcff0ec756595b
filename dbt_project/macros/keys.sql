{% macro stable_id(expressions) -%}
{#- md5 of the key as a JSON array: unlike hash() it is the same in every DuckDB version, and the array
    keeps ('a|b', 'c') and ('a', 'b|c') apart. Pass timestamps as epoch_us(...), never as text, which
    would depend on the session time zone. -#}
md5_number(json_array({{ expressions | join(', ') }})::varchar)
{%- endmacro %}


{% macro utc_day(timestamp) -%}
{#- The UTC day of a timestamptz from its microseconds, as a plain timestamp's date (floored, also before
    1970): a cast of a timestamptz goes through ICU, dear per sample. -#}
make_timestamp(epoch_us({{ timestamp }}))::date
{%- endmacro %}


{% macro utc_hour(timestamp) -%}
{#- The UTC hour a timestamptz lies in, by integer arithmetic on its microseconds (floored, also before
    1970): date_trunc on a timestamptz goes through ICU's calendar, which cost a year's backfill (263 M
    samples) more time than reading them. -#}
to_timestamp((epoch_us({{ timestamp }}) - (epoch_us({{ timestamp }}) % 3600000000 + 3600000000) % 3600000000) // 1000000)
{%- endmacro %}


{% macro sql_text(value) -%}
{#- A value as a SQL string literal (quotes doubled), e.g. a name from a var. -#}
'{{ value | string | replace("'", "''") }}'
{%- endmacro %}
