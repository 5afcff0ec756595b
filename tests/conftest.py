"""Test-wide environment: everything local, nothing leaves loopback, Prefect state inside a temp dir."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from ace_etl import heap
from tests.s3server import s3_env, s3_server  # noqa: F401 (fixtures: one S3 server a test process)

# Three test workers share two cores: a Polars thread pool per process (and per CLI child) only spun and
# switched (the suite: 417-435 s -> 385 s, a tenth less CPU). Polars reads it at import, so it is set here,
# before any test module imports Polars; results do not depend on the pool's size.
os.environ.setdefault("POLARS_MAX_THREADS", "1")
# The garbage collector as the console script sets it (ace_etl/heap.py): the test processes build in process.
heap.tune()
# Set before any Prefect import so that every module sees a private, quiet Prefect home.
_PREFECT_HOME = tempfile.mkdtemp(prefix="ace-etl-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# dbt's parse is shared between the tests' data dirs (ace_etl.transform.shared_parse) through a cache of this
# run's own, shared by its workers (they inherit the first process's environment): a user's cache never
# changes what a test sees.
os.environ["XDG_CACHE_HOME"] = os.environ.setdefault(
    "ACE_ETL_TESTS_CACHE_HOME", tempfile.mkdtemp(prefix="ace-etl-cache-")
)
# Tests must never reach the real API, even by accident.
os.environ["ACEIOT_API_URL"] = "http://127.0.0.1:9/api"
os.environ.pop("ACEIOT_API_KEY", None)
# The simulator has no quota: runs go as fast as they can unless a test sets a budget (`--max-requests-per-
# minute`, a SharedBudget, a rate_limit fault). The budget's pacing is tested where it is under test.
os.environ.setdefault("ACE_ETL_MAX_REQUESTS_PER_MINUTE", "60000")


@pytest.fixture(scope="session")
def harness() -> Iterator[None]:
    """One temporary Prefect server per test process, for every module that runs flows: it takes 10-20 s to
    start."""
    from prefect.testing.utilities import prefect_test_harness

    # The server would first register the block types of every installed Prefect collection, importing
    # prefect-dbt and with it dbt (3.5 of its 13 CPU-s to start). No test needs them there: saving a block
    # (prefect-setup's webhook) registers its own type.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_BLOCKS_REGISTER_ON_START", "false")
        patch.setenv("PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION", "false")
        with prefect_test_harness(server_startup_timeout=120):
            yield


def pytest_unconfigure(config: pytest.Config) -> None:
    """As the console script does: the test process ends next (dbt's and Prefect's heaps)."""
    heap.freeze_at_exit()


# The modules that run flows (use `harness`), sent to one test worker (pytest_xdist_make_scheduler): one Prefect
# server a run rather than one a worker (each costs 15-30 s of CPU to start).
FLOW_MODULES = ("tests/test_flows.py", "tests/test_flows_alerting.py")
# The modules that use the local S3 server (`s3_env`), sent to one test worker too: one server a run.
S3_MODULES = ("tests/test_objectstore.py", "tests/test_lake.py", "tests/test_upkeep.py")
# Units that take longest start first, so that a run never ends waiting on one of them: the flow modules
# (about 3 minutes of a run's 4.5), the S3 modules (one minute) and dbt run by hand (half a minute in four
# tests). xdist's own order, most
# tests first, started them after a minute and last.
LONGEST_FIRST = ("flows", "s3", "tests/test_dbt_by_hand.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        if "harness" in getattr(item, "fixturenames", ()) and module not in FLOW_MODULES:
            raise pytest.UsageError(f"{module} runs flows: add it to FLOW_MODULES in tests/conftest.py")
        if "s3_server" in getattr(item, "fixturenames", ()) and module not in S3_MODULES:
            raise pytest.UsageError(f"{module} uses the S3 server: add it to S3_MODULES in tests/conftest.py")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent under `-p no:xdist`
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadfile` (each module on one worker), with the flow modules as one module and the S3 ones as
    another, the longest first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class OneServerEach(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return "flows" if module in FLOW_MODULES else "s3" if module in S3_MODULES else module

        def _assign_work_unit(self, node: Any) -> None:
            for unit in reversed(LONGEST_FIRST):
                if unit in self.workqueue:
                    self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return OneServerEach(config, log)  # type: ignore[arg-type]
