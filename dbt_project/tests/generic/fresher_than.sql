{% test fresher_than(model, column_name) %}
{#- Returns the age in whole hours of the newest value; configure warn_if / error_if as hour thresholds
    (">26"). An empty model is not fresh: nothing has arrived, so it counts as older than any threshold. -#}
{{ config(fail_calc='coalesce(max(age_hours), 999999)') }}
select floor(epoch(now() - max({{ column_name }})) / 3600)::bigint as age_hours
from {{ model }}
{% endtest %}
