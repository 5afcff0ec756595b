"""Damaged state is set aside, never deleted: moved under `quarantine/<time>/<its path>` with the reason."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from extract.landing import CHECKPOINTS, QUARANTINE, file_window
from extract.redact import one_line
from extract.storage import Storage
from extract.windows import compact_time

log = logging.getLogger(__name__)


def quarantine(storage: Storage, path: str, reason: str) -> str:
    """Move `path` (a file of the data dir) to the quarantine and log one warning; returns its new path."""
    moved = f"{QUARANTINE}/{compact_time(datetime.now(UTC))}/{path}"
    storage.rename(path, moved)
    storage.write_bytes_atomic(f"{moved}.reason.txt", reason.encode())
    log.warning("set aside %s (%s): moved to %s; the data it described is fetched again", path, reason, moved)
    return moved


def quarantined(storage: Storage) -> list[str]:
    """The files in the quarantine (reasons excluded)."""
    return [p for p in storage.list(QUARANTINE) if not p.endswith(".reason.txt")]


def set_aside_unreadable(storage: Storage, paths: Iterable[str]) -> list[str]:
    """Quarantine every landing file among `paths` whose Parquet footer cannot be read (truncated, foreign),
    and the checkpoint of the window it belonged to, so the next run of that range fetches it again and no
    reader (dbt, analysts) trips on it. Returns the paths set aside."""
    aside = []
    for path in paths:
        try:
            storage.parquet_rows(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            quarantine(storage, path, f"unreadable Parquet: {one_line(str(exc), limit=200)}")
            aside.append(path)
            window = file_window(path)
            folder = next((part for part in path.split("/") if part.startswith("site_name=")), None)
            if window is not None and folder is not None:
                checkpoint = f"{CHECKPOINTS}/{folder}/{window.key}.json"
                if storage.exists(checkpoint):
                    quarantine(storage, checkpoint, f"its file {path} was unreadable")
    return aside
