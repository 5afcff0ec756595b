{% test primary_key(model, columns) %}
{#- A table's key: every key column set, and no two rows sharing the key. One test rather than a not_null per
    column: each test is a node every build pays for, the live builds every five minutes. Over the whole
    table unless scoped by its `meta` (a build's new rows can collide with any old row, a re-landed window
    from last year), and DuckDB groups a few hundred million keys in seconds. -#}
{%- set key = columns | join(', ') %}
select {{ key }}, count(*) as occurrences
from {{ model }}
group by {{ key }}
having count(*) > 1
{%- for column in columns %} or {{ column }} is null{% endfor %}
{% endtest %}
