{% macro duckdb__persist_docs(relation, model, for_relation, for_columns) -%}
{#- The models' descriptions as the comments analysts see in DuckDB's catalog (persist_docs), written only
    where they differ. dbt-duckdb's own macro lists the relation's columns twice and writes every comment
    again, for every model at every build: a sixth of a small build's time. Here one catalog query per
    model, and no statement when the comments already match (an incremental model keeps its comments
    between builds; a table model is created anew, without any). A documented column the relation lacks
    gets dbt's own warning. -#}
{%- set where = "database_name = " ~ sql_text(relation.database) ~ " and schema_name = " ~ sql_text(relation.schema) -%}
{%- set name = sql_text(relation.identifier) -%}
{%- set found = run_query(
    "select column_name, coalesce(comment, '') from duckdb_columns() where " ~ where ~ " and table_name = " ~ name
    ~ " union all select '', coalesce(comment, '') from duckdb_tables() where " ~ where ~ " and table_name = " ~ name
    ~ " union all select '', coalesce(comment, '') from duckdb_views() where " ~ where ~ " and view_name = " ~ name
) -%}
{%- set current = {} -%}
{%- for row in found.rows -%}
{%- do current.update({row[0]: row[1]}) -%}
{%- endfor -%}
{%- set statements = [] -%}
{%- if for_relation and config.persist_relation_docs() and model.description
      and current.get('') != model.description -%}
{%- do statements.append(alter_relation_comment(relation, model.description)) -%}
{%- endif -%}
{%- if for_columns and config.persist_column_docs() and model.columns -%}
{%- set missing = [] -%}
{%- for column_name, column in model.columns.items() -%}
{%- if column_name not in current -%}
{%- do missing.append(column_name) -%}
{%- elif current[column_name] != column['description'] -%}
{%- do statements.append(
    'comment on column ' ~ relation ~ '.' ~ (adapter.quote(column_name) if column['quote'] else column_name)
    ~ ' is ' ~ duckdb_escape_comment(column['description']) ~ ';'
) -%}
{%- endif -%}
{%- endfor -%}
{%- if missing -%}
{%- do exceptions.warn("In relation " ~ relation.render() ~ ": The following columns are specified in the schema but are not present in the database: " ~ missing | join(", ")) -%}
{%- endif -%}
{%- endif -%}
{%- if statements -%}
{%- do run_query(statements | join('\n')) -%}
{%- endif -%}
{%- endmacro %}
