"""Per-window state in `state/checkpoints/`: where an attempt stands, its counts, and its manifest.

A checkpoint names one attempt at one window of one site and moves through three states:
- `landing`: pages are being staged; saved after every page (files first, then this), atomically, so after
  a crash the saved cursor points at the first page whose files may be missing or partial.
- `publishing`: every page is staged; the manifest (`files`, landing paths) is final and the commit moves
  it into the landing and removes the files it replaces. A crash here is finished by the next run.
- `complete`: the landing holds exactly the manifest's files for this window.
- `live`: a window still open, kept current by live runs: its manifest's files are in the landing and
  cover `[start, live_until)`; it becomes `complete` once live_until reaches the window's end.

The checkpoint also records the selection it was extracted for (`names`, `patterns`): a window complete
for some points is not complete for others.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from extract.api.parse import PageRows
from extract.api.points import PointSelector
from extract.lake.landing import checkpoint_files, checkpoint_path, checkpoint_window
from extract.lake.quarantine import quarantine
from extract.lake.storage import Storage
from extract.windows import Window

_VERSION = 3
# Version 2 had no `commits`: it reads as one whose Delta commits are still to be made.
_READABLE = (2, 3)

State = Literal["landing", "publishing", "complete", "live"]


@dataclass(frozen=True)
class Checkpoint:
    """Progress of one attempt at a (site, window). `next_page` is also the number of pages staged so far.

    `page_size` and the selection record the query the cursor belongs to: a resume with other ones must
    start over, since the cursor is bound to its query and the staged rows to the old selection.
    """

    site: str
    window: Window
    page_size: int
    attempt: str
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    state: State = "landing"
    next_cursor: str | None = None
    next_page: int = 0
    records_fetched: int = 0
    records_kept: int = 0
    records_filtered: int = 0
    records_rejected: int = 0
    files: tuple[str, ...] = field(default=())
    live_until: str | None = None  # ISO instant, for `live` checkpoints
    commits: dict[str, int] = field(default_factory=dict)
    """The Delta version each table's commit of this attempt made (`publishing` until all are there)."""

    @classmethod
    def start(
        cls, site: str, window: Window, page_size: int, attempt: str, selector: PointSelector
    ) -> Checkpoint:
        return cls(site, window, page_size, attempt, tuple(sorted(selector.names)), tuple(selector.patterns))

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def selector(self) -> PointSelector:
        return PointSelector(frozenset(self.names), self.patterns)

    def after_page(
        self, rows: PageRows, files: list[str], *, next_cursor: str | None, has_more: bool
    ) -> Checkpoint:
        """The progress once a page's rows are staged; the last page moves it to `publishing`."""
        last = not has_more or next_cursor is None
        return replace(
            self,
            state="publishing" if last else "landing",
            next_cursor=None if last else next_cursor,
            next_page=self.next_page + 1,
            records_fetched=self.records_fetched + rows.fetched,
            records_kept=self.records_kept + rows.kept.height,
            records_filtered=self.records_filtered + rows.filtered,
            records_rejected=self.records_rejected + rows.rejects.height,
            files=(*self.files, *files),
        )

    def resumes(self, *, page_size: int, selector: PointSelector) -> bool:
        """Whether an unfinished checkpoint can be continued by a run with these settings."""
        return (
            self.state == "landing"
            and self.page_size == page_size
            and self.selector.fingerprint == selector.fingerprint
        )

    def to_json(self) -> bytes:
        fields = {
            **self.__dict__,
            "window": {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
        }
        return json.dumps({"version": _VERSION, **fields}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """Raises ValueError for anything that is not a checkpoint this version wrote."""
        try:
            fields = json.loads(data)
            if not isinstance(fields, dict) or fields.pop("version", None) not in _READABLE:
                raise ValueError(f"not a version-{_VERSION} checkpoint")
            window = fields.pop("window")
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
            if not isinstance(values.get("commits", {}), dict):
                raise ValueError("commits must be an object")
            checkpoint = cls(
                window=Window(datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])),
                **values,
            )
        except (TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed checkpoint: {exc}") from exc
        if checkpoint.state not in ("landing", "publishing", "complete", "live"):
            raise ValueError(f"unknown checkpoint state {checkpoint.state!r}")
        return checkpoint


def load_checkpoints(storage: Storage, site: str, within: Window | None = None) -> list[Checkpoint]:
    """The site's readable checkpoints (only those overlapping `within`, when given, judged by file name
    so that a long history is not read), in window order. A damaged one (empty, not JSON, another version,
    another site or window) is moved to the quarantine with a warning: its window is then not complete,
    so the next run of that range fetches it again."""
    found = []
    for path in checkpoint_files(storage, site):
        named = checkpoint_window(path)
        if (
            within is not None
            and named is not None
            and not (named.start < within.end and within.start < named.end)
        ):
            continue
        try:
            checkpoint = Checkpoint.from_json(storage.read_bytes(path))
            if checkpoint.site != site or checkpoint_path(site, checkpoint.window) != path:
                raise ValueError("it belongs to another site or window")
        except (ValueError, OSError) as exc:
            with contextlib.suppress(FileNotFoundError):  # another run set it aside first
                quarantine(storage, path, f"unreadable checkpoint: {exc}")
            continue
        found.append(checkpoint)
    return sorted(found, key=lambda c: c.window)


def save_checkpoint(storage: Storage, checkpoint: Checkpoint) -> None:
    storage.write_bytes_atomic(checkpoint_path(checkpoint.site, checkpoint.window), checkpoint.to_json())


def clear_checkpoint(storage: Storage, checkpoint: Checkpoint) -> None:
    storage.delete([checkpoint_path(checkpoint.site, checkpoint.window)])
