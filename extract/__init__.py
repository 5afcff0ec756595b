"""ace-etl extract library: ACE IoT API client, pager, parsing and the Parquet landing.

A plain library: no Prefect import here, so it can be used from scripts, tests and any orchestrator.

Its packages, by job: `extract.api` (the ACE API), `extract.lake` (the landing) and `extract.run` (a run);
`errors`, `config`, `cancel`, `windows` and `redact` stay at the top, used by all three.
"""
