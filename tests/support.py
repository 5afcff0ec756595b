"""Helpers shared by test modules (test modules never import each other)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ace_etl.transform import TransformResult, build_warehouse
from extract import cancel
from extract.api.retry import RetryPolicy
from extract.errors import CancelledError

# Retries without waiting: tests count attempts, not seconds.
FAST = RetryPolicy(max_attempts=4, deadline=30.0, backoff_initial=0.01, backoff_max=0.02, jitter=0.0)


@dataclass(frozen=True)
class Stage:
    """The published warehouse as one build left it."""

    result: TransformResult
    copy: Path
    open_elsewhere: str
    """What another process saw opening the published warehouse just after the build ("" = it could)."""

    def rows(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.copy), read_only=True) as connection:
            connection.execute("set TimeZone = 'UTC'")
            return connection.execute(sql).fetchall()

    def columns(self, table: str) -> list[str]:
        return [name for (name,) in self.rows(f"select column_name from (describe {table})")]

    def contents(self, table: str, *, ignore: tuple[str, ...] = ()) -> list[tuple]:
        kept = ", ".join(f'"{name}"' for name in self.columns(table) if name not in ignore)
        return self.rows(f"select {kept} from {table} order by all")


def build(data_dir: Path, name: str, **options: Any) -> Stage:
    result = build_warehouse(data_dir, **options)
    # Before this process opens the file: closing any descriptor of a file drops every lock the process
    # holds on it (POSIX), which would hide a lock dbt left behind.
    probe = subprocess.run(
        [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True).close()",
         str(result.warehouse)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    copy = data_dir.parent / f"{data_dir.name}-{name}.duckdb"
    shutil.copyfile(result.warehouse, copy)
    return Stage(result, copy, probe.stderr.strip())


def withdraw_stop_request() -> None:
    """Undo `cancel.request()`, so that the tests after one that stopped its workers run as usual. The request
    is process-wide and nothing in the product withdraws it (the process exits), hence the reach inside."""
    cancel._CANCELLED.clear()


def assert_waits_until_cancelled(acquire: Callable[[], object], *, look: float) -> None:
    """`acquire` (a budget's, paused far longer than any test) is still waiting after `look` seconds, and
    ends with CancelledError once the run is cancelled: a wait, not a hang and not a pass."""

    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            acquire()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(look)
    assert waiter.is_alive(), outcome
    cancel.request()
    try:
        waiter.join(60)
    finally:
        withdraw_stop_request()
    assert [type(e) for e in outcome] == [CancelledError]


def warehouse_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the published warehouse of `data_dir`, read-only and in UTC, as an analyst reads it."""
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
