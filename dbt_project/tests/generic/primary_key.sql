{% test primary_key(model, columns, checks={}) %}
{#- A table's key: every key column set, and no two rows sharing the key; and the table's `checks`, each a
    name and a condition every row meets (a null result passes, as in a CHECK constraint). A failing row
    says which: `failed` is `key` or the check's name. One test per table rather than a not_null per key
    column and a test per value rule: each test is a node every build pays for (about 20 ms), the live
    builds every five minutes. Over the whole table unless scoped by its `meta` (a build's new rows can
    collide with any old row, a re-landed window from last year), and DuckDB groups a few hundred million
    keys in seconds. -#}
{%- set key = columns | join(', ') %}
select {{ key }}, 'key' as failed, count(*) as occurrences
from {{ model }}
group by {{ key }}
having count(*) > 1
{%- for column in columns %} or {{ column }} is null{% endfor %}
{%- for name, condition in checks.items() %}
union all
select {{ key }}, '{{ name }}', 1
from {{ model }}
where not ({{ condition }})
{%- endfor %}
{% endtest %}
