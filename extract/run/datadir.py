"""Opening a data dir: a local folder or an object store, converted once if it predates the Delta tables.

Above the `Storage` implementations (`extract.lake.storage`, `extract.lake.objectstore`) and the conversion
(`extract.run.upgrade`), which all build on `Storage`: none of them imports this module.
"""

from __future__ import annotations

from pathlib import Path

from extract.errors import ConfigError
from extract.lake.objectstore import S3Storage
from extract.lake.storage import LocalStorage, Storage, normalize_location
from extract.run.upgrade import upgrade_once

# delta-rs 1.6 parses a local path as a URL and resolves symbolic links: these fail or name another folder.
_DELTA_UNSAFE = frozenset("[]%")


def open_storage(location: Path | str, *, upgrade: bool = True) -> Storage:
    """The storage for a data dir: a local folder or `s3://bucket/prefix` (any S3-compatible store, from
    AWS_ENDPOINT_URL and the standard AWS variables). Any other scheme is a ConfigError.

    Every command and flow opens its data dir here, so this is where a landing written before the Delta
    tables is converted, once, before anything reads or writes it (`extract.run.upgrade`; `upgrade=False`
    leaves that to the caller)."""
    storage = _storage(location)
    if upgrade:
        upgrade_once(storage)
    return storage


def _storage(location: Path | str) -> Storage:
    text = normalize_location(location)
    if text.startswith("s3://"):
        return S3Storage(text)
    if _DELTA_UNSAFE & set(str(Path(text).absolute())):
        raise ConfigError(
            f"data dir {text!r}: its path holds '[', ']' or '%', which delta-rs (the landing's Delta tables) "
            "cannot open: use a data dir without them"
        )
    return LocalStorage(Path(text))
