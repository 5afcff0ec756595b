"""Damaged state is set aside, never deleted: moved under `quarantine/<time>/<its path>` with the reason."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from extract.landing import QUARANTINE
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
