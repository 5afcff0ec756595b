"""The README's answers to an analyst's questions run as written on the warehouse `ace-etl demo` builds,
and answer them: each query is read from the README itself, so an edit that breaks one fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ace_etl.runner import run_demo
from ace_etl.transform import reading, warehouse_file

README = Path(__file__).resolve().parent.parent / "README.md"


def analyst_queries() -> list[str]:
    text = README.read_text()
    section = text[text.index("<!-- analyst-queries") : text.index("<!-- /analyst-queries -->")]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    return [statement.strip() for block in blocks for statement in block.split(";") if statement.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    # Two days and the demo's device mix: meters in kW, fans (binary), zone temperatures.
    run_demo(data_dir, site="demo-site", points=60, hours=48)
    return warehouse_file(data_dir)


def test_the_readme_answers_six_questions_with_queries() -> None:
    queries = analyst_queries()
    assert len(queries) >= 9, queries
    assert all("demo-site" in query for query in queries)


@pytest.mark.parametrize("index", range(len(analyst_queries())))
def test_each_readme_query_runs_as_written(demo: Path, index: int) -> None:
    query = analyst_queries()[index]
    with reading(demo) as con:
        rows = con.execute(query).fetchall()
    # The demo plants no excursion, drift or outage: those questions rightly find nothing on it; every
    # other one has an answer.
    if any(table in query for table in ("_excursions", "_anomalies", "_gaps", "_coverage")):
        assert rows == []
    else:
        assert rows, query


def test_the_answers_mean_something(demo: Path) -> None:
    with reading(demo) as con:
        temperatures = con.execute(analyst_queries()[0]).fetchall()
        # As the API spells them: kv_tags' units, else BACnet's object units.
        assert {units for _, units, *_ in temperatures} <= {"degF", "degreesFahrenheit"}
        assert any(name.endswith("/zone_temp") for name, *_ in temperatures)
        energy = con.execute(analyst_queries()[1]).fetchall()
        assert {name.rsplit("/", 1)[1] for name, *_ in energy} == {"kw"}
        assert all(kwh > 0 for _, _, kwh, _, _ in energy)
        # 48 UTC hours ending at midnight UTC cover no whole New York day at both ends.
        assert not energy[0][4] and not energy[-1][4]
        run_time = con.execute(analyst_queries()[2]).fetchall()
        assert all(0 <= ratio <= 1 for *_, ratio, _ in run_time)


def test_every_column_an_analyst_sees_is_described(demo: Path) -> None:
    """What `dbt docs generate` shows, dbt also writes into the warehouse (persist_docs): every table and
    column of the main schema says what it holds."""
    with reading(demo) as con:
        undescribed = con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where database_name = current_database() and schema_name = 'main' "
            "and coalesce(trim(comment), '') = '' order by all"
        ).fetchall()
        tables = con.execute(
            "select table_name from duckdb_tables() where schema_name = 'main' and coalesce(comment, '') = '' "
            "union all "
            "select view_name from duckdb_views() where schema_name = 'main' and not internal "
            "and coalesce(comment, '') = ''"
        ).fetchall()
        described = con.execute(
            "select count(distinct table_name), count(*) from duckdb_columns() "
            "where database_name = current_database() and schema_name = 'main'"
        ).fetchone()
    assert undescribed == []
    assert tables == []
    assert described is not None and described[0] >= 14 and described[1] >= 150, described
