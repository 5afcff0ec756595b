"""Damaged state is set aside, never deleted: moved under `quarantine/<time>/<its path>` with the reason."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from extract.lake.landing import checkpoint_of, quarantine_path, reason_path
from extract.lake.storage import Storage
from extract.redact import one_line

log = logging.getLogger(__name__)


def quarantine(storage: Storage, path: str, reason: str) -> str:
    """Move `path` (a file of the data dir) to the quarantine and log one warning; returns its new path."""
    moved = quarantine_path(path, datetime.now(UTC))
    storage.rename(path, moved)
    storage.write_bytes_atomic(reason_path(moved), reason.encode())
    log.warning("set aside %s (%s): moved to %s; the data it described is fetched again", path, reason, moved)
    return moved


def set_aside_unreadable(storage: Storage, paths: Iterable[str]) -> list[str]:
    """Quarantine every landing file among `paths` whose Parquet footer cannot be read (truncated, foreign),
    and the checkpoint of the window it belonged to, so the next run of that range fetches it again and no
    reader (dbt, analysts) trips on it. Returns the paths set aside."""
    aside = []
    for path in paths:
        try:
            storage.parquet_footer(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            quarantine(storage, path, f"unreadable Parquet: {one_line(str(exc), limit=200)}")
            aside.append(path)
            checkpoint = checkpoint_of(path)
            if checkpoint is not None and storage.exists(checkpoint):
                quarantine(storage, checkpoint, f"its file {path} was unreadable")
    return aside
