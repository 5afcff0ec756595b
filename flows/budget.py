"""One request budget per API key across machines: a Prefect global concurrency limit with slot decay.

Prefect's server already coordinates every worker of a deployment, wherever it runs, so its rate limits
are the cross-machine budget: one limit per key (named by a digest of the API URL and key, never the key).
It paces as `extract.api.ratelimit.Rate` does: one slot, decaying at one per `Rate.spacing` seconds, so requests
go evenly spaced and a minute's budget never leaves at once (a server may count over a shorter window).
`setup_budget` creates or updates it (the documented `ace-etl prefect-setup` step); `PrefectBudget` is the
client's limiter inside flows.

A limit has no pause, so a server's Retry-After travels in a Prefect variable beside it
(`ace-etl-pause-<digest>`, the wall-clock time until which nobody sends): every worker reads it at most once
a second, so one worker's 429 holds all of them, on every machine, within a second. A stored pause longer
than the client's `RetryPolicy.retry_after_max` from now is cut to it, and a long wait is said once.
"""

from __future__ import annotations

import math
import threading
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectNotFound
from prefect.variables import Variable

from extract import cancel
from extract.api.budget import key_id
from extract.api.ratelimit import Announcer, Rate
from extract.errors import ConfigError
from flows.compat import ConcurrencySlotAcquisitionError

# How stale a worker's view of the shared pause may be: one variable read per second per process.
PAUSE_POLL_S = 1.0


def limit_name(api_url: str, api_key: str) -> str:
    return f"ace-etl-api-{key_id(api_url, api_key)}"


def pause_name(limit: str) -> str:
    return limit.replace("ace-etl-api-", "ace-etl-pause-", 1)


def setup_budget(api_url: str, api_key: str, requests_per_minute: float) -> str:
    """Create (or update) the key's limit on the Prefect server in use; returns its name."""
    name = limit_name(api_url, api_key)
    slots, decay = 1, 1.0 / Rate.per_minute(requests_per_minute).spacing
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=slots, slot_decay_per_second=decay)
            )
        else:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=slots, slot_decay_per_second=decay)
            )
    return name


def _limit_exists(name: str) -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return False
    return True


class PrefectBudget:
    """The client's limiter when flows share one budget through the Prefect server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._paused_until = 0.0
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self._announcer = Announcer()

    def __repr__(self) -> str:
        return f"PrefectBudget({self.name!r})"

    def acquire(self, max_pause: float = math.inf) -> None:
        """Block until the key's pause is over (at most `max_pause` s from now) and its limit grants a slot."""
        cancel.check()
        while (wait := (until := self._shared_pause(max_pause)) - time.time()) > 0:
            self._announcer.wait(
                until, wait, "the API answered 429 and asked (Retry-After) that this key pause"
            )
            cancel.sleep(min(wait, PAUSE_POLL_S))
        try:
            rate_limit(self.name, strict=True)
        except ConcurrencySlotAcquisitionError:
            # Also raised when the server refused the request: only a limit that is not there is ours to name.
            if not _limit_exists(self.name):
                raise ConfigError(
                    f"no Prefect concurrency limit {self.name!r} for this API key: run `ace-etl prefect-setup`"
                ) from None
            raise

    def settle(self, slot: int | None) -> None:
        """Nothing to re-stamp: a Prefect slot decays on the server's clock, which the limit already uses."""

    def pause(self, seconds: float) -> None:
        """The server asked us to wait: no worker of this key sends for `seconds`, wherever it runs."""
        until = time.time() + seconds
        with self._lock:
            self._paused_until = max(self._paused_until, until)
        # Read-then-write can lose to a concurrent pause that ends later; each 429 re-posts its own, so
        # the longest wait still reaches everyone at its next 429 at worst.
        current = Variable.get(pause_name(self.name), default=0.0)
        if not isinstance(current, int | float) or current < until:
            Variable.set(pause_name(self.name), until, overwrite=True)

    def _shared_pause(self, max_pause: float) -> float:
        """Until when the key is paused, as far as this worker knows (read from Prefect at most once a second),
        cut to `max_pause` seconds from now: the cut is stored too, so no worker waits out the rest."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < PAUSE_POLL_S:
                return self._paused_until
            self._read_at = now
        shared = Variable.get(pause_name(self.name), default=0.0)
        cap = time.time() + max_pause
        if isinstance(shared, int | float) and shared > cap:
            Variable.set(pause_name(self.name), cap, overwrite=True)
            shared = cap
        with self._lock:
            if isinstance(shared, int | float):
                self._paused_until = min(max(self._paused_until, float(shared)), cap)
            return self._paused_until
