"""Landing layout (docs/DESIGN.md) and its writers: where each file goes and what it is called.

The one owner of the layout: every path and name of the data dir (the Delta tables, the Parquet datasets,
checkpoints, staging, leases, retention, quarantine), on disk and on S3, is formatted and parsed here, and
dbt is handed the Parquet datasets' globs (`dbt_globs`); nothing else spells a landing path.

`landing/timeseries` and `landing/weather` are Delta tables (`extract.lake.tables`). The other datasets are plain
Parquet files. Names are deterministic per (site, window, attempt, page): `<window key>_<attempt>_p<page>.parquet`.
An attempt is one extraction of a window; its pages are staged under `state/` (timeseries split by the UTC
date of each row's timestamp) and committed only when the whole window is there (`extract.run.attempt.commit`):
the timeseries rows in one Delta commit, the rejects and selection files moved into the landing together with
the removal of the files of the attempts they replace. A page's rejects go under the date of the window's
start, since their timestamp may be unreadable. Site names are percent-encoded (`encode_site`), so whatever a
site is called it stays one folder.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

import polars as pl

from extract.errors import ConfigError
from extract.lake import schemas
from extract.lake.storage import Storage, local_dir
from extract.windows import Window, compact_time, parse_compact_time

if TYPE_CHECKING:  # the parser's page, only named here
    from extract.api.parse import PageRows

LANDING = "landing"
TIMESERIES = f"{LANDING}/timeseries"
REJECTS = f"{LANDING}/rejects"
WEATHER = f"{LANDING}/weather"
POINTS = f"{LANDING}/points"
SITES = f"{LANDING}/sites"
RUNS = f"{LANDING}/runs"
SELECTIONS = f"{LANDING}/selections"
GAP_CHECKS = f"{LANDING}/gap_checks"
CHECKPOINTS = "state/checkpoints"
STAGING = "state/staging"
LEASES = "state/leases"
RETENTION = "state/retention"
BUDGET = "state/api-budget.sqlite"
"""The machine's shared request budget (SQLite), under the local folder of the data dir (`local_dir`)."""
QUARANTINE = "quarantine"
# The file datasets of a window attempt: committed and replaced together (timeseries is a Delta table).
WINDOW_DATASETS = (REJECTS, SELECTIONS)
LANDING_DIRS = (TIMESERIES, REJECTS, WEATHER, POINTS, SITES, RUNS, SELECTIONS, GAP_CHECKS, LEASES)
# The Delta tables, and the datasets of plain Parquet files (a build lists and checks these files).
TABLES = (TIMESERIES, WEATHER)
PARQUET_DATASETS = (REJECTS, SELECTIONS, RUNS, POINTS, SITES, GAP_CHECKS)
# Each Parquet dataset's files below its folder (a site folder, then a date folder where there is one).
_GLOBS = {
    REJECTS: "*/*/*.parquet",
    SELECTIONS: "*/*/*.parquet",
    RUNS: "*.parquet",
    POINTS: "*/*.parquet",
    SITES: "*/*.parquet",
    GAP_CHECKS: "*/*.parquet",
}
_SITE_FOLDER = "site_name="
_REASON = ".reason.txt"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_TIME = r"\d{8}T\d{6}(?:\.\d{6})?Z"
# `<start>_<end>_<attempt>[_p<page>].parquet` (a selection has no page); heal patches add `_h<id>`.
_WINDOW_FILE = re.compile(rf"^({_TIME})_({_TIME})_[0-9A-Za-z]+(?:_(?:p\d+|h[0-9a-f]+))?\.parquet$")
# Folder and file names stay far below the usual 255-byte limit, whatever the site is called.
_MAX_ENCODED = 120


def encode_site(name: str) -> str:
    """Percent-encode every byte outside `[A-Za-z0-9._-]`, and leading dots, so `.`, `..`, `../x` and `a/b`
    are plain folder names. Reversible with `decode_site` (and with readers' hive URI decoding)."""
    if not name:
        raise ConfigError("site name must not be empty")
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8"))
    stripped = encoded.lstrip(".")
    encoded = "%2E" * (len(encoded) - len(stripped)) + stripped
    if len(encoded) <= _MAX_ENCODED:
        return encoded
    # A long name keeps a readable head and gets a digest of the whole: unique, short, and the real name
    # is in every file's site_name column.
    head = encoded[:80]
    head = head[: head.rfind("%")] if "%" in head[-2:] else head
    return f"{head}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def decode_site(encoded: str) -> str:
    """The site name of a folder, or the folder name itself for a hashed long name (read `site_name`)."""
    return encoded if "~" in encoded else unquote(encoded, encoding="utf-8", errors="strict")


