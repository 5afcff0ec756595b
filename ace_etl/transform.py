"""Build the DuckDB warehouse from the landing with dbt, then publish it for analysts.

All transformation logic lives in the dbt project (`dbt_project/`); this module only runs it and publishes
the result. DuckDB allows one writer per file, and any open connection to a file, even a read-only one,
stops a writer from opening it. So dbt never writes the file analysts open: a build copies it to
`<data>/.build/next/warehouse.duckdb` (the raw samples are views over the landing, so the file holds only
aggregates and bookkeeping: small), builds there, and renames the result over `<data>/warehouse.duckdb`. An
analyst connected to the old file keeps reading the old inode; new connections see the new build; a failed
build publishes nothing.

Prefect flows run the same build inside `building(data_dir)`, through prefect-dbt (a Prefect task per dbt
node) when their `dbt_node_tasks` parameter asks for it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ace_etl import compat, heap
from extract import cancel
from extract.errors import ConfigError, TransformError, WarehouseError
from extract.lake import landing
from extract.lake.quarantine import set_aside_unreadable
from extract.lake.storage import fsync_path, is_object_store, local_dir, normalize_location, remove_abandoned
from extract.run.datadir import open_storage

if TYPE_CHECKING:
    from dbt.artifacts.schemas.run import RunResult
    from duckdb import DuckDBPyConnection

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
WAREHOUSE_FILE = "warehouse.duckdb"
PARSE_FILE = "partial_parse.msgpack"
PARSE_KEY_FILE = "partial_parse.key"  # which vars the target folder's parse was made with

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransformResult:
    warehouse: Path
    """The published file analysts open."""
    elapsed_s: float
    models: int
    tests: int
    warnings: tuple[str, ...]
    """One line per data-quality test that warned: its name and dbt's message."""


def warehouse_file(data_dir: Path | str) -> Path:
    """The published warehouse analysts open (always local): ACE_ETL_DUCKDB_PATH, else `warehouse.duckdb` in
    the data dir, or in `./data` when the data dir is an object store."""
    explicit = os.environ.get("ACE_ETL_DUCKDB_PATH")
    return Path(explicit).absolute() if explicit else local_dir(data_dir) / WAREHOUSE_FILE


@contextmanager
def reading(warehouse: Path) -> Iterator[DuckDBPyConnection]:
    """A read-only connection to the published warehouse, as an analyst opens it (UTC). Whatever DuckDB
    cannot do with it, opening or querying, is a WarehouseError: one line with the fix."""
    import duckdb

    if not warehouse.exists():
        raise ConfigError(
            f"no warehouse at {warehouse} yet: run `ace-etl run` (or `ace-etl transform`) first"
        )
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            connection.execute("set TimeZone = 'UTC'")
            yield connection
    except duckdb.Error as error:
        raise WarehouseError(_unreadable(warehouse, str(error))) from None


def _unreadable(warehouse: Path, error: str) -> str:
    holder = compat.duckdb_lock_holder(_first_line(error))
    if holder is not None:
        by = f" ({holder})" if holder else ""
        return (
            f"the warehouse {warehouse} is open for writing elsewhere{by}: close that connection "
            "(analysts open it with read_only=True) and retry"
        )
    if compat.duckdb_not_a_database(error):
        return (
            f"{warehouse} is not a DuckDB database: move it aside, then `ace-etl transform --full-refresh` "
            "rebuilds it from the landing"
        )
    missing = compat.duckdb_missing_table(error)
    if missing:
        return (
            f"the warehouse {warehouse} has no table {missing}: it was not built by this version; "
            "run `ace-etl transform` to build it"
        )
    return f"cannot read the warehouse {warehouse}: {_first_line(error)}"


def build_dir(data_dir: Path | str) -> Path:
    """dbt's own working area, beside the published warehouse: the build database, artifacts and logs."""
    return warehouse_file(data_dir).parent / ".build"


