"""What the flows rely on in Prefect beyond the names its top-level modules document, in one place.

Checked against Prefect 3.9.1; tests/test_flows.py fails when it changes (a missing budget limit must
still be reported as `ace-etl prefect-setup`'s to create). DuckDB's and dbt-duckdb's are in `ace_etl.compat`.
"""

from __future__ import annotations

# `prefect.concurrency.sync.rate_limit(strict=True)` raises it (for a missing limit, or a server that
# refused the request) but only `prefect.concurrency.asyncio` re-exports it (3.9.1).
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError as ConcurrencySlotAcquisitionError
