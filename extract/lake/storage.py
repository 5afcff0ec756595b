"""The one place that reads and writes landing files and state.

Everything above this module names files by a relative POSIX path (`landing/...`, `state/...`), so moving
the data dir to an object store (`s3://bucket/prefix`) means one new `Storage` implementation here. Writes
are atomic: a reader (or a crash) sees the old file, the new file, or no file, never a partial one.
"""

from __future__ import annotations

import builtins
import fcntl
import io
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final, Protocol

import polars as pl

from extract import cancel
from extract.errors import ConfigError, LandingBusyError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

PARQUET_COMPRESSION: Final = "zstd"
# Readers of the landing (builds) and commits removing replaced files meet here; see `reading_landing`.
LANDING_LOCK: Final = "state/.landing.lock"
# How long either side waits for the other: a build rarely takes longer, a removal takes milliseconds.
LANDING_WAIT_S: Final = 3600.0
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")

log = logging.getLogger(__name__)


class Storage(Protocol):
    """Relative-path file store. Listing never returns unfinished writes."""

    def write_parquet_atomic(self, rel_path: str, frame: pl.DataFrame) -> None:
        """Write `frame` as zstd Parquet at `rel_path`, replacing any file there, atomically and durably."""
        ...

    def write_bytes_atomic(self, rel_path: str, data: bytes) -> None:
        """Write `data` at `rel_path`, replacing any file there, atomically and durably."""
        ...

    def read_bytes(self, rel_path: str) -> bytes:
        """The file's content; FileNotFoundError if there is none."""
        ...

    def exists(self, rel_path: str) -> bool: ...

    def list(self, prefix: str, pattern: str = "**/*") -> list[str]:
        """Sorted relative paths of the files under `prefix` matching the glob `pattern` (relative to it)."""
        ...

    def folders(self, prefix: str) -> builtins.list[str]:
        """Sorted names of the folders right under `prefix` (one level: an object store's common prefixes)."""
        ...

    def delete(self, rel_paths: Iterable[str]) -> None:
        """Remove these files; missing ones are fine."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under `prefix`; a missing prefix is fine."""
        ...

    def uri(self, rel_path: str = "") -> str:
        """Full path or URL of `rel_path`, for readers such as DuckDB and Polars."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Move a file, replacing `dst`; readers see `dst` whole or not at all."""
        ...

    def read_versioned(self, rel_path: str) -> tuple[bytes, str] | None:
        """The file's content and an opaque version that changes with every write; None if absent."""
        ...

    def write_if(self, rel_path: str, data: bytes, version: str | None) -> str | None:
        """Compare-and-swap: write `data` only if the file is still at `version` (None: only if absent).
        Returns the new version, or None when someone else wrote first. Leases are built on this."""
        ...

    def delete_if(self, rel_path: str, version: str) -> bool:
        """Remove the file only if it is still at `version`."""
        ...

    def clean_temporaries(self, prefix: str) -> int:
        """Remove the temporary files that writers killed mid-write left under `prefix`; returns how many."""
        ...

    def read_parquet(self, rel_path: str, columns: builtins.list[str] | None = None) -> pl.DataFrame:
        """A Parquet file (or some of its columns) as a frame."""
        ...

    def parquet_footer(self, rel_path: str) -> tuple[pq.FileMetaData, int]:
        """(the Parquet footer as pyarrow's FileMetaData, the file's size in bytes), reading the footer
        only; raises for a file that is not readable Parquet."""
        ...

    def list_since(self, prefix: str, pattern: str, since: float) -> builtins.list[str]:
        """`list`, keeping the files that appeared (were written or moved there) at or after `since`."""
        ...

    def reading_landing(self) -> AbstractContextManager[None]:
        """Held by a reader that lists landing files and opens them later (a warehouse build): no commit
        removes a landing file meanwhile. Several readers may hold it at once."""
        ...

    def removing_from_landing(self) -> AbstractContextManager[None]:
        """Held by a commit while it removes the landing files its attempt replaced: waits, saying so, for
        the readers holding `reading_landing` to finish."""
        ...


