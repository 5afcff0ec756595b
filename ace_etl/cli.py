"""The `ace-etl` command line. Heavy modules (Prefect, dbt, Polars) are imported inside commands so
`ace-etl --help` stays fast."""

from __future__ import annotations

import typer

from ace_etl.simulator.cli import simulator

app = typer.Typer(
    name="ace-etl",
    help="Pull ACE IoT building telemetry into Parquet and DuckDB. Start with `ace-etl demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("simulator")(simulator)


def main() -> None:
    app()
