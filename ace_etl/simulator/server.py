"""The HTTP side of the simulator: a stdlib ThreadingHTTPServer (HTTP/1.1, keep-alive) on a background thread.

The stdlib server gives byte-level control of the response, which the transport faults need: the
connection drop announces the full Content-Length, writes half the body and closes the socket; a trickle
writes a byte at a time; an endless body is chunked and never ends.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import itertools
import json
import math
import socket
import socketserver
import threading
import time
import traceback
import zlib
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ace_etl.simulator.api import Api, Reply, json_reply
from ace_etl.simulator.catalogue import site_points
from ace_etl.simulator.config import SimulatorConfig
from ace_etl.simulator.faults import FaultPlan, Verdict

_AUTH_ERROR = "missing or invalid API key: send the header Authorization: Bearer <key>"
_REDACTED = "[redacted]"
# The endless body: a page head, then these samples over and over, a chunk at a time.
_ENDLESS_HEAD = b'{"point_samples":['
_ENDLESS_CHUNK = b'{"name":"endless/point","time":"2026-01-01T00:00:00Z","value":1},' * 1000


def _seconds(value: float) -> str:
    """Retry-After seconds: an integer when whole, else up to millisecond precision."""
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per request.
    disable_nagle_algorithm = True
    # An idle keep-alive connection gives its thread back after this long.
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self.server.simulator._handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request log records every request instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Ends keep-alive connections, whose threads would otherwise keep answering after a stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Simulator:
    """The ACE IoT API stand-in, served on a background thread; use as a context manager.

    `url` is the API base (`http://host:port/api`). `requests` is a copy of the request log so far, one
    dict per request: `ts` (arrival, ISO UTC), `n` (the fault counter's number; None for a 401), `method`,
    `path`, `params` (the query; a value equal to a key is redacted), `status`, `bytes` (body bytes sent)
    and `fault` (status_429, status_500, rate_limit, drop_connection, truncate, cursor_ttl or None).
    Entries are recorded just before the response is written, so a client that has its answer finds it.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        _check_outages(self.config)
        self._api = Api(self.config)
        self._plan = FaultPlan(self.config.faults)
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def set_upload_horizon(self, instant: str | datetime | None) -> None:
        """Move the late-upload horizon while the server runs (see `SimulatorConfig.upload_horizon`)."""
        self._api.set_upload_horizon(instant)

    def expire_cursors(self) -> None:
        """Expire every cursor issued so far (also `PUT <url>/_simulator/expire_cursors`)."""
        self._api.expire_cursors(time.time())

    def start(self) -> Simulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._server = _Server((self.config.host, self.config.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ace-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None and thread is not None:
            self._stopping.set()  # ends trickling and endless bodies
            server.shutdown()
            server.close_connections()
            server.server_close()
            thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}/api"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [dict(entry) for entry in self._log]

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _handle(self, handler: _Handler) -> None:
        now = time.time()
        target = urlsplit(handler.path)
        params = dict(parse_qsl(target.query, keep_blank_values=True))
        if length := int(handler.headers.get("Content-Length") or 0):
            handler.rfile.read(length)
        token = _bearer(handler.headers.get("Authorization", ""))
        verdict: Verdict | None = None
        if hmac.compare_digest(token.encode(), self.config.api_key.encode()):
            verdict = self._plan.admit(now)
            reply = self._fault_reply(verdict, now) or self._answer(handler.command, target.path, params, now)
        else:
            reply = json_reply(401, {"error": _AUTH_ERROR})
        if self.config.faults.latency:
            time.sleep(self.config.faults.latency)
        transport = verdict.fault if verdict and verdict.fault in _TRANSPORT_FAULTS else None
        if transport == "gzip_bomb":
            reply = Reply(
                200, _gzip_zeros(self.config.faults.gzip_bomb_bytes), (("Content-Encoding", "gzip"),)
            )
        body = reply.body[: len(reply.body) // 2] if transport == "truncate" else reply.body
        sent = body[: len(body) // 2] if transport == "drop_connection" else body
        secrets = {token, self.config.api_key} - {""}
        # Recorded before sending, so a client that has its response also finds it in the log.
        self._record(
            {
                "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "n": verdict.number if verdict else None,
                "method": handler.command,
                "path": target.path,
                "params": {name: _REDACTED if value in secrets else value for name, value in params.items()},
                "status": reply.status,
                "bytes": len(sent),
                "fault": transport or reply.fault,
            }
        )
        if transport == "endless":
            self._write_endless(handler)
        elif transport == "trickle":
            _write(handler, reply, announced=len(body), sent=b"")
            self._trickle(handler, sent)
        else:
            _write(handler, reply, announced=len(body), sent=sent)
        if transport == "drop_connection":
            handler.close_connection = True

    def _trickle(self, handler: _Handler, body: bytes) -> None:
        """One byte, then a pause, until the body is sent, the client hangs up or the server stops."""
        try:
            for at in range(len(body)):
                if at and self._stopping.wait(self.config.faults.trickle_delay):
                    break
                handler.wfile.write(body[at : at + 1])
                handler.wfile.flush()
            else:
                return
        except OSError:
            pass
        handler.close_connection = True

    def _write_endless(self, handler: _Handler) -> None:
        """A 200 timeseries page in chunked encoding that never ends: until the client hangs up or the
        server stops."""
        handler.close_connection = True
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for chunk in itertools.chain([_ENDLESS_HEAD], itertools.repeat(_ENDLESS_CHUNK)):
                if self._stopping.is_set():
                    return
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass

    def _fault_reply(self, verdict: Verdict, now: float) -> Reply | None:
        if verdict.fault == "status_500":
            return json_reply(500, {"error": "internal server error (simulated)"}, fault=verdict.fault)
        if verdict.retry_after is None:
            return None
        wait = verdict.retry_after
        if verdict.fault == "rate_limit":
            wait = math.ceil(wait * 1000) / 1000
        if self.config.faults.retry_after_http_date:
            header = formatdate(math.ceil(now + wait), usegmt=True)
        else:
            header = _seconds(wait)
        return json_reply(
            429,
            {"error": "too many requests", "retry_after": wait},
            fault=verdict.fault,
            headers=(("Retry-After", header),),
        )

    def _answer(self, method: str, path: str, params: dict[str, str], now: float) -> Reply:
        try:
            return self._api.handle(method, path, params, now)
        except Exception:
            traceback.print_exc()
            return json_reply(500, {"error": "simulator bug: see its stderr"})

    def _record(self, entry: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.append(entry)
            if self.config.request_log is not None:
                # Opened per line so the file can be read, rotated or deleted while the server runs.
                with Path(self.config.request_log).open("a", encoding="utf-8") as log:
                    log.write(json.dumps(entry) + "\n")


_TRANSPORT_FAULTS = ("drop_connection", "truncate", "trickle", "gzip_bomb", "endless")


@functools.cache
def _gzip_zeros(size: int) -> bytes:
    """A gzip body inflating to `size` zero bytes (about a thousandth of that on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(min(size, 2**20))
    parts = [packer.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block))]
    return b"".join(parts) + packer.flush()


def _write(handler: _Handler, reply: Reply, *, announced: int, sent: bytes) -> None:
    """Sends the status, the headers with Content-Length `announced`, then `sent` (which may be shorter)."""
    try:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(announced))
        for name, value in reply.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(sent)
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _check_outages(config: SimulatorConfig) -> None:
    """A misspelt outage would silently plant nothing; name the unknown points instead."""
    names = {
        point.name
        for site in config.sites
        for point in site_points(
            site, config.points, config.interval, config.configured_fraction, config.extra
        )
    }
    unknown = sorted({outage[0] for outage in config.outages} - names)
    if unknown:
        raise ValueError(
            f"outage names no served point: {', '.join(unknown)} (names are site/device/point, e.g. {min(names)})"
        )
