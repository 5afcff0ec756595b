"""The run summary, one table per run with a row per site. The CLI prints it with rich; Prefect flows
publish the same table as a markdown artifact, so both audiences read the same numbers.

The figures are this run's work: windows already complete are counted apart and add no pages or samples,
so a site that made no request shows none landed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ace_etl import markdown
from extract.run.scheduler import WeatherResult

COLUMNS = (
    ("site", "site"),
    ("fetched", "windows fetched"),
    ("skipped", "already complete"),
    ("open", "open"),
    ("failed", "failed"),
    ("pages", "pages"),
    ("requests", "requests"),
    ("retries", "retries"),
    ("kept", "samples landed"),
    ("filtered", "filtered"),
    ("rejected", "rejected"),
    ("duration_s", "seconds"),
    ("gaps", "gaps"),
)


@dataclass
class SiteSummary:
    site: str
    windows: int = 0
    skipped: int = 0
    open: int = 0
    """Windows not ended at the run's as-of: landed up to it, not complete."""
    failed: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    kept: int = 0
    filtered: int = 0
    rejected: int = 0
    duration_s: float = 0.0
    gaps: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        """Windows this run worked on (not already complete)."""
        return self.windows - self.skipped


def summarize(windows: Iterable[Any], gaps_by_site: Mapping[str, int] | None = None) -> list[SiteSummary]:
    """Fold per-window results (anything with the runs-row attributes) into one row per site."""
    sites: dict[str, SiteSummary] = {}
    for w in windows:
        s = sites.setdefault(w.site_name, SiteSummary(w.site_name))
        s.windows += 1
        s.skipped += w.status == "skipped"
        s.open += w.status == "live"
        s.failed += w.status == "failed"
        if w.status == "skipped":
            continue  # its pages and samples are an earlier run's
        s.pages += w.pages
        s.requests += w.api_requests
        s.retries += w.retries
        s.kept += w.records_kept
        s.filtered += w.records_filtered
        s.rejected += w.records_rejected
        s.duration_s += w.duration_s
        if w.error:
            s.errors.append(w.error)
    if gaps_by_site is not None:  # None: the warehouse was not built, so gaps are unknown, not zero
        for site, summary in sites.items():
            summary.gaps = gaps_by_site.get(site, 0)
    return sorted(sites.values(), key=lambda s: s.site)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def rows(summaries: Iterable[SiteSummary]) -> list[list[str]]:
    return [[_cell(getattr(s, key)) for key, _ in COLUMNS] for s in summaries]


def outcome(summaries: Iterable[SiteSummary], failed: bool = False, warnings: bool = False) -> str:
    """`failed` (a window or the build failed), `completed with warnings` (data-quality tests warn for
    the run's sites) or `completed`."""
    if failed or any(s.failed for s in summaries):
        return "failed"
    return "completed with warnings" if warnings else "completed"


def to_markdown(summaries: list[SiteSummary], result: str, title: str = "ace-etl run") -> str:
    """The artifact: the outcome first, then a row per site, then each distinct error once with its count."""
    failed = [s.site for s in summaries if s.failed]
    said = {
        "failed": f"failed sites: {', '.join(map(markdown.escape, failed))}"
        if failed
        else "the build failed",
        "completed with warnings": "data-quality tests warn; see the ace-etl data-quality artifact",
        "completed": "every window landed",
    }
    fetched = sum(s.fetched for s in summaries)
    skipped = sum(s.skipped for s in summaries)
    lines = [
        f"# {title}: {result}",
        "",
        f"{said.get(result, result)}. {len(summaries)} site(s); {fetched} window(s) fetched, "
        f"{skipped} already complete; {sum(s.requests for s in summaries):,} request(s), "
        f"{sum(s.kept for s in summaries):,} sample(s) landed.",
        "",
        *markdown.table([label for _, label in COLUMNS], rows(summaries)),
    ]
    errors = [
        f"- **{markdown.escape(s.site)}**: {markdown.escape(error)}" + (f" (x{n})" if n > 1 else "")
        for s in summaries
        for error, n in Counter(s.errors).items()
    ]
    if errors:
        lines += ["", "## Errors", *errors]
    return "\n".join(lines) + "\n"


def to_rich_table(summaries: list[SiteSummary], title: str = "ace-etl run summary") -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=title,
        caption="already complete: skipped, nothing fetched; open: landed up to as-of, not complete; "
        "filtered: outside the window or not a selected point; gaps: rows of timeseries_gaps",
    )
    for key, label in COLUMNS:
        table.add_column(label, justify="left" if key == "site" else "right", no_wrap=True)
    for r in rows(summaries):
        table.add_row(*(escape(cell) for cell in r))  # a site named `[red]x` is text, not markup
    return table


def gaps_by_site(warehouse: Path) -> dict[str, int]:
    """Rows of `timeseries_gaps` per site in a published warehouse (read-only, as an analyst would open it)."""
    from ace_etl.transform import reading

    with reading(warehouse) as con:
        return dict(
            con.execute("select site_name, count(*) from timeseries_gaps group by site_name").fetchall()
        )


def weather_history_note(weather: Iterable[WeatherResult], now: datetime) -> str | None:
    """One line for a run whose weather the API gave as current conditions for a range reaching back more
    than an hour: those sites got one reading of now, not the range's history. None otherwise."""
    sites = {w.site_name for w in weather if w.current_only and w.start < now - timedelta(hours=1)}
    if not sites:
        return None
    return (
        f"weather: the API returns current conditions only, so {len(sites)} site(s) got one reading of now, not "
        "the range's weather; weather history comes only from the hourly weather deployment (ace-etl-weather-hourly)"
    )
