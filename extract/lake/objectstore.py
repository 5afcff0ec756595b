"""`Storage` on an S3-compatible object store, through s3fs (fsspec).

A PUT is atomic (an object appears whole or not at all), so atomic writes need no temporary name; a
"rename" is a copy then a delete; compare-and-swap uses conditional writes (If-None-Match / If-Match on the
ETag), which S3 and compatible stores support. Endpoint, credentials and region come from the standard AWS
variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
"""

from __future__ import annotations

import builtins
import fnmatch
import functools
import io
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from extract.errors import ObjectStoreError
from extract.lake.storage import PARQUET_COMPRESSION
from extract.redact import one_line

if TYPE_CHECKING:
    import pyarrow.parquet as pq
    from botocore.loaders import Loader


@functools.cache
def _botocore_data() -> Loader:
    """botocore's reader of its service and endpoint files, shared by this process's clients: a session of
    its own parses them again (0.1 s of CPU a client, measured; 0.015 s shared). It caches only those
    files, which never change (where they are is the first session's setting, as for any session);
    credentials stay each session's own."""
    from aiobotocore.session import AioSession

    return AioSession().get_component("data_loader")


class S3Storage:
    def __init__(self, url: str) -> None:
        import s3fs  # imported only for object-store data dirs
        from aiobotocore.session import AioSession

        self.url = url
        self.root = url.removeprefix("s3://").strip("/")
        bucket = self.root.split("/", 1)[0]
        try:
            # A missing AWS_PROFILE or a broken ~/.aws/config shows here, in the loader's settings.
            session = AioSession()
            session.register_component("data_loader", _botocore_data())
            # No listing cache: other processes write here too.
            self.fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True, session=session)
            self.fs.ls(bucket)
        except FileNotFoundError:
            raise ObjectStoreError(
                f"bucket {bucket!r} of data dir {url} does not exist: create it first"
            ) from None
        except Exception as exc:
            detail = one_line(str(exc), limit=200)
            raise ObjectStoreError(
                f"cannot reach the object store for {url}: {detail}; check AWS_ENDPOINT_URL and the AWS credentials"
            ) from None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def _key(self, rel_path: str) -> str:
        return f"{self.root}/{rel_path}" if rel_path else self.root

    def write_parquet_atomic(self, rel_path: str, frame: pl.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression=PARQUET_COMPRESSION)
        self.fs.pipe_file(self._key(rel_path), buffer.getvalue())

    def write_bytes_atomic(self, rel_path: str, data: bytes) -> None:
        self.fs.pipe_file(self._key(rel_path), data)

    def read_bytes(self, rel_path: str) -> bytes:
        return bytes(self.fs.cat_file(self._key(rel_path)))

    def exists(self, rel_path: str) -> bool:
        return bool(self.fs.isfile(self._key(rel_path)))

    def list(self, prefix: str, pattern: str = "**/*") -> list[str]:
        return [path for path, _ in self._listed(prefix, pattern)]

    def list_since(self, prefix: str, pattern: str, since: float) -> builtins.list[str]:
        return [path for path, modified in self._listed(prefix, pattern) if modified >= since]

    # No lock spans machines here: a build reading an object store while a commit elsewhere removes the
    # files it replaced can still trip on a removed object (the landing's log will settle that).
    def reading_landing(self) -> AbstractContextManager[None]:
        return nullcontext()

    def removing_from_landing(self) -> AbstractContextManager[None]:
        return nullcontext()

    def _listed(self, prefix: str, pattern: str) -> builtins.list[tuple[str, float]]:
        base = self._key(prefix)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        rows = []
        for key, info in found.items():
            rel = key[len(self.root) + 1 :]
            name = rel.rsplit("/", 1)[-1]
            below = key[len(base) + 1 :]
            if info.get("type") == "file" and not name.startswith(".") and _glob(below, pattern):
                modified = info.get("LastModified")
                rows.append((rel, modified.timestamp() if isinstance(modified, datetime) else 0.0))
        return sorted(rows)

    def folders(self, prefix: str) -> builtins.list[str]:
        try:
            found = self.fs.ls(self._key(prefix), detail=True)
        except FileNotFoundError:
            return []
        return sorted(info["name"].rsplit("/", 1)[-1] for info in found if info.get("type") == "directory")

    def delete(self, rel_paths: Iterable[str]) -> None:
        keys = [self._key(p) for p in rel_paths]
        if keys:
            self.fs.rm([k for k in keys if self.fs.isfile(k)])

    def delete_prefix(self, prefix: str) -> None:
        if self.fs.exists(self._key(prefix)):
            self.fs.rm(self._key(prefix), recursive=True)

    def uri(self, rel_path: str = "") -> str:
        return f"s3://{self._key(rel_path)}"

    def rename(self, src: str, dst: str) -> None:
        self.fs.copy(self._key(src), self._key(dst))
        self.fs.rm(self._key(src))

    def read_versioned(self, rel_path: str) -> tuple[bytes, str] | None:
        try:
            etag = self.fs.info(self._key(rel_path))["ETag"]
            return self.read_bytes(rel_path), str(etag)
        except FileNotFoundError:
            return None

    def write_if(self, rel_path: str, data: bytes, version: str | None) -> str | None:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self.fs.pipe_file(self._key(rel_path), data, **condition)
        except (FileExistsError, OSError):
            return None  # the precondition failed: someone else wrote first
        self.fs.invalidate_cache(self._key(rel_path))
        return str(self.fs.info(self._key(rel_path))["ETag"])

    def delete_if(self, rel_path: str, version: str) -> bool:
        current = self.read_versioned(rel_path)
        if current is None or current[1] != version:
            return False
        self.fs.rm(self._key(rel_path))
        return True

    def clean_temporaries(self, prefix: str) -> int:
        return 0  # PUTs are atomic: nothing half-written is ever left

    def read_parquet(self, rel_path: str, columns: builtins.list[str] | None = None) -> pl.DataFrame:
        return pl.read_parquet(
            io.BytesIO(self.read_bytes(rel_path)), columns=columns, hive_partitioning=False
        )

    def parquet_footer(self, rel_path: str) -> tuple[pq.FileMetaData, int]:
        import pyarrow.parquet as pq  # not on every command's import path (see extract.lake.tables._stream)

        # Ranged reads of the file's tail: not the whole file.
        with self.fs.open(self._key(rel_path), "rb") as file:
            return pq.read_metadata(file), int(file.size)


def _glob(path: str, pattern: str) -> bool:
    """Path-aware glob as `pathlib` has it: `*` stays within a segment, `**/` spans any depth."""
    if pattern == "**/*":
        return True
    if pattern.startswith("**/"):
        return any(_glob("/".join(path.split("/")[i:]), pattern[3:]) for i in range(path.count("/") + 1))
    parts, globs = path.split("/"), pattern.split("/")
    return len(parts) == len(globs) and all(
        fnmatch.fnmatchcase(p, g) for p, g in zip(parts, globs, strict=True)
    )