@contextmanager
def dbt_environment(data_dir: Path | str, database: Path, limits: Path | None = None) -> Iterator[None]:
    """Point the dbt project (dbt_project/profiles.yml reads these) at `data_dir` and the build database
    `database`, and its limits at the file `limits` (else ACE_LIMITS_FILE as set), for a dbt run in this
    process; the environment is restored afterwards."""
    from ace_etl.limits import ENV_VAR as LIMITS_ENV

    location = normalize_location(data_dir)
    values = {
        "ACE_ETL_DATA_DIR": location if is_object_store(location) else str(Path(location).resolve()),
        "ACE_ETL_BUILD_DATABASE": str(database),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # dbt's file log at debug level (every statement, about 8,000 lines a build) cost a sixth of a small
        # build's time; at info it still names each node and every error. DBT_LOG_LEVEL_FILE=debug restores it.
        "DBT_LOG_LEVEL_FILE": os.environ.get("DBT_LOG_LEVEL_FILE") or "info",
    } | ({LIMITS_ENV: str(limits)} if limits is not None else {})
    compat.skip_unused_dbt_events()
    compat.keep_what_dbt_rebuilds(cache_dir() / "jinja-code")
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_build_paths(data_dir: Path | str) -> None:
    """ConfigError for the only characters a build cannot take in its paths. Any other character is data: the
    dbt project quotes the data dir as a SQL string and escapes its glob characters (_landing__sources.yml)."""
    location = normalize_location(data_dir)
    if not is_object_store(location) and "\\" in location:
        raise ConfigError(
            f"data dir {location!r} holds a backslash, which DuckDB reads as a folder separator: "
            "use a data dir without one"
        )
    work = build_dir(data_dir)
    if "?" in str(work) or "#" in str(work):
        raise ConfigError(
            f"the warehouse folder {work.parent} holds '?' or '#', which dbt-duckdb reads as part of a "
            "URL: use a data dir without them, or set ACE_ETL_DUCKDB_PATH to a path without them"
        )


BUILD_WAIT_S = 3600.0
LAKE_MODELS = ("lake_snapshot", "lake_changes")
# dbt_project.yml's `dq_severity` (tests/test_dbt_by_hand.py checks): not passed when given, see dbt_vars.
PROJECT_DQ_SEVERITY = "warn"
# dbt unit tests check the models' code with made-up rows: CI and by-hand builds run them, not every build.
NIGHTLY_EXCLUDES = ("--exclude-resource-type", "unit_test")


@contextmanager
def build_lock(data_dir: Path | str, wait_s: float = BUILD_WAIT_S) -> Iterator[None]:
    """One build (dbt build + publish) of a data dir at a time, across processes: a second build says so,
    waits for the first (at most `wait_s`), then builds what is new. Never DuckDB's raw lock error."""
    import fcntl
    import logging

    work = build_dir(data_dir)
    work.mkdir(parents=True, exist_ok=True)
    with (work / "build.lock").open("a+") as lock:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TransformError(
                        f"another build of {data_dir} did not finish within {wait_s:g} s; run `ace-etl transform` later"
                    ) from None
                if not told:
                    lock.seek(0)
                    holder = lock.read().strip() or "another process"
                    logging.getLogger("extract").warning(
                        "waiting for the build running in %s to finish before building", holder
                    )
                    told = True
                cancel.sleep(0.2)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def building(data_dir: Path | str, limits_file: str | Path | None = None) -> Iterator[Path]:
    """One build of `data_dir`'s warehouse: under the build lock, with the landing checked and dbt's
    environment set, yields the database file to build (a copy of the published one, or a new file);
    publishes it when the block ends without error, else deletes it. The limits file (`limits_file`, else
    ACE_LIMITS_FILE) is checked first: a bad one is a ConfigError before anything is built."""
    check_build_paths(data_dir)
    limits = checked_limits_file(limits_file)
    # dbt's modules, macros and adapter stay for the process's life: a later build's full collections skip
    # them (a live deployment builds every five minutes).
    heap.freeze_for_later_builds()
    # What the build lists of the plain Parquet datasets stays there until it has read it: commits wait to
    # remove the files they replaced (a removed file fails the read of every file listed with it).
    with build_lock(data_dir), open_storage(data_dir).reading_landing():
        check_landing(data_dir)
        published = warehouse_file(data_dir)
        database = _copy_published(build_dir(data_dir), published)
        flushing = _flush_in_background(database)
        try:
            with dbt_environment(data_dir, database, limits), _log_errors_ignored():
                try:
                    yield database
                finally:
                    release_dbt_database()
                    heap.dbt_ran()
            _checkpoint(database)
            _compact(database)
            flushing.join()
            _publish(database, published)
        finally:
            _discard(database)


