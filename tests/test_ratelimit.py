"""The client-side sliding-window limiter; the loopback test against a rate-limited simulator is below."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ace_etl.simulator import Faults, Simulator, SimulatorConfig
from extract.api.budget import SharedBudget
from extract.api.client import AceClient
from extract.api.pagination import iter_pages
from extract.api.ratelimit import Limiter, Rate, RateLimiter, shared_rate_limiter
from extract.errors import ConfigError
from tests.support import FAST


def acquire_times(limiter: RateLimiter, threads: int, per_thread: int) -> list[float]:
    """When the limiter granted each slot, by its own clock: a time taken after `acquire` returned can be
    late by however long the thread waited to run again, which made this test fail under load."""
    times: list[float] = []

    def work() -> None:
        for _ in range(per_thread):
            slot = limiter.acquire()
            # A grant stays in the window until a later acquire finds it a whole period old.
            with limiter._lock:
                times.append(limiter._sent[slot])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(times)


def test_no_window_ever_holds_more_than_capacity() -> None:
    limiter = RateLimiter(5, 0.5, margin=0.02)
    times = acquire_times(limiter, threads=3, per_thread=5)
    assert len(times) == 15
    # Any capacity+1 consecutive grants span at least the period plus the margin: a sliding window.
    assert min(later - earlier for earlier, later in zip(times, times[5:], strict=False)) >= 0.5 + 0.02 - 1e-9


def paced(rate: Rate, requests: int, answer_after: float = 0.0) -> list[float]:
    """When `rate` lets `requests` sequential requests go, on a clock that only moves by its waits; each
    answer arrives `answer_after` seconds after its request."""
    now, granted, stamps = 0.0, [], []
    while len(granted) < requests:
        stamps = [at for at in stamps if at > now - rate.window]
        wait = rate.wait(
            now, sent=len(stamps), oldest=min(stamps, default=None), last=max(granted, default=None)
        )
        if wait > 0:
            now += wait
            continue
        granted.append(now)
        stamps.append(now + answer_after)
    return granted


@pytest.mark.parametrize("answer_after", [0.0, 0.5, 3.0])
def test_no_window_of_any_length_holds_more_than_its_share(answer_after: float) -> None:
    # 60 a minute, against a server allowing 10 per 10 s: the window the budget never sees must hold too.
    rate = Rate(60, 60.0)
    granted = paced(rate, 200, answer_after)
    for length in (1.0, 10.0, 30.0, 60.0):
        most = max(sum(1 for t in granted if start <= t < start + length) for start in granted)
        assert most <= max(1, length * rate.capacity / rate.period), (length, most)
    assert min(b - a for a, b in itertools.pairwise(granted)) >= 61.0 / 60 - 1e-9


@pytest.mark.parametrize("kind", ["in-process", "shared"])
def test_a_settled_slot_counts_from_when_its_response_arrived(kind: str, tmp_path: Path) -> None:
    # A slow first response must not let the next request reach the server within the period of it.
    limiter: Limiter = (
        RateLimiter(1, 0.3, margin=0.0)
        if kind == "in-process"
        else SharedBudget(tmp_path / "budget.sqlite", "key", 1, 0.3, margin=0.0)
    )
    slot = limiter.acquire()
    time.sleep(0.2)
    settled = time.monotonic()
    limiter.settle(slot)
    limiter.acquire()
    # A full period after the response, not after the slot was taken (that would be 0.2 s earlier).
    assert time.monotonic() - settled >= 0.29


@pytest.mark.parametrize("kind", ["in-process", "shared"])
def test_a_pause_longer_than_the_callers_cap_is_cut_to_it(kind: str, tmp_path: Path) -> None:
    # Set by a client with a longer cap sharing the limiter (or an older version): this caller's cap rules.
    limiter: Limiter = (
        RateLimiter(100, 60.0)
        if kind == "in-process"
        else SharedBudget(tmp_path / "b.sqlite", "key", 100, 60.0)
    )
    limiter.pause(3600.0)
    limiter.acquire(max_pause=0.05)  # returns (a test run stuck for an hour would time out and fail)
    limiter.acquire(max_pause=0.05)  # the cut holds: no second wait of the cap


def test_shared_limiter_is_one_instance_per_key_rate_and_period() -> None:
    assert shared_rate_limiter("k", 123) is shared_rate_limiter("k", 123.0)
    assert shared_rate_limiter("k", 123) is not shared_rate_limiter("k", 123, period=3.0)
    assert shared_rate_limiter("k", 123).capacity == 123
    twenty_per_three_seconds = shared_rate_limiter("k", 400, period=3.0)
    assert (twenty_per_three_seconds.capacity, twenty_per_three_seconds.period) == (20, 3.0)
    assert 0 < twenty_per_three_seconds.margin <= 0.1


def test_two_keys_at_the_same_rate_have_separate_budgets_and_one_key_has_one() -> None:
    # The server counts per key: clients of one key in a process share its budget, another key has its own.
    url = "http://127.0.0.1:9/api"
    clients = [
        AceClient(url, "key-one", requests_per_minute=321),
        AceClient(url, "key-one", requests_per_minute=321),
        AceClient(url, "key-two", requests_per_minute=321),
        AceClient("http://127.0.0.2:9/api", "key-one", requests_per_minute=321),
    ]
    first, again, other_key, other_api = (client.rate_limiter for client in clients)
    for client in clients:
        client.close()
    assert first is again
    assert other_key is not first and other_api is not first


def test_a_rate_below_one_request_per_period_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        shared_rate_limiter("k", 0.5, period=60.0)


def test_four_pagers_sharing_one_limiter_are_never_throttled_and_lose_no_time() -> None:
    # The server allows 20 requests per 3 s; each of 4 threads pages through its own site, 20 pages each.
    sites = ("s1", "s2", "s3", "s4")
    cfg = SimulatorConfig(
        sites=sites, points=10, interval=60, api_key="demo", faults=Faults(rate_limit=20, rate_period=3.0)
    )
    start, end = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 27, 1, tzinfo=UTC)
    limiter = shared_rate_limiter("k", 20 * 60 / 3, period=3.0)
    pages: dict[str, int] = {}

    def page_through(sim: Simulator, site: str) -> None:
        with AceClient(sim.url, "demo", retry_policy=FAST, rate_limiter=limiter) as client:
            pages[site] = sum(1 for _ in iter_pages(client, site, start, end, page_size=30))

    with Simulator(cfg) as sim:
        workers = [threading.Thread(target=page_through, args=(sim, site)) for site in sites]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        log = sim.requests

    assert pages == dict.fromkeys(sites, 20)
    assert len(log) == 80 and {e["status"] for e in log} == {200}
    # The first 20 go at once, then 20 more every 3 s: nothing can be faster than this. How close to it the
    # limiter gets is a figure of benchmarks/scale.py, not a test.
    floor = (len(log) - 20) / 20 * 3.0
    assert floor <= elapsed
