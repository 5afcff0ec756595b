{% test unique_combination_of_columns(model, combination_of_columns, recent_by=none) %}
{#- recent_by names a time column that is part of the key. Then only the time range the model's latest
    build wrote is checked (everything, after a full build): a new row can only collide with a row in
    that range, and the test costs what the build cost instead of a scan of all history. -#}
{%- set key = combination_of_columns | join(', ') %}
select {{ key }}, count(*) as occurrences
from {{ model }}
{%- if recent_by %}
where {{ recent_by }} between
    (select min({{ recent_by }}) from {{ model }} where created_at = (select max(created_at) from {{ model }}))
    and (select max({{ recent_by }}) from {{ model }} where created_at = (select max(created_at) from {{ model }}))
{%- endif %}
group by {{ key }}
having count(*) > 1
{% endtest %}
