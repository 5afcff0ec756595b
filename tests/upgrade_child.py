"""Child process for the upgrade's kill -9 test: upgrade a data dir, killing itself (SIGKILL: no handler,
no lease released) right after its Nth Delta commit (an append or a merge) or at its Nth move of an old file."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from extract.lake import tables as lake
from extract.lake.storage import LocalStorage
from extract.run import upgrade


def main(data_dir: str, where: str, nth: str) -> None:
    storage = LocalStorage(data_dir)
    count = [0]
    append, upsert, rename = lake.append, lake.upsert, storage.rename

    def step() -> None:
        count[0] += 1
        if count[0] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

    def committed(write: Any) -> Any:
        def commit(*args: Any, **kwargs: Any) -> int:
            done = int(write(*args, **kwargs))
            step()
            return done

        return commit

    def moving(src: str, dst: str) -> None:
        step()
        rename(src, dst)

    if where == "commit":
        lake.append, lake.upsert = committed(append), committed(upsert)
    else:
        storage.rename = moving  # type: ignore[method-assign]
    upgrade.upgrade(storage)


if __name__ == "__main__":
    main(*sys.argv[1:])
