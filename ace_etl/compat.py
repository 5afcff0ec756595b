"""What we rely on in DuckDB, dbt-core and dbt-duckdb that they do not offer as a public API, in one place.

Each shim names the version it was checked against; tests/test_compat.py exercises each against the
installed library and fails when it changes. Prefect's are in `flows.compat` (a run outside Prefect never
imports it).
"""

from __future__ import annotations

import functools
import hashlib
import pprint
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path, PurePath
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
# What dbt-core, dbt-common and Jinja rebuild for every statement or node of every build although it is the same
# each time (`keep_what_dbt_rebuilds`): dbt-common's `agate_helper.build_type_tester` and `empty_table` (looked
# up in the module at each call), Jinja's `Environment.compile` (which dbt-common's `get_template` calls for a
# macro at each node that calls it), dbt-core's `PluginManager.get_prefixed_modules` (every run) and
# `dbt.compilation.inject_ctes_into_sql` (every model that reads an ephemeral one), and dbt-common's
# `BehaviorFlagRendered._default_source` (every flag of every run).
DBT_COMMON_CHECKED = "1.39.0"
# dbt-adapters makes a new context (all of a project's macros) at every `BaseAdapter.execute_macro`, through
# the generator dbt-core gives `set_macro_context_generator`: 65 a build of ours, for six macros.
DBT_ADAPTERS_CHECKED = "1.24.5"
JINJA_CHECKED = "3.1.6"
# A project's templates and models number in the hundreds; a bound keeps a long-lived process's memory flat
# whatever it renders.
_MAX_TEMPLATES = 4096
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
    warnings); prefect-dbt's callbacks, or DBT_LOG_LEVEL_FILE=debug, get every event as before. An event
    also builds its protobuf fields when first read rather than when made (0.12 ms each, a tenth of a
    build's CPU again), so a dropped one never does. Idempotent; affects only dbt runs in this process."""
    from dbt.tracking import track_behavior_change_warn
    from dbt_common.events.base_types import BaseEvent, EventLevel
    from dbt_common.events.event_manager import EventManager

    original = EventManager.fire_event
    if getattr(original, "skips_unused", False):
        return
    _build_event_fields_when_read(BaseEvent)
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


def _build_event_fields_when_read(event: Any) -> None:
    """dbt-common's BaseEvent keeps its fields in a protobuf message (`pb_msg`), built in `__init__` and read
    through `__getattr__`/`__setattr__`: it is built at the first read instead, from the same arguments."""
    build = event.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "_fields", (args, kwargs))

    def __getattr__(self: Any, key: str) -> Any:
        if key == "pb_msg":
            args, kwargs = object.__getattribute__(self, "_fields")
            build(self, *args, **kwargs)
            return object.__getattribute__(self, "pb_msg")
        if key == "_fields":
            raise AttributeError(key)
        return getattr(self.pb_msg, key)

    def __setattr__(self: Any, key: str, value: Any) -> None:
        if key == "pb_msg":
            object.__setattr__(self, key, value)
        else:
            setattr(self.pb_msg, key, value)

    event.__init__, event.__getattr__, event.__setattr__ = __init__, __getattr__, __setattr__


def keep_what_dbt_rebuilds(code_cache: Path | None = None) -> None:
    """Let dbt reuse, within the process, what it rebuilds for every statement, node and run although nothing
    changed: a no-op build of the demo took about a quarter less CPU (2.0-2.2 -> 1.5-1.6 CPU-s). With
    `code_cache`, a folder, the code Jinja compiles is kept there too, for the process's first build
    (`_code_on_disk`).

    - the agate type tester of a statement's result (one per set of text columns) and the empty result of a
      statement that fetches nothing: each new one built parsedatetime's locale tables, twice, for each of a
      build's ~380 statements. Both are immutable (dbt's testers give every date a format, so the shared
      parsedatetime parser is never called);
    - the code Jinja compiles from a template's source, for dbt's environments (same class and extensions
      -> same code): dbt-common compiles a macro again for each node that calls it;
    - the modules dbt scans `sys.path` for at every run (dbt's own tests cache them the same way);
    - the SQL with a model's ephemeral CTEs injected (a pure function of the two strings; sqlparse parses
      the whole model to do it); a model that opens with `with`, as ours do, needs no parse at all
      (`_leading_with`): the largest carry values that change with every build;
    - the context of an adapter macro (`rename_relation`, `get_columns_in_relation`, ...), which holds a
      generator for every macro of the project (565 here): made once per run (invocation, manifest and
      config), macro and thread, and reused by the calls that leave nothing in it (no override, not inside
      another adapter macro, nothing added to it), its statements' last results cleared; 0.13 s of a 1.4 s
      no-op build. A thread keeps its last run's contexts (and so that manifest) until its next run;
    - the module that declares each of the adapter's behaviour flags, found at every run from the frame of
      the call rather than from `inspect.stack()`, which reads the source lines of every frame on the stack
      first (0.1-0.15 s a build under pytest or Prefect, whose stacks are deep).

    Idempotent; affects only dbt runs in this process."""
    from dbt_common.clients import agate_helper

    if getattr(agate_helper.empty_table, "kept", False):
        return
    _keep_result_types(agate_helper)
    _keep_jinja_code(code_cache)
    _keep_plugin_modules()
    _keep_injected_ctes()
    _keep_macro_contexts()
    _find_flag_sources_from_the_caller()