def site_dir(dataset: str, site: str) -> str:
    """`<dataset>/site_name=<encoded site>`: one hive partition per site."""
    return f"{dataset}/{_SITE_FOLDER}{encode_site(site)}"


def dataset_name(dataset: str) -> str:
    """The name of a dataset (`timeseries` for `landing/timeseries`): its schema's in `extract.lake.schemas`."""
    return dataset.rsplit("/", 1)[-1]


def in_dataset(path: str, dataset: str) -> bool:
    """Whether `path` (a landing path, also as staged) is a file of `dataset`."""
    return path.startswith(dataset + "/")


def dbt_vars() -> dict[str, object]:
    """The layout as dbt reads it (`ace_etl.transform.dbt_vars`; dbt_project.yml holds the same as the
    defaults of a hand-run build): the landing folder, and each Parquet dataset's files as a glob relative
    to the data dir, by dataset name."""
    globs = {dataset_name(d): f"{d}/{glob}" for d, glob in _GLOBS.items()}
    return {"landing_dir": LANDING, "landing_globs": globs}


def page_file(window: Window, attempt: str, page: int) -> str:
    return f"{window.key}_{attempt}_p{page:06d}.parquet"


def timeseries_path(site: str, day: date, window: Window, attempt: str, page: int) -> str:
    """A staged timeseries page's name (staged only: the commit writes its rows to the Delta table)."""
    return f"{site_dir(TIMESERIES, site)}/date={day.isoformat()}/{page_file(window, attempt, page)}"


def placed_path(site_key: str, staged_page: str) -> str:
    """Where the commit of a window of whole days puts a staged timeseries page (`timeseries_path`): in the
    Delta table's folder, in its partition, as delta-rs names partitions (`site_key=<key>/day=<date>`, the
    key needing no escaping: `extract.lake.tables.site_key`). A Delta commit then adds it as it is."""
    folder, name = staged_page.rsplit("/", 1)
    day = folder.rsplit("/date=", 1)[1]
    return f"{TIMESERIES}/site_key={site_key}/day={day}/{name}"


def table_path(table: str, path: str) -> str:
    """`path` (in the data dir) relative to `table`'s folder, as the Delta log names its files."""
    return path.removeprefix(table + "/")


def partition_of(in_table: str) -> dict[str, str]:
    """The partition values of a table's file from its path in the table (`site_key=<key>/day=<date>/<name>`)."""
    return dict(part.split("=", 1) for part in in_table.split("/")[:-1] if "=" in part)


def rejects_path(site: str, window: Window, attempt: str, page: int) -> str:
    return (
        f"{site_dir(REJECTS, site)}/date={window.start.date().isoformat()}/{page_file(window, attempt, page)}"
    )


def selection_path(site: str, window: Window, attempt: str) -> str:
    return (
        f"{site_dir(SELECTIONS, site)}/date={window.start.date().isoformat()}/{window.key}_{attempt}.parquet"
    )


def points_path(site: str) -> str:
    return f"{site_dir(POINTS, site)}/points.parquet"


def sites_path(site: str) -> str:
    return f"{site_dir(SITES, site)}/site.parquet"


def patch_path(site: str, window: Window, attempt: str, patch: str) -> str:
    """A heal patch's rejects: a file of the window's committed `attempt`, named apart by `patch` (hex)."""
    return f"{site_dir(REJECTS, site)}/date={window.start.date().isoformat()}/{window.key}_{attempt}_h{patch}.parquet"


def gap_checks_path(site: str, at: datetime, check: str) -> str:
    """One heal's record of the gaps it checked at `at`, named apart by `check` (hex)."""
    return f"{site_dir(GAP_CHECKS, site)}/{compact_time(at)}_{check}.parquet"


def gap_check_files(storage: Storage, site: str) -> list[str]:
    return storage.list(site_dir(GAP_CHECKS, site), "*.parquet")


def run_files(storage: Storage) -> list[str]:
    """Every runs row's file, of every site."""
    return storage.list(RUNS, "*.parquet")


def retention_path(site: str | None) -> str:
    """Where the retention cutoff of `site` (None: of every site) is recorded."""
    return f"{RETENTION}/{'all-sites' if site is None else _SITE_FOLDER + encode_site(site)}.json"


