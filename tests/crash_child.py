"""Child process for the kill -9 test: extract one window as one long `[start, end)`, every point."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from extract.api.client import AceClient
from extract.lake.storage import LocalStorage
from extract.run.job import Job
from extract.run.pipeline import extract_window, resolve_selector
from extract.windows import Window


def main(url: str, data_dir: str, site: str, start: str, end: str, page_size: str) -> None:
    window = Window(datetime.fromisoformat(start), datetime.fromisoformat(end))
    job = Job(sites=(site,), span=window, data_dir=Path(data_dir), page_size=int(page_size), run_id="child")
    with AceClient(url, "demo", requests_per_minute=None) as client:
        extract_window(client, LocalStorage(data_dir), job, site, window, resolve_selector(["*"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
