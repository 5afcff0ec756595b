"""Child process for the shared-budget tests: page through one site with a budget shared through a file.

Arguments: URL SITE BUDGET_FILE [REQUESTS_PER_MINUTE PERIOD PAGE_SIZE] (default 20 per 3 s, pages of 30)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from extract.api.budget import SharedBudget, key_id
from extract.api.client import AceClient
from extract.api.pagination import iter_pages
from extract.api.ratelimit import Rate


def main(
    url: str, site: str, budget: str, per_minute: str = "400", period: str = "3", page_size: str = "30"
) -> None:
    rate = Rate.per_minute(float(per_minute), float(period))
    limiter = SharedBudget(Path(budget), key_id(url, "demo"), capacity=rate.capacity, period=rate.period)
    start, end = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 27, 1, tzinfo=UTC)
    with AceClient(url, "demo", rate_limiter=limiter) as client:
        pages = sum(1 for _ in iter_pages(client, site, start, end, page_size=int(page_size)))
    print(pages)


if __name__ == "__main__":
    main(*sys.argv[1:])
