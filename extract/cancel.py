"""Process-wide cancellation: Ctrl-C (or a caller) asks every worker to stop at its next safe point.

Workers check between pages and while they wait (rate limit, leases), so a stop never waits for a whole
window; what was landed is already checkpointed, so stopping anywhere leaves the state consistent.
"""

from __future__ import annotations

import threading

from extract.errors import CancelledError

_CANCELLED = threading.Event()


def request() -> None:
    _CANCELLED.set()


def requested() -> bool:
    return _CANCELLED.is_set()


def check() -> None:
    if _CANCELLED.is_set():
        raise CancelledError(
            "interrupted; completed pages are checkpointed, re-run the same command to resume"
        )


def sleep(seconds: float) -> None:
    """Sleep, but wake up and raise CancelledError as soon as a stop is requested."""
    if _CANCELLED.wait(seconds):
        check()