class LocalStorage:
    """`Storage` on a local directory: temp file + fsync + rename + fsync of the directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def write_parquet_atomic(self, rel_path: str, frame: pl.DataFrame) -> None:
        # Encoded in memory (a page is a few MB at most), then written by Python: a full disk is then an
        # OSError with its errno and file name, where Polars writing the file itself raises a ComputeError.
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression=PARQUET_COMPRESSION)
        self.write_bytes_atomic(rel_path, buffer.getvalue())

    def write_bytes_atomic(self, rel_path: str, data: bytes) -> None:
        self._write_atomic(rel_path, lambda tmp: tmp.write_bytes(data))

    def read_bytes(self, rel_path: str) -> bytes:
        return self._path(rel_path).read_bytes()

    def exists(self, rel_path: str) -> bool:
        return self._path(rel_path).is_file()

    def list(self, prefix: str, pattern: str = "**/*") -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in base.glob(pattern)
            if path.is_file() and not path.name.startswith(".")
        )

    def folders(self, prefix: str) -> builtins.list[str]:
        base = self._path(prefix)
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def delete(self, rel_paths: Iterable[str]) -> None:
        for rel_path in rel_paths:
            self._path(rel_path).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def uri(self, rel_path: str = "") -> str:
        return str(self._path(rel_path)) if rel_path else str(self.root)

    def rename(self, src: str, dst: str) -> None:
        final = self._path(dst)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(src), final)
        fsync_path(final.parent)

    def read_versioned(self, rel_path: str) -> tuple[bytes, str] | None:
        path = self._path(rel_path)
        try:
            with path.open("rb") as file:
                # Every write replaces the inode (temp file + rename), so (inode, mtime, size) names a write.
                stat = os.fstat(file.fileno())
                return file.read(), f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_if(self, rel_path: str, data: bytes, version: str | None) -> str | None:
        with self._locked(rel_path):
            current = self.read_versioned(rel_path)
            if (current[1] if current else None) != version:
                return None
            self.write_bytes_atomic(rel_path, data)
            written = self.read_versioned(rel_path)
            return written[1] if written else None

    def delete_if(self, rel_path: str, version: str) -> bool:
        with self._locked(rel_path):
            current = self.read_versioned(rel_path)
            if current is None or current[1] != version:
                return False
            self._path(rel_path).unlink(missing_ok=True)
            return True

    def clean_temporaries(self, prefix: str) -> int:
        return remove_abandoned(self._path(prefix), recursive=True)

    def read_parquet(self, rel_path: str, columns: builtins.list[str] | None = None) -> pl.DataFrame:
        # glob=False: a `[` or `*` in the data dir is part of the name, not a pattern.
        return pl.read_parquet(self._path(rel_path), columns=columns, hive_partitioning=False, glob=False)

    def parquet_footer(self, rel_path: str) -> tuple[pq.FileMetaData, int]:
        import pyarrow.parquet as pq  # not on every command's import path (see extract.lake.tables._stream)

        path = self._path(rel_path)
        return pq.read_metadata(path), path.stat().st_size

    def list_since(self, prefix: str, pattern: str, since: float) -> builtins.list[str]:
        # ctime, not mtime: a committed file was renamed into place after it was written.
        return [p for p in self.list(prefix, pattern) if self._path(p).stat().st_ctime >= since]

    def reading_landing(self) -> AbstractContextManager[None]:
        return self._landing_lock(fcntl.LOCK_SH, "a commit to finish removing the files it replaced")

    def removing_from_landing(self) -> AbstractContextManager[None]:
        return self._landing_lock(fcntl.LOCK_EX, "the warehouse build reading the landing to finish")

    @contextmanager
    def _landing_lock(self, mode: int, waiting_for: str) -> Iterator[None]:
        # A reader/writer flock between the processes of this machine; an object store has no such lock
        # (see S3Storage).
        path = self._path(LANDING_LOCK)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as lock:
            started = time.monotonic()
            told = False
            while True:
                try:
                    fcntl.flock(lock, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if waited >= LANDING_WAIT_S:
                        raise LandingBusyError(
                            f"waited {LANDING_WAIT_S:g} s for {waiting_for} in {self.root}: run again later"
                        ) from None
                    if not told and waited >= 1.0:  # removals take milliseconds: only a build is worth a line
                        log.warning("waiting for %s in %s", waiting_for, self.root)
                        told = True
                    cancel.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _locked(self, rel_path: str) -> Iterator[None]:
        # An flock on a sidecar file makes compare-and-swap atomic between processes on this machine
        # (an object store does the same with conditional requests).
        final = self._path(rel_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        with final.with_name(f".{final.name}.lock").open("a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _path(self, rel_path: str) -> Path:
        parts = PurePosixPath(rel_path).parts
        # Defence in depth: landing.py already encodes names, but nothing may ever escape the root.
        if rel_path.startswith("/") or "\\" in rel_path or any(part in ("..", ".") for part in parts):
            raise ConfigError(f"storage path {rel_path!r} must be relative and stay inside {self.root}")
        return self.root.joinpath(*parts)

    def _write_atomic(self, rel_path: str, write: _Writer) -> None:
        final = self._path(rel_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A hidden name: listings and readers' `*.parquet` globs skip it even if a crash leaves it behind,
        # and the next run removes it once its writer is gone (`clean_temporaries`).
        tmp = final.with_name(temporary_name(final.name))
        try:
            write(tmp)
            fsync_path(tmp)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            # Name the file the disk refused (a write reports no file name of its own).
            raise OSError(exc.errno, exc.strerror, exc.filename or str(final)) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(final.parent)


class _Writer(Protocol):
    def __call__(self, tmp: Path, /) -> object: ...


# Dots would make the name ambiguous to split.
_HOST = socket.gethostname().replace(".", "-")
# A temporary file whose writer cannot be checked (another machine) is abandoned after this long.
_FOREIGN_TMP_AGE_S = 3600.0


def host_name() -> str:
    """This machine's name as leases and temporary files record it."""
    return _HOST