def runs_path(run_id: str, site: str, window: Window) -> str:
    # Encoded like a site: a run id comes from the caller and must not steer the path either.
    return f"{RUNS}/{encode_site(run_id)}__{encode_site(site)}__{window.key}.parquet"


def checkpoint_path(site: str, window: Window) -> str:
    return f"{site_dir(CHECKPOINTS, site)}/{window.key}.json"


def checkpoint_files(storage: Storage, site: str | None = None) -> list[str]:
    """The checkpoint files of `site`, or of every site."""
    if site is None:
        return storage.list(CHECKPOINTS, "*/*.json")
    return storage.list(site_dir(CHECKPOINTS, site), "*.json")


def checkpoint_window(path: str) -> Window | None:
    """The window a checkpoint file is named for; None if its name names none."""
    return key_window(path.rsplit("/", 1)[-1].removesuffix(".json"))


def checkpoint_of(path: str) -> str | None:
    """The checkpoint of the window a landed page or selection file belongs to; None for other files."""
    window = file_window(path)
    folder = next((part for part in path.split("/") if part.startswith(_SITE_FOLDER)), None)
    if window is None or folder is None:
        return None
    return f"{CHECKPOINTS}/{folder}/{window.key}.json"


def lease_path(site: str) -> str:
    return f"{LEASES}/site_name={encode_site(site)}.json"


def staging_dir(site: str, attempt: str) -> str:
    """Where an attempt's pages wait until the whole window is there; not under `landing/`, so unread."""
    return f"{site_dir(STAGING, site)}/{attempt}"


def staged(site: str, attempt: str, landing_path: str) -> str:
    return f"{staging_dir(site, attempt)}/{landing_path}"


def staged_attempts(storage: Storage, site: str) -> set[str]:
    """The attempts of `site` with files in the staging area."""
    base = site_dir(STAGING, site)
    return {path[len(base) + 1 :].split("/", 1)[0] for path in storage.list(base)}


def site_folders(site: str) -> tuple[str, ...]:
    """The folders a site's window attempts write in (beside the shared `RUNS` and `LEASES`)."""
    return tuple(site_dir(d, site) for d in (*WINDOW_DATASETS, CHECKPOINTS, STAGING))


def with_parents(folders: Iterable[str]) -> list[str]:
    """Each folder and every folder above it, a folder's parents before it (a file at any of them blocks
    writing there)."""
    found: dict[str, None] = {}
    for folder in folders:
        parts = folder.split("/")
        found.update(dict.fromkeys("/".join(parts[:depth]) for depth in range(1, len(parts) + 1)))
    return list(found)


def quarantine_path(path: str, at: datetime) -> str:
    """Where `path`, set aside at `at`, goes: `quarantine/<time>/<its path>`."""
    return f"{QUARANTINE}/{compact_time(at)}/{path}"


def reason_path(quarantined: str) -> str:
    """The note beside a quarantined file saying why it was set aside."""
    return f"{quarantined}{_REASON}"


def quarantined(storage: Storage) -> list[str]:
    """The files in the quarantine (reasons excluded)."""
    return [p for p in storage.list(QUARANTINE) if not p.endswith(_REASON)]


def file_window(path: str) -> Window | None:
    """The window a landed page or selection file belongs to, from its name; None for other files."""
    match = _WINDOW_FILE.match(path.rsplit("/", 1)[-1])
    if match is None:
        return None
    return Window(parse_compact_time(match.group(1)), parse_compact_time(match.group(2)))


def key_window(key: str) -> Window | None:
    """The window named by `Window.key` (e.g. a checkpoint's file stem); None if it names none."""
    match = re.fullmatch(rf"({_TIME})_({_TIME})", key)
    if match is None:
        return None
    try:
        return Window(parse_compact_time(match.group(1)), parse_compact_time(match.group(2)))
    except (ValueError, ConfigError):
        return None


def window_files(storage: Storage, site: str, within: Window) -> list[str]:
    """Every landed file of the site whose window overlaps `within`, whatever attempt wrote it."""
    found = [
        p for dataset in WINDOW_DATASETS for p in storage.list(site_dir(dataset, site), "date=*/*.parquet")
    ]
    return [
        p
        for p in found
        if (w := file_window(p)) is not None and w.start < within.end and within.start < w.end
    ]


