"""Checkpoints: atomic JSON round trip, accumulation, and when a saved one may be resumed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from extract.checkpoint import Checkpoint, clear_checkpoint, load_checkpoint, save_checkpoint
from extract.landing import checkpoint_path
from extract.parse import REJECTS_SCHEMA, TIMESERIES_SCHEMA, PageRows
from extract.storage import LocalStorage
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


def test_progress_accumulates_and_completes() -> None:
    start = Checkpoint("../x", WINDOW, 100, "sel")
    first = start.after_page(page(5, 1, 2), next_cursor="c1", has_more=True)
    second = first.after_page(page(3, 0, 0), next_cursor=None, has_more=False)
    assert (first.next_page, first.next_cursor, first.complete) == (1, "c1", False)
    assert (second.next_page, second.next_cursor, second.complete) == (2, None, True)
    assert (
        second.records_fetched,
        second.records_kept,
        second.records_rejected,
        second.records_filtered,
    ) == (
        11,
        8,
        1,
        2,
    )


def test_round_trip_through_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert load_checkpoint(storage, "../x", WINDOW) is None
    saved = Checkpoint("../x", WINDOW, 100, "sel").after_page(page(1, 0, 0), next_cursor="c", has_more=True)
    save_checkpoint(storage, saved)
    assert load_checkpoint(storage, "../x", WINDOW) == saved
    assert storage.list("state") == [checkpoint_path("../x", WINDOW)]
    assert (tmp_path / "state").is_dir() and not (tmp_path.parent / "x").exists()
    clear_checkpoint(storage, "../x", WINDOW)
    assert load_checkpoint(storage, "../x", WINDOW) is None


def test_unreadable_checkpoint_means_start_over(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_bytes_atomic(checkpoint_path("s", WINDOW), b"{not json")
    assert load_checkpoint(storage, "s", WINDOW) is None


def test_resume_only_with_the_same_query() -> None:
    progress = Checkpoint("s", WINDOW, 100, "sel").after_page(page(1, 0, 0), next_cursor="c", has_more=True)
    assert progress.resumes(page_size=100, selection="sel")
    assert not progress.resumes(page_size=50, selection="sel")
    assert not progress.resumes(page_size=100, selection="other")
    done = progress.after_page(page(1, 0, 0), next_cursor=None, has_more=False)
    assert not done.resumes(page_size=100, selection="sel")
