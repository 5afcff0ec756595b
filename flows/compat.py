"""What the flows rely on in Prefect and prefect-dbt beyond the names their top-level modules document, in one
place.

Checked against Prefect 3.9.1 and prefect-dbt 0.7.25; tests/test_flows.py fails when they change (a missing
budget limit must still be reported as `ace-etl prefect-setup`'s to create) and tests/test_flows_alerting.py
when a dbt node's task validates the settings again. DuckDB's and dbt-duckdb's are in `ace_etl.compat`.
"""

from __future__ import annotations

from typing import Any

# `prefect.concurrency.sync.rate_limit(strict=True)` raises it (for a missing limit, or a server that
# refused the request) but only `prefect.concurrency.asyncio` re-exports it (3.9.1).
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError as ConcurrencySlotAcquisitionError

PREFECT_DBT_CHECKED = "0.7.25"


def share_settings_with_dbt_node_tasks() -> None:
    """A dbt node's task (`PrefectDbtRunner`, one thread a node) runs in the flow's settings, which it gets
    serialized and validates anew at least twice (in prefect-dbt's thread, then in the task engine; and for
    each log line without a node): each a `Settings()` that reads every environment variable, profile and
    TOML source again, about 70 ms. Half of a node-task build went there: the demo's 46 nodes took 12 s
    (15 CPU-s), 6 s (8 CPU-s) with this shim, and 2 s in one step. The threads are in this process, so they
    are given the flow's own settings objects (Prefect makes new ones to change a setting), which pydantic
    takes as they are; each hydration still makes its own `SettingsContext`. Idempotent."""
    import prefect_dbt.core.runner as runner
    from prefect.context import SettingsContext

    serialize = runner.serialize_context
    if getattr(serialize, "shares_settings", False):
        return

    def serialize_context(*args: Any, **kwargs: Any) -> dict[str, Any]:
        context = serialize(*args, **kwargs)
        current = SettingsContext.get()
        if current is not None and context.get("settings_context"):
            context["settings_context"] = {"profile": current.profile, "settings": current.settings}
        return context

    serialize_context.shares_settings = True  # type: ignore[attr-defined]
    runner.serialize_context = serialize_context
