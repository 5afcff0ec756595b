{% test unique_combination_of_columns(model, combination_of_columns) %}
{#- Over the whole table: a build's new rows can collide with any old row (a re-landed window from last
    year), and DuckDB groups a few hundred million keys in seconds. -#}
{%- set key = combination_of_columns | join(', ') %}
select {{ key }}, count(*) as occurrences
from {{ model }}
group by {{ key }}
having count(*) > 1
{% endtest %}
