"""The garbage collector's settings (ace_etl/heap.py), each in a fresh process: the test processes are tuned."""

from __future__ import annotations

import subprocess
import sys

# A build calls heap.freeze_for_later_builds as it starts (ace_etl.transform.building).
THREE_BUILDS = (
    "import gc; from ace_etl import heap; {tune}"
    "print(*[heap.freeze_for_later_builds() or gc.get_freeze_count() > 0 for _ in range(3)])"
)


def frozen_as_three_builds_start(*, tuned: bool) -> str:
    code = THREE_BUILDS.format(tune="heap.tune(); " if tuned else "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_only_a_process_ace_etl_tuned_freezes_its_heap_and_only_when_it_builds_again() -> None:
    # A notebook that calls build_warehouse keeps its collector as it was; the console script's, a flow's
    # and the tests' processes freeze what their first build left alive when a second starts, and a
    # command that builds once never collects for it.
    assert frozen_as_three_builds_start(tuned=False) == "False False False"
    assert frozen_as_three_builds_start(tuned=True) == "False True True"
