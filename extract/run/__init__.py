"""A run: its data dir (opened, and upgraded once), site leases, checkpoints, window attempts, heal and live, the
job, the scheduler and the pipeline, the metrics row. It builds on `extract.api` and `extract.lake`.

- `attempt`: One window of one site, start to finish, under the site's lease: plan, stage pages, commit.
- `checkpoint`: Per-window state in `state/checkpoints/`: where an attempt stands, its counts, and its
  manifest.
- `datadir`: Opening a data dir: a local folder or an object store, converted once if it predates the Delta
  tables.
- `heal`: Heal gaps: re-fetch only the time ranges where samples are missing, and land what the API now has.
- `job`: The job: a run's settings and its plan, built once from the command line or the flow parameters, then
  passed whole to the one pipeline (`ace_etl.pipeline.run_job`) and down to each window's extraction.
- `lease`: One run at a time per site: a lease in the state store.
- `live`: Live: keep the still-open window current, every few minutes, with about one request per site.
- `metrics`: The per-(run, site, window) metrics row landed in `landing/runs/` (the dbt `etl_runs` source).
- `pipeline`: Extract orchestration: sites x windows -> pages -> landed Parquet, checkpointed, with one
  metrics row each.
- `scheduler`: The one scheduler of an extraction, whatever runs the work: threads of this process (the CLI,
  through `extract.run.pipeline.run_extract`) or Prefect tasks on threads or Dask workers (the flows,
  `flows.etl`).
- `upgrade`: Convert a landing written before the Delta tables, once: nothing lost, nothing fetched again.
"""