def checked_limits_file(given: str | Path | None) -> Path | None:
    """The user's limits file (`given`, else ACE_LIMITS_FILE), once its rules load."""
    from ace_etl.limits import limits_file, load_rules

    load_rules(given)
    return limits_file(given)


def _copy_published(work: Path, published: Path) -> Path:
    """The file the next build writes: `<work>/next/warehouse.duckdb`, a copy of the published warehouse (a
    new file for a first build). Always this path: dbt-duckdb names the catalog after the file (compiled SQL
    carries it) and dbt re-parses the whole project whenever the profile's path changes."""
    database = work / "next" / WAREHOUSE_FILE
    _discard(database)  # what a killed build left
    database.parent.mkdir(parents=True, exist_ok=True)
    for source, target in ((published, database), (_wal(published), _wal(database))):
        with suppress(FileNotFoundError):
            shutil.copyfile(source, target)
    return database


def _flush_in_background(database: Path) -> threading.Thread:
    """Write the copy to disk while dbt builds on it, so that the fsync before publishing writes only what
    the build changed: the copy grows with history (a year of 500 points: 190 MB, whose fsync was 0.12 s of
    every build). The fsync in `_publish` still makes the file whole on disk whatever this one did."""

    def flush() -> None:
        with suppress(OSError):  # no published file yet, or the build already discarded the copy
            fsync_path(database)

    thread = threading.Thread(target=flush, name="ace-etl-flush", daemon=True)
    thread.start()
    return thread


def _compact(database: Path) -> None:
    """Rewrite the built file when most of it is free space: DuckDB reuses the blocks of dropped and deleted
    rows but never gives them back, and a warehouse of an earlier version held a copy of every raw sample."""
    import duckdb

    compact = database.parent / "compact" / database.name
    _discard(compact)
    compact.parent.mkdir(exist_ok=True)
    try:
        with duckdb.connect(str(database)) as connection:
            ((free, used, catalog),) = connection.execute(
                "select free_blocks, used_blocks, current_database() from pragma_database_size() "
                "where database_name = current_database()"
            ).fetchall()
            if free <= used:
                return
            connection.execute("attach ? as compact", [str(compact)])
            connection.execute(f'copy from database "{catalog}" to compact')
            connection.execute("detach compact")
    except duckdb.Error as error:
        _discard(compact)
        raise TransformError(f"cannot compact {database}: {_first_line(str(error))}") from error
    os.replace(compact, database)


def _publish(database: Path, published: Path) -> None:
    """Rename the built file over the published one: atomic, and a reader holding the old file keeps its
    inode. fsync first, so that after a crash the name points at a whole file."""
    fsync_path(database)
    published.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(published.parent)  # what earlier versions' killed publishes left beside it
    os.replace(database, published)
    fsync_path(published.parent)


def _discard(database: Path) -> None:
    database.unlink(missing_ok=True)
    _wal(database).unlink(missing_ok=True)


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


@contextmanager
def _log_errors_ignored() -> Iterator[None]:
    """dbt logs every line to a file under the build dir too: on a full disk, each line would print a
    "--- Logging error ---" traceback (`logging.raiseExceptions`) before the build fails with its own one line.
    Process-wide, so only for the build."""
    import logging

    saved, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        yield
    finally:
        logging.raiseExceptions = saved


def build_warehouse(
    data_dir: Path,
    *,
    full_refresh: bool = False,
    full_check: bool = False,
    select: str | Sequence[str] | None = None,
    limits_file: str | Path | None = None,
    time_zones: Mapping[str, str] | None = None,
) -> TransformResult:
    """Run `dbt build` (models and tests) on the landing under `data_dir`, then publish the warehouse.

    The tests of the raw views and the aggregates look at the partitions that changed, or at every row
    with `full_check`. `select` takes dbt selectors. `time_zones` (site -> IANA name, e.g. a sites file's)
    override the sites' time zones; `limits_file` adds its rules to the bundled limits (default
    ACE_LIMITS_FILE). Raises TransformError when a model or an error-severity test fails, and ConfigError for
    a limits file that cannot be used; nothing is published then.
    """
    started = time.perf_counter()
    with building(data_dir, limits_file):
        results = dbt_build(
            data_dir, full_refresh=full_refresh, full_check=full_check, select=select, time_zones=time_zones
        )
    return TransformResult(
        warehouse=warehouse_file(data_dir),
        elapsed_s=time.perf_counter() - started,
        models=sum(result.node.resource_type == "model" for result in results),
        tests=sum(result.node.resource_type == "test" for result in results),
        warnings=tuple(
            f"{result.node.name}: {result.message}" for result in results if result.status == "warn"
        ),
    )


