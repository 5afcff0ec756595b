"""The ACE IoT API client: one connection pool, bearer auth, the retry policy and the shared rate limit.

Every request goes through `AceClient.get`, which sends, reads the whole body and decodes it inside the
retry loop, so truncated bodies and connections closed mid-body are retried like any other transient
failure, and nothing above this module retries again. The body is read as a stream, so no answer can take
longer than the policy's `attempt_deadline` or grow past the `Limits` sizes, compressed or not.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
import stamina
from pydantic import SecretStr

from extract import cancel, redact
from extract.api.budget import SharedBudget, key_id
from extract.api.ratelimit import Limiter, shared_rate_limiter
from extract.api.retry import DEFAULT_LIMITS, DEFAULT_RETRY_POLICY, Limits, RetryPolicy, retry_after_seconds
from extract.config import Settings
from extract.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    ConfigError,
    CursorError,
    InvalidBodyError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    SiteNotFoundError,
    UnexpectedResponseError,
)

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def use_own_retry_log() -> None:
    """Drop stamina's default retry hooks (a bare `stamina.retry_scheduled` line per retry, a Prometheus
    counter): the client logs one readable line itself (what, why, the wait). They are process-wide, so the
    applications call this where they start (the CLI, the flows), not the library on import."""
    stamina.instrumentation.set_on_retry_hooks([])


# Retrying these cannot help, whatever a policy's retry_statuses say.
_NEVER_RETRIED = frozenset({400, 401, 403, 404})
_MESSAGE_LIMIT = 200
# The encodings `_inflate` undoes; asking for these only keeps a server from sending br or zstd.
_ACCEPT_ENCODING = "gzip, deflate"
_INFLATE_STEP = 2**20
# A list answer (configured_points, sites) claiming more pages than this is not a page count.
_MAX_POINTS_PAGES = 1_000_000
# The pages of a list asked for at once after its first.
LIST_PAGES_AT_ONCE = 4

# One lock for every RequestStats keeps the dataclass plain (asdict, replace and == keep working);
# the critical sections are a few integer additions per request.
_STATS_LOCK = threading.Lock()


@dataclass
class RequestStats:
    """Request counters; safe to share between threads when updated through `add`."""

    requests: int = 0  # every attempt sent, retries included
    retries: int = 0  # attempts after the first of each logical request
    bytes: int = 0  # response body bytes received
    throttled: int = 0  # 429 responses received

    def add(self, *, requests: int = 0, retries: int = 0, bytes: int = 0, throttled: int = 0) -> None:
        with _STATS_LOCK:
            self.requests += requests
            self.retries += retries
            self.bytes += bytes
            self.throttled += throttled


def format_time(dt: datetime) -> str:
    """UTC ISO 8601 with a Z, as the API's query parameters expect; a naive datetime is taken as UTC."""
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def site_path(site: str, *rest: str) -> str:
    """`/sites/<site>/...` with the site percent-encoded, so no name can change the path (`../x`, `a/b`).

    `quote` leaves dots alone, and a bare `.` or `..` segment would be resolved away by URL normalization,
    so those two names are spelled with %2E."""
    segment = quote(site, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return "/".join(("", "sites", segment, *rest))


class _Transient(Exception):
    """A failure the retry policy covers: a one-line reason, and how long the server asked us to wait."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class AceClient:
    """A synchronous ACE IoT API client. Thread-safe: threads may share one instance and its pool."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str,
        *,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        limits: Limits = DEFAULT_LIMITS,
        requests_per_minute: float | None = 100,
        rate_limiter: Limiter | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        redact.register(self._key.get_secret_value())
        check_api_key(self._key.get_secret_value())
        check_api_url(base_url)
        self.base_url = base_url
        self.retry_policy = retry_policy
        self.limits = limits
        if rate_limiter is None and requests_per_minute is not None:
            rate_limiter = shared_rate_limiter(
                key_id(base_url, self._key.get_secret_value()), requests_per_minute
            )
        self.rate_limiter = rate_limiter
        self.stats = RequestStats()
        # httpx masks the Authorization header in its reprs; our own messages never include headers.
        self._http = httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {self._key.get_secret_value()}",
                "Accept": "application/json",
                "Accept-Encoding": _ACCEPT_ENCODING,
            },
            timeout=timeout,
            verify=True,
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        requests_per_minute: float = 100,
        budget: Path | None = None,
        **kwargs: Any,
    ) -> AceClient:
        """A client for `ACEIOT_API_URL` / `ACEIOT_API_KEY`; ConfigError if no key is set. With `budget` (a
        file), every process using the same key on this machine shares one request budget.
        `ACE_ETL_MAX_RETRY_AFTER` replaces the policy's `retry_after_max`."""
        key = settings.require_key()
        policy = kwargs.get("retry_policy", DEFAULT_RETRY_POLICY)
        if settings.max_retry_after is not None:
            policy = kwargs["retry_policy"] = replace(policy, retry_after_max=settings.max_retry_after)
        if budget is not None:
            check_api_key(key.get_secret_value())
            kwargs["rate_limiter"] = SharedBudget.per_minute(
                budget, settings.api_url, key.get_secret_value(), requests_per_minute
            )
        return cls(settings.api_url, key, requests_per_minute=requests_per_minute, **kwargs)

    def __repr__(self) -> str:
        return f"AceClient(base_url={self.base_url!r}, rate_limiter={self.rate_limiter!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AceClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get(
        self,
        path: str,
        params: Mapping[str, str | int | bool],
        decode: Callable[[bytes], T],
        *,
        stats: RequestStats | None = None,
    ) -> T:
        """GET `path` (relative to the base URL) and return `decode(body)`, retrying per the policy.

        Raises AuthError, SiteNotFoundError, CursorError, BadRequestError or ApiError at once, and
        RetriesExhaustedError when transient failures outlast the attempts or the deadline.
        """
        policy = self.retry_policy
        started = time.monotonic()
        attempts = 0

        # stamina runs the loop and reports retries to its instrumentation (logging, Prometheus); this hook
        # decides each wait itself: the server's Retry-After when given, else the policy's backoff. The
        # deadline bounds our own backoff (no such wait may end past it; stamina's own timeout only stops
        # after one); a wait the server asked for is already capped at retry_after_max and bounded by
        # max_attempts, so it is obeyed even past the deadline, as documented.
        def wait_before_retry(exc: Exception) -> bool | float:
            if not isinstance(exc, _Transient) or attempts >= policy.max_attempts or cancel.requested():
                return False
            if exc.retry_after is not None:
                wait = exc.retry_after
            else:
                wait = policy.backoff(attempts)
                if time.monotonic() + wait >= started + policy.deadline:
                    return False
            log.warning(
                "retrying GET %s in %.1f s (attempt %d of %d): %s",
                path, wait, attempts + 1, policy.max_attempts, exc.reason,
            )  # fmt: skip
            return wait

        try:
            for attempt in stamina.retry_context(
                on=wait_before_retry, attempts=policy.max_attempts, timeout=None
            ):
                with attempt:
                    attempts = attempt.num
                    return self._attempt(path, params, decode, stats, first=attempts == 1)
        except _Transient as exc:
            raise RetriesExhaustedError(
                f"GET {path} gave up after {attempts} attempt(s) in {time.monotonic() - started:.1f} s "
                f"(at most {policy.max_attempts} attempts within {policy.deadline:g} s); last failure: {exc.reason}"
            ) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")

    def configured_points(
        self, site: str, *, per_page: int = 500, stats: RequestStats | None = None
    ) -> list[dict[str, Any]]:
        """Every configured point of the site (all pages)."""
        return self._items(site_path(site, "configured_points"), {}, per_page, stats)

    def site(self, site: str, *, stats: RequestStats | None = None) -> dict[str, Any]:
        """The site's record (`GET /sites/{site}`); SiteNotFoundError when the server has no such route."""
        return self.get(site_path(site), {}, _decode_object, stats=stats)

    def sites(self, *, per_page: int = 500, stats: RequestStats | None = None) -> list[dict[str, Any]]:
        """Every site the key can see, archived ones included (all pages of `GET /sites`)."""
        return self._items("/sites", {"show_archived": "true"}, per_page, stats)

    def _items(
        self, path: str, params: Mapping[str, str], per_page: int, stats: RequestStats | None
    ) -> list[dict[str, Any]]:
        """The items of every page of a paginated list (`{"items", "page", "pages", ...}`), in page order. The
        first page tells how many there are; the others are asked for LIST_PAGES_AT_ONCE at a time, up to the
        last or the first empty one."""
        decode = functools.partial(_decode_items_page, path.rsplit("/", 1)[-1])

        def items(page: int) -> list[dict[str, Any]]:
            found, _ = self.get(path, {**params, "page": page, "per_page": per_page}, decode, stats=stats)
            return found

        found, pages = self.get(path, {**params, "page": 1, "per_page": per_page}, decode, stats=stats)
        if not found or pages <= 1:
            return found
        # A site's points list comes before its first window can start: in round trips one after another,
        # a large site's list would cost a round trip per 500 points.
        with ThreadPoolExecutor(LIST_PAGES_AT_ONCE, thread_name_prefix="list-pages") as pool:
            for first in range(2, pages + 1, LIST_PAGES_AT_ONCE):
                for page in pool.map(items, range(first, min(first + LIST_PAGES_AT_ONCE, pages + 1))):
                    if not page:  # past the list's end, whatever its page count said
                        return found
                    found += page
        return found

    def weather(
        self,
        site: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        stats: RequestStats | None = None,
    ) -> dict[str, Any]:
        """The weather endpoint's JSON as sent: current conditions (real API) or, with a range, a series."""
        params = {
            name: format_time(value)
            for name, value in (("start_time", start), ("end_time", end))
            if value is not None
        }
        return self.get(site_path(site, "weather"), params, _decode_weather, stats=stats)

    def _attempt(
        self,
        path: str,
        params: Mapping[str, str | int | bool],
        decode: Callable[[bytes], T],
        stats: RequestStats | None,
        *,
        first: bool,
    ) -> T:
        limiter = self.rate_limiter
        # The policy's cap bounds the pauses the limiter holds too, even one stored by another process.
        slot = limiter.acquire(max_pause=self.retry_policy.retry_after_max) if limiter is not None else None
        self._count(stats, requests=1, retries=0 if first else 1)
        try:
            response, body = self._receive(path, params)
        except self.retry_policy.retry_exceptions as exc:
            raise _Transient(self._describe(exc)) from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"GET {path} failed: {self._describe(exc)}") from exc
        finally:
            if limiter is not None:
                limiter.settle(slot)
        self._count(stats, bytes=len(body), throttled=int(response.status_code == 429))
        if not response.is_success:
            self._raise_for_status(response, body, path, params)
        try:
            return decode(body)
        except self.retry_policy.retry_exceptions as exc:
            raise _Transient(self._describe(exc)) from exc

    def _receive(self, path: str, params: Mapping[str, str | int | bool]) -> tuple[httpx.Response, bytes]:
        """Send and read the whole body, decompressed, within the attempt deadline and the size limits.

        httpx's read timeout bounds each wait for a byte, not the whole body: a server sending one byte a
        second never trips it, so the deadline is checked as the body arrives. Sizes are counted as it
        arrives too, and gzip is inflated a step at a time, so a small bomb never becomes a large buffer."""
        policy, limits = self.retry_policy, self.limits
        deadline = time.monotonic() + policy.attempt_deadline
        with self._http.stream("GET", path, params=params) as response:
            # A response built in memory (httpx.MockTransport) arrives read and decoded: nothing to stream.
            chunks = (
                iter([response.content])
                if response.is_stream_consumed
                else _inflate(response.headers.get("Content-Encoding"), _raw(response, limits, path))
            )
            body: list[bytes] = []
            size = 0
            for chunk in chunks:
                body.append(chunk)
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise ResponseTooLargeError(
                        f"GET {path}: the answer grew past {_mib(limits.max_body_bytes)} once decompressed "
                        "(Limits.max_body_bytes): no page should hold that much; use a smaller --page-size"
                    )
                if time.monotonic() > deadline:
                    raise _Transient(
                        f"no whole answer within {policy.attempt_deadline:g} s (RetryPolicy.attempt_deadline): "
                        f"{size} bytes so far"
                    )
        return response, b"".join(body)

    def _raise_for_status(
        self, response: httpx.Response, body: bytes, path: str, params: Mapping[str, str | int | bool]
    ) -> NoReturn:
        status = response.status_code
        text = self._one_line(_error_text(body))
        if status in self.retry_policy.retry_statuses and status not in _NEVER_RETRIED:
            reason = f"HTTP {status}: {text}" if text else f"HTTP {status}"
            retry_after = self._capped(retry_after_seconds(response.headers.get("Retry-After")), path)
            if status == 429 and retry_after and self.rate_limiter is not None:
                self.rate_limiter.pause(retry_after)  # every thread (and process) sharing the budget waits
            raise _Transient(reason, retry_after)
        if status in (401, 403):
            raise AuthError(
                f"the API key was rejected (HTTP {status}): set ACEIOT_API_KEY to a valid key", status=status
            )
        if status == 404:
            raise SiteNotFoundError(
                f"no such site {_site_of(path)!r} (HTTP 404): check the site name, e.g. with the site list in FlightDeck",
                status=status,
            )
        if status == 400 and ("cursor" in params or "cursor" in text.lower()):
            raise CursorError(
                f"the API rejected the cursor for GET {path} (HTTP 400: {text}): restart the window from its start",
                status=status,
            )
        if status == 400:
            raise BadRequestError(f"the API rejected GET {path} (HTTP 400): {text}", status=status)
        raise ApiError(f"GET {path} failed with HTTP {status}: {text}", status=status)

    def _capped(self, retry_after: float | None, path: str) -> float | None:
        cap = self.retry_policy.retry_after_max
        if retry_after is None or retry_after <= cap:
            return retry_after
        log.warning(
            "GET %s: the API asked to wait %.0f s (Retry-After); waiting %g s instead (RetryPolicy.retry_after_max)",
            path, retry_after, cap,
        )  # fmt: skip
        return cap

    def _count(self, stats: RequestStats | None, **counts: int) -> None:
        self.stats.add(**counts)
        if stats is not None and stats is not self.stats:
            stats.add(**counts)

    def _describe(self, exc: BaseException) -> str:
        detail = self._one_line(str(exc))
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__

    def _one_line(self, text: str) -> str:
        """Whitespace collapsed, shortened, and the key masked (in any form) in case a server or library
        echoes it."""
        line = redact.redact(" ".join(text.split()))
        return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


