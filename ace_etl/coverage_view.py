"""Coverage as a picture: per site, points by days, shaded by coverage, open and confirmed gaps marked.

`to_html` writes a self-contained page (inline CSS, no script, no network) for `ace-etl status --html`;
`to_markdown` gives the same grid with coloured squares for a Prefect artifact.
"""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import polars as pl

from ace_etl import markdown

# (lower bound of coverage, colour, square for markdown), best first
_SHADES = ((0.999, "#2e7d32", "🟩"), (0.9, "#9ccc65", "🟨"), (0.5, "#ffb300", "🟧"), (0.0, "#e53935", "🟥"))
_MARKS = {"confirmed": "●", "open": "○"}


def coverage_grid(warehouse: Path, days: int = 31) -> pl.DataFrame:
    """One row per site, point and day of the last `days` days in the warehouse: coverage ratio and the
    worst gap status that day (`confirmed` over `open`), read-only."""
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
                    case gap_days.worst when 2 then 'confirmed' when 1 then 'open' end as gap_status
                from recent left join gap_days using (site_name, point_name, day)
                order by all
                """
            ).to_arrow_table()
        )  # type: ignore[return-value]


def _shade(ratio: float | None) -> tuple[str, str]:
    value = 0.0 if ratio is None else ratio
    return next((colour, square) for bound, colour, square in _SHADES if value >= bound)


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
        *(f"<span style='background:{c}'>&ge; {b:.0%}</span>" for b, c, _ in _SHADES),
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
                colour, _ = _shade(cell["coverage_ratio"])
                status = cell["gap_status"]
                tip = f"{point} {day}: {cell['received_samples']} of {cell['expected_samples']} samples" + (
                    f", {cell['gaps']} {status} gap(s)" if status else ""
                )
                css = f"cell gap-{status}" if status else "cell"
                parts.append(
                    f"<td class='{css}' style='background:{colour}' title='{html.escape(tip, quote=True)}'>"
                    f"{_MARKS.get(status or '', '')}</td>"
                )
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def to_markdown(grid: pl.DataFrame, max_points: int = 50) -> str:
    """The grid as markdown (one coloured square per day; ○/● after a day with open/confirmed gaps)."""
    if grid.is_empty():
        return "No coverage yet."
    out = ["🟩 complete · 🟨 ≥ 90 % · 🟧 ≥ 50 % · 🟥 less · ○ open gap · ● confirmed gap", ""]
    for (site,), rows in grid.partition_by("site_name", as_dict=True, maintain_order=True).items():
        days = sorted(set(rows["day"]))
        cells = {(r["point_name"], r["day"]): r for r in rows.iter_rows(named=True)}
        points = sorted(set(rows["point_name"]))
        lines = [
            (
                point,
                "".join(
                    "⬜"
                    if (cell := cells.get((point, day))) is None
                    else _shade(cell["coverage_ratio"])[1] + _MARKS.get(cell["gap_status"] or "", "")
                    for day in days
                ),
            )
            for point in points[:max_points]
        ]
        if len(points) > max_points:
            lines.append((f"… {len(points) - max_points} more points", ""))
        out += [f"**{markdown.escape(site)}** ({days[0]} to {days[-1]})", ""]
        out += [*markdown.table(["point", "days"], lines), ""]
    return "\n".join(out)
