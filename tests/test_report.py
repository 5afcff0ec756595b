"""The run summary that both the CLI and the Prefect artifact show."""

from __future__ import annotations

from datetime import UTC, datetime

from ace_etl.report import summarize, to_markdown
from extract.metrics import WindowResult

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(site: str, status: str = "complete", kept: int = 10, error: str | None = None) -> WindowResult:
    return WindowResult(
        run_id="r", site_name=site, window_start=T0, window_end=T0, status=status,  # type: ignore[arg-type]
        api_requests=3, retries=1, pages=2, bytes=100, records_fetched=kept + 3, records_kept=kept,
        records_filtered=2, records_rejected=1, duration_s=1.5, error=error, started_at=T0, finished_at=T0,
    )  # fmt: skip


def test_one_row_per_site_with_totals_and_gaps() -> None:
    summaries = summarize([row("b"), row("a"), row("a", "skipped", kept=5), row("b", "live")], {"a": 4})
    assert [(s.site, s.windows, s.skipped, s.open, s.kept, s.requests, s.gaps) for s in summaries] == [
        ("a", 2, 1, 0, 15, 6, 4),
        ("b", 2, 0, 1, 20, 6, 0),
    ]
    assert summarize([row("a")], None)[0].gaps is None  # no build, so gaps are unknown


def test_markdown_lists_sites_and_errors() -> None:
    markdown = to_markdown(summarize([row("a"), row("b", "failed", error="AuthError: key rejected")], {}))
    assert "| a | 1 | 0 | 0 | 0 | 2 | 3 | 1 | 10 | 2 | 1 | 1.5 | 0 |" in markdown
    assert "- **b**: AuthError: key rejected" in markdown