def check_api_key(key: str) -> None:
    """ConfigError, never naming the key, unless it is usable in a Bearer header as it is."""
    if not key.strip():
        raise ConfigError("empty API key: set ACEIOT_API_KEY to your ACE IoT API key")
    if any(char.isspace() or not char.isprintable() for char in key) or not key.isascii():
        raise ConfigError(
            "ACEIOT_API_KEY contains whitespace, a control or a non-ASCII character (often a trailing newline "
            "from a paste): set it to the key alone"
        )


def check_api_url(url: str) -> None:
    """ConfigError unless `url` is an http(s) URL with a host."""
    try:
        parsed = urlsplit(url)
        _ = parsed.port  # raises ValueError for a port that is not a number
        valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        valid = False
    if not valid or any(char.isspace() for char in url):
        raise ConfigError(
            f"ACEIOT_API_URL {redact.redact(url)!r} is not an http(s) URL with a host: set it to e.g. "
            "https://flightdeck.aceiot.cloud/api"
        )


def _site_of(path: str) -> str:
    parts = path.strip("/").split("/")
    return unquote(parts[1]) if len(parts) > 1 and parts[0] == "sites" else path


def _error_text(body: bytes) -> str:
    """The server's error message: the `error`/`message`/`detail` field of a JSON body, else the body text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")
    if isinstance(parsed, dict):
        for key in ("error", "message", "detail"):
            if parsed.get(key):
                return str(parsed[key])
    return body.decode("utf-8", errors="replace")


def _decode_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InvalidBodyError(f"response is not valid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(parsed, dict):
        raise UnexpectedResponseError(
            f"response is JSON but not an object ({len(body)} bytes): not the ACE IoT API"
        )
    return parsed


def _decode_items_page(endpoint: str, body: bytes) -> tuple[list[dict[str, Any]], int]:
    """A list page's items (each an object) and the number of pages (0 when not given)."""
    page = _decode_object(body)
    items, pages = page.get("items"), page.get("pages") or 0
    if isinstance(pages, float) and pages.is_integer() and 0 <= pages <= _MAX_POINTS_PAGES:
        pages = int(pages)  # 3.0 is a page count too
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UnexpectedResponseError(
            f"{endpoint} page has no 'items' list of objects ({len(body)} bytes): not the ACE IoT API"
        )
    if not isinstance(pages, int) or isinstance(pages, bool) or not 0 <= pages <= _MAX_POINTS_PAGES:
        raise UnexpectedResponseError(
            f"{endpoint} page count {_shown(pages)} is not a number of pages: not the ACE IoT API"
        )
    return items, pages


