"""Work on the next page (fetch it, or decode it) while the current one is landed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class Prefetched(Iterator[T]):
    """Iterate `items` on a background thread, one item ahead, so that producing page n+1 overlaps landing
    page n. Chained, each stage gets a thread (`extract.run.attempt._land_pages`: fetch, decode, stage).

    The producer hands over an item and then waits until it is taken before fetching the next: with the
    consumer dropping its own, each Prefetched adds one page alive per window (two in a chain, fetching and
    decoding), whatever the window's length. Use as a context manager, which stops the producer when the
    consumer leaves early.
    """

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=1)
        self._taken = threading.Semaphore(0)
        self._stop = threading.Event()
        self._producer = threading.Thread(target=self._produce, name="prefetch", daemon=True)

    def __enter__(self) -> Prefetched[T]:
        self._producer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._producer.join()

    def __next__(self) -> T:
        while True:
            try:
                item, error = self._handoff.get(timeout=0.1)
                break
            except queue.Empty:
                # Stopped (the consumer of a chain left, say on Ctrl-C): nothing more is handed over, and a
                # stage reading this one must not wait for it forever.
                if self._stop.is_set():
                    raise StopIteration from None
        self._taken.release()
        if error is not None:
            raise error
        if item is _DONE:
            raise StopIteration
        return item  # type: ignore[return-value]

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not (self._put((item, None)) and self._wait_taken()):
                    return
        except BaseException as exc:
            self._put((_DONE, exc))
            return
        self._put((_DONE, None))

    def _put(self, entry: tuple[object, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _wait_taken(self) -> bool:
        while not self._stop.is_set():
            if self._taken.acquire(timeout=0.1):
                return True
        return False
