{% test coverage_at_least(model, column_name, min_ratio, lookback_days) %}
{#- One row per (site, point, day) below min_ratio within lookback_days of the newest day in the model;
    warn_if / error_if count these rows. -#}
select site_name, point_name, day, {{ column_name }}
from {{ model }}
where {{ column_name }} < {{ min_ratio }}
  and day > (select max(day) from {{ model }}) - {{ lookback_days }}
{% endtest %}
