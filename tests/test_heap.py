"""The garbage collector's settings (ace_etl/heap.py), each in a fresh process: the test processes are tuned."""

from __future__ import annotations

import subprocess
import sys

FREEZE_ONCE = (
    "import gc; from ace_etl import heap; {tune}heap.freeze_once(); print(gc.get_freeze_count() > 0)"
)


def frozen_after_freeze_once(*, tuned: bool) -> str:
    code = FREEZE_ONCE.format(tune="heap.tune(); " if tuned else "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_only_a_process_ace_etl_tuned_freezes_its_heap_after_a_build() -> None:
    # A notebook that calls build_warehouse keeps its collector as it was; the console script's, a flow's
    # and the tests' processes freeze what their first build left alive.
    assert frozen_after_freeze_once(tuned=False) == "False"
    assert frozen_after_freeze_once(tuned=True) == "True"
