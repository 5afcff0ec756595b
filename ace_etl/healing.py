"""Heal the gaps the warehouse shows: what `ace-etl heal` and the flows share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path

from extract.client import AceClient
from extract.heal import Gap, HealResult, heal_site
from extract.lease import SiteLease
from extract.pipeline import PointsSource, land_points, new_run_id, resolve_selector
from extract.storage import Storage
from extract.windows import Window


def warehouse_gaps(data_dir: Path, site: str, span: Window) -> list[Gap]:
    """The site's gaps in `span`, from the published warehouse (read-only, as an analyst reads it)."""
    from ace_etl.transform import reading, warehouse_file

    with reading(warehouse_file(data_dir)) as con:
        rows = con.execute(
            "select point_name, gap_start, gap_end from timeseries_gaps "
            "where site_name = ? and gap_end > ? and gap_start < ? order by gap_start, point_name",
            [site, span.start, span.end],
        ).fetchall()
    return [Gap(name, start.astimezone(UTC), end.astimezone(UTC)) for name, start, end in rows]


def heal_sites(
    client: AceClient,
    storage: Storage,
    data_dir: Path,
    sites: Sequence[str],
    span: Window,
    *,
    points: PointsSource = None,
    page_size: int = 100_000,
    force: bool = False,
    time_zones: Mapping[str, str] | None = None,
) -> list[HealResult]:
    """For each site, under its lease: the warehouse's gaps in `span`, fetched and landed (see extract.heal).
    `time_zones` overrides sites' time zones where the site's record is landed beside its points."""
    run_id = new_run_id()
    results = []
    for site in sites:
        gaps = warehouse_gaps(data_dir, site, span)
        selector = resolve_selector(points, land_points(client, storage, site, time_zones), site=site)
        with SiteLease(storage, site, run_id) as lease:
            results.append(
                heal_site(client, storage, lease, gaps, selector, page_size=page_size, force=force)
            )
    return results
