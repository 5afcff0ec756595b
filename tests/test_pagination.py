"""iter_pages: page by page, resume from a saved cursor, and no endless loops on a misbehaving server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from extract.client import AceClient, RequestStats
from extract.errors import PaginationError
from extract.pagination import Page, iter_pages
from extract.retry import RetryPolicy

START, END = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=4, deadline=30.0, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


def real_page(names: list[str], next_cursor: str | None, has_more: bool) -> dict[str, object]:
    samples = [{"name": n, "time": "2026-11-27T00:00:00Z", "value": 1.0} for n in names]
    return {"point_samples": samples, "next_cursor": next_cursor, "has_more": has_more}


def cursor_server(pages: dict[str | None, dict[str, object]]) -> tuple[AceClient, list[httpx.Request]]:
    """A server answering each cursor (None: no cursor) with a fixed page."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    client = AceClient(
        "http://api.test/api", "k", retry_policy=FAST, requests_per_minute=None, transport=httpx.MockTransport(handler)
    )
    return client, seen


def numbered(pages: Iterator[Page]) -> list[tuple[int, str | None, list[str]]]:
    return [(p.number, p.cursor, p.samples["point_name"].to_list()) for p in pages]


THREE_PAGES = {
    None: real_page(["a"], "c1", True),
    "c1": real_page(["b", "c"], "c2", True),
    "c2": real_page(["d"], None, False),
}


def test_pages_follow_cursors_with_the_window_query() -> None:
    client, seen = cursor_server(THREE_PAGES)
    stats = RequestStats()
    with client:
        pages = list(iter_pages(client, "site/1", START, END, page_size=2, stats=stats))
    assert numbered(iter(pages)) == [(0, None, ["a"]), (1, "c1", ["b", "c"]), (2, "c2", ["d"])]
    assert [p.next_cursor for p in pages] == ["c1", "c2", None]
    assert seen[0].url.raw_path.startswith(b"/api/sites/site%2F1/timeseries/paginated?")
    assert dict(seen[1].url.params) == {
        "start_time": "2026-11-27T00:00:00Z",
        "end_time": "2026-11-28T00:00:00Z",
        "page_size": "2",
        "raw_data": "true",
        "cursor": "c1",
    }
    assert "cursor" not in seen[0].url.params
    assert stats.requests == 3 and stats.bytes == sum(p.nbytes for p in pages) > 0


def test_resume_from_a_saved_cursor_yields_only_the_rest() -> None:
    client, seen = cursor_server(THREE_PAGES)
    with client:
        assert numbered(iter_pages(client, "s", START, END, cursor="c1", first_page_number=1)) == [
            (1, "c1", ["b", "c"]),
            (2, "c2", ["d"]),
        ]
    assert [r.url.params.get("cursor") for r in seen] == ["c1", "c2"]


def test_has_more_false_stops_even_with_a_cursor_and_no_cursor_stops_too() -> None:
    client, seen = cursor_server({None: real_page(["a"], "c1", False)})
    with client:
        assert len(list(iter_pages(client, "s", START, END))) == 1
    client, seen = cursor_server({None: real_page(["a"], None, True)})
    with client:
        assert len(list(iter_pages(client, "s", START, END))) == 1
    assert len(seen) == 1


@pytest.mark.parametrize(("start_cursor", "requests"), [(None, 3), ("c1", 2)])
def test_a_repeated_cursor_is_a_pagination_error(start_cursor: str | None, requests: int) -> None:
    client, seen = cursor_server(
        {None: real_page(["a"], "c1", True), "c1": real_page(["b"], "c2", True), "c2": real_page(["c"], "c1", True)}
    )
    got: list[Page] = []
    with client, pytest.raises(PaginationError, match="'c1' again"):
        got.extend(iter_pages(client, "s", START, END, cursor=start_cursor))
    # The page that repeats the cursor is not handed out: its cursor must not be checkpointed.
    assert [p.next_cursor for p in got] == (["c1", "c2"] if start_cursor is None else ["c2"])
    assert len(seen) == requests


def test_seed_shape_pages_are_read_too() -> None:
    seed = {
        None: {
            "data": [{"point_name": "p", "timestamp": "2026-11-27T00:00:00Z", "value": 2, "quality": "good"}],
            "pagination": {"next_cursor": "n1", "has_more": True},
            "total_count": 2,
        },
        "n1": {"data": [], "pagination": {"next_cursor": None, "has_more": False}, "total_count": 2},
    }
    client, _ = cursor_server(seed)
    with client:
        pages = list(iter_pages(client, "s", START, END))
    assert [p.samples.height for p in pages] == [1, 0] and pages[1].cursor == "n1"