def temporary_name(name: str) -> str:
    """`.<name>.<host>.<pid>.<random>.tmp`: hidden, unique, and naming its writer so that a later run can
    tell a file a killed process left from one being written right now."""
    return f".{name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def remove_abandoned(folder: Path, *, recursive: bool = False) -> int:
    """Remove the temporary files (`temporary_name`) in `folder` whose writers are gone; returns how many."""
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        if _abandoned(tmp):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _abandoned(tmp: Path) -> bool:
    parts = tmp.name.rsplit(".", 4)
    if len(parts) == 5 and parts[1] == _HOST and parts[2].isdigit():
        return not process_alive(int(parts[2]))
    try:
        return time.time() - tmp.stat().st_mtime > _FOREIGN_TMP_AGE_S
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine. A killed process that its parent has not
    reaped yet (a zombie) still answers signals, but it will never renew a lease or finish a file."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (macOS): signals are all there is to go by
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # the state follows the command name in parentheses


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def normalize_location(location: Path | str) -> str:
    """A data dir as text: a local path, or `s3://bucket/prefix` (also when a Path squeezed it to `s3:/...`).
    Any other scheme is a ConfigError, before anything (the request budget, a build) makes a local folder
    of its name."""
    text = str(location)
    if text.startswith("s3:/") and not text.startswith("s3://"):
        text = "s3://" + text[len("s3:/") :]
    if _SCHEME.match(text) and not text.startswith("s3://"):
        raise ConfigError(f"data dir {text!r}: use a local folder or s3://bucket/prefix")
    return text.rstrip("/") if text.startswith("s3://") else text


def is_object_store(location: Path | str) -> bool:
    return normalize_location(location).startswith("s3://")


def local_dir(location: Path | str) -> Path:
    """Where the local-only parts live (the warehouse, its build, the request budget): the data dir itself,
    or `./data` when the data dir is an object store."""
    return (
        Path("data").absolute()
        if is_object_store(location)
        else Path(normalize_location(location)).absolute()
    )