def dbt_build(
    data_dir: Path | str,
    *,
    full_refresh: bool = False,
    full_check: bool = False,
    select: str | Sequence[str] | None = None,
    time_zones: Mapping[str, str] | None = None,
    dq_severity: str | None = None,
    results: list[RunResult] | None = None,
) -> list[RunResult]:
    """Run `dbt build` in this process inside `building(data_dir)`, which publishes the result. dbt's run
    results are returned, and added to `results` when given, for a failed build too."""
    from dbt.cli.main import dbtRunner  # dbt takes seconds to import; `ace-etl --help` should not wait

    work = build_dir(data_dir)
    args = [
        "build",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        "--quiet",
        # Nothing reads manifest.json or run_results.json (the results come back in process), and writing
        # them costs about a fifth of a small build; the partial-parse file is written regardless.
        "--no-write-json",
        *NIGHTLY_EXCLUDES,
        *dbt_vars(full_check=full_check, dq_severity=dq_severity, time_zones=time_zones),
    ]  # fmt: skip
    if full_refresh:
        args.append("--full-refresh")
    if select:
        # The landing's snapshot and its changes are read anew by every build: a selected model never
        # reads an old one.
        args += ["--select", *LAKE_MODELS, *([select] if isinstance(select, str) else select)]

    with shared_parse(work / "target", args):
        outcome = dbtRunner().invoke(args)
    ran = list(getattr(outcome.result, "results", None) or [])
    if results is not None:
        results += ran
    if not outcome.success:
        raise TransformError(failure_message(outcome.exception, ran, work / "logs" / "dbt.log"))
    return ran


def cache_dir() -> Path:
    """What ace-etl keeps between processes to go faster, never needed: `$XDG_CACHE_HOME/ace-etl`, else
    `~/.cache/ace-etl` (dbt's parsed projects, Jinja's compiled templates)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ace-etl"


def parse_cache_dir() -> Path:
    """Where dbt's parsed projects are kept between data dirs (`cache_dir()/dbt-parse`)."""
    return cache_dir() / "dbt-parse"


