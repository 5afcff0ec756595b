"""Per-window progress in `state/`: where to resume, and the counts so far.

Saved after every landed page (the page's files first, then this), atomically, so after a crash the saved
cursor always points at the first page whose files may be missing or partial. Re-fetching that page
rewrites the same deterministic file names, which is what makes resume exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from extract.landing import checkpoint_path
from extract.parse import PageRows
from extract.storage import Storage
from extract.windows import Window

_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """Progress of one (site, window). `next_page` is also the number of pages landed so far.

    `page_size` and `selection` record the query the cursor belongs to: a resume with different ones must
    start over, since the cursor is bound to its query and the landed rows to the old selection.
    """

    site: str
    window: Window
    page_size: int
    selection: str
    complete: bool = False
    next_cursor: str | None = None
    next_page: int = 0
    records_fetched: int = 0
    records_kept: int = 0
    records_filtered: int = 0
    records_rejected: int = 0

    def after_page(self, rows: PageRows, *, next_cursor: str | None, has_more: bool) -> Checkpoint:
        """The progress once a page's rows have landed."""
        return replace(
            self,
            complete=not has_more or next_cursor is None,
            next_cursor=next_cursor if has_more else None,
            next_page=self.next_page + 1,
            records_fetched=self.records_fetched + rows.fetched,
            records_kept=self.records_kept + rows.kept.height,
            records_filtered=self.records_filtered + rows.filtered,
            records_rejected=self.records_rejected + rows.rejects.height,
        )

    def resumes(self, *, page_size: int, selection: str) -> bool:
        """Whether an unfinished checkpoint can be continued by a run with these settings."""
        return not self.complete and self.page_size == page_size and self.selection == selection

    def to_json(self) -> bytes:
        fields = asdict(self)
        fields["window"] = {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()}
        return json.dumps({"version": _VERSION, **fields}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        fields = json.loads(data)
        if fields.pop("version", None) != _VERSION:
            raise ValueError("unknown checkpoint version")
        window = fields.pop("window")
        return cls(
            window=Window(datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])),
            **fields,
        )


def load_checkpoint(storage: Storage, site: str, window: Window) -> Checkpoint | None:
    """The saved progress, or None when there is none or it cannot be read (the window then starts over)."""
    try:
        checkpoint = Checkpoint.from_json(storage.read_bytes(checkpoint_path(site, window)))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
    return checkpoint if checkpoint.site == site and checkpoint.window == window else None


def save_checkpoint(storage: Storage, checkpoint: Checkpoint) -> None:
    storage.write_bytes_atomic(checkpoint_path(checkpoint.site, checkpoint.window), checkpoint.to_json())


def clear_checkpoint(storage: Storage, site: str, window: Window) -> None:
    storage.delete([checkpoint_path(site, window)])
