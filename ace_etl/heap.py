"""The garbage collector of an ace-etl process: when it collects, and what it may skip.

dbt, Prefect and Polars keep hundreds of thousands of objects alive for a process's life, and a build or a
run allocates many more that live for a moment. Python's collector walks what survived again and again:
- `tune`: at CPython's default threshold (700 allocations) a build ran about 280 young collections and 26
  of the middle generation; at 10,000 it runs 19 and 2, and takes about a sixth less CPU (a no-op build of
  the demo: 2.3 -> 1.95 CPU-s). Short-lived cycles wait for at most that many allocations more.
- `freeze_for_later_builds`: when a process starts a build after one that ran dbt, what is alive (dbt's
  modules, macros, adapter) stays; that build's and later ones' full collections skip it (0.21 -> 0.05 s
  of a build). Not after the first build: a command that builds once (`ace-etl transform`) would pay the
  collection that freezing needs (0.2 s) for nothing.
- `freeze_at_exit`: when a process is about to end, its last collection would walk every object still alive
  for the OS to free the lot (0.14 s of every command).
The processes ace-etl owns tune themselves: the console script, the flows' processes (`flows.etl` on
import) and the test run. Only a tuned process freezes: a notebook that calls `build_warehouse` keeps its
collector as it was.
"""

import gc

YOUNG_COLLECTION_THRESHOLD = 10_000
# Flags, not `gc.get_freeze_count()`: that walks every frozen object (30 ms of every later build).
_dbt_ran = False
_frozen = False


def tune() -> None:
    """Collect the young generation every `YOUNG_COLLECTION_THRESHOLD` allocations (older ones as before)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def tuned() -> bool:
    """Whether this process is one ace-etl tuned (`tune`): the collector's own threshold says so."""
    return gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD


def freeze_for_later_builds() -> None:
    """Called as a build starts: in a tuned process where dbt ran before (`dbt_ran`), freeze what is alive,
    once; later full collections skip it. Frozen objects are still freed when nothing refers to them; only
    reference cycles among them are never collected (a first build's parsed project, a few MB)."""
    global _frozen
    if _dbt_ran and not _frozen and tuned():
        gc.collect()
        gc.freeze()
        _frozen = True


def dbt_ran() -> None:
    """Called when a build's dbt run ends, failed or not: dbt's modules, macros and adapter are loaded. A
    build that stopped before (a held lock, a bad landing) leaves nothing worth freezing."""
    global _dbt_ran
    _dbt_ran = True


def freeze_at_exit() -> None:
    """The process ends next: leave what is alive out of the interpreter's last collection. Exit handlers
    still run, and objects freed by reference counting are still finalized; reference cycles are not, so
    files and connections are closed explicitly (as ace-etl's are: every one in a `with`)."""
    gc.freeze()
