"""The shims over DuckDB's, dbt-core's and dbt-duckdb's non-public behaviour, checked against the installed versions:
each test fails when the library changes what its shim relies on."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from dbt.version import __version__ as dbt_version

from ace_etl import compat
from ace_etl.transform import build_dir, build_warehouse
from tests.landing_factory import samples, write_timeseries

HOLD_LOCK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
"""


def _error(open_or_query: object) -> str:
    with pytest.raises(duckdb.Error) as raised:
        assert callable(open_or_query)
        open_or_query()
    return str(raised.value)


def test_duckdb_says_which_process_holds_a_database_lock(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        message = _error(lambda: duckdb.connect(str(database), read_only=True))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    found = compat.duckdb_lock_holder(message)
    assert found is not None and f"PID {holder.pid}" in found, (
        f"DuckDB {duckdb.__version__} words a held lock differently than {compat.DUCKDB_CHECKED}: {message}"
    )
    assert "See also" not in found
    assert compat.duckdb_lock_holder("IO Error: Cannot open file: No such file or directory") is None


def test_duckdb_says_a_file_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 400)
    message = _error(lambda: duckdb.connect(str(junk), read_only=True))
    assert compat.duckdb_not_a_database(message), (
        f"DuckDB {duckdb.__version__} (checked {compat.DUCKDB_CHECKED}): {message}"
    )
    assert compat.duckdb_lock_holder(message) is None


def test_duckdb_names_a_missing_table() -> None:
    with duckdb.connect() as connection:
        message = _error(lambda: connection.execute("select * from main.daily_rollup"))
    assert compat.duckdb_missing_table(message) == "daily_rollup", (
        f"DuckDB {duckdb.__version__} (checked {compat.DUCKDB_CHECKED}): {message}"
    )
    assert compat.duckdb_missing_table("Catalog Error: Schema with name x does not exist!") is None


def test_dbt_duckdb_keeps_its_instance_where_the_shim_closes_it() -> None:
    # Behaviour is covered where dbt runs in this process (tests/test_dbt_by_hand.py reads the file dbt
    # built right after `release_dbt_database`); this names the cause when dbt-duckdb moves it.
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    assert "_ENV" in vars(DuckDBConnectionManager), (
        f"dbt-duckdb moved its DuckDB instance since {compat.DBT_DUCKDB_CHECKED}: see ace_etl.compat"
    )
    assert callable(DuckDBConnectionManager.close_all_connections)


def _build_log(data_dir: Path, **options: object) -> str:
    """What dbt logged during one build of `data_dir`."""
    log = build_dir(data_dir) / "logs" / "dbt.log"
    before = log.stat().st_size if log.exists() else 0
    build_warehouse(data_dir, **options)  # type: ignore[arg-type]
    with log.open("rb") as written:
        written.seek(before)
        return written.read().decode()


