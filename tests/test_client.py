"""AceClient: retries, typed errors, stats and secrecy of the key.

Narrow cases use httpx.MockTransport; every fault is also exercised over loopback HTTP against the
simulator (exact request counts from its request log, exact samples from `served_samples`).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from ace_etl.simulator import Faults, Simulator, SimulatorConfig, site_points
from extract.api.budget import SharedBudget
from extract.api.client import AceClient, RequestStats, format_time, site_path
from extract.api.retry import DEFAULT_RETRY_POLICY, Limits, RetryPolicy, retry_after_seconds
from extract.api.weather import parse_weather
from extract.config import Settings
from extract.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    CancelledError,
    ConfigError,
    CursorError,
    InvalidBodyError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    SiteNotFoundError,
    UnexpectedResponseError,
)
from tests.support import FAST, withdraw_stop_request

KEY = "s3cret-key-do-not-log"

Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, retry_policy: RetryPolicy = FAST) -> AceClient:
    return AceClient(
        "http://api.test/api",
        KEY,
        retry_policy=retry_policy,
        requests_per_minute=None,
        transport=httpx.MockTransport(handler),
    )


def scripted(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with `responses` in order (an exception is raised instead), and its request log."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = responses[len(seen)]
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def ok(payload: object) -> httpx.Response:
    return httpx.Response(200, json=payload)


def decode_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidBodyError("bad json") from exc


# --- small pure helpers ---------------------------------------------------------------------------


def test_retry_after_seconds_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0.25 ") == 0.25
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after_seconds("Fri, 27 Nov 2026 11:59:00 GMT", now) == 0.0  # in the past: go now
    for bad in (None, "", "soon", "-1", "nan", "inf"):
        assert retry_after_seconds(bad, now) is None


def test_format_time_is_utc_with_z() -> None:
    assert format_time(datetime(2026, 11, 27, tzinfo=UTC)) == "2026-11-27T00:00:00Z"
    assert (
        format_time(datetime(2026, 11, 27, 1, 30, tzinfo=timezone(timedelta(hours=1))))
        == "2026-11-27T00:30:00Z"
    )
    assert format_time(datetime(2026, 11, 27)) == "2026-11-27T00:00:00Z"
    assert format_time(datetime(2026, 11, 27, 0, 0, 0, 500, tzinfo=UTC)) == "2026-11-27T00:00:00.000500Z"


def test_site_names_are_percent_encoded_into_the_path() -> None:
    handler, seen = scripted(ok({"temp": {}}))
    with mock_client(handler) as client:
        client.weather("../x y/z")
    assert site_path("../x y/z", "weather") == "/sites/..%2Fx%20y%2Fz/weather"
    assert seen[0].url.raw_path == b"/api/sites/..%2Fx%20y%2Fz/weather"


@pytest.mark.parametrize(
    ("site", "raw"), [("..", b"/api/sites/%2E%2E/weather"), (".", b"/api/sites/%2E/weather")]
)
def test_dot_site_names_are_not_resolved_away(site: str, raw: bytes) -> None:
    handler, seen = scripted(ok({"temp": {}}))
    with mock_client(handler) as client:
        client.weather(site)
    assert seen[0].url.raw_path == raw


def test_default_policy_matches_the_contract() -> None:
    assert DEFAULT_RETRY_POLICY.max_attempts == 8 and DEFAULT_RETRY_POLICY.deadline == 600.0
    assert DEFAULT_RETRY_POLICY.retry_statuses == {429, 500, 502, 503, 504}
    for retry in range(1, 12):
        assert 0.5 <= DEFAULT_RETRY_POLICY.backoff(retry) <= 30.0


# --- requests, headers, stats --------------------------------------------------------------------


def test_bearer_key_sent_and_stats_counted_per_call_and_in_total() -> None:
    handler, seen = scripted(
        httpx.Response(503), httpx.Response(429, headers={"Retry-After": "0"}), ok({"a": 1})
    )
    window = RequestStats()
    with mock_client(handler) as client:
        assert client.get("/x", {"flag": True, "n": 3}, decode_json, stats=window) == {"a": 1}
    assert [r.headers["Authorization"] for r in seen] == [f"Bearer {KEY}"] * 3
    assert seen[0].url.params["flag"] == "true" and seen[0].url.params["n"] == "3"
    assert window == RequestStats(requests=3, retries=2, bytes=len(b'{"a":1}'), throttled=1)
    assert client.stats == window


def test_invalid_body_and_transport_errors_are_retried() -> None:
    handler, seen = scripted(
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, content=b'{"a": '),
        ok({"a": 2}),
    )
    with mock_client(handler) as client:
        assert client.get("/x", {}, decode_json) == {"a": 2}
    assert len(seen) == 4
    assert client.stats.retries == 3


def test_attempts_exhausted_names_the_last_failure() -> None:
    handler, seen = scripted(*[httpx.Response(502)] * 3, httpx.Response(500))
    with mock_client(handler) as client, pytest.raises(RetriesExhaustedError) as info:
        client.get("/sites/a/weather", {}, decode_json)
    assert len(seen) == 4
    message = str(info.value)
    assert "after 4 attempt(s)" in message and message.endswith("last failure: HTTP 500")
    assert "\n" not in message


def test_a_retry_after_within_the_cap_is_obeyed_past_the_deadline() -> None:
    # The deadline bounds our own backoff; the server's wait is bounded by retry_after_max and the attempts.
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "1"}), ok({"a": 1}))
    policy = RetryPolicy(max_attempts=3, deadline=0.5, retry_after_max=5.0, jitter=0.0)
    with mock_client(handler, policy) as client:
        assert client.get("/x", {}, decode_json) == {"a": 1}
    assert len(seen) == 2 and client.stats.throttled == 1


def test_the_deadline_bounds_backoff_waits() -> None:
    handler, seen = scripted(*[httpx.Response(503)] * 8)
    policy = RetryPolicy(max_attempts=8, deadline=0.5, backoff_initial=0.2, backoff_max=10.0, jitter=0.0)
    with mock_client(handler, policy) as client, pytest.raises(RetriesExhaustedError):
        client.get("/x", {}, decode_json)
    # Waits of 0.2 then 0.4 s: the second would end past 0.5 s, so only two attempts are made.
    assert len(seen) == 2


# --- errors that are never retried ----------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_an_auth_error_without_the_key(status: int, caplog: pytest.LogCaptureFixture) -> None:
    handler, seen = scripted(httpx.Response(status, json={"error": f"bad token {KEY}"}))
    caplog.set_level(logging.DEBUG)
    with mock_client(handler) as client, pytest.raises(AuthError) as info:
        client.get("/sites/a/weather", {}, decode_json)
    assert str(info.value) == f"the API key was rejected (HTTP {status}): set ACEIOT_API_KEY to a valid key"
    assert info.value.status == status and len(seen) == 1
    for text in (str(info.value), repr(info.value), repr(client), repr(client._http), caplog.text):
        assert KEY not in text


def test_unknown_site_is_site_not_found() -> None:
    handler, seen = scripted(httpx.Response(404, json={"error": "not found"}))
    with mock_client(handler) as client, pytest.raises(SiteNotFoundError) as info:
        client.weather("no/such site")
    assert str(info.value) == (
        "no such site 'no/such site' (HTTP 404): check the site name, e.g. with the site list in FlightDeck"
    )
    assert len(seen) == 1


def test_bad_request_carries_the_server_text_on_one_line() -> None:
    handler, seen = scripted(httpx.Response(400, json={"error": "page_size must be\n  at most 100000"}))
    with mock_client(handler) as client, pytest.raises(BadRequestError) as info:
        client.get("/x", {"page_size": 10**6}, decode_json)
    assert not isinstance(info.value, CursorError)
    assert str(info.value) == "the API rejected GET /x (HTTP 400): page_size must be at most 100000"
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("params", "error"),
    [({"cursor": "c1"}, "invalid request"), ({}, "Cursor expired"), ({}, "cursor does not match the query")],
)
def test_cursor_rejections_are_cursor_errors(params: dict[str, str], error: str) -> None:
    handler, seen = scripted(httpx.Response(400, json={"error": error}))
    with mock_client(handler) as client, pytest.raises(CursorError, match="restart the window"):
        client.get("/x", params, decode_json)
    assert len(seen) == 1


def test_other_statuses_are_api_errors_without_retry() -> None:
    handler, seen = scripted(httpx.Response(501, text="not implemented"))
    with mock_client(handler) as client, pytest.raises(ApiError) as info:
        client.get("/x", {}, decode_json)
    assert type(info.value) is ApiError and info.value.status == 501 and len(seen) == 1


# --- configuration and the other endpoints -------------------------------------------------------


def test_from_settings_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="ACEIOT_API_KEY"):
        AceClient.from_settings(Settings(api_url="http://127.0.0.1:9/api"))
    with pytest.raises(ConfigError):
        AceClient("http://127.0.0.1:9/api", "  ")
    settings = Settings(api_url="http://127.0.0.1:9/api", api_key=SecretStr(KEY))
    with AceClient.from_settings(settings, requests_per_minute=None) as client:
        assert client.base_url == "http://127.0.0.1:9/api" and KEY not in repr(client)
    with AceClient("http://127.0.0.1:9/api", SecretStr(KEY), requests_per_minute=None) as client:
        assert KEY not in repr(client)


def points_pages(*pages: list[str], answer: Callable[[int], None] = lambda page: None) -> Handler:
    """A configured_points list answering each page by its number (they may be asked for at once)."""

    def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page"])
        answer(number)
        names = pages[number - 1] if number <= len(pages) else []
        return ok({"items": [{"name": n} for n in names], "page": number, "pages": len(pages), "total": 0})

    return handler


def test_configured_points_reads_every_page_in_order_asking_for_the_rest_at_once() -> None:
    pages = [["a", "b"], ["c", "d"], ["e", "f"], ["g"]]
    # Page 2 is answered only once pages 3 and 4 were asked for: one after another, this would never end.
    asked = {n: threading.Event() for n in (3, 4)}

    def answer(page: int) -> None:
        if page in asked:
            asked[page].set()
        elif page == 2:
            assert all(e.wait(timeout=60) for e in asked.values()), (
                "pages 3 and 4 not asked for beside page 2"
            )

    with mock_client(points_pages(*pages, answer=answer)) as client:
        points = client.configured_points("s", per_page=2)
    assert [p["name"] for p in points] == list("abcdefg")


def test_a_list_stops_at_an_empty_page_whatever_its_page_count_says() -> None:
    seen: list[int] = []
    handler = points_pages(["a"], ["b"], ["c"], [], ["lost"], *[["x"]] * 95, answer=seen.append)
    with mock_client(handler) as client:
        points = client.configured_points("s", per_page=1)
    assert [p["name"] for p in points] == ["a", "b", "c"]
    assert {1, 2, 3, 4} <= set(seen) <= {1, 2, 3, 4, 5}  # the first page, then at most one batch


def test_weather_passes_the_range_only_when_given() -> None:
    handler, seen = scripted(ok({"temp": {"value": 3}}), ok({"data": []}))
    start, end = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
    with mock_client(handler) as client:
        assert client.weather("s") == {"temp": {"value": 3}}
        assert client.weather("s", start, end) == {"data": []}
    assert dict(seen[0].url.params) == {}
    assert dict(seen[1].url.params) == {
        "start_time": "2026-11-27T00:00:00Z",
        "end_time": "2026-11-28T00:00:00Z",
    }


# --- over loopback HTTP against the simulator -----------------------------------------------------

SIM = SimulatorConfig(sites=("demo-site",), points=10, interval=60, api_key="demo")


def test_a_rejected_key_over_http_is_one_request_and_never_shows_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        Simulator(SIM) as sim,
        AceClient(sim.url, KEY, retry_policy=FAST, requests_per_minute=None) as client,
        pytest.raises(AuthError) as info,
    ):
        client.configured_points("demo-site")
    assert str(info.value) == "the API key was rejected (HTTP 401): set ACEIOT_API_KEY to a valid key"
    log = sim.requests
    assert [e["status"] for e in log] == [401]
    for text in (str(info.value), repr(info.value), repr(client), json.dumps(log), caplog.text):
        assert KEY not in text


def test_unknown_site_over_http_is_one_request() -> None:
    with (
        Simulator(SIM) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, requests_per_minute=None) as client,
        pytest.raises(SiteNotFoundError, match=r"^no such site 'elsewhere' \(HTTP 404\)"),
    ):
        client.weather("elsewhere")
    assert [e["status"] for e in sim.requests] == [404]


def test_bad_request_over_http_is_not_retried() -> None:
    with (
        Simulator(SIM) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, requests_per_minute=None) as client,
        pytest.raises(BadRequestError) as info,
    ):
        client.configured_points("demo-site", per_page=10**6)
    assert str(info.value) == (
        "the API rejected GET /sites/demo-site/configured_points (HTTP 400): invalid per_page: must be between 1 and 10000"
    )
    assert [e["status"] for e in sim.requests] == [400]


def test_configured_points_and_weather_over_http() -> None:
    listed = [
        spec.name
        for spec in site_points("demo-site", SIM.points, SIM.interval, SIM.configured_fraction)
        if spec.listed
    ]
    with (
        Simulator(SIM) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, requests_per_minute=None) as client,
    ):
        points = client.configured_points("demo-site", per_page=3)
        weather = client.weather("demo-site")
    assert [p["name"] for p in points] == listed
    assert len(sim.requests) == math.ceil(len(listed) / 3) + 1
    assert {"temp", "humidity", "wind_speed"} <= weather.keys()


@pytest.mark.parametrize("body", [b"[]", b'{"items": []}', b'{"point_samples": 3}', b'"text"'])
def test_a_page_of_the_wrong_shape_is_not_retried(body: bytes) -> None:
    from extract.api.pagination import iter_pages

    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=body)

    transport = httpx.MockTransport(handler)
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    with (
        AceClient(
            "http://api.test/api", "k" * 8, retry_policy=FAST, requests_per_minute=None, transport=transport
        ) as client,
        pytest.raises(UnexpectedResponseError, match="ACEIOT_API_URL"),
    ):
        list(iter_pages(client, "s", start, end))
    assert len(calls) == 1  # it will not change when asked again


# --- every wait bounded and said; every answer bounded in size ------------------------------------

HOUR = (datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 27, 1, tzinfo=UTC))


def test_a_year_of_retry_after_is_capped_in_the_wait_and_in_the_shared_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from extract.api.pagination import iter_pages

    cfg = SimulatorConfig(
        sites=("demo-site",),
        points=10,
        interval=60,
        faults=Faults(status_429_every=1, retry_after=31_536_000),
    )
    policy = RetryPolicy(max_attempts=2, deadline=60.0, retry_after_max=0.2)
    budget_file = tmp_path / "budget.sqlite"
    caplog.set_level(logging.WARNING)
    with Simulator(cfg) as sim:
        # The budget is made without the policy: the cap comes from the client's policy alone.
        budget = SharedBudget.per_minute(budget_file, sim.url, "demo", 6000)
        with (
            AceClient(sim.url, "demo", retry_policy=policy, rate_limiter=budget) as client,
            pytest.raises(RetriesExhaustedError, match="HTTP 429"),
        ):
            next(iter_pages(client, "demo-site", *HOUR, page_size=100))
        # Both attempts were made: the first 429's year became 0.2 s.
        assert [e["status"] for e in sim.requests] == [429, 429]
    with sqlite3.connect(budget_file) as db:
        (until,) = db.execute("select until from pauses").fetchone()
    assert until <= time.time() + 0.2  # not a year: the next run of this key goes ahead
    assert "asked to wait 31536000 s (Retry-After); waiting 0.2 s instead" in caplog.text


def test_a_pause_stored_for_a_year_is_cut_to_the_cap(tmp_path: Path) -> None:
    budget_file = tmp_path / "budget.sqlite"
    budget = SharedBudget(budget_file, "key", 100, 60.0)
    with sqlite3.connect(budget_file) as db:  # what an older version stored after a year-long Retry-After
        db.execute("insert into pauses values ('key', ?)", (time.time() + 31_536_000,))
    budget.acquire(max_pause=0.2)  # within the client's cap, not a year
    with sqlite3.connect(budget_file) as db:
        (until,) = db.execute("select until from pauses").fetchone()
    assert until <= time.time() + 0.2


def test_a_long_budget_pause_is_said_once(tmp_path: Path) -> None:
    from extract import cancel

    budget = SharedBudget(tmp_path / "budget.sqlite", "key", 100, 60.0)
    budget.pause(600)
    said: list[str] = []

    class Stop(logging.Handler):  # the line is all this test needs: stop the wait once it is said
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())
            cancel.request()

    logger = logging.getLogger("extract.api.ratelimit")
    handler = Stop()
    logger.addHandler(handler)
    try:
        with pytest.raises(CancelledError):
            budget.acquire()
    finally:
        logger.removeHandler(handler)
        withdraw_stop_request()
    assert len(said) == 1
    assert said[0].startswith("waiting 600 s before the next API request: the API answered 429")


def test_a_trickling_body_cannot_outlast_the_attempt_deadline() -> None:
    from extract.api.pagination import iter_pages

    # One byte every 0.2 s: never a read timeout, and the page would take about 20 minutes.
    cfg = SimulatorConfig(
        sites=("demo-site",), points=10, interval=60, faults=Faults(trickle_every=1, trickle_delay=0.2)
    )
    policy = RetryPolicy(
        max_attempts=2, deadline=60.0, attempt_deadline=1.0, backoff_initial=0.01, jitter=0.0
    )
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, "demo", retry_policy=policy, requests_per_minute=None) as client,
        pytest.raises(RetriesExhaustedError) as info,
    ):
        next(iter_pages(client, "demo-site", *HOUR, page_size=100))
    assert "after 2 attempt(s)" in str(info.value)
    assert "no whole answer within 1 s (RetryPolicy.attempt_deadline)" in str(info.value)
    assert [e["fault"] for e in sim.requests] == ["trickle", "trickle"]


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_with_or_without_the_zlib_wrapper_is_undone(wbits: int) -> None:
    from extract.api.client import _inflate

    body = json.dumps({"items": list(range(1000))}).encode()
    packer = zlib.compressobj(wbits=wbits)
    sent = packer.compress(body) + packer.flush()
    # One byte at a time: the wrapper is recognised however the body is cut into chunks.
    assert b"".join(_inflate("deflate", iter([sent[i : i + 1] for i in range(len(sent))]))) == body
    with pytest.raises(InvalidBodyError, match="the deflate answer does not decompress"):
        b"".join(_inflate("deflate", iter([b"\xff" * 64])))


def test_a_gzip_bomb_stops_at_the_size_limit_without_inflating_it() -> None:
    from extract.api.pagination import iter_pages

    # 64 MiB of zeros in about 64 KB of gzip, against a limit of 4 MiB.
    cfg = SimulatorConfig(
        sites=("demo-site",),
        points=10,
        interval=60,
        faults=Faults(gzip_bomb_every=1, gzip_bomb_bytes=64 * 2**20),
    )
    limits = Limits(max_body_bytes=4 * 2**20)
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, limits=limits, requests_per_minute=None) as client,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError) as info:
                next(iter_pages(client, "demo-site", *HOUR, page_size=100))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [e["fault"] for e in sim.requests] == ["gzip_bomb"]  # not asked again
    assert str(info.value).startswith(
        "GET /sites/demo-site/timeseries/paginated: the answer grew past 4 MiB once decompressed"
    )
    assert peak < 16 * 2**20  # a few times the limit at most, never the 64 MiB


def test_an_endless_body_stops_at_the_size_limit() -> None:
    from extract.api.pagination import iter_pages

    cfg = SimulatorConfig(sites=("demo-site",), points=10, interval=60, faults=Faults(endless_every=1))
    limits = Limits(max_wire_bytes=4 * 2**20)
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, limits=limits, requests_per_minute=None) as client,
        pytest.raises(ResponseTooLargeError, match=r"grew past 4 MiB as sent \(Limits.max_wire_bytes\)"),
    ):
        next(iter_pages(client, "demo-site", *HOUR, page_size=100))
    assert [e["fault"] for e in sim.requests] == ["endless"]


@pytest.mark.parametrize(
    ("shape", "call", "message"),
    [
        ("points_items_text", "points", "configured_points page has no 'items' list of objects"),
        ("points_pages_text", "points", "configured_points page count 'x' is not a number of pages"),
        ("points_pages_huge", "points", "configured_points page count 1000000000000000000000000000000000000"),
        ("weather_data_numbers", "weather", "weather 'data' is not a list of objects"),
    ],
)
def test_answers_of_an_unexpected_shape_are_one_line_and_not_retried(
    shape: str, call: str, message: str
) -> None:
    cfg = SimulatorConfig(sites=("demo-site",), points=10, interval=60, faults=Faults(odd_shape=shape))  # type: ignore[arg-type]
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, requests_per_minute=None) as client,
        pytest.raises(UnexpectedResponseError) as info,
    ):
        client.configured_points("demo-site") if call == "points" else client.weather("demo-site")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert len(sim.requests) == 1


def test_a_temperature_no_float_can_hold_is_no_reading() -> None:
    cfg = SimulatorConfig(
        sites=("demo-site",), points=10, interval=60, faults=Faults(odd_shape="weather_value_huge")
    )
    with (
        Simulator(cfg) as sim,
        AceClient(sim.url, "demo", retry_policy=FAST, requests_per_minute=None) as client,
    ):
        body = client.weather("demo-site")
    frame = parse_weather(body, site="demo-site", collected_at=datetime.now(UTC))
    assert frame.height == 1 and frame.get_column("temperature").to_list() == [None]
    assert frame.get_column("humidity").to_list()[0] is not None  # the rest of the reading is kept


def test_the_retry_after_cap_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACEIOT_API_KEY", KEY)
    monkeypatch.setenv("ACE_ETL_MAX_RETRY_AFTER", "42")
    with AceClient.from_settings(Settings(), budget=tmp_path / "budget.sqlite") as client:
        assert client.retry_policy.retry_after_max == 42
        assert isinstance(client.rate_limiter, SharedBudget)  # which honours the client's cap
    monkeypatch.setenv("ACE_ETL_MAX_RETRY_AFTER", "-1")
    with pytest.raises(ValidationError, match="ACE_ETL_MAX_RETRY_AFTER"):
        Settings()


def test_importing_the_client_leaves_stamina_s_process_wide_hooks_alone() -> None:
    # A fresh interpreter: this one's hooks may have been changed by a CLI test before.
    probe = (
        "import stamina.instrumentation as i; default = i.get_on_retry_hooks(); import extract.api.client as c; "
        "assert i.get_on_retry_hooks() == default != (); c.use_own_retry_log(); print(i.get_on_retry_hooks())"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "()"
