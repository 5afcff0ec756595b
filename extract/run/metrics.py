"""The per-(run, site, window) metrics row landed in `landing/runs/` (the dbt `etl_runs` source)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

import polars as pl

from extract.lake import schemas
from extract.lake.landing import runs_path
from extract.lake.storage import Storage
from extract.windows import Window

Status = Literal["complete", "failed", "skipped", "live"]

RUNS_SCHEMA = schemas.RUNS


@dataclass(frozen=True)
class WindowResult:
    """The outcome of one window, field for field the `landing/runs` row.

    `pages` and `records_*` are the window's totals, carried over from the checkpoint when a run resumes (so
    `records_kept` is what the landing holds for the window and fetched = kept + filtered + rejected);
    `api_requests`, `retries`, `bytes` and `duration_s` are this run's own work (zero when skipped).
    """

    run_id: str
    site_name: str
    window_start: datetime
    window_end: datetime
    status: Status
    api_requests: int
    retries: int
    pages: int
    bytes: int
    records_fetched: int
    records_kept: int
    records_filtered: int
    records_rejected: int
    duration_s: float
    error: str | None
    started_at: datetime
    finished_at: datetime

    @property
    def window(self) -> Window:
        return Window(self.window_start, self.window_end)


def runs_frame(results: list[WindowResult]) -> pl.DataFrame:
    """Results as rows of RUNS_SCHEMA."""
    return pl.DataFrame([asdict(r) for r in results], schema=RUNS_SCHEMA)


def write_run_row(storage: Storage, result: WindowResult) -> str:
    """Land the result as its own file, so each window's row survives whatever happens to the others."""
    path = runs_path(result.run_id, result.site_name, result.window)
    storage.write_parquet_atomic(path, runs_frame([result]))
    return path
