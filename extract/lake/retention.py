"""Retention: raw samples of the days before a cutoff are deleted from the timeseries Delta table, on purpose.

The cutoff is recorded (`state/retention/`, for all sites or for one) before the delete, so that nothing
takes the deleted days for missing data: heal skips the gaps before it. The checkpoints of the deleted
windows stay `complete`, so a run does not fetch them again either (`--force` does). A recorded cutoff only
moves forward: a later retention keeping more days cannot bring back what is gone.
"""

from __future__ import annotations

import json
from datetime import date

from extract.lake import tables as lake
from extract.lake.landing import TIMESERIES, retention_path
from extract.lake.storage import Storage


def _recorded(storage: Storage, site: str | None) -> date | None:
    path = retention_path(site)
    if not storage.exists(path):
        return None
    return date.fromisoformat(json.loads(storage.read_bytes(path))["keep_from"])


def cutoff(storage: Storage, site: str) -> date | None:
    """The first day of `site` whose raw samples are kept (None: none were ever deleted)."""
    found = [d for d in (_recorded(storage, None), _recorded(storage, site)) if d is not None]
    return max(found, default=None)


def delete_before(storage: Storage, keep_from: date, sites: list[str] | None = None) -> int:
    """Delete the raw samples (timeseries) of the days before `keep_from`, of `sites` or of every site, in
    one commit per site (one in all for every site). Returns the samples deleted."""
    deleted = 0
    targets: list[str | None] = list(sites) if sites else [None]
    for site in targets:
        recorded = _recorded(storage, site)
        if recorded is None or recorded < keep_from:
            storage.write_bytes_atomic(
                retention_path(site),
                json.dumps({"site_name": site, "keep_from": keep_from.isoformat()}).encode(),
            )
        deleted += lake.delete_before(storage, TIMESERIES, keep_from, site)
    return deleted
