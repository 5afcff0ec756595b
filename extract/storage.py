"""The one place that reads and writes landing files and state.

Everything above this module names files by a relative POSIX path (`landing/...`, `state/...`), so moving
the data dir to an object store (`s3://bucket/prefix`) means one new `Storage` implementation here. Writes
are atomic: a reader (or a crash) sees the old file, the new file, or no file, never a partial one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Final, Protocol

import polars as pl

from extract.errors import ConfigError

PARQUET_COMPRESSION: Final = "zstd"


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

    def delete(self, rel_paths: Iterable[str]) -> None:
        """Remove these files; missing ones are fine."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under `prefix`; a missing prefix is fine."""
        ...

    def uri(self, rel_path: str = "") -> str:
        """Full path or URL of `rel_path`, for readers such as DuckDB and Polars."""
        ...


class LocalStorage:
    """`Storage` on a local directory: temp file + fsync + rename + fsync of the directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def write_parquet_atomic(self, rel_path: str, frame: pl.DataFrame) -> None:
        self._write_atomic(rel_path, lambda tmp: frame.write_parquet(tmp, compression=PARQUET_COMPRESSION))

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

    def delete(self, rel_paths: Iterable[str]) -> None:
        for rel_path in rel_paths:
            self._path(rel_path).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def uri(self, rel_path: str = "") -> str:
        return str(self._path(rel_path)) if rel_path else str(self.root)

    def _path(self, rel_path: str) -> Path:
        parts = PurePosixPath(rel_path).parts
        # Defence in depth: landing.py already encodes names, but nothing may ever escape the root.
        if rel_path.startswith("/") or "\\" in rel_path or any(part in ("..", ".") for part in parts):
            raise ConfigError(f"storage path {rel_path!r} must be relative and stay inside {self.root}")
        return self.root.joinpath(*parts)

    def _write_atomic(self, rel_path: str, write: _Writer) -> None:
        final = self._path(rel_path)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A hidden name: listings and readers' `*.parquet` globs skip it even if a crash leaves it behind.
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            write(tmp)
            _fsync_path(tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_path(final.parent)


class _Writer(Protocol):
    def __call__(self, tmp: Path, /) -> object: ...


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_storage(location: Path | str) -> Storage:
    """The storage for a data dir. Only local paths today; an `s3://` URL is where an object store plugs in."""
    text = str(location)
    if "://" in text:
        raise ConfigError(f"data dir {text!r}: only local folders are supported so far")
    return LocalStorage(Path(text))