def _decode_weather(body: bytes) -> dict[str, Any]:
    weather = _decode_object(body)
    series = weather.get("data")
    if series is not None and not (isinstance(series, list) and all(isinstance(r, dict) for r in series)):
        raise UnexpectedResponseError(
            f"weather 'data' is not a list of objects ({len(body)} bytes): not the ACE IoT API"
        )
    return weather


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def _raw(response: httpx.Response, limits: Limits, path: str) -> Iterator[bytes]:
    """The body as received, stopping with one line once it is larger than `limits.max_wire_bytes`."""
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > limits.max_wire_bytes:
            raise ResponseTooLargeError(
                f"GET {path}: the answer grew past {_mib(limits.max_wire_bytes)} as sent "
                "(Limits.max_wire_bytes): no page should hold that much; use a smaller --page-size"
            )
        yield chunk


def _inflate(encoding: str | None, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The body with its Content-Encoding undone, in pieces of at most `_INFLATE_STEP` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        yield from chunks
        return
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise UnexpectedResponseError(
            f"the answer is encoded as {_shown(encoding)}, which was not asked for (only {_ACCEPT_ENCODING})"
        )
    # "deflate" means a zlib stream (RFC 9110), but some servers send raw deflate, which browsers and httpx
    # accept too: the first two bytes tell them apart. wbits 32+ takes a gzip or a zlib header.
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 2:
            break
    raw = coding == "deflate" and not _zlib_header(head)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS if raw else 32 + zlib.MAX_WBITS)
    try:
        for chunk in itertools.chain([head], chunks):
            pending = chunk
            while pending and not inflater.eof:
                yield inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error as exc:
        raise InvalidBodyError(f"the {coding} answer does not decompress: {exc}") from exc


def _zlib_header(head: bytes) -> bool:
    """Whether `head` starts a zlib stream: deflate method (8) and a header checksum divisible by 31."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
