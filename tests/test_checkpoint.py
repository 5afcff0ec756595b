"""Checkpoints: atomic JSON round trip, accumulation, and when a saved one may be resumed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from extract.api.parse import REJECTS_SCHEMA, TIMESERIES_SCHEMA, PageRows
from extract.api.points import PointSelector
from extract.lake.landing import checkpoint_path, quarantined
from extract.lake.storage import LocalStorage
from extract.run.checkpoint import Checkpoint, clear_checkpoint, load_checkpoints, save_checkpoint
from extract.windows import Window

WINDOW = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


def page(kept: int, rejected: int, filtered: int) -> PageRows:
    return PageRows(
        kept=pl.DataFrame(schema=TIMESERIES_SCHEMA).extend(
            pl.DataFrame({"site_name": ["s"] * kept}).select(
                pl.col("site_name"),
                *(pl.lit(None, d).alias(c) for c, d in TIMESERIES_SCHEMA.items() if c != "site_name"),
            )
        ),
        rejects=pl.DataFrame(schema=REJECTS_SCHEMA).extend(
            pl.DataFrame({"site_name": ["s"] * rejected}).select(
                pl.col("site_name"),
                *(pl.lit(None, d).alias(c) for c, d in REJECTS_SCHEMA.items() if c != "site_name"),
            )
        ),
        filtered=filtered,
        fetched=kept + rejected + filtered,
    )


SELECTOR = PointSelector.from_list(["a", "b*"])


def test_progress_accumulates_and_moves_to_publishing() -> None:
    start = Checkpoint.start("../x", WINDOW, 100, "att", SELECTOR)
    first = start.after_page(page(5, 1, 2), ["f1"], next_cursor="c1", has_more=True)
    second = first.after_page(page(3, 0, 0), ["f2"], next_cursor=None, has_more=False)
    assert (first.next_page, first.next_cursor, first.state) == (1, "c1", "landing")
    assert (second.next_page, second.next_cursor, second.state) == (2, None, "publishing")
    assert second.files == ("f1", "f2") and not second.complete
    assert (
        second.records_fetched,
        second.records_kept,
        second.records_rejected,
        second.records_filtered,
    ) == (11, 8, 1, 2)


def test_round_trip_through_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert load_checkpoints(storage, "../x") == []
    saved = Checkpoint.start("../x", WINDOW, 100, "att", SELECTOR).after_page(
        page(1, 0, 0), ["f"], next_cursor="c", has_more=True
    )
    save_checkpoint(storage, saved)
    assert load_checkpoints(storage, "../x") == [saved]
    assert storage.list("state") == [checkpoint_path("../x", WINDOW)]
    assert (tmp_path / "state").is_dir() and not (tmp_path.parent / "x").exists()
    clear_checkpoint(storage, saved)
    assert load_checkpoints(storage, "../x") == []


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"null",
        b'"a string"',
        b"{not json",
        bytes(range(256)),
        b'{"version": 1, "complete": true}',
        b"[]",
    ],
    ids=["empty", "null", "string", "broken", "random", "old", "list"],
)
def test_a_damaged_checkpoint_is_quarantined_not_trusted(tmp_path: Path, content: bytes) -> None:
    storage = LocalStorage(tmp_path)
    path = checkpoint_path("s", WINDOW)
    storage.write_bytes_atomic(path, content)
    assert load_checkpoints(storage, "s") == []
    assert not storage.exists(path)
    (moved,) = quarantined(storage)
    assert moved.endswith(path) and storage.read_bytes(moved) == content
    assert "unreadable checkpoint" in storage.read_bytes(moved + ".reason.txt").decode()


def test_resume_only_with_the_same_query() -> None:
    progress = Checkpoint.start("s", WINDOW, 100, "att", SELECTOR).after_page(
        page(1, 0, 0), [], next_cursor="c", has_more=True
    )
    assert progress.resumes(page_size=100, selector=SELECTOR)
    assert not progress.resumes(page_size=50, selector=SELECTOR)
    assert not progress.resumes(page_size=100, selector=PointSelector.from_list(["a"]))
    done = progress.after_page(page(1, 0, 0), [], next_cursor=None, has_more=False)
    assert not done.resumes(page_size=100, selector=SELECTOR)


def test_a_selection_covers_what_it_would_have_kept() -> None:
    everything = PointSelector.from_list(["a", "b1", "b2"])
    assert everything.covers(PointSelector.from_list(["a", "b2"]))
    assert not PointSelector.from_list(["a"]).covers(everything)
    assert SELECTOR.covers(PointSelector.from_list(["b9", "a"]))  # the pattern kept any b*
    assert not everything.covers(PointSelector.from_list(["b*"]))  # a pattern may match unlisted points
    assert SELECTOR.union(PointSelector.from_list(["c"])).covers(PointSelector.from_list(["a", "b7", "c"]))
