"""The run summary that both the CLI and the Prefect artifact show."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
from markdown_it import MarkdownIt

from ace_etl.coverage_view import to_markdown as coverage_markdown
from ace_etl.report import outcome, summarize, to_markdown, to_rich_table
from extract.run.metrics import WindowResult

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(site: str, status: str = "complete", kept: int = 10, error: str | None = None) -> WindowResult:
    return WindowResult(
        run_id="r", site_name=site, window_start=T0, window_end=T0, status=status,  # type: ignore[arg-type]
        api_requests=3, retries=1, pages=2, bytes=100, records_fetched=kept + 3, records_kept=kept,
        records_filtered=2, records_rejected=1, duration_s=1.5, error=error, started_at=T0, finished_at=T0,
    )  # fmt: skip


def test_one_row_per_site_with_this_runs_work_apart_from_windows_already_complete() -> None:
    summaries = summarize([row("b"), row("a"), row("a", "skipped", kept=5), row("b", "live")], {"a": 4})
    assert [
        (s.site, s.fetched, s.skipped, s.open, s.kept, s.pages, s.requests, s.gaps) for s in summaries
    ] == [
        ("a", 1, 1, 0, 10, 2, 3, 4),  # the complete window's 5 samples are an earlier run's
        ("b", 2, 0, 1, 20, 4, 6, 0),
    ]
    assert summarize([row("a")], None)[0].gaps is None  # no build, so gaps are unknown


def test_the_summary_starts_with_the_outcome_and_counts_an_error_once() -> None:
    error = "SiteNotFoundError: no such site 'x' (HTTP 404)"
    summaries = summarize(
        [
            row("a"),
            row("a", "skipped", kept=157_248),
            *(row("x", "failed", kept=0, error=error) for _ in range(7)),
        ],
        {},
    )
    result = outcome(summaries)
    lines = to_markdown(summaries, result).splitlines()
    assert lines[:3] == [
        "# ace-etl run: failed",
        "",
        "failed sites: x. 2 site(s); 8 window(s) fetched, 1 already complete; 24 request(s), 10 sample(s) landed.",
    ]
    assert lines[4].startswith("| site | windows fetched | already complete |")
    assert "| a | 1 | 1 | 0 | 0 | 2 | 3 | 1 | 10 | 2 | 1 | 1.5 | 0 |" in lines
    assert lines[-2:] == ["## Errors", f"- **x**: {error} (x7)"]
    assert outcome(summaries[:1], warnings=True) == "completed with warnings"
    assert outcome(summaries[:1]) == "completed" and outcome(summaries[:1], failed=True) == "failed"
    first = to_markdown(summaries[:1], "completed with warnings").splitlines()[0]
    assert first == "# ace-etl run: completed with warnings"


# Names as the API may spell them: a `|` ends a cell, `*`/`_` start emphasis, a newline ends the row.
ODD_SITE = "a|b *x*\nc _y_ z_z"
ODD_POINT = "site/zone[1]|temp_*hot*_\\<b>&amp;\r\n`x`"


def cells_per_row(text: str) -> list[list[tuple[str, str]]]:
    """Every table row of `text` as rendered by a CommonMark parser with GFM tables: (kind, text) per cell,
    kind `text` unless the cell holds markup (emphasis, code, a link, HTML...)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    rows: list[list[tuple[str, str]]] = []
    in_row = False
    for token in tokens:
        if token.type in ("tr_open", "tr_close"):
            in_row = token.type == "tr_open"
            rows += [[]] if in_row else []
        elif token.type == "inline" and in_row:
            children = token.children or []
            kind = "text" if {c.type for c in children} <= {"text"} else "markup"
            rows[-1].append((kind, "".join(c.content for c in children)))
    return rows


def test_names_in_the_run_summary_stay_in_their_cell() -> None:
    text = to_markdown(summarize([row(ODD_SITE, "failed", error="boom | *bang*")], {ODD_SITE: 1}), "failed")
    header, *body = cells_per_row(text)
    assert len(header) == 13 and [len(r) for r in body] == [13]  # site and the 12 figures, `open` included
    assert body[0][0] == ("text", "a|b *x* c _y_ z_z")
    # The errors list names the site too, in bold: the name must not end the bold or start its own.
    (error,) = [line for line in text.splitlines() if line.startswith("- ")]
    inline = next(t for t in MarkdownIt("commonmark").parse(error) if t.type == "inline")
    parts = [(c.type, c.content) for c in inline.children or [] if c.type != "text" or c.content]
    assert parts == [
        ("strong_open", ""),
        ("text", "a|b *x* c _y_ z_z"),
        ("strong_close", ""),
        ("text", ": boom | *bang*"),
    ]


def test_names_in_the_coverage_grid_stay_in_their_cell() -> None:
    grid = pl.DataFrame(
        {
            "site_name": [ODD_SITE, ODD_SITE],
            "point_name": [ODD_POINT, "plain"],
            "day": [date(2024, 1, 1), date(2024, 1, 1)],
            "coverage_ratio": [0.8, 0.5],
            "gap_status": [None, "open"],
        }
    )
    rows = cells_per_row(coverage_markdown(grid))
    assert [len(r) for r in rows] == [2, 2, 2]
    assert [r[0] for r in rows[1:]] == [("text", "plain"), ("text", "site/zone[1]|temp_*hot*_\\<b>&amp; `x`")]


