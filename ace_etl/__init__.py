"""ace-etl: ACE IoT telemetry -> Parquet landing -> DuckDB (dbt), orchestrated by Prefect."""

__version__ = "0.1.0"
