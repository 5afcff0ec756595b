"""What we rely on in DuckDB, dbt-core and dbt-duckdb that they do not offer as a public API, in one place.

Each shim names the version it was checked against; tests/test_compat.py exercises each against the
installed library and fails when it changes. Prefect's are in `flows.compat` (a run outside Prefect never
imports it).
"""

from __future__ import annotations

import pprint
import re
import sys
from pathlib import PurePath
from typing import Any

# DuckDB raises a plain IOException or CatalogException for these, with no code or errno: only the message
# tells a lock held by another process from a file that is not a database, or names the missing table.
DUCKDB_CHECKED = "2.0.1"
_LOCKED = re.compile(
    r"Could not set lock on file\b(?:.*?Conflicting lock is held in (.*?)(?:\. See also|$))?"
)
_NOT_A_DATABASE = "not a valid DuckDB database"
_NO_TABLE = re.compile(r"Table with name (\S+) does not exist")

# dbt-duckdb keeps its DuckDB instance in `DuckDBConnectionManager._ENV` and has no call that closes it.
DBT_DUCKDB_CHECKED = "1.11.1"
# dbt-core keeps a parse only for the same profile values (`ManifestLoader.build_manifest_state_check`
# hashes `credentials.connection_info()`, values included), and dbt-duckdb's include the database's path;
# and only for the same `--vars` (`RuntimeConfig.cli_vars`, hashed by the same method). Its event manager
# (`dbt_common.events.event_manager.EventManager.fire_event`) converts every event to its message and hands it
# to each logger (`.level`) and callback; the only callback of a plain run is `dbt.tracking`'s.
DBT_CORE_CHECKED = "1.11.16"
# Vars that only models' SQL reads, which dbt renders anew at every run with the values given: a parse made
# with other values is the same parse. (`time_zones` differs for every sites file.)
RUN_TIME_VARS = frozenset({"time_zones"})


def duckdb_lock_holder(message: str) -> str | None:
    """When DuckDB's error `message` says another process holds the database file's lock: the holder as
    DuckDB names it (program and PID; empty when it does not say), else None."""
    match = _LOCKED.search(message)
    if match is None:
        return None
    return (match.group(1) or "").strip()


def duckdb_not_a_database(message: str) -> bool:
    """Whether DuckDB's error `message` says the file it was asked to open is not a DuckDB database."""
    return _NOT_A_DATABASE in message


def duckdb_missing_table(message: str) -> str | None:
    """The table DuckDB's error `message` says does not exist, if it says so."""
    match = _NO_TABLE.search(message)
    return match.group(1) if match else None


def close_dbt_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open in this process after a run, if dbt ran here."""
    if "dbt.adapters.duckdb.connections" not in sys.modules:
        return  # dbt never ran here
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


def share_dbt_parse() -> None:
    """Let dbt reuse a saved parse made for a build database of the same file name in another folder, or
    with other values of the RUN_TIME_VARS.

    Every data dir builds its own `<data>/.build/next/warehouse.duckdb`, so dbt-core would parse the project
    afresh (seconds) for each. Nothing parsed depends on the folder: the file name alone names the catalog
    (`warehouse`), and it stays in the hash. Idempotent; affects only dbt runs in this process."""
    from dbt.contracts.files import FileHash
    from dbt.parser.manifest import ManifestLoader

    original = ManifestLoader.build_manifest_state_check
    if getattr(original, "folder_free", False):
        return

    def state_check(self: ManifestLoader) -> object:
        config = self.root_project
        given = config.cli_vars
        config.cli_vars = {name: value for name, value in given.items() if name not in RUN_TIME_VARS}
        try:
            check = original(self)
        finally:
            config.cli_vars = given
        values = sorted(
            (key, PurePath(value).name if key == "path" and isinstance(value, str) else value)
            for key, value in self.root_project.credentials.connection_info()
        )
        check.profile_hash = FileHash.from_contents(pprint.pformat(values))
        return check

    state_check.folder_free = True  # type: ignore[attr-defined]
    ManifestLoader.build_manifest_state_check = state_check  # type: ignore[method-assign]


def skip_unused_dbt_events() -> None:
    """Let dbt drop a debug event that no logger keeps and no callback reads, before converting it.

    A build at the file log's `info` (ace_etl.transform.dbt_environment) with `--quiet` fires about 1,800
    debug events (three for every statement) and about 140 others; dbt converted each debug one to a message
    and formatted its line for Python's logging to drop: about a tenth of a small build's CPU. Only when every
    logger's level is above debug and the only callback is dbt's own tracking (which reads behaviour-change
    warnings); prefect-dbt's callbacks, or DBT_LOG_LEVEL_FILE=debug, get every event as before. Idempotent;
    affects only dbt runs in this process."""
    from dbt.tracking import track_behavior_change_warn
    from dbt_common.events.base_types import EventLevel
    from dbt_common.events.event_manager import EventManager

    original = EventManager.fire_event
    if getattr(original, "skips_unused", False):
        return
    unlogged = {EventLevel.DEBUG, EventLevel.TEST}

    def fire_event(
        self: EventManager,
        e: Any,
        level: Any = None,
        node: Any = None,
        force_warn_or_error_handling: bool = False,
    ) -> None:
        if (
            (level or e.level_tag()) in unlogged
            and all(logger.level not in unlogged for logger in self.loggers)
            and all(callback is track_behavior_change_warn for callback in self.callbacks)
        ):
            return
        original(self, e, level, node, force_warn_or_error_handling)

    fire_event.skips_unused = True  # type: ignore[attr-defined]
    EventManager.fire_event = fire_event  # type: ignore[method-assign]
