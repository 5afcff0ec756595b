"""iter_pages: page by page, resume from a saved cursor, and no endless loops on a misbehaving server."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl
import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, served_samples
from extract.api.client import AceClient, RequestStats
from extract.api.pagination import Page, iter_pages
from extract.api.ratelimit import RateLimiter
from extract.api.retry import Limits, RetryPolicy
from extract.errors import CursorError, PaginationError, RetriesExhaustedError
from tests.support import FAST

START, END = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)


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
        "http://api.test/api",
        "k",
        retry_policy=FAST,
        requests_per_minute=None,
        transport=httpx.MockTransport(handler),
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


def test_has_more_false_stops_even_with_a_cursor() -> None:
    client, seen = cursor_server({None: real_page(["a"], "c1", False)})
    with client:
        assert len(list(iter_pages(client, "s", START, END))) == 1
    assert len(seen) == 1


@pytest.mark.parametrize(("start_cursor", "requests"), [(None, 3), ("c1", 2)])
def test_a_repeated_cursor_is_a_pagination_error(start_cursor: str | None, requests: int) -> None:
    client, seen = cursor_server(
        {
            None: real_page(["a"], "c1", True),
            "c1": real_page(["b"], "c2", True),
            "c2": real_page(["c"], "c1", True),
        }
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


# --- over loopback HTTP against the simulator -----------------------------------------------------
# 10 points every 60 s for one hour: 600 samples, 6 pages of 100. The simulator numbers requests from 1,
# so a fault "every 3" hits requests 3 and 6 of the 8 it takes to fetch the 6 pages.

SITE = "demo-site"
HOUR_END = datetime(2026, 11, 27, 1, tzinfo=UTC)


def sim_config(**faults: Any) -> SimulatorConfig:
    return SimulatorConfig(sites=(SITE,), points=10, interval=60, api_key="demo", faults=Faults(**faults))


@contextmanager
def serving(
    cfg: SimulatorConfig, policy: RetryPolicy = FAST, **client_options: Any
) -> Iterator[tuple[Simulator, AceClient]]:
    client_options.setdefault("requests_per_minute", None)
    with Simulator(cfg) as sim, AceClient(sim.url, "demo", retry_policy=policy, **client_options) as client:
        yield sim, client


def assert_served(cfg: SimulatorConfig, pages: list[Page], first: int = 0) -> None:
    """The pages hold exactly the served samples from index `first` on, in serving order."""
    got = pl.concat([p.samples for p in pages]).select(
        "point_name", "timestamp", pl.col("value").cast(pl.Float64)
    )
    served = served_samples(cfg, SITE, START, HOUR_END).slice(first)
    assert got.equals(served.select(point_name="name", timestamp="time_raw", value="value"))


def wait_for_log(sim: Simulator, entries: int) -> list[dict[str, Any]]:
    """The request log once it has `entries` lines (a slow response is logged when it has been sent)."""
    deadline = time.monotonic() + 10
    while len(sim.requests) < entries and time.monotonic() < deadline:
        time.sleep(0.02)
    return sim.requests


def epoch(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


def test_a_clean_window_over_http() -> None:
    cfg = sim_config()
    stats = RequestStats()
    with serving(cfg) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=100, stats=stats))
    log = sim.requests
    assert [p.number for p in pages] == list(range(6)) and not pages[-1].has_more
    assert [e["status"] for e in log] == [200] * 6
    assert stats == RequestStats(requests=6, retries=0, bytes=sum(e["bytes"] for e in log), throttled=0)
    assert_served(cfg, pages)


@pytest.mark.parametrize(
    ("faults", "throttled"),
    [
        ({"status_429_every": 3, "retry_after": 0.05}, 2),
        ({"status_500_every": 3}, 0),
        ({"drop_connection_every": 3}, 0),
        ({"truncate_every": 3}, 0),
    ],
    ids=["429", "500", "connection-dropped-mid-body", "truncated-json"],
)
def test_transient_faults_are_retried_and_every_sample_arrives_once(
    faults: dict[str, Any], throttled: int
) -> None:
    cfg = sim_config(**faults)
    stats = RequestStats()
    with serving(cfg) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=100, stats=stats))
    log = sim.requests
    assert len(log) == 8
    assert [e["n"] for e in log if e["fault"]] == [3, 6]
    # Each failed request is repeated as is: same cursor, same page.
    assert log[2]["params"] == log[3]["params"] and log[5]["params"] == log[6]["params"]
    # A dropped connection delivers only part of its body; we count bodies we received whole.
    whole = sum(e["bytes"] for e in log if e["fault"] != "drop_connection")
    assert stats == RequestStats(requests=8, retries=2, bytes=whole, throttled=throttled)
    assert [p.number for p in pages] == list(range(6))
    assert_served(cfg, pages)


@pytest.mark.parametrize("http_date", [False, True], ids=["seconds", "http-date"])
def test_429_waits_exactly_as_long_as_retry_after_says(http_date: bool) -> None:
    cfg = sim_config(status_429_every=3, retry_after=0.3, retry_after_http_date=http_date)
    # A backoff wait (a minute) would end past the deadline, so the client would give up instead: that
    # the retry happened proves its wait came from Retry-After.
    slow_backoff = RetryPolicy(
        max_attempts=3, deadline=30.0, backoff_initial=60.0, backoff_max=60.0, jitter=0.0
    )
    with serving(cfg, slow_backoff) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=200))
    log = sim.requests
    assert [e["status"] for e in log] == [200, 200, 429, 200]
    rejected, retried = epoch(log[2]), epoch(log[3])
    # An HTTP date has whole seconds: the simulator rounds up, so the retry may not come before that second.
    earliest = math.ceil(rejected + 0.3) if http_date else rejected + 0.3
    assert retried >= earliest - 0.002
    assert client.stats.throttled == 1
    assert_served(cfg, pages)


def test_server_rate_limit_is_waited_out_with_its_retry_after() -> None:
    cfg = sim_config(rate_limit=5, rate_period=1.0)
    with serving(cfg) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=100))
    log = sim.requests
    assert [e["status"] for e in log] == [200] * 5 + [429, 200]
    assert epoch(log[6]) >= epoch(log[0]) + 1.0 - 0.002
    assert client.stats.throttled == 1
    assert_served(cfg, pages)


def test_a_client_limited_like_the_server_is_never_throttled() -> None:
    cfg = sim_config(rate_limit=5, rate_period=1.0)
    with serving(cfg, rate_limiter=RateLimiter(5, 1.0)) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=100))
    assert [e["status"] for e in sim.requests] == [200] * 6
    assert_served(cfg, pages)


def test_latency_beyond_the_read_timeout_is_retried_then_exhausted() -> None:
    cfg = sim_config(latency=0.5)
    policy = RetryPolicy(max_attempts=3, deadline=30.0, backoff_initial=0.01, backoff_max=0.01, jitter=0.0)
    with serving(cfg, policy, timeout=httpx.Timeout(0.2, connect=2.0)) as (sim, client):
        with pytest.raises(RetriesExhaustedError, match=r"after 3 attempt\(s\).*last failure: ReadTimeout"):
            next(iter_pages(client, SITE, START, HOUR_END, page_size=100))
        log = wait_for_log(sim, 3)
    assert len(log) == 3 and all("cursor" not in e["params"] for e in log)
    assert client.stats.requests == 3 and client.stats.retries == 2


def test_latency_within_the_read_timeout_is_just_slower() -> None:
    cfg = sim_config(latency=0.05)
    with serving(cfg, timeout=httpx.Timeout(2.0, connect=2.0)) as (sim, client):
        pages = list(iter_pages(client, SITE, START, HOUR_END, page_size=100))
    assert len(sim.requests) == 6
    assert_served(cfg, pages)


def test_an_expired_cursor_is_a_cursor_error_and_the_window_restarts_cleanly() -> None:
    cfg = sim_config()
    with serving(cfg) as (sim, client):
        pager = iter_pages(client, SITE, START, HOUR_END, page_size=100)
        first = next(pager)
        sim.expire_cursors()  # the run paused past the cursor's lifetime
        with pytest.raises(CursorError):
            next(pager)
        again = list(iter_pages(client, SITE, START, HOUR_END, page_size=100))
    log = sim.requests
    assert len(log) == 2 + 6
    assert (log[1]["status"], log[1]["fault"], log[1]["params"]["cursor"]) == (
        400,
        "cursor_ttl",
        first.next_cursor,
    )
    assert first.samples.equals(again[0].samples)
    assert_served(cfg, again)


def test_resume_from_a_saved_cursor_over_http_yields_exactly_the_remaining_pages() -> None:
    cfg = sim_config()
    with serving(cfg) as (sim, client):
        saved = list(itertools.islice(iter_pages(client, SITE, START, HOUR_END, page_size=100), 3))
    # A new simulator and client, as after a crash: the cursor is all that was kept.
    with serving(cfg) as (sim, client):
        rest = list(
            iter_pages(
                client,
                SITE,
                START,
                HOUR_END,
                page_size=100,
                cursor=saved[-1].next_cursor,
                first_page_number=3,
            )
        )
    assert (rest[0].number, rest[0].cursor) == (3, saved[-1].next_cursor)
    assert [p.number for p in rest] == [3, 4, 5]
    assert len(sim.requests) == 3
    assert_served(cfg, saved + rest)


# --- a server that pages without end or without a way on -------------------------------------------


@pytest.mark.parametrize("lost", ["null", "empty"])
def test_more_without_a_cursor_fails_the_window_rather_than_end_it(lost: str) -> None:
    cfg = sim_config(lost_cursor=lost)
    with serving(cfg) as (sim, client), pytest.raises(PaginationError) as info:
        list(iter_pages(client, SITE, START, HOUR_END, page_size=100))
    assert str(info.value) == (
        "site 'demo-site', window from 2026-11-27T00:00:00Z: page 0 says there is more (has_more) but gives "
        "no next_cursor, so the rest cannot be asked for: the window stays incomplete; retry it later"
    )
    assert len(sim.requests) == 1


def test_endless_empty_pages_with_fresh_cursors_end_after_a_few() -> None:
    with serving(sim_config(empty_pages=True)) as (sim, client), pytest.raises(PaginationError) as info:
        # Bounded here so that a pager which never gives up fails the test rather than hang it.
        pages = list(itertools.islice(iter_pages(client, SITE, START, HOUR_END, page_size=100), 50))
        pytest.fail(f"{len(pages)} empty pages and still paging")
    assert "pages 0 to 2 held no sample yet each said there is more" in str(info.value)
    assert "retry the window later" in str(info.value) and "\n" not in str(info.value)
    cursors = [e["params"].get("cursor") for e in sim.requests]
    assert len(cursors) == 3 and len(set(cursors)) == 3  # every cursor was new: only the rule stopped it


def test_more_pages_than_a_window_can_hold_fail_it() -> None:
    # Empty pages allowed here, so the page cap is what stops: a window of 0 samples a second holds none,
    # plus the cap's spare pages.
    limits = Limits(max_empty_pages=1_000, max_samples_per_second=0.0)
    assert limits.max_pages(3600, 100) == 10
    cfg = sim_config(empty_pages=True)
    with serving(cfg, limits=limits) as (sim, client), pytest.raises(PaginationError) as info:
        list(itertools.islice(iter_pages(client, SITE, START, HOUR_END, page_size=100), 50))
    assert "beyond the 10 pages of 100 samples this window can hold" in str(info.value)
    assert len(sim.requests) == 10


def test_the_page_cap_is_generous_for_real_windows() -> None:
    limits = Limits()
    # A day of 10,000 points sampled every second fits at the largest page size, and again at 1,000.
    assert limits.max_pages(86_400, 100_000) >= 86_400 * 10_000 / 100_000
    assert limits.max_pages(86_400, 1_000) >= 86_400 * 10_000 / 1_000
