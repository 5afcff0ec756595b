"""The client-side sliding-window limiter; the loopback test against a rate-limited simulator is below."""

from __future__ import annotations

import threading
import time

import pytest

from extract.errors import ConfigError
from extract.ratelimit import RateLimiter, shared_rate_limiter


def acquire_times(limiter: RateLimiter, threads: int, per_thread: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(times)


def test_no_window_ever_holds_more_than_capacity() -> None:
    limiter = RateLimiter(5, 0.3, margin=0.02)
    times = acquire_times(limiter, threads=3, per_thread=5)
    assert len(times) == 15
    # Any capacity+1 consecutive grants span at least the period plus the margin: a sliding window.
    assert min(later - earlier for earlier, later in zip(times, times[5:], strict=False)) >= 0.32
    # ...and no more than that: the first 5 at once, then 5 per window, so 2 windows of waiting.
    assert times[-1] - times[0] == pytest.approx(0.64, abs=0.1)


def test_shared_limiter_is_one_instance_per_rate_and_period() -> None:
    assert shared_rate_limiter(123) is shared_rate_limiter(123.0)
    assert shared_rate_limiter(123) is not shared_rate_limiter(123, period=3.0)
    assert shared_rate_limiter(123).capacity == 123
    twenty_per_three_seconds = shared_rate_limiter(400, period=3.0)
    assert (twenty_per_three_seconds.capacity, twenty_per_three_seconds.period) == (20, 3.0)
    assert 0 < twenty_per_three_seconds.margin <= 0.1


def test_a_rate_below_one_request_per_period_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        shared_rate_limiter(0.5, period=60.0)