def _keep_result_types(agate_helper: Any) -> None:
    build = agate_helper.build_type_tester

    @functools.lru_cache(maxsize=256)
    def tester(text_columns: frozenset[str], string_null_values: tuple[str, ...] | None) -> Any:
        return build(text_columns, string_null_values=string_null_values)

    def build_type_tester(text_columns: Any, string_null_values: Any = ("null", "")) -> Any:
        nulls = None if string_null_values is None else tuple(string_null_values)
        return tester(frozenset(text_columns), nulls)

    empty = agate_helper.empty_table()

    def empty_table() -> Any:
        return empty

    empty_table.kept = True  # type: ignore[attr-defined]
    agate_helper.build_type_tester = build_type_tester
    agate_helper.empty_table = empty_table


def _keep_jinja_code(code_cache: Path | None) -> None:
    from dbt_common.clients import jinja

    original: Any = jinja.MacroFuzzEnvironment.compile
    compiled: dict[tuple[Any, ...], Any] = {}
    stored = _code_on_disk(code_cache) if code_cache is not None else None

    def compile(
        self: Any,
        source: Any,
        name: Any = None,
        filename: Any = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        if raw or defer_init or not isinstance(source, str) or jinja.MACRO_DEBUGGING:
            return original(self, source, name, filename, raw, defer_init)
        key = (type(self), tuple(self.extensions), source, name, filename)
        code = compiled.get(key)
        if code is None:
            if len(compiled) >= _MAX_TEMPLATES:
                compiled.clear()
            # A source without Jinja's delimiters is a plain value dbt renders (a profile's, which may be a
            # password typed in): it compiles in no time and never goes to disk.
            if stored is None or "{" not in source:
                code = original(self, source, name, filename)
            else:
                code = stored(self, key, lambda: original(self, source, name, filename))
            compiled[key] = code
        return code

    jinja.MacroFuzzEnvironment.compile = compile  # type: ignore[method-assign]


def _code_on_disk(folder: Path) -> Callable[[Any, tuple[Any, ...], Callable[[], Any]], Any]:
    """The code of a template (`key`: environment class, extensions, source, name, filename) from `folder`,
    else compiled and stored there: a new process (each `ace-etl` command, each test worker) compiled about
    290 templates again, 0.6 s of its first build. Jinja's own bytecode-cache files (its format, a header with
    Jinja's and Python's versions, written to a temporary name and renamed), named by a hash of the key and
    of the library versions, since dbt renders templates from strings that have no name of their own. A
    file that cannot be read is compiled again; one that cannot be written is only not kept."""
    from importlib.metadata import version

    import jinja2
    from jinja2.bccache import Bucket, FileSystemBytecodeCache

    files = FileSystemBytecodeCache(str(folder), "%s.jinja")
    versions = (jinja2.__version__, version("dbt-common"), sys.version_info[:2])
    # Sources are stable (dbt's macros and the project's), so this is a bound, not an eviction policy.
    try:
        if sum(1 for _ in folder.glob("*.jinja")) > 4 * _MAX_TEMPLATES:
            files.clear()
    except OSError:
        pass

    def code(environment: Any, key: tuple[Any, ...], compile: Callable[[], Any]) -> Any:
        digest = hashlib.sha256(repr((versions, key)).encode()).hexdigest()
        bucket = Bucket(environment, digest, digest)
        try:
            files.load_bytecode(bucket)
        except Exception:  # a damaged file: unpickling and unmarshalling raise many kinds
            bucket.reset()
        if bucket.code is None:
            bucket.code = compile()
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # as Jinja's own default folder
                files.dump_bytecode(bucket)
            except OSError:
                pass
        return bucket.code

    return code


def _keep_plugin_modules() -> None:
    from dbt.plugins.manager import PluginManager

    scan = PluginManager.get_prefixed_modules.__func__  # type: ignore[attr-defined]
    found: dict[tuple[str, ...], Any] = {}  # for the sys.path scanned last

    def get_prefixed_modules(cls: type[PluginManager]) -> Any:
        path = tuple(sys.path)
        if path not in found:
            found.clear()
            found[path] = scan(cls)
        return found[path]

    PluginManager.get_prefixed_modules = classmethod(get_prefixed_modules)  # type: ignore[method-assign,assignment]


def _keep_injected_ctes() -> None:
    import dbt.compilation
    from dbt.artifacts.resources import InjectedCTE

    inject = dbt.compilation.inject_ctes_into_sql

    @functools.lru_cache(maxsize=_MAX_TEMPLATES)
    def injected(sql: str, ctes: tuple[tuple[str, str], ...]) -> str:
        return inject(sql, [InjectedCTE(id=id_, sql=cte) for id_, cte in ctes])

    @functools.wraps(inject)
    def inject_ctes_into_sql(sql: str, ctes: list[InjectedCTE]) -> str:
        if not ctes:
            return sql
        at = _leading_with(sql)
        if at is not None:
            return sql[:at] + ", ".join(cte.sql for cte in ctes) + ", " + sql[at:]
        return injected(sql, tuple((cte.id, cte.sql) for cte in ctes))

    dbt.compilation.inject_ctes_into_sql = inject_ctes_into_sql


# What sqlparse (dbt's injector) reads as comments and whitespace, and a top-level `with` that is a keyword
# (followed by a CTE's name, not `recursive`, not `.`). sqlparse also ends a statement at `;` and at an
# upper-case word `GO`.
_COMMENTS_AND_SPACE = re.compile(r"(?:\s+|--[^\r\n]*(?:\r\n|\r|\n|\Z)|/\*.*?\*/)*", re.S)
_WITH = re.compile(r"with\s+(?=(?!recursive\b)[a-z_\"])", re.I)
_GO = re.compile(r"\bGO\b")


def _leading_with(sql: str) -> int | None:
    """Where dbt injects CTEs into a statement that opens (after comments) with `with` and holds no other
    statement: after that keyword and its whitespace. That is dbt's own answer, without parsing the whole
    model with sqlparse, which the models that change with every build (the time zones' offsets they read)
    paid at each build (0.07 s for the largest). One difference: dbt refuses a model beyond sqlparse's
    grouping limits (10,000 tokens, 100 nested groups) unless given `--sqlparse`; this path injects into
    it. None for any other statement: dbt's injector decides."""
    start = _COMMENTS_AND_SPACE.match(sql).end()  # type: ignore[union-attr]  # matches the empty string
    keyword = _WITH.match(sql, start)
    if keyword is None or ";" in sql[start:] or _GO.search(sql, start):
        return None
    return keyword.end()


def _keep_macro_contexts() -> None:
    from dbt.adapters.base.impl import BaseAdapter
    from dbt_common.invocation import get_invocation_id

    calls = threading.local()
    execute, set_generator = BaseAdapter.execute_macro, BaseAdapter.set_macro_context_generator

    @functools.wraps(execute)
    def execute_macro(
        self: Any,
        macro_name: str,
        macro_resolver: Any = None,
        project: str | None = None,
        context_override: dict[str, Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        needs_conn: bool = False,
    ) -> Any:
        # Only an outermost call without overrides reuses a context: an override would stay in it, and a
        # call inside another's macro must not clear the results that one's statements stored.
        depth = getattr(calls, "depth", 0)
        calls.depth, calls.reuse = depth + 1, depth == 0 and not context_override
        try:
            return execute(self, macro_name, macro_resolver, project, context_override, kwargs, needs_conn)
        finally:
            calls.depth, calls.reuse = depth, False

    @functools.wraps(set_generator)
    def set_macro_context_generator(self: Any, generator: Any) -> None:
        def generate(macro: Any, config: Any, resolver: Any, package_name: str | None) -> Any:
            if not getattr(calls, "reuse", False):
                return generator(macro, config, resolver, package_name)
            run = get_invocation_id()
            kept = getattr(calls, "kept", None)
            if kept is None or kept[0] != run or kept[1] is not resolver or kept[2] is not config:
                contexts: dict[tuple[str, str | None], tuple[dict[str, Any], int]] = {}
                kept = calls.kept = (run, resolver, config, contexts)
            key = (macro.unique_id, package_name)
            context, size = kept[3].get(key, (None, 0))
            if context is None or len(context) != size:  # new, or a macro added something to it
                context = generator(macro, config, resolver, package_name)
                kept[3][key] = (context, len(context))
            else:
                # The results the macro's statements stored in the last call (`load_result`'s).
                context["load_result"].__self__.sql_results.clear()
            return context

        set_generator(self, generate)  # type: ignore[arg-type]

    BaseAdapter.execute_macro = execute_macro  # type: ignore[method-assign]
    BaseAdapter.set_macro_context_generator = set_macro_context_generator  # type: ignore[method-assign,assignment]


def _find_flag_sources_from_the_caller() -> None:
    from dbt_common import behavior_flags

    def _default_source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__")
            if module and module != behavior_flags.__name__:
                return str(module)
            frame = frame.f_back  # type: ignore[assignment]
        return "Unknown"

    behavior_flags.BehaviorFlagRendered._default_source = staticmethod(_default_source)  # type: ignore[method-assign]