def test_dbt_reuses_a_parse_across_data_dirs_and_vars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")  # dbt says how it parsed at debug level only
    first, second = tmp_path / "first", tmp_path / "second"
    day = datetime(2025, 1, 1, tzinfo=UTC)
    for data_dir, count in ((first, 30), (second, 50)):
        write_timeseries(data_dir, samples("s", ["p"], day, count, collected_at=day + timedelta(days=1)), "d")
    assert "Starting full parse" in _build_log(first)
    reused = "Partial parsing enabled"
    # Another data dir reuses the parse made for the first one, without re-parsing a file: nothing parsed
    # depends on the data dir.
    log = _build_log(second)
    assert reused in log and "Unable to do partial parsing" not in log, (
        f"dbt-core {dbt_version} rejects a parse made for another build database folder "
        f"(checked {compat.DBT_CORE_CHECKED}): see ace_etl.compat.share_dbt_parse"
    )
    assert "Partial parsing: updated file" not in log, log[-3000:]
    # Other time zones (a sites file): the same parse, and the zone is the one given.
    log = _build_log(second, time_zones={"s": "America/New_York"})
    assert reused in log and "Unable to do partial parsing" not in log, log[-3000:]
    with duckdb.connect(str(second / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("select time_zone from sites").fetchall() == [("America/New_York",)]
    _build_log(second, full_check=True)  # other vars: the first build with them parses
    # A data dir keeps its own parse though another data dir's replaced the shared one meanwhile.
    assert "Nothing changed, skipping partial parsing" in _build_log(first)
    # A nightly build after the full check: the shared parse again (the first data dir's), no full parse.
    log = _build_log(second)
    assert reused in log and "Unable to do partial parsing" not in log, log[-3000:]
    # An incremental model keeps its comments (persist_docs) between builds: none is written again. A table
    # model is created anew, and commented anew.
    assert 'comment on column "warehouse"."main"."timeseries_hourly"' not in log, log[-3000:]
    assert 'comment on column "warehouse"."main"."sites"' in log, log[-3000:]
    # The reused parse reads this data dir's landing, not the one it was made for.
    with duckdb.connect(str(second / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from timeseries_raw").fetchall() == [(50,)]


def _converted_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(level, message) of every event dbt converts from now on, in order."""
    import dbt_common.events.event_manager as events

    converted: list[tuple[str, str]] = []
    convert = events.msg_from_base_event

    def counted(event: object, level: object = None) -> object:
        message = convert(event, level=level)  # type: ignore[arg-type]
        converted.append((message.info.level, message.info.msg))
        return message

    monkeypatch.setattr(events, "msg_from_base_event", counted)
    return converted


def _rebuilt(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often, from now on, dbt builds a result's type tester, Jinja compiles a template, dbt scans
    sys.path for plugins, parses a model with sqlparse and makes an adapter macro's context (what
    compat.keep_what_dbt_rebuilds keeps)."""
    import pkgutil

    import agate
    import jinja2
    import sqlparse
    from dbt.context.providers import MacroContext

    made: Counter[str] = Counter()
    for owner, name, what in (
        (agate.TypeTester, "__init__", "type testers"),
        (jinja2.Environment, "_compile", "templates compiled"),
        (pkgutil, "iter_modules", "sys.path scans"),
        (sqlparse, "parse", "models parsed by sqlparse"),
        (MacroContext, "__init__", "macro contexts"),
    ):
        monkeypatch.setattr(owner, name, _counting(made, what, getattr(owner, name)))
    return made


def _counting(made: Counter[str], what: str, call: Callable[..., object]) -> Callable[..., object]:
    def counted(*args: object, **kwargs: object) -> object:
        made[what] += 1
        return call(*args, **kwargs)

    return counted


def test_dbt_drops_the_debug_events_no_log_keeps_and_rebuilds_nothing_it_made_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = _converted_events(monkeypatch)
    day = datetime(2025, 1, 1, tzinfo=UTC)
    write_timeseries(tmp_path, samples("s", ["p"], day, 30, collected_at=day + timedelta(days=1)), "d")
    log = _build_log(tmp_path)
    assert "[debug]" not in log and log.count("[info ]") >= 60  # the file log at info, as before
    levels = [level for level, _ in converted]
    assert levels.count("info") >= 60 and "debug" not in levels, (
        f"dbt-core {dbt_version} converts the debug events no log keeps again (checked {compat.DBT_CORE_CHECKED}): "
        "see ace_etl.compat.skip_unused_dbt_events"
    )
    # At debug the file log gets every event again. The second build remakes little of what the first made:
    # without the shim, 216 type testers, 130 templates compiled, a scan of sys.path, 4 models parsed by
    # sqlparse (each carries the build's start time) and 65 macro contexts (each with all 565 macros); with
    # it, only what the incremental path uses first (3 and about 30, no parse) and a context for each adapter
    # macro on each of dbt's threads (12).
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")
    rebuilt = _rebuilt(monkeypatch)
    assert "[debug]" in _build_log(tmp_path)
    assert (
        rebuilt["type testers"] <= 20
        and rebuilt["templates compiled"] <= 50
        and not rebuilt["sys.path scans"]
        and not rebuilt["models parsed by sqlparse"]
        and rebuilt["macro contexts"] <= 20
    ), (
        f"{dict(rebuilt)} in a build: dbt-core {dbt_version} (checked {compat.DBT_CORE_CHECKED}, dbt-common "
        f"{compat.DBT_COMMON_CHECKED}, dbt-adapters {compat.DBT_ADAPTERS_CHECKED}, Jinja "
        f"{compat.JINJA_CHECKED}) makes them elsewhere: see "
        "ace_etl.compat.keep_what_dbt_rebuilds"
    )


def test_dbt_keeps_what_it_rebuilds_as_it_would_make_it() -> None:
    """Each kept thing is what dbt would make anew: the same result types, the same rendering, the same SQL."""
    import dbt.compilation
    from dbt.artifacts.resources import InjectedCTE
    from dbt_common.clients import agate_helper, jinja

    compat.keep_what_dbt_rebuilds()
    rows = [{"n": 1, "when": "2025-01-01", "name": "null"}]
    first, second = (agate_helper.table_from_data_flat(rows, ["n", "when", "name"]) for _ in range(2))
    assert [type(t).__name__ for t in first.column_types] == ["Integer", "Text", "Text"]
    assert first.rows[0].values() == second.rows[0].values() == (1, "2025-01-01", "null")
    assert agate_helper.empty_table() is agate_helper.empty_table()
    assert len(agate_helper.empty_table().rows) == 0
    # Two nodes render one macro source with their own values.
    source = "{% for x in items %}{{ x }}-{% endfor %}{{ name | upper }}"
    contexts = ({"items": [1, 2], "name": "a"}, {"items": [3], "name": "b"})
    rendered = [jinja.render_template(jinja.get_template(source, context), context) for context in contexts]
    assert rendered == ["1-2-A", "3-B"]
    # dbt looks the injector up at each model: the kept one.
    assert "inject_ctes_into_sql" in dbt.compilation.Compiler._recursively_prepend_ctes.__code__.co_names, (
        f"dbt-core {dbt_version} injects CTEs elsewhere (checked {compat.DBT_CORE_CHECKED}): see "
        "ace_etl.compat.keep_what_dbt_rebuilds"
    )
    ctes = [InjectedCTE(id="model.x.e", sql=" __dbt__cte__e as (\nselect 1 as a\n)")]
    for _ in range(2):
        assert dbt.compilation.inject_ctes_into_sql("with b as (select 2) select * from e, b", ctes) == (
            "with  __dbt__cte__e as (\nselect 1 as a\n), b as (select 2) select * from e, b"
        )
    # An adapter macro's kept context wraps dbt-adapters' execute_macro, passing on each of its parameters,
    # and clears the results its statements stored where `load_result` reads them.
    from dbt.adapters.base.impl import BaseAdapter
    from dbt.context.providers import ProviderContext

    assert "sql_results" in ProviderContext.load_result.__code__.co_names, (
        f"dbt-core {dbt_version} keeps a macro's results elsewhere (checked {compat.DBT_CORE_CHECKED}): see "
        "ace_etl.compat.keep_what_dbt_rebuilds"
    )

    assert list(inspect.signature(BaseAdapter.execute_macro.__wrapped__).parameters) == [
        "self", "macro_name", "macro_resolver", "project", "context_override", "kwargs", "needs_conn"
    ], (
        f"dbt-adapters changed execute_macro (checked {compat.DBT_ADAPTERS_CHECKED}): see "
        "ace_etl.compat.keep_what_dbt_rebuilds"
    )  # fmt: skip
    # A model that opens with `with` skips sqlparse, with dbt's own result; any other shape is dbt's to read.
    two = [*ctes, InjectedCTE(id="model.x.f", sql=" __dbt__cte__f as (\nselect 2 as b\n)")]
    for sql in (
        "\n-- depends_on: x; y\n/* a\n -- b */\r\n-- c\rWITH\n\tb as (select ';') select * from e, b",
        'with "b" as (select 1) select * from b',
        "with recursive r as (select 1) select * from r",
        "with b as (select 1) select * from b; select 2",
        "-- with a comment\nselect * from (with b as (select 1) select * from b)",
        "# a comment\nwith b as (select 1) select * from b",
        "without as (select 1) select * from without",
        "with(select 1) as b select 1",
        "insert into t with b as (select 1) select * from b",
        "with b as (select 1 as x) select x as GO, 2 as y from b",  # sqlparse ends a statement at GO
        "  select 'with b as' as s",
    ):
        for given in (ctes, two):
            kept = dbt.compilation.inject_ctes_into_sql(sql, given)
            assert kept == dbt.compilation.inject_ctes_into_sql.__wrapped__(sql, given), sql


# A process that builds: how many templates Jinja compiles to render one of dbt's macros and one of the
# project's, and what they render.
RENDER_IN_A_NEW_PROCESS = """
import collections, sys, jinja2
from dbt.clients.jinja import get_rendered
from dbt_common.clients import jinja
from ace_etl.transform import dbt_environment
compiled = collections.Counter()
tokenize = jinja2.Environment._tokenize
def counted(self, source, *args):
    compiled[source] += 1
    return tokenize(self, source, *args)
jinja2.Environment._tokenize = counted
with dbt_environment(sys.argv[1], sys.argv[2]):
    for source in ("{% macro m(x) %}{{ x | upper }}-{{ y }}{% endmacro %}", sys.argv[3]):
        template = jinja.get_template(source, {"y": 2})
        print(getattr(template.module, jinja.get_dbt_macro_name("m"))("a"), end=" ")
    get_rendered("a-password-typed-in", {}, native=True)  # as dbt renders a profile's plain values
print(sum(count for source, count in compiled.items() if "{" in source))
"""


def test_a_new_process_takes_the_code_of_templates_compiled_before_from_the_cache(tmp_path: Path) -> None:
    """A build's first templates compile once per machine, not once per process (`compat._code_on_disk`,
    under `XDG_CACHE_HOME`): the second process compiles none, and renders the same; a damaged file and a
    changed source are compiled again."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = tmp_path / "cache" / "ace-etl" / "jinja-code"

    def render(other: str = "{% macro m(x) %}{{ x }}{% endmacro %}") -> str:
        args = [
            sys.executable,
            "-c",
            RENDER_IN_A_NEW_PROCESS,
            str(tmp_path),
            str(tmp_path / "w.duckdb"),
            other,
        ]
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.strip()

    first = render()
    assert first.startswith("A-2 a ") and int(first.split()[-1]) >= 2, first
    assert len(list(code.glob("*.jinja"))) >= 2
    assert not [kept for kept in code.iterdir() if b"a-password-typed-in" in kept.read_bytes()]
    assert render() == "A-2 a 0", "a new process compiled the templates again"
    for kept in code.glob("*.jinja"):
        kept.write_bytes(kept.read_bytes()[:40])
    # the damaged one compiled again, and the changed source
    assert render("{% macro m(x) %}{{ x }}!{% endmacro %}") == "A-2 a! 2"


def test_dbt_still_hands_debug_events_to_a_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect-dbt's node tasks read debug events (a node's start and end) through a callback: with one
    registered, the shim drops nothing; with only dbt's tracking callback, it drops the debug event unread."""
    import dbt_common.events.event_manager as events
    from dbt.tracking import track_behavior_change_warn
    from dbt_common.events.base_types import EventLevel
    from dbt_common.events.types import Note

    compat.skip_unused_dbt_events()
    converted = _converted_events(monkeypatch)
    received: list[str] = []
    manager = events.EventManager()
    manager.callbacks = [track_behavior_change_warn, lambda message: received.append(message.info.msg)]
    manager.fire_event(Note(msg="read by a callback"), level=EventLevel.DEBUG)
    assert received == ["read by a callback"]
    manager.callbacks = [track_behavior_change_warn]
    manager.fire_event(Note(msg="read by nobody"), level=EventLevel.DEBUG)
    assert [message for _, message in converted] == ["read by a callback"]


def test_dbt_builds_an_event_s_fields_when_they_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A debug event nobody reads (three for every statement) never builds its protobuf fields."""
    import dbt_common.events.base_types as base_types
    from dbt.adapters.events.types import SQLQuery

    compat.skip_unused_dbt_events()
    built: Counter[str] = Counter()
    monkeypatch.setattr(base_types, "ParseDict", _counting(built, "fields", base_types.ParseDict))
    event = SQLQuery(conn_name="model.x", sql="select 1", node_info={"node_name": "x"})
    assert not built, (
        f"dbt-common builds an event's fields when it is made again (checked {compat.DBT_COMMON_CHECKED}): see "
        "ace_etl.compat.skip_unused_dbt_events"
    )
    assert (event.sql, event.node_info.node_name, event.message()) == (
        "select 1",
        "x",
        "On model.x: select 1",
    )
    assert built == {"fields": 1}
    event.sql = "select 2"
    assert base_types.msg_from_base_event(event).data.sql == "select 2"


def test_an_adapter_macro_s_context_is_reused_only_where_a_call_leaves_nothing_in_it() -> None:
    """Through dbt-adapters' own execute_macro: a second call of a macro reuses its context, emptied of the
    results the first call's statements stored; an override, a call inside another call's macro, a context
    that a call added to and another dbt invocation each get a new one."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from dbt.adapters.base.impl import BaseAdapter
    from dbt_common.invocation import reset_invocation_id

    compat.keep_what_dbt_rebuilds()
    seen: list[tuple[int, list[str]]] = []  # (context made, results stored before this call stored its own)

    class Made:  # where dbt's MacroContext keeps a call's statement results
        def __init__(self, number: int) -> None:
            self.number, self.sql_results = number, dict[str, object]()

        def load_result(self, name: str) -> object:
            return self.sql_results.get(name)

    def generator(macro: object, config: object, resolver: object, package: object) -> dict[str, object]:
        made = Made(len(contexts))

        def probe(step: str) -> str:
            seen.append((made.number, sorted(made.sql_results)))
            made.sql_results[step] = "stored"
            if step == "outer":
                execute("inner")
                after_inner.append(made.load_result("outer"))
            elif step == "adds":
                context["added"] = True
            return ""

        context = {"load_result": made.load_result, "probe": probe}
        contexts.append(context)
        return context

    contexts: list[dict[str, object]] = []
    after_inner: list[object] = []
    macro = SimpleNamespace(
        name="probe_macro", unique_id="macro.t.probe_macro", package_name="t",
        macro_sql="{% macro probe_macro(step) %}{{ probe(step) }}{% endmacro %}",
    )  # fmt: skip
    adapter = SimpleNamespace(
        config=SimpleNamespace(project_name="t"),
        _macro_resolver=SimpleNamespace(find_macro_by_name=lambda *_: macro),
        connections=SimpleNamespace(exception_handler=lambda _: nullcontext()),
    )
    BaseAdapter.set_macro_context_generator(adapter, generator)  # type: ignore[arg-type]

    def execute(step: str, override: dict[str, object] | None = None) -> None:
        BaseAdapter.execute_macro(adapter, "probe_macro", context_override=override, kwargs={"step": step})  # type: ignore[arg-type]

    for step in ("first", "again", "overridden", "again", "outer", "adds", "again"):
        execute(step, {"x": 1} if step == "overridden" else None)
    reset_invocation_id()
    execute("next run")
    assert seen == [
        (0, []),  # made
        (0, []),  # reused, the first call's results gone
        (1, []),  # an override: a context of its own
        (0, []),  # and the kept one again
        (0, []),  # the outer call...
        (2, []),  # ...and a call inside its macro: a context of its own, the outer's results untouched
        (0, []),  # this call adds to its context...
        (3, []),  # ...so the next one gets a new one
        (4, []),  # another invocation
    ]
    assert after_inner == ["stored"]  # the inner call cleared nothing of what the outer one stored


def test_dbt_names_a_behaviour_flag_s_module_without_reading_the_whole_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dbt_common.behavior_flags import BehaviorFlagRendered

    def whole_stack(*args: object) -> object:
        raise AssertionError(
            f"dbt-common reads the whole stack for a flag's source again (checked {compat.DBT_COMMON_CHECKED}): "
            "see ace_etl.compat.keep_what_dbt_rebuilds"
        )

    compat.keep_what_dbt_rebuilds()
    monkeypatch.setattr(inspect, "stack", whole_stack)
    flag = BehaviorFlagRendered({"name": "some_flag", "default": False, "description": "d"}, {})
    assert flag._behavior_change_event.flag_source == __name__  # the module that declared it, as before
