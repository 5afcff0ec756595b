"""One request budget per API key, shared by every process on the machine that uses the key.

The pacing rule of `extract.api.ratelimit.Rate`, its state in a small SQLite file: `BEGIN IMMEDIATE` serializes
the check-and-grant across processes (and threads), and a per-key pause row carries a server's Retry-After
to every process, so a 429 seen by one worker slows all of them. The key itself is never stored: rows are
keyed by a digest of it.

Hand-written on the standard library's sqlite3 rather than pyrate-limiter: the same mechanism as its
SQLite bucket, plus the pacing and the shared pause that Retry-After needs, with no new dependency;
SQLite's own locking is the part that must be right, and it is. (Across machines, flows use Prefect's
global concurrency limits.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from extract import cancel
from extract.api.ratelimit import Announcer, Rate
from extract.config import Settings
from extract.errors import BudgetError, ConfigError
from extract.lake import landing

T = TypeVar("T")

_SCHEMA = (
    "create table if not exists grants (key text not null, at real not null)",
    "create index if not exists grants_key_at on grants (key, at)",
    "create table if not exists pauses (key text primary key, until real not null)",
    "create table if not exists paces (key text primary key, last real not null)",
)


def key_id(api_url: str, api_key: str) -> str:
    """A short digest that names a key's budget on one API without revealing the key."""
    return hashlib.sha256(f"{api_url}\n{api_key}".encode()).hexdigest()[:16]


class SharedBudget:
    """`Rate(capacity, period, margin)` for one key, across processes.

    `lock_timeout` bounds how long a process waits for the file while another holds it.
    """

    def __init__(
        self,
        path: Path,
        key: str,
        capacity: int,
        period: float,
        *,
        margin: float | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.rate = Rate(capacity, period, margin)
        self.path, self.key, self.capacity, self.period = Path(path), key, capacity, period
        self.margin, self.lock_timeout = self.rate.margin, lock_timeout
        self._announcer = Announcer()
        try:
            self._create()
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and _locked(exc):
                raise self._locked() from exc
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise self._full() from exc
            raise ConfigError(
                f"cannot use the request budget file {self.path}: {exc}; set ACE_ETL_BUDGET_PATH"
            ) from exc

    @classmethod
    def per_minute(
        cls,
        path: Path,
        api_url: str,
        api_key: str,
        requests_per_minute: float,
        period: float = 60.0,
    ) -> SharedBudget:
        rate = Rate.per_minute(requests_per_minute, period)
        return cls(path, key_id(api_url, api_key), rate.capacity, rate.period)

    def __repr__(self) -> str:
        return f"SharedBudget({str(self.path)!r}, capacity={self.capacity}, period={self.period:g})"

    def acquire(self, max_pause: float = math.inf) -> int:
        """Block until a request may be sent under this key's budget, count it as sent now, return its slot.
        A stored pause is cut to at most `max_pause` seconds from now, for every process."""
        while True:
            grant, wait, why = self._use(lambda db: self._try_grant(db, max_pause))
            if grant is not None:
                return grant
            self._announcer.wait(time.time() + wait, wait, why)
            cancel.sleep(max(wait, 0.001))

    def settle(self, slot: int | None) -> None:
        """The response to `slot`'s request arrived: count the grant from now (see extract.api.ratelimit)."""
        if slot:
            self._use(
                lambda db: db.execute(
                    "update grants set at = max(at, ?) where rowid = ?", (time.time(), slot)
                )
            )

    def pause(self, seconds: float) -> None:
        """The server asked us to wait: no process sends with this key for `seconds` (the client capped them)."""
        until = time.time() + seconds
        self._use(
            lambda db: db.execute(
                "insert into pauses values (?, ?) on conflict (key) do update set until = max(until, excluded.until)",
                (self.key, until),
            )
        )

    def _try_grant(self, db: sqlite3.Connection, max_pause: float) -> tuple[int | None, float, str]:
        now = time.time()
        db.execute("delete from grants where key = ? and at <= ?", (self.key, now - self.rate.window))
        # A pause beyond the cap (a year's Retry-After stored by an older version, or by a process with a
        # longer cap) is cut to it, for good.
        if math.isfinite(max_pause):
            db.execute(
                "update pauses set until = ? where key = ? and until > ?",
                (now + max_pause, self.key, now + max_pause),
            )
        paused = db.execute("select until from pauses where key = ?", (self.key,)).fetchone()
        sent, oldest = db.execute(
            "select count(*), min(at) from grants where key = ?", (self.key,)
        ).fetchone()
        last = db.execute("select last from paces where key = ?", (self.key,)).fetchone()
        paced = self.rate.wait(now, sent=sent, oldest=oldest, last=last[0] if last else None)
        wait = max(paused[0] - now if paused else 0.0, paced)
        if wait > 0:
            return None, wait, self.rate.why(paced, wait)
        grant = db.execute("insert into grants values (?, ?)", (self.key, now)).lastrowid
        db.execute(
            "insert into paces values (?, ?) on conflict (key) do update set last = excluded.last",
            (self.key, now),
        )
        return int(grant or 0), 0.0, ""

    def _use(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one transaction. A file deleted while we run (or its folder) is made again; a file
        locked for longer than `lock_timeout`, or unusable, is a BudgetError naming it."""
        try:
            try:
                with self._transaction() as db:
                    return work(db)
            except sqlite3.OperationalError as exc:
                if not _missing(exc):
                    raise
            self._create()
            with self._transaction() as db:
                return work(db)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise self._full() from exc
            raise (self._locked() if _locked(exc) else self._unusable(exc)) from exc
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc

    def _locked(self) -> BudgetError:
        return BudgetError(
            f"the request budget file {self.path} stayed locked for over {self.lock_timeout:g} s: another "
            "process holds it (a hung run?); stop that process, or set ACE_ETL_BUDGET_PATH to another file"
        )

    def _full(self) -> OSError:
        # The data dir's disk is full, not the budget file broken: the CLI says so in one line.
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def _unusable(self, exc: sqlite3.Error) -> BudgetError:
        return BudgetError(
            f"cannot use the request budget file {self.path}: {exc}; remove it (it only holds the last minute's "
            "requests) or set ACE_ETL_BUDGET_PATH to another file"
        )

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an OSError here is the data dir's problem
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None)
        try:
            # Two transactions a request, each with fsyncs, cost more than a page's landing. The rollback
            # journal still makes each one whole when a process is killed; only a machine crash may lose the
            # last grants (no data, only the last minute's pacing) or, rarely, damage the file, which then
            # is a BudgetError saying to remove it.
            db.execute("pragma synchronous = off")
            db.execute("begin immediate")
            try:
                yield db
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a second rollback would
                # raise "no transaction is active" over the error that matters.
                if db.in_transaction:
                    db.execute("rollback")
                raise
            db.execute("commit")
        finally:
            db.close()


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _missing(exc: sqlite3.OperationalError) -> bool:
    """The error of a budget file deleted mid-run (an empty file is made in its place) or of its folder."""
    text = str(exc)
    return text.startswith("no such table") or "unable to open database file" in text


def budget_file(settings: Settings, data_dir: Path | str | None = None) -> Path:
    """The request budget's file: ACE_ETL_BUDGET_PATH, else the data dir's (`landing.budget_file`)."""
    return settings.budget_path or landing.budget_file(data_dir or settings.data_dir)
