{% test iana_time_zone(model, column_name) %}
{#- Values that are not a time zone the warehouse can convert to (DuckDB's ICU names): a local day computed
    in one would fail, or be wrong. -#}
select {{ column_name }}
from {{ model }}
where {{ column_name }} not in (select name from pg_timezone_names())
{% endtest %}
