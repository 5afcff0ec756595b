"""Coverage as a picture: per site, points by days, shaded by coverage, open and confirmed gaps marked,
partial days (data landed for part of the day, e.g. today's) marked as such.

`to_html` writes a self-contained page (inline CSS, no script, no network) for `ace-etl status --html`;
`to_markdown` gives a run's sites as text tables for a Prefect artifact (dates as column headers, problem
points first, the healthy ones in one line): plain text, so any font shows it.
"""

from __future__ import annotations

import html
from collections.abc import Collection
from datetime import date
from pathlib import Path

import polars as pl

from ace_etl import markdown

# (lower bound of coverage, colour), best first
_SHADES = ((0.999, "#2e7d32"), (0.9, "#9ccc65"), (0.5, "#ffb300"), (0.0, "#e53935"))
_COMPLETE = _SHADES[0][0]
_MARKS = {"confirmed": "●", "open": "○"}
_PARTIAL = "#90a4ae"


def coverage_grid(warehouse: Path, days: int = 31) -> pl.DataFrame:
    """One row per site, point and day of the last `days` days in the warehouse: coverage ratio, the
    worst gap status that day (`confirmed` over `open`), and whether the site's samples that day span
    less than the day (`partial`: coverage is then of the part landed), read-only."""
    from ace_etl.transform import reading

    with reading(warehouse) as con:
        return pl.from_arrow(
            con.sql(
                f"""
                with recent as (
                    select * from timeseries_coverage
                    where day > (select max(day) from timeseries_coverage) - {int(days)}
                ),
                gap_days as (
                    select site_name, point_name, day,
                        max(case status when 'confirmed' then 2 else 1 end) as worst,
                        count(*) as gaps
                    from timeseries_gaps group by all
                )
                select recent.site_name, recent.point_name, recent.day, recent.coverage_ratio,
                    recent.expected_samples, recent.received_samples, coalesce(gap_days.gaps, 0) as gaps,
                    case gap_days.worst when 2 then 'confirmed' when 1 then 'open' end as gap_status,
                    coalesce(
                        recent.expected_samples * recent.expected_interval_s
                            <= 86400 - recent.expected_interval_s,
                        false
                    ) as partial
                from recent left join gap_days using (site_name, point_name, day)
                order by all
                """
            ).to_arrow_table()
        )  # type: ignore[return-value]


def _shade(ratio: float | None) -> str:
    value = 0.0 if ratio is None else ratio
    return next(colour for bound, colour in _SHADES if value >= bound)


