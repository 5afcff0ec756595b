"""One run at a time per site: a lease in the state store.

A run holds its site's lease while it plans, extracts and commits a window, so two runs never land the same
window at once, and a forced re-extraction never touches files another run is writing. The lease is a small
JSON file written with compare-and-swap (`Storage.write_if`), renewed by a heartbeat thread; a holder that
dies stops renewing, and its lease is taken over once expired, or at once when its process is gone from
this machine. Another run waits for the lease, saying so, up to a bound.

Hand-written because it must live in our state store (a folder or, later, an object store), where no lock
library reaches; the protocol is the classic lease on a compare-and-swap register.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType

from extract import cancel
from extract.errors import LeaseLostError, SiteBusyError
from extract.lake.landing import lease_path
from extract.lake.storage import Storage, host_name, process_alive
from extract.redact import one_line

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 60.0
DEFAULT_WAIT_S = 3600.0


@dataclass
class SiteLease:
    """The lease on one site; use as a context manager around the work that needs it."""

    storage: Storage
    site: str
    run_id: str
    ttl_s: float = DEFAULT_TTL_S
    wait_s: float = DEFAULT_WAIT_S
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _version: str | None = None
    _lost: str | None = None
    """Why the lease is no longer this run's, once it is not."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _heartbeat: threading.Thread | None = None

    def __enter__(self) -> SiteLease:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        path = lease_path(self.site)
        deadline = time.monotonic() + self.wait_s
        told = False
        while True:
            cancel.check()
            current = self.storage.read_versioned(path)
            holder = _holder(current[0]) if current else None
            if current is None or holder is None or _stale(holder):
                version = self.storage.write_if(path, self._record(), current[1] if current else None)
                if version is not None:
                    self._version = version
                    break
                continue  # someone else won the race; look again
            if time.monotonic() >= deadline:
                raise SiteBusyError(
                    f"site {self.site!r} is being extracted by run {holder.get('run_id')} (pid {holder.get('pid')} "
                    f"on {holder.get('host')}) and it did not finish within {self.wait_s:g} s: run again later"
                )
            if not told:
                log.warning(
                    "site %s is being extracted by run %s (pid %s on %s); waiting for it to finish",
                    self.site, holder.get("run_id"), holder.get("pid"), holder.get("host"),
                )  # fmt: skip
                told = True
            cancel.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._heartbeat.start()

    def check(self) -> None:
        """Raise LeaseLostError if another run took the site over; call before writing what the lease guards."""
        if self._lost:
            raise LeaseLostError(f"lost the lease on site {self.site!r}: {self._lost}")

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self._version is not None and not self._lost:
            self.storage.delete_if(lease_path(self.site), self._version)
        self._version = None

    def _record(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "run_id": self.run_id,
                "host": host_name(),
                "pid": os.getpid(),
                "expires_at": time.time() + self.ttl_s,
            }
        ).encode()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            assert self._version is not None
            try:
                version = self.storage.write_if(lease_path(self.site), self._record(), self._version)
            except Exception as exc:  # the storage's own errors (OSError, an object store's): any of them
                # A lease that cannot be renewed expires, and another run may take the site over: stop
                # writing now rather than find out from a clash.
                self._lost = (
                    f"cannot renew it ({one_line(exc)}); "
                    "this run stops writing for the site; check the data dir and run again"
                )
                log.error("site %s: %s", self.site, self._lost)
                return
            if version is None:
                self._lost = (
                    f"another run took it over (this run stalled for over {self.ttl_s:g} s): "
                    "its work is left to that run; run again if needed"
                )
                return
            self._version = version


def _holder(data: bytes) -> dict[str, object] | None:
    """The lease's record, or None when it is unreadable (then it can be taken over)."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("expires_at"), int | float) else None


def _stale(holder: dict[str, object]) -> bool:
    expires = holder["expires_at"]
    assert isinstance(expires, int | float)
    if time.time() > expires:
        return True
    pid = holder.get("pid")
    # A holder on this machine whose process is gone (killed, crashed) cannot renew: no need to wait out
    # the TTL. On other machines only expiry tells.
    return holder.get("host") == host_name() and isinstance(pid, int) and not process_alive(pid)