@contextmanager
def shared_parse(target: Path, args: Sequence[str]) -> Iterator[None]:
    """Share dbt's partial-parse file between data dirs and between builds with other `--vars`.

    dbt parses the project afresh (about 3 s) whenever its target folder has no parse file, or one made with
    other `--vars`: the first build of every data dir, and the build after a `--full-check`. A parse is the
    same for every data dir (the data dir reaches the models only when they run, through an environment
    variable) and for every value of the vars only models' SQL reads (compat.RUN_TIME_VARS, e.g. a sites
    file's time zones), so one is kept per (dbt version, project, other vars) in `parse_cache_dir()`:
    copied in when the target folder has none made with these vars (its own, made for this data dir, needs
    no re-parse at all), and back after the build. dbt still checks the file against the project and
    discards it when anything changed. The cache only saves time: any failure to use it leaves dbt to
    parse as it would without one."""
    from dbt.version import __version__ as dbt_version

    compat.share_dbt_parse()
    key = json.dumps([dbt_version, str(DBT_PROJECT_DIR), _vars_of(args)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cached = parse_cache_dir() / f"{digest}.msgpack"
    local, made_for = target / PARSE_FILE, target / PARSE_KEY_FILE
    try:
        if cached.exists() and not (local.exists() and _text(made_for) == digest):
            target.mkdir(parents=True, exist_ok=True)
            _copy_replacing(cached, local)
            made_for.write_text(digest)
    except OSError as exc:
        log.debug("dbt's parse cache %s not used: %s", cached, exc)
    yield
    try:
        if local.exists():
            made_for.write_text(digest)
            if not _same_file(local, cached):
                cached.parent.mkdir(parents=True, exist_ok=True)
                _copy_replacing(local, cached)
    except OSError as exc:
        log.debug("dbt's parse cache %s not kept: %s", cached, exc)


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _vars_of(args: Sequence[str]) -> str:
    """The `--vars` a parse depends on (compat.RUN_TIME_VARS left out), as canonical JSON."""
    given = next((value for flag, value in itertools.pairwise(args) if flag == "--vars"), "{}")
    parsed = {name: value for name, value in json.loads(given).items() if name not in compat.RUN_TIME_VARS}
    return json.dumps(parsed, sort_keys=True)


def _same_file(a: Path, b: Path) -> bool:
    """Same size and modification time: copies keep the time (`shutil.copy2`)."""
    try:
        first, second = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    return (first.st_size, first.st_mtime_ns) == (second.st_size, second.st_mtime_ns)


def _copy_replacing(source: Path, destination: Path) -> None:
    """Copy whole or not at all: builds of other data dirs read and write the cache at the same time."""
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(handle)
    partial = Path(name)
    try:
        shutil.copy2(source, partial)
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def dbt_vars(
    *, full_check: bool = False, dq_severity: str | None = None, time_zones: Mapping[str, str] | None = None
) -> list[str]:
    """dbt's `--vars` for a build: the landing layout (`extract.lake.landing.dbt_vars`); `full_check` makes every
    test look at every row, not only at the partitions the build changed; `time_zones` (site -> IANA name)
    override the `sites` model's."""
    values: dict[str, object] = {
        **landing.dbt_vars(),
        "full_check": full_check,
        "time_zones": dict(time_zones or {}),
    }
    # dbt parses the project anew for other `--vars` (seconds): the project's own default is left out, so
    # that a flow's `dq_severity: warn` and a plain `ace-etl transform` share one parse.
    if dq_severity and dq_severity != PROJECT_DQ_SEVERITY:
        values["dq_severity"] = dq_severity
    return ["--vars", json.dumps(values)]


def check_landing(data_dir: Path | str) -> list[str]:
    """Set aside (quarantine, with a warning) the landing files that arrived since the last check and cannot
    be read, and the checkpoints of their windows, so that one damaged file neither fails the build nor
    stays missing: the next run of its range fetches it again."""
    storage = open_storage(data_dir)
    marker = build_dir(data_dir) / ".landing-checked"
    since = marker.stat().st_mtime if marker.exists() else 0.0
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    # Only the plain Parquet datasets: the Delta tables' files are the log's business, never moved behind
    # its back, and never listed (a listing would cost what their history costs).
    arrived = [
        path
        for folder in landing.PARQUET_DATASETS
        for path in storage.list_since(folder, "**/*.parquet", since - 1)
    ]
    return set_aside_unreadable(storage, arrived)


def release_dbt_database() -> None:
    """Close the database dbt-duckdb keeps open in the process after a run.

    dbt-duckdb holds its DuckDB instance in a class attribute (`_ENV`) and reuses it while the profile is
    unchanged. Left open, it holds the published file's lock against analysts for as long as the process
    lives (a Prefect worker), and the file could not be renamed into place whole. There is no public call
    that closes it (`compat.close_dbt_duckdb`)."""
    compat.close_dbt_duckdb()


def _checkpoint(database: Path) -> None:
    """Fold the write-ahead log into the database file, so that the file alone is the whole database."""
    import duckdb

    try:
        with duckdb.connect(str(database)) as connection:
            connection.execute("CHECKPOINT")
    except duckdb.Error as error:
        raise TransformError(f"cannot publish {database}: {_first_line(str(error))}") from error


def failure_message(exception: BaseException | None, results: Sequence[RunResult], log: Path) -> str:
    failed = [
        f"{result.node.name}: {_node_cause(result.message)}"
        for result in results
        if result.status in ("error", "fail")
    ]
    cause = "; ".join(failed) if failed else _first_line(str(exception) if exception else "unknown error")
    if compat.duckdb_lock_holder(cause) is not None:
        hint = "another build holds the build database; wait for it to finish"
    elif "No space left on device" in cause:
        hint = "free some space, then run `ace-etl transform`; the published warehouse is unchanged"
    else:
        hint = f"see {log}"
    return f"dbt build failed: {cause} ({hint})"


# dbt heads a node's error with a line that only names the node ("Runtime Error in model etl_runs
# (models/core/etl_runs.sql)"); the database's own line (a broken constraint, a full disk) comes after it.
_NODE_HEADING = re.compile(r"\w+ Error in \w+ \S+ \(.*\)$")


def _node_cause(message: str | None) -> str:
    heading, _, rest = (message or "").strip().partition("\n")
    return _first_line(rest if rest.strip() and _NODE_HEADING.match(heading.strip()) else heading)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no message"
