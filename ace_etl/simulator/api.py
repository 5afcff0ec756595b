"""The API's behaviour, independent of sockets: a request (method, path, query) becomes a `Reply`.

Transport concerns (authentication, fault injection, latency, the request log) live in `server.py`.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import polars as pl

from ace_etl.simulator.config import SimulatorConfig
from ace_etl.simulator.cursor import CursorError, issue_cursor, query_fingerprint, read_cursor, signing_key
from ace_etl.simulator.data import page_frame, to_epoch_us
from ace_etl.simulator.metadata import listed_site, served_points, served_site
from ace_etl.simulator.weather import current_weather, served_weather, weather_rows

DEFAULT_PAGE_SIZE = 10_000
MAX_PAGE_SIZE = 100_000
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 10_000
POINT_ENDPOINT_ERROR = "point-specific endpoints are not supported; use /sites/{site}/timeseries/paginated"
# A number no float can hold (the odd_shape faults' "huge" values).
HUGE_NUMBER = 10**399
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    fault: str | None = None


def json_reply(
    status: int, payload: object, *, fault: str | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers, fault)


class _BadRequest(Exception):
    """A 400 whose message names the parameter and what it accepts."""


def _param_instant(params: dict[str, str], name: str) -> datetime:
    if not params.get(name):
        raise _BadRequest(f"missing {name}: give an ISO 8601 instant, e.g. 2026-11-27T00:00:00Z")
    try:
        moment = datetime.fromisoformat(params[name])
    except ValueError as error:
        raise _BadRequest(f"invalid {name}: {params[name]!r} is not an ISO 8601 instant") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _param_int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as error:
        raise _BadRequest(f"invalid {name}: {text!r} is not an integer") from error
    if not low <= value <= high:
        raise _BadRequest(f"invalid {name}: must be between {low} and {high}")
    return value


def _param_flag(params: dict[str, str], name: str) -> bool:
    text = params.get(name, "").lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise _BadRequest(f"invalid {name}: {params[name]!r} is not true or false")


class _PageCache:
    """The last few serialized pages, so a retried request gets the same bytes without re-serializing.

    With a cursor TTL an entry lives only half the TTL: the `next_cursor` inside it must stay usable.
    """

    def __init__(self, size: int, max_age: float | None) -> None:
        self._size = size
        self._max_age = max_age
        self._entries: OrderedDict[tuple[object, ...], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], now: float) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (self._max_age is not None and now - entry[0] > self._max_age):
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def put(self, key: tuple[object, ...], now: float, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (now, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _records(frame: pl.DataFrame, seed_shape: bool) -> str:
    """The page's JSON records, joined with commas. Values and times are spliced in as already-encoded
    JSON text, so a bad-value fault can serve a bool, a string or null where a number belongs."""
    if seed_shape:
        parts = [
            '{"point_name":',
            pl.col("name_json"),
            ',"timestamp":"',
            pl.col("time_raw"),
            '","value":',
            pl.col("value_raw"),
            ',"quality":"good","metadata":',
            pl.col("metadata_json"),
            "}",
        ]
    else:
        parts = [
            '{"name":',
            pl.col("name_json"),
            ',"time":"',
            pl.col("time_raw"),
            '","value":',
            pl.col("value_raw"),
            "}",
        ]
    exprs = [pl.lit(part) if isinstance(part, str) else part for part in parts]
    return frame.select(pl.concat_str(exprs).str.join(",")).item()


class Api:
    """Routes and answers requests for one `SimulatorConfig`. Thread-safe."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._key = signing_key(config.api_key)
        ttl = config.faults.cursor_ttl
        self._pages = _PageCache(size=8, max_age=None if ttl is None else ttl / 2)
        self.upload_horizon_us = None if config.upload_horizon is None else to_epoch_us(config.upload_horizon)
        self._expired_until = -math.inf

    def expire_cursors(self, now: float) -> None:
        """Every cursor issued so far is expired from now on, as if its lifetime had run out; later ones
        are not. Tests use it instead of a short `cursor_ttl`, which a slow machine could outlast."""
        # Cursors carry their issue time rounded to the millisecond: compare on the same footing.
        self._expired_until = round(now, 3)
        self._pages.clear()  # a cached page would hand out an expired cursor again

    def set_upload_horizon(self, instant: str | datetime | None) -> None:
        """Serve samples before `instant` only (None: all): the late data up to it has now "arrived"."""
        self.upload_horizon_us = None if instant is None else to_epoch_us(instant)

    def handle(self, method: str, path: str, params: dict[str, str], now: float) -> Reply:
        parts = [unquote(part) for part in path.split("/")[1:]]
        if parts and not parts[-1]:
            parts.pop()
        if parts[:1] != ["api"]:
            return json_reply(404, {"error": f"not found: {path} (the API lives under /api)"})
        route = parts[1:]
        if route == ["_simulator", "upload_horizon"] and method == "PUT":
            self.set_upload_horizon(params.get("at") or None)
            return json_reply(200, {"upload_horizon": params.get("at") or None})
        if route == ["_simulator", "expire_cursors"] and method == "PUT":
            self.expire_cursors(now)
            return json_reply(200, {"expired_until": self._expired_until})
        if route[:1] == ["points"] or (len(route) > 2 and route[0] == "sites" and route[2] == "points"):
            return json_reply(400, {"error": POINT_ENDPOINT_ERROR})
        if method != "GET":
            return json_reply(405, {"error": f"method {method} not allowed: the simulator serves GET only"})
        try:
            return self._route(route, path, params, now)
        except _BadRequest as error:
            return json_reply(400, {"error": str(error)})

    def _route(self, route: list[str], path: str, params: dict[str, str], now: float) -> Reply:
        if route == ["sites"]:
            sites = [listed_site(self.config, site) for site in self.config.sites]
            total = len(sites)
            return json_reply(200, {"items": sites, "page": 1, "pages": 1, "per_page": total, "total": total})
        if len(route) >= 2 and route[0] == "sites":
            site, endpoint = route[1], route[2:]
            if site not in self.config.sites:
                return json_reply(404, {"error": f"unknown site: {site}"})
            if endpoint == [] and self.config.site_records == "single":
                return json_reply(200, served_site(self.config, site))
            if endpoint == ["timeseries", "paginated"]:
                return self._timeseries(site, params, now)
            if endpoint == ["configured_points"]:
                return self._configured_points(site, params)
            if endpoint == ["weather"]:
                return self._weather(site, params, now)
        return json_reply(404, {"error": f"not found: {path}"})

    def _timeseries(self, site: str, params: dict[str, str], now: float) -> Reply:
        start_us = to_epoch_us(_param_instant(params, "start_time"))
        end_us = to_epoch_us(_param_instant(params, "end_time"))
        if end_us < start_us:
            raise _BadRequest("invalid window: end_time is before start_time")
        page_size = _param_int(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        raw = _param_flag(params, "raw_data")
        query = query_fingerprint(site, start_us, end_us, raw, page_size)
        offset = 0
        if cursor := params.get("cursor"):
            try:
                offset = read_cursor(
                    self._key, cursor, query, now, self.config.faults.cursor_ttl, self._expired_until
                )
            except CursorError as error:
                fault = "cursor_ttl" if str(error) == "cursor expired" else None
                return json_reply(400, {"error": str(error), "cursor": cursor}, fault=fault)
        # Late uploads: what has not arrived by the horizon is not served (yet).
        horizon = self.upload_horizon_us
        served_end = end_us if horizon is None else max(start_us, min(end_us, horizon))
        cache_key = (site, start_us, served_end, raw, page_size, offset)
        body = self._pages.get(cache_key, now)
        if body is None:
            body = self._page_body(site, start_us, served_end, raw, page_size, offset, query, now)
            self._pages.put(cache_key, now, body)
        return Reply(200, body)

    def _page_body(
        self,
        site: str,
        start_us: int,
        end_us: int,
        raw: bool,
        page_size: int,
        offset: int,
        query: str,
        now: float,
    ) -> bytes:
        faults = self.config.faults
        frame, total = page_frame(self.config, site, start_us, end_us, raw, offset, page_size)
        next_offset = offset + frame.height
        has_more = next_offset < total
        if faults.empty_pages:  # no sample, yet always more, and a cursor never seen before
            frame, has_more, next_offset = frame.clear(), True, offset + 1
        cursor = json.dumps(issue_cursor(self._key, query, next_offset, now) if has_more else None)
        if has_more and faults.lost_cursor is not None:
            cursor = "null" if faults.lost_cursor == "null" else '""'
        records = _records(frame, self.config.shape == "seed")
        more = json.dumps(has_more)
        if self.config.shape == "seed":
            envelope = (
                f'{{"data":[{records}],"pagination":{{"next_cursor":{cursor},"has_more":{more}}},'
                f'"total_count":{total}}}'
            )
        else:
            envelope = f'{{"point_samples":[{records}],"next_cursor":{cursor},"has_more":{more}}}'
        return envelope.encode()

    def _configured_points(self, site: str, params: dict[str, str]) -> Reply:
        page = _param_int(params, "page", 1, 1, 10**9)
        per_page = _param_int(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        cfg = self.config
        listed = served_points(cfg, site)
        items = listed[(page - 1) * per_page : page * per_page]
        payload: dict[str, object] = {
            "items": items,
            "page": page,
            "pages": math.ceil(len(listed) / per_page),
            "per_page": per_page,
            "total": len(listed),
        }
        odd = cfg.faults.odd_shape
        if odd == "points_items_text":
            payload["items"] = [item["name"] for item in items]
        elif odd in ("points_pages_text", "points_pages_huge"):
            payload["pages"] = "x" if odd == "points_pages_text" else HUGE_NUMBER
        return json_reply(200, payload)

    def _weather(self, site: str, params: dict[str, str], now: float) -> Reply:
        odd = self.config.faults.odd_shape
        if odd == "weather_data_numbers":
            return json_reply(200, {"data": [1, 2]})
        if self.config.shape == "real":
            current = current_weather(site, now)
            if odd == "weather_value_huge":
                current["temp"] = {**current["temp"], "value": HUGE_NUMBER}
            return json_reply(200, current)
        if "start_time" in params or "end_time" in params:
            start, end = _param_instant(params, "start_time"), _param_instant(params, "end_time")
        else:
            start = datetime.fromtimestamp(now // 3600 * 3600, UTC)
            end = start + timedelta(hours=1)
        rows = weather_rows(served_weather(self.config, site, start, end))
        if odd == "weather_value_huge":
            rows = [{**row, "temperature": HUGE_NUMBER} for row in rows]
        return json_reply(200, {"data": rows})
