"""Child process for the shared-budget test: page through one site with a budget shared through a file."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from extract.budget import SharedBudget, key_id
from extract.client import AceClient
from extract.pagination import iter_pages


def main(url: str, site: str, budget: str) -> None:
    limiter = SharedBudget(Path(budget), key_id(url, "demo"), capacity=20, period=3.0)
    start, end = datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 27, 1, tzinfo=UTC)
    with AceClient(url, "demo", rate_limiter=limiter) as client:
        pages = sum(1 for _ in iter_pages(client, site, start, end, page_size=30))
    print(pages)


if __name__ == "__main__":
    main(*sys.argv[1:])
