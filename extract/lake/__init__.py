"""The landing: where and how data is stored (the layout, the Delta tables, storage local or S3, schemas,
quarantine, retention). It imports nothing of `extract.api` or `extract.run`.

- `landing`: Landing layout (docs/DESIGN.md) and its writers: where each file goes and what it is called.
- `objectstore`: `Storage` on an S3-compatible object store, through s3fs (fsspec).
- `quarantine`: Damaged state is set aside, never deleted: moved under `quarantine/<time>/<its path>` with the
  reason.
- `retention`: Retention: raw samples of the days before a cutoff are deleted from the timeseries Delta table,
  on purpose.
- `schemas`: The landing's file schemas, defined once: every writer (extract, heal, the test factory) uses
  these, and a test checks that the dbt staging models read the same columns with the same types
  (docs/DESIGN.md, "Landing layout").
- `storage`: The one place that reads and writes landing files and state.
- `tables`: The landing's Delta Lake tables (delta-rs): every Delta read and write goes through here.
"""