def write_page(
    storage: Storage, site: str, window: Window, attempt: str, page: int, rows: PageRows
) -> list[str]:
    """Stage one page: kept rows split by UTC date, rejects in one file. Returns the files' names (staged at
    `staged(site, attempt, path)`: the commit writes the timeseries rows to the Delta table and moves the
    rejects file to that path in the landing)."""
    written = []
    for day, part in split_by_date(rows.kept).items():
        written.append(timeseries_path(site, day, window, attempt, page))
        storage.write_parquet_atomic(staged(site, attempt, written[-1]), part)
    if rows.rejects.height:
        written.append(rejects_path(site, window, attempt, page))
        storage.write_parquet_atomic(staged(site, attempt, written[-1]), rows.rejects)
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


class StagedKeys:
    """The keys an attempt's staged timeseries files hold, for telling which samples of a new page an
    earlier page already sent. Only each file's ranges of point names and instants stay in memory, and the
    keys of the last page staged: a page is compared with the files whose ranges meet its own (with a server
    that pages in key order, the files of the page before, whose keys are at hand), any other read one at a
    time, so neither the window's rows nor its keys are ever held."""

    def __init__(self, storage: Storage, site: str, attempt: str, files: Iterable[str]) -> None:
        self._storage, self._site, self._attempt = storage, site, attempt
        # A resumed attempt reads its staged files' ranges once.
        self._ranges = [
            found
            for path in files
            if in_dataset(path, TIMESERIES)
            for found in [_key_range(path, self._read(path))]
            if found is not None
        ]
        self._last: tuple[frozenset[str], pl.DataFrame] = (
            frozenset(),
            pl.DataFrame(schema=schemas.KEY_SCHEMA),
        )

    def add(self, files: Iterable[str], kept: pl.DataFrame) -> None:
        """Record a staged page: its files and the timeseries rows they hold."""
        paths = [path for path in files if in_dataset(path, TIMESERIES)]
        found = _key_range("", kept) if paths else None
        if found is not None:
            self._ranges += [found._replace(path=path) for path in paths]
            self._last = frozenset(paths), kept.select(schemas.KEY)

    def held(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The keys of `rows` that a staged file holds."""
        page = _key_range("", rows)
        if page is None:
            return pl.DataFrame(schema=schemas.KEY_SCHEMA)
        near = [r for r in self._ranges if r.meets(page)]
        if not near:
            return pl.DataFrame(schema=schemas.KEY_SCHEMA)
        # Only keys inside both ranges can meet: with a server paging in key order that is the one point at
        # the pages' border, so the join is small however large the pages.
        keys = rows.select(schemas.KEY)
        last, last_keys = self._last
        found = [
            (last_keys if r.path in last else self._read(r.path))
            .filter(page.within())
            .join(keys.filter(r.within()), on=list(schemas.KEY), how="semi")
            for r in near
        ]
        return pl.concat(found).unique()

    def _read(self, path: str) -> pl.DataFrame:
        return self._storage.read_parquet(staged(self._site, self._attempt, path), columns=list(schemas.KEY))


class _KeyRange(NamedTuple):
    """The ranges of point names and instants of the rows a staged file holds."""

    path: str
    first_point: str
    last_point: str
    first_time: datetime
    last_time: datetime

    def meets(self, other: _KeyRange) -> bool:
        return (
            self.first_point <= other.last_point
            and other.first_point <= self.last_point
            and self.first_time <= other.last_time
            and other.first_time <= self.last_time
        )

    def within(self) -> pl.Expr:
        """The rows whose key lies within these ranges."""
        point, time = pl.col("point_name"), pl.col("timestamp")
        return point.is_between(pl.lit(self.first_point), pl.lit(self.last_point)) & time.is_between(
            pl.lit(self.first_time, schemas.UTC_US), pl.lit(self.last_time, schemas.UTC_US)
        )


def _key_range(path: str, rows: pl.DataFrame) -> _KeyRange | None:
    """The ranges of `rows`' keys, as the file at `path` holds them; None for no rows."""
    if rows.is_empty():
        return None
    ranges = rows.select(
        pl.col("point_name").min(),
        pl.col("point_name").max().alias("last_point"),
        pl.col("timestamp").min(),
        pl.col("timestamp").max().alias("last_time"),
    ).row(0)
    return _KeyRange(path, *ranges)


def budget_file(data_dir: Path | str) -> Path:
    """Where processes on this machine share one request budget per key: every run of one data dir shares
    it (ACE_ETL_BUDGET_PATH overrides it: `extract.api.budget.budget_file`)."""
    return local_dir(data_dir) / BUDGET
