"""Cursor pagination over a site's timeseries for one window, one page at a time.

A generator, so the caller lands and checkpoints each page before the next is fetched and no window is
ever held in memory whole. Retries happen inside `AceClient.get`, never here. A page's pagination fields are
read on receipt (inside the client's retry loop, so a truncated body is asked for again); in the real API's
compact spelling its samples are decoded only when the caller asks for them (`Page.samples`), on a
thread of the caller's while the next page is fetched. Samples that do not decode under a whole tail are a fault
of the server's page, not of the transport: InvalidBodyError, not retried; the window's next run resumes at
that page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from extract import cancel
from extract.api import MAX_PAGE_SIZE
from extract.api.client import AceClient, RequestStats, format_time, site_path
from extract.api.decode import PendingPage, read_timeseries_page
from extract.errors import PaginationError


@dataclass(frozen=True)
class Page:
    number: int  # 0-based within the window; continues from first_page_number on resume
    cursor: str | None  # the cursor that produced this page (None for the first page)
    next_cursor: str | None
    has_more: bool
    pending: PendingPage
    nbytes: int

    @property
    def samples(self) -> pl.DataFrame:
        """The page's samples (RAW_COLUMNS, text), decoded now: InvalidBodyError when they do not decode."""
        return self.pending.samples()


def _read_sized(body: bytes) -> tuple[PendingPage, int]:
    return read_timeseries_page(body), len(body)


def iter_pages(
    client: AceClient,
    site: str,
    start: datetime,
    end: datetime,
    *,
    page_size: int = MAX_PAGE_SIZE,
    cursor: str | None = None,
    first_page_number: int = 0,
    stats: RequestStats | None = None,
) -> Iterator[Page]:
    """Yield the raw pages of `[start, end)` for `site`, from the beginning or from a saved `cursor`.

    Stops after a page with `has_more: false`. Raises PaginationError, before yielding the offending page,
    when the server says there is more but gives no cursor, hands back a cursor already used in this
    iteration, sends `Limits.max_empty_pages` pages in a row with no sample yet more to come, or more pages
    than the window can hold (`Limits.max_pages`): each would otherwise end the window early or never.
    CursorError (from the client) when the server rejects a cursor, e.g. an expired one.
    """
    path = site_path(site, "timeseries", "paginated")
    base_params: dict[str, str | int | bool] = {
        "start_time": format_time(start),
        "end_time": format_time(end),
        "page_size": page_size,
        "raw_data": True,
    }
    limits = client.limits
    max_pages = limits.max_pages((end - start).total_seconds(), page_size)
    seen = {cursor} if cursor is not None else set()
    number = first_page_number
    empty = 0  # pages in a row with no sample that said there is more
    where = f"site {site!r}, window from {format_time(start)}"
    while True:
        params = base_params if cursor is None else {**base_params, "cursor": cursor}
        cancel.check()
        raw, nbytes = client.get(path, params, _read_sized, stats=stats)
        next_cursor = raw.next_cursor if raw.has_more else None
        empty = empty + 1 if raw.has_more and raw.empty else 0
        if raw.has_more and not next_cursor:
            raise PaginationError(
                f"{where}: page {number} says there is more (has_more) but gives no next_cursor, so the rest "
                "cannot be asked for: the window stays incomplete; retry it later"
            )
        if next_cursor in seen:
            raise PaginationError(
                f"{where}: the API returned cursor {next_cursor!r} again after page {number}; "
                "paging on would loop forever: retry the window later"
            )
        if empty >= limits.max_empty_pages:
            raise PaginationError(
                f"{where}: pages {number - empty + 1} to {number} held no sample yet each said there is more "
                f"(Limits.max_empty_pages = {limits.max_empty_pages}); the API is paging without progress: "
                "retry the window later"
            )
        if next_cursor is not None and number + 1 >= max_pages:
            raise PaginationError(
                f"{where}: the API has more after page {number}, beyond the {max_pages} pages of "
                f"{page_size} samples this window can hold (Limits.max_samples_per_second = "
                f"{limits.max_samples_per_second:g}): retry the window later"
            )
        yield Page(number, cursor, raw.next_cursor, raw.has_more, raw, nbytes)
        if next_cursor is None:
            return
        cursor = next_cursor
        seen.add(next_cursor)
        number += 1
