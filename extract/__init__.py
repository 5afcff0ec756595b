"""ace-etl extract library: ACE IoT API client, pager, parsing and the Parquet landing.

A plain library: no Prefect import here, so it can be used from scripts, tests and any orchestrator.
"""
