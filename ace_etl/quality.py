"""Data quality as an operator reads it: a build's dbt tests scoped to the sites a run built.

A test that warns or fails is counted for the run only when its failing rows name one of the run's sites
(tests whose rows have no `site_name`, freshness for one, count whenever they do not pass). Problems of
other sites stay in the warehouse's coverage and data-quality views; they do not alert on every run of a
healthy site. The artifact lists what did not pass first, each with its sites and a few points.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ace_etl import markdown

EXAMPLES = 3
NOT_PASSING = ("fail", "error", "warn")


@dataclass(frozen=True)
class TestResult:
    """One dbt test of a build: its name, status and failing-row count, and the failing rows themselves
    when the test's query could be read again from the published warehouse."""

    name: str
    status: str
    failures: int | None
    rows: pl.DataFrame | None = None


@dataclass
class Finding:
    """A test that did not pass, as far as it concerns the given sites."""

    test: str
    status: str
    count: int
    """Failing rows of these sites (the test's own count when its rows name no site)."""
    points: dict[str, list[str]] = field(default_factory=dict)
    """Per site of the rows: its failing points (all of them, sorted)."""

    def describe(self) -> str:
        """One line for an alert: `points_with_gaps (warn): hq: hq/a, hq/b (2 points)`."""
        if not self.points:
            return f"{self.test} ({self.status}): {self.count:,} failing row(s)"
        return f"{self.test} ({self.status}): " + "; ".join(
            f"{site}: {_examples(points)}" for site, points in self.points.items()
        )


@dataclass
class Quality:
    """A build's tests for a run: the findings of its sites, and those of other sites (context only)."""

    tests: int
    findings: list[Finding]
    elsewhere: list[Finding]
    passed: list[str]

    @property
    def status(self) -> str:
        """`fail`, `warn` or `pass`, for the run's sites only."""
        if any(f.status != "warn" for f in self.findings):
            return "fail"
        return "warn" if self.findings else "pass"

    @property
    def digest(self) -> str:
        """What did not pass (tests, statuses, sites and points), not how much: equal for two runs that
        see the same problems."""
        import hashlib
        import json

        seen = sorted((f.test, f.status, sorted(f.points.items())) for f in self.findings)
        return hashlib.sha256(json.dumps(seen).encode()).hexdigest()[:16]

    @property
    def title(self) -> str:
        if not self.findings:
            return f"all {self.tests} data-quality tests pass for this run's sites"
        return f"{len(self.findings)} data-quality test(s) warn or fail for this run's sites"


def scoped(results: Iterable[TestResult], sites: Collection[str] | None) -> Quality:
    """The build's test results for a run of `sites` (None: every site, as `ace-etl transform` builds)."""
    results = list(results)
    findings: list[Finding] = []
    elsewhere: list[Finding] = []
    passed: list[str] = []
    for result in results:
        if result.status not in NOT_PASSING:
            passed.append(result.name)
            continue
        rows = result.rows
        if rows is None or "site_name" not in rows.columns:
            findings.append(Finding(result.name, result.status, result.failures or 0))
            continue
        in_run = pl.lit(True) if sites is None else pl.col("site_name").is_in(list(sites))
        mine, others = rows.filter(in_run), rows.filter(~in_run)
        for part, into in ((mine, findings), (others, elsewhere)):
            if part.height:
                into.append(Finding(result.name, result.status, part.height, _points(part)))
    severity = {"error": 0, "fail": 0, "warn": 1}
    findings.sort(key=lambda f: (severity[f.status], f.test))
    return Quality(len(results), findings, elsewhere, sorted(passed))


def _points(rows: pl.DataFrame) -> dict[str, list[str]]:
    column = "point_name" if "point_name" in rows.columns else "site_name"
    grouped = rows.group_by("site_name").agg(pl.col(column).cast(pl.String).unique().sort())
    return {str(site): list(points) for site, points in sorted(grouped.iter_rows())}


def _examples(points: Sequence[str]) -> str:
    shown = ", ".join(points[:EXAMPLES])
    more = f", ... ({len(points)} points)" if len(points) > EXAMPLES else f" ({len(points)} point(s))"
    return shown + more


def to_markdown(quality: Quality, title_prefix: str = "Data quality") -> str:
    """The data-quality artifact: what did not pass first (sites, example points, counts), then what
    concerns other sites only, then the passing tests in one line."""
    lines = [f"# {title_prefix}: {quality.title}", ""]
    if quality.findings:
        lines += [
            *markdown.table(
                ["test", "status", "site", "points (examples)", "failing rows"],
                _rows(quality.findings),
            ),
            "",
        ]
    if quality.elsewhere:
        lines += [
            "Other sites (not built by this run; see the coverage view): "
            + "; ".join(markdown.escape(f.describe()) for f in quality.elsewhere),
            "",
        ]
    if quality.passed:
        lines.append(f"Passing ({len(quality.passed)}): " + ", ".join(map(markdown.escape, quality.passed)))
    return "\n".join(lines) + "\n"


def _rows(findings: Iterable[Finding]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for f in findings:
        if not f.points:
            rows.append((f.test, f.status, "-", "-", f"{f.count:,}"))
        for site, points in f.points.items():
            rows.append((f.test, f.status, site, _examples(points), f"{f.count:,}"))
    return rows


def read_failing_rows(warehouse: Path | None, results: Sequence[Any]) -> list[TestResult]:
    """dbt's run results of the tests, each with its failing rows read again from the published warehouse
    (a test's compiled query selects exactly them); None: a build that was not published, whose rows
    cannot be read. Rows that cannot be read stay unknown: the test then counts for every run, never
    silently for none."""
    from ace_etl.transform import reading
    from extract.errors import AceEtlError

    tests = [r for r in results if getattr(r.node, "resource_type", None) == "test"]
    out: list[TestResult] = []
    for r in tests:
        status, failures = str(r.status), r.failures
        rows = None
        query = getattr(r.node, "compiled_code", None)
        if status in NOT_PASSING and query and warehouse is not None and warehouse.exists():
            try:
                with reading(warehouse) as con:
                    frame = pl.from_arrow(con.sql(query).to_arrow_table())
                rows = frame if isinstance(frame, pl.DataFrame) else None
            except AceEtlError:
                rows = None
        out.append(TestResult(r.node.name, status, failures, rows))
    return out
