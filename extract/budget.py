"""One request budget per API key, shared by every process on the machine that uses the key.

A sliding window of grants in a small SQLite file: `BEGIN IMMEDIATE` serializes the check-and-grant across
processes (and threads), and a per-key pause row carries a server's Retry-After to every process, so a 429
seen by one worker slows all of them. The key itself is never stored: rows are keyed by a digest of it.

Hand-written on the standard library's sqlite3 rather than pyrate-limiter: the same mechanism as its
SQLite bucket, plus the shared pause that Retry-After needs, with no new dependency; SQLite's own locking
is the part that must be right, and it is. (Across machines, flows use Prefect's global concurrency limits.)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from extract import cancel
from extract.errors import ConfigError

_SCHEMA = (
    "create table if not exists grants (key text not null, at real not null)",
    "create index if not exists grants_key_at on grants (key, at)",
    "create table if not exists pauses (key text primary key, until real not null)",
)


def key_id(api_url: str, api_key: str) -> str:
    """A short digest that names a key's budget on one API without revealing the key."""
    return hashlib.sha256(f"{api_url}\n{api_key}".encode()).hexdigest()[:16]


class SharedBudget:
    """At most `capacity` requests per `period` (+ margin) seconds for one key, across processes."""

    def __init__(
        self, path: Path, key: str, capacity: int, period: float, *, margin: float | None = None
    ) -> None:
        if capacity < 1 or period <= 0:
            raise ConfigError(
                f"rate limit of {capacity} requests per {period:g} s is not usable: allow at least one request per period"
            )
        self.path, self.key, self.capacity, self.period = Path(path), key, capacity, period
        # The same skew allowance as the in-process limiter (see extract.ratelimit).
        self.margin = min(1.0, period * 0.02) if margin is None else margin
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an OSError here is the data dir's problem
        try:
            with self._transaction() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot use the request budget file {self.path}: {exc}; set ACE_ETL_BUDGET_PATH"
            ) from exc

    @classmethod
    def per_minute(
        cls, path: Path, api_url: str, api_key: str, requests_per_minute: float, period: float = 60.0
    ) -> SharedBudget:
        capacity = math.floor(requests_per_minute * period / 60.0 + 1e-9)
        return cls(path, key_id(api_url, api_key), capacity, period)

    def __repr__(self) -> str:
        return f"SharedBudget({str(self.path)!r}, capacity={self.capacity}, period={self.period:g})"

    def acquire(self) -> int:
        """Block until a request may be sent under this key's budget, count it as sent now, return its slot."""
        window = self.period + self.margin
        while True:
            with self._transaction() as db:
                now = time.time()
                db.execute("delete from grants where key = ? and at <= ?", (self.key, now - window))
                paused = db.execute("select until from pauses where key = ?", (self.key,)).fetchone()
                if paused and paused[0] > now:
                    wait = paused[0] - now
                else:
                    count, oldest = db.execute(
                        "select count(*), min(at) from grants where key = ?", (self.key,)
                    ).fetchone()
                    if count < self.capacity:
                        grant = db.execute("insert into grants values (?, ?)", (self.key, now)).lastrowid
                        return int(grant or 0)
                    wait = oldest + window - now
            cancel.sleep(max(wait, 0.001))

    def settle(self, slot: int | None) -> None:
        """The response to `slot`'s request arrived: count the grant from now (see extract.ratelimit)."""
        if slot:
            with self._transaction() as db:
                db.execute("update grants set at = max(at, ?) where rowid = ?", (time.time(), slot))

    def pause(self, seconds: float) -> None:
        """The server asked us to wait: no process sends with this key for `seconds`."""
        with self._transaction() as db:
            until = time.time() + seconds
            db.execute(
                "insert into pauses values (?, ?) on conflict (key) do update set until = max(until, excluded.until)",
                (self.key, until),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.execute("begin immediate")
            try:
                yield db
            except BaseException:
                db.execute("rollback")
                raise
            db.execute("commit")
        finally:
            db.close()
