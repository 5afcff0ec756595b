"""The garbage collector's settings (ace_etl/heap.py), each in a fresh process: the test processes are tuned."""

from __future__ import annotations

import subprocess
import sys

# As ace_etl.transform.building calls them: freeze_for_later_builds as a build starts, dbt_ran when its dbt
# run ends. The first build stops before dbt (a held lock, say), the next two run it; after each start, is
# anything frozen?
BUILDS = (
    "import gc; from ace_etl import heap; {tune}"
    "frozen = lambda: heap.freeze_for_later_builds() or gc.get_freeze_count() > 0; "
    "print(frozen(), end=' '); print(frozen(), end=' '); heap.dbt_ran(); print(frozen(), end=' '); "
    "heap.dbt_ran(); print(frozen())"
)


def frozen_as_builds_start(*, tuned: bool) -> str:
    code = BUILDS.format(tune="heap.tune(); " if tuned else "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_only_a_process_ace_etl_tuned_freezes_its_heap_and_only_when_it_builds_again() -> None:
    # A notebook that calls build_warehouse keeps its collector as it was; the console script's, a flow's
    # and the tests' processes freeze what their first dbt run left alive when the next build starts, and
    # a command that builds once never collects for it.
    assert frozen_as_builds_start(tuned=False) == "False False False False"
    assert frozen_as_builds_start(tuned=True) == "False False True True"
