"""Landing layout (DESIGN.md) and its writers: where each file goes and what it is called.

Names are deterministic per (site, window, page): `<window key>_p<page>.parquet`, so re-landing a page
replaces its files instead of adding to them. Timeseries files are split by the UTC date of each row's
timestamp; a page's rejects go under the date of the window's start, since their timestamp may be unreadable.
Site names are percent-encoded (`encode_site`), so whatever a site is called it stays one folder.
"""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import unquote

import polars as pl

from extract.errors import ConfigError
from extract.parse import PageRows
from extract.storage import Storage
from extract.windows import Window

TIMESERIES = "landing/timeseries"
REJECTS = "landing/rejects"
WEATHER = "landing/weather"
POINTS = "landing/points"
RUNS = "landing/runs"
CHECKPOINTS = "state/checkpoints"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_PAGE_FILE = re.compile(r"_p(\d+)\.parquet$")


def encode_site(name: str) -> str:
    """Percent-encode every byte outside `[A-Za-z0-9._-]`, and leading dots, so `.`, `..`, `../x` and `a/b`
    are plain folder names. Reversible with `decode_site` (and with readers' hive URI decoding)."""
    if not name:
        raise ConfigError("site name must not be empty")
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))
    stripped = encoded.lstrip(".")
    return "%2E" * (len(encoded) - len(stripped)) + stripped


def decode_site(encoded: str) -> str:
    return unquote(encoded, encoding="utf-8", errors="strict")


def site_dir(dataset: str, site: str) -> str:
    """`<dataset>/site_name=<encoded site>`: one hive partition per site."""
    return f"{dataset}/site_name={encode_site(site)}"


def page_file(window: Window, page: int) -> str:
    return f"{window.key}_p{page:06d}.parquet"


def timeseries_path(site: str, day: date, window: Window, page: int) -> str:
    return f"{site_dir(TIMESERIES, site)}/date={day.isoformat()}/{page_file(window, page)}"


def rejects_path(site: str, window: Window, page: int) -> str:
    return f"{site_dir(REJECTS, site)}/date={window.start.date().isoformat()}/{page_file(window, page)}"


def weather_path(site: str, day: date, stem: str) -> str:
    return f"{site_dir(WEATHER, site)}/date={day.isoformat()}/{stem}.parquet"


def points_path(site: str) -> str:
    return f"{site_dir(POINTS, site)}/points.parquet"


def runs_path(run_id: str, site: str, window: Window) -> str:
    # Encoded like a site: a run id comes from the caller and must not steer the path either.
    return f"{RUNS}/{encode_site(run_id)}__{encode_site(site)}__{window.key}.parquet"


def checkpoint_path(site: str, window: Window) -> str:
    return f"{site_dir(CHECKPOINTS, site)}/{window.key}.json"


def window_files(storage: Storage, site: str, window: Window, *, from_page: int = 0) -> list[str]:
    """The landed timeseries and rejects files of a window whose page number is `from_page` or more."""
    pattern = f"date=*/{window.key}_p*.parquet"
    found = [p for dataset in (TIMESERIES, REJECTS) for p in storage.list(site_dir(dataset, site), pattern)]
    return [p for p in found if (m := _PAGE_FILE.search(p)) and int(m.group(1)) >= from_page]


def write_page(storage: Storage, site: str, window: Window, page: int, rows: PageRows) -> list[str]:
    """Land one page: kept rows split by UTC date, rejects in one file. Returns the paths written."""
    written = []
    for day, part in split_by_date(rows.kept).items():
        written.append(timeseries_path(site, day, window, page))
        storage.write_parquet_atomic(written[-1], part)
    if rows.rejects.height:
        written.append(rejects_path(site, window, page))
        storage.write_parquet_atomic(written[-1], rows.rejects)
    return written


def write_weather(storage: Storage, site: str, frame: pl.DataFrame, stem: str) -> list[str]:
    """Land weather rows split by the UTC date of their timestamp, under the deterministic name `stem`."""
    written = []
    for day, part in split_by_date(frame).items():
        written.append(weather_path(site, day, stem))
        storage.write_parquet_atomic(written[-1], part)
    return written


def split_by_date(frame: pl.DataFrame, column: str = "timestamp") -> dict[date, pl.DataFrame]:
    """Rows grouped by the UTC date of `column`, each group in its original order."""
    if frame.is_empty():
        return {}
    days = frame.get_column(column).dt.date()
    first, last = days.min(), days.max()
    if first == last:  # the usual case: a page inside one day, no copy needed
        assert isinstance(first, date)
        return {first: frame}
    parts = frame.with_columns(_day=days).partition_by(
        "_day", as_dict=True, include_key=False, maintain_order=True
    )
    return {key[0]: part for key, part in parts.items()}
