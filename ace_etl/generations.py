"""Two generations of the build database, so that publishing costs neither time nor disk per day of history.

DuckDB lets no writer open a file that a reader holds, so dbt cannot build the file analysts open. Copying
a finished build over it costs time and disk in proportion to the whole history. Instead the build folder
keeps two database files, `generation-<n>/warehouse.duckdb` (one name for all, because dbt-duckdb names
the catalog after the file, and compiled SQL such as a test's carries it). The published `warehouse.duckdb` is a hard link to the
newest one, swapped atomically. The next build goes into the other file, which is one build behind: its
incremental models catch up on the landing of the last two builds (time in proportion to new data). A
reader still holding an old generation keeps reading its inode.

Catching up costs at most what the last build cost; copying the published file costs its size over the
disk's speed. When the copy is clearly cheaper (after a backfill, or while the warehouse is small) the build
starts from a copy instead, and deletes the file behind first so the disk still holds two copies. Either
way a build costs at most about twice what its own new data costs, never the history.

A generation is reused as a base only when it is exactly as a build of ours left it (size and modification
time recorded in `generations.json`). When the previous generation is open elsewhere (a notebook left
open since the build before last), was written by hand (a `dbt build` run directly on the published file),
or was superseded by a full refresh, the build starts from a copy of the published file, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from extract.storage import fsync_path, remove_abandoned, temporary_name

RECORD = "generations.json"
LAST_BUILD = "last-build-seconds"
# A copying speed most disks beat (1.1 GB/s with fsync here; network volumes and old disks are slower):
# erring low keeps catching up, which never costs the history, for warehouses near the break-even size.
COPY_BYTES_PER_S = 250e6
COPY_MARGIN = 4.0
_FOLDER = re.compile(r"generation-(\d+)")
_FILE = "warehouse.duckdb"
_ALIAS = "building"

log = logging.getLogger("extract")


def prepare(work: Path, published: Path) -> Path:
    """The database file the next build writes: the generation behind the published one when it can catch
    up and that costs less than a copy, else a copy of the published warehouse (or a new file for a first
    build)."""
    work.mkdir(parents=True, exist_ok=True)
    remove_abandoned(work, recursive=True)
    _adopt_single_file_layout(work)
    generations = _generations(work)
    trusted = _record(work)
    current = _published_generation(published, generations)
    behind = [
        n for n in sorted(generations, reverse=True) if n != current and _intact(generations[n], trusted)
    ]
    if current is not None and not _intact(generations[current], trusted):
        why = "the published warehouse was written outside a build (e.g. a dbt run on it by hand)"
    elif not behind:
        why = ""  # the second build ever, or the first after a full refresh: nothing to catch up from
    elif not _writable(generations[behind[0]]):
        why = "the previous build is still open elsewhere (close old connections to free it)"
    elif _copy_is_cheaper(work, published):
        why = ""
        log.info("copying the warehouse: cheaper than catching up on the last build")
        shutil.rmtree(generations[behind[0]].parent)  # replaced by the copy: two copies on disk, not three
    else:
        return generations[behind[0]]
    target = work / f"generation-{max(generations, default=0) + 1}" / _FILE
    target.parent.mkdir(exist_ok=True)
    if published.exists():
        size = published.stat().st_size / 1e9
        if why:
            log.warning("copying the warehouse (%.2f GB) to build on: %s", size, why)
        _put(target, lambda temporary: shutil.copyfile(published, temporary))
    return target


def alias(work: Path, database: Path) -> Path:
    """`database` under one path for every build of this data dir (`building/`, a symlink to its
    generation): dbt reparses the whole project (4 s) whenever the profile's path changes, and the two
    generations would change it on every build."""
    link = work / _ALIAS
    _put(link, lambda temporary: os.symlink(database.parent.name, temporary))
    return link / database.name


def settle(work: Path, built: Path) -> None:
    """Record `built` as a build of ours left it (whether or not dbt succeeded: its state is dbt's own)."""
    trusted = _record(work)
    trusted[_key(built)] = _fingerprint(built)
    _write_record(work, trusted)


def publish(work: Path, built: Path, published: Path, *, full_refresh: bool, build_s: float) -> None:
    """Make `built` the published warehouse (a hard link swapped in atomically) and keep one generation
    behind it for the next build; a full refresh keeps none, since the one behind has the old logic.
    `build_s`, what the build took, is what the generation behind would take to catch up."""
    _put(work / LAST_BUILD, lambda temporary: temporary.write_text(f"{build_s:.3f}\n"))
    published.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(published.parent)
    _put(published, lambda temporary: os.link(built, temporary))
    fsync_path(published.parent)
    generations = _generations(work)
    keep = {_key(built)}
    behind = [n for n in sorted(generations, reverse=True) if generations[n] != built]
    if behind and not full_refresh:
        keep.add(_key(generations[behind[0]]))
    for path in generations.values():
        if _key(path) not in keep:
            shutil.rmtree(path.parent)  # a reader holding the file keeps its inode
    trusted = _record(work)
    _write_record(work, {name: fingerprint for name, fingerprint in trusted.items() if name in keep})
    settle(work, built)


def _adopt_single_file_layout(work: Path) -> None:
    # Before generations, dbt kept one build file in the same folder: it becomes the first generation.
    old = work / _FILE
    if old.exists() and not _generations(work):
        target = work / "generation-1" / _FILE
        target.parent.mkdir()
        os.replace(old, target)
        old.with_name(old.name + ".wal").unlink(missing_ok=True)
        settle(work, target)


def _generations(work: Path) -> dict[int, Path]:
    found = {}
    for path in work.glob(f"generation-*/{_FILE}"):
        match = _FOLDER.fullmatch(path.parent.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _key(path: Path) -> str:
    return path.parent.name


def _published_generation(published: Path, generations: dict[int, Path]) -> int | None:
    try:
        inode = published.stat().st_ino
    except FileNotFoundError:
        return None
    return next((n for n, path in generations.items() if path.stat().st_ino == inode), None)


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _intact(path: Path, trusted: dict[str, list[int]]) -> bool:
    wal = path.with_name(path.name + ".wal")
    return trusted.get(_key(path)) == _fingerprint(path) and not wal.exists()


def _copy_is_cheaper(work: Path, published: Path) -> bool:
    try:
        catch_up_s = float((work / LAST_BUILD).read_text())
    except (FileNotFoundError, ValueError):
        return False
    # The last build's time also holds dbt's fixed costs (parsing, whole-table tests), which a build on a
    # copy pays too: copy only when the copy is clearly cheaper, as after a backfill, or for a small
    # warehouse. Measured (benchmarks/transform.py): after a 29-day backfill the catch-up took 309 s, a
    # copy 17 s; a steady day caught up in 20 s, against 8 s of copying plus the same fixed costs.
    return published.exists() and published.stat().st_size / COPY_BYTES_PER_S < catch_up_s / COPY_MARGIN


def _writable(path: Path) -> bool:
    """Whether dbt could open `path` now: no other connection (an analyst's read-only one included)."""
    import duckdb

    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error:
        return False
    return True


def _record(work: Path) -> dict[str, list[int]]:
    try:
        data = json.loads((work / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}  # no record (or a damaged one) trusts nothing: the next build starts from a copy
    return data if isinstance(data, dict) else {}


def _write_record(work: Path, trusted: dict[str, list[int]]) -> None:
    _put(work / RECORD, lambda temporary: temporary.write_text(json.dumps(trusted, indent=1, sort_keys=True)))


def _put(target: Path, make: Callable[[Path], object]) -> None:
    """`target` whole or not at all: `make` fills a hidden temporary name beside it, renamed over it."""
    temporary = target.with_name(temporary_name(target.name))
    try:
        make(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
