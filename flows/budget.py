"""One request budget per API key across machines: a Prefect global concurrency limit with slot decay.

Prefect's server already coordinates every worker of a deployment, wherever it runs, so its rate limits
are the cross-machine budget: one limit per key (named by a digest of the API URL and key, never the key),
`limit` slots decaying at `limit / 60` per second. `setup_budget` creates or updates it (the documented
`ace-etl prefect-setup` step); `PrefectBudget` is the client's limiter inside flows.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectNotFound

from extract import cancel
from extract.budget import key_id
from extract.errors import ConfigError


def limit_name(api_url: str, api_key: str) -> str:
    return f"ace-etl-api-{key_id(api_url, api_key)}"


def setup_budget(api_url: str, api_key: str, requests_per_minute: float) -> str:
    """Create (or update) the key's limit on the Prefect server in use; returns its name."""
    name = limit_name(api_url, api_key)
    slots = max(1, int(requests_per_minute))
    decay = requests_per_minute / 60.0
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


class PrefectBudget:
    """The client's limiter when flows share one budget through the Prefect server."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"PrefectBudget({self.name!r})"

    def acquire(self) -> None:
        cancel.check()
        try:
            rate_limit(self.name, strict=True)
        except Exception as exc:
            if "not found" in str(exc).lower() or type(exc).__name__ == "ConcurrencySlotAcquisitionError":
                raise ConfigError(
                    f"no Prefect concurrency limit {self.name!r} for this API key: run `ace-etl prefect-setup`"
                ) from None
            raise

    def settle(self, slot: int | None) -> None:
        """Nothing to re-stamp: a Prefect slot decays on the server's clock, which the limit already uses."""

    def pause(self, seconds: float) -> None:
        """Nothing to share: the client's own retry waits out Retry-After on this worker, and Prefect
        limits have no shared pause (the decaying slots still bound every worker together)."""
