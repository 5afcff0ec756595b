"""Child process for the upgrade's kill -9 test: upgrade a data dir, killing itself (SIGKILL: no handler,
no lease released) right after its Nth Delta commit or at its Nth move of an old file."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from extract import lake, upgrade
from extract.storage import LocalStorage


def main(data_dir: str, where: str, nth: str) -> None:
    storage = LocalStorage(data_dir)
    count = [0]
    upsert, rename = lake.upsert, storage.rename

    def step() -> None:
        count[0] += 1
        if count[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    def committing(*args: Any, **kwargs: Any) -> int:
        done = upsert(*args, **kwargs)
        step()
        return done

    def moving(src: str, dst: str) -> None:
        step()
        rename(src, dst)

    if where == "commit":
        lake.upsert = committing  # type: ignore[assignment]
    else:
        storage.rename = moving  # type: ignore[method-assign]
    upgrade.upgrade(storage)


if __name__ == "__main__":
    main(*sys.argv[1:])