def test_the_coverage_artifact_is_text_for_the_run_sites_with_problem_points_first() -> None:
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    cells = [
        # site, point, coverage per day, gap status per day, partial per day
        ("hq", "hq/ok-1", (1.0, 1.0, 1.0), (None, None, None), (False, False, False)),
        ("hq", "hq/ok-2", (1.0, 1.0, 1.0), (None, None, None), (False, False, True)),
        ("hq", "hq/bad", (1.0, 0.875, 1.0), (None, "open", None), (False, False, False)),
        ("hq", "hq/worse", (0.5, 1.0, 1.0), ("confirmed", None, None), (False, False, False)),
        ("annex", "annex/x", (0.1, 0.1, 0.1), ("open", "open", "open"), (False, False, False)),
        ("fine", "fine/y", (1.0, 1.0, 1.0), (None, None, None), (False, False, False)),
    ]
    grid = pl.DataFrame(
        [
            {
                "site_name": site,
                "point_name": point,
                "day": day,
                "coverage_ratio": c,
                "gap_status": g,
                "partial": p,
            }
            for site, point, coverage, gaps, partial in cells
            for day, c, g, p in zip(days, coverage, gaps, partial, strict=True)
        ]
    )
    text = coverage_markdown(grid, sites=["hq", "fine"])
    lines = text.splitlines()
    assert lines[0] == "# Coverage: 1 of 2 site(s) with problem points (2024-01-01 to 2024-01-03)"
    assert lines[4:11] == [
        "## hq: 3 of 4 point(s) with problems",
        "",
        "| point | 01-01 | 01-02 | 01-03 |",
        "| --- | --- | --- | --- |",
        "| hq/worse | 50% confirmed gap | 100% | 100% |",
        "| hq/bad | 100% | 88% open gap | 100% |",
        "| hq/ok-2 | 100% | 100% | 100% partial |",
    ]
    assert lines[12:16] == [
        "1 point(s) complete every day shown.",
        "",
        "## fine: 0 of 1 point(s) with problems",
        "",
    ]
    assert "annex" not in text  # not a site of the run
    assert not any(ord(ch) > 0x2000 for ch in text), text  # no emoji or symbols a font may lack


def test_names_in_the_rich_summary_are_text_not_markup() -> None:
    from rich.console import Console

    console = Console(width=300, record=True)
    console.print(to_rich_table(summarize([row("[bold]site[/bold]")], None)))
    assert "[bold]site[/bold]" in console.export_text()


def test_data_quality_lists_what_did_not_pass_for_the_run_sites_first() -> None:
    from ace_etl.quality import TestResult, scoped
    from ace_etl.quality import to_markdown as quality_markdown

    gaps = pl.DataFrame(
        {
            "site_name": ["hq", "hq", "hq", "hq", "annex"],
            "point_name": ["hq/d", "hq/a", "hq/c", "hq/b", "annex/x"],
        }
    )
    coverage = pl.DataFrame({"site_name": ["annex"], "point_name": ["annex/x"], "day": [date(2024, 1, 1)]})
    results = [
        TestResult("not_null_id", "pass", 0),
        TestResult("coverage_below_threshold", "warn", 1, coverage),  # another site's only
        TestResult("points_with_gaps", "warn", 5, gaps),
        TestResult("landing_age_hours", "fail", 80),  # no site column: counts whenever it fails
    ]
    quality = scoped(results, ["hq"])
    assert quality.status == "fail"
    lines = quality_markdown(quality).splitlines()
    assert lines[:5] == [
        "# Data quality: 2 data-quality test(s) warn or fail for this run's sites",
        "",
        "| test | status | site | points (examples) | failing rows |",
        "| --- | --- | --- | --- | --- |",
        "| landing_age_hours | fail | - | - | 80 |",
    ]
    assert lines[5] == "| points_with_gaps | warn | hq | hq/a, hq/b, hq/c, ... (4 points) | 4 |"
    assert (
        lines[7].startswith("Other sites") and "coverage_below_threshold (warn): annex: annex/x" in lines[7]
    )
    assert lines[-1] == "Passing (1): not_null_id"
    assert [f.describe() for f in quality.findings][
        1
    ] == "points_with_gaps (warn): hq: hq/a, hq/b, hq/c, ... (4 points)"

    everywhere = scoped(results, None)  # every site, as for a build of the whole warehouse
    assert [(f.test, f.count) for f in everywhere.findings][1:] == [
        ("coverage_below_threshold", 1),
        ("points_with_gaps", 5),
    ]
    assert not everywhere.elsewhere
    healthy = scoped(results[:3], ["hq-2"])
    assert (healthy.status, healthy.title) == ("pass", "all 3 data-quality tests pass for this run's sites")