def to_html(grid: pl.DataFrame, title: str = "ace-etl coverage") -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font:13px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:2em}",
        "td,th{border:1px solid #fff;padding:0;text-align:center}th{font-weight:normal;padding:2px 4px}",
        "td.cell{width:22px;height:18px;color:#fff;font-size:11px}td.name{text-align:left;padding-right:8px}",
        ".legend span{display:inline-block;padding:2px 6px;margin-right:4px;color:#fff}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='legend'>",
        *(f"<span style='background:{c}'>&ge; {b:.0%}</span>" for b, c in _SHADES),
        f"<span style='background:{_PARTIAL}'>◐ partial day</span>",
        " ○ open gap (may still be filled) ● confirmed gap (the API has no data)</p>",
    ]
    if grid.is_empty():
        parts.append("<p>No coverage yet: run <code>ace-etl run</code> first.</p>")
    for (site,), rows in grid.partition_by("site_name", as_dict=True, maintain_order=True).items():
        days: list[date] = sorted(set(rows["day"]))
        parts.append(f"<h2>{html.escape(str(site))}</h2><table><tr><th></th>")
        parts += [f"<th>{d:%m-%d}</th>" for d in days]
        parts.append("</tr>")
        cells = {(r["point_name"], r["day"]): r for r in rows.iter_rows(named=True)}
        for point in sorted(set(rows["point_name"])):
            parts.append(f"<tr><td class='name'>{html.escape(point)}</td>")
            for day in days:
                cell = cells.get((point, day))
                if cell is None:
                    parts.append("<td></td>")
                    continue
                status, partial = cell["gap_status"], cell.get("partial")
                # A partial day is not shaded as complete: its ratio is of the part landed so far.
                colour = _PARTIAL if partial else _shade(cell["coverage_ratio"])
                tip = (
                    f"{point} {day}: {cell['received_samples']} of {cell['expected_samples']} samples"
                    + (f", {cell['gaps']} {status} gap(s)" if status else "")
                    + (" (partial day: landed for part of it)" if partial else "")
                )
                css = " ".join(
                    ["cell", *([f"gap-{status}"] if status else []), *(["partial"] if partial else [])]
                )
                mark = _MARKS.get(status or "", "◐" if partial else "")
                parts.append(
                    f"<td class='{css}' style='background:{colour}' title='{html.escape(tip, quote=True)}'>"
                    f"{mark}</td>"
                )
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def to_markdown(
    grid: pl.DataFrame, sites: Collection[str] | None = None, days: int = 7, max_points: int = 50
) -> str:
    """`sites` of the grid (None: all) over its last `days` days as text: a table per site of its problem
    points (coverage below complete, a gap, a partial day), dates as column headers, then the healthy
    points in one line."""
    if sites is not None:
        grid = grid.filter(pl.col("site_name").is_in(list(sites)))
    if grid.is_empty():
        return "# Coverage: nothing built yet for these sites\n"
    shown = sorted(set(grid["day"]))[-days:]
    grid = grid.filter(pl.col("day").is_in(shown))
    parts = {
        str(site): rows
        for (site,), rows in grid.partition_by("site_name", as_dict=True, maintain_order=True).items()
    }
    problems = {site: _problem_points(rows) for site, rows in parts.items()}
    with_problems = sum(bool(p) for p in problems.values())
    out = [
        f"# Coverage: {with_problems} of {len(parts)} site(s) with problem points ({shown[0]} to {shown[-1]})",
        "",
        "Cells: share of the expected samples received that day; open gap: may still be filled; confirmed gap: the API "
        "has no data; partial: landed for part of the day.",
        "",
    ]
    for site in sorted(parts, key=lambda s: (not problems[s], s)):
        rows = parts[site]
        points = sorted(set(rows["point_name"]))
        bad = problems[site]
        out.append(f"## {markdown.escape(site)}: {len(bad)} of {len(points)} point(s) with problems")
        out.append("")
        if bad:
            cells = {(r["point_name"], r["day"]): r for r in rows.iter_rows(named=True)}
            table = [
                [point, *(_text(cells.get((point, day))) for day in shown)] for point in bad[:max_points]
            ]
            if len(bad) > max_points:
                table.append([f"... {len(bad) - max_points} more points", *([""] * len(shown))])
            out += [*markdown.table(["point", *(f"{d:%m-%d}" for d in shown)], table), ""]
        healthy = len(points) - len(bad)
        if healthy:
            out += [f"{healthy} point(s) complete every day shown.", ""]
    return "\n".join(out)


def _problem_points(rows: pl.DataFrame) -> list[str]:
    """The points with a day below complete, with a gap or partial, worst (lowest coverage) first."""
    problem = (pl.col("coverage_ratio").fill_null(0.0) < _COMPLETE) | pl.col("gap_status").is_not_null()
    if "partial" in rows.columns:
        problem = problem | pl.col("partial")
    worst = (
        rows.filter(problem)
        .group_by("point_name")
        .agg(pl.col("coverage_ratio").fill_null(0.0).min().alias("worst"))
        .sort("worst", "point_name")
    )
    return worst.get_column("point_name").to_list()


def _text(cell: dict[str, object] | None) -> str:
    if cell is None:
        return "-"
    ratio = cell["coverage_ratio"]
    text = f"{ratio:.0%}" if isinstance(ratio, float) else "0%"
    status = cell.get("gap_status")
    if status:
        text += f" {status} gap"
    return text + (" partial" if cell.get("partial") else "")
