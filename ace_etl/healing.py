"""Heal the gaps the warehouse shows: what `ace-etl heal` and the flows share."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from extract.api.client import AceClient
from extract.lake.storage import Storage
from extract.run.heal import Gap, HealResult, heal_site
from extract.run.job import Job
from extract.run.lease import SiteLease
from extract.run.pipeline import land_points, land_site_record, resolve_selector
from extract.windows import Window


def warehouse_gaps(data_dir: Path | str, site: str, span: Window) -> list[Gap]:
    """The site's gaps in `span`, from the published warehouse (read-only, as an analyst reads it)."""
    from ace_etl.transform import reading, warehouse_file

    with reading(warehouse_file(data_dir)) as con:
        rows = con.execute(
            "select point_name, gap_start, gap_end from timeseries_gaps "
            "where site_name = ? and gap_end > ? and gap_start < ? order by gap_start, point_name",
            [site, span.start, span.end],
        ).fetchall()
    return [Gap(name, start.astimezone(UTC), end.astimezone(UTC)) for name, start, end in rows]


def heal_sites(client: AceClient, storage: Storage, job: Job) -> list[HealResult]:
    """For each of the job's sites, under its lease: the warehouse's gaps in the job's span, fetched and
    landed (see extract.run.heal). A site without gaps there costs no request. The job's time zones override
    sites' where the site's record is landed beside its points."""
    assert job.span is not None
    results = []
    for site in job.sites:
        gaps = warehouse_gaps(job.data_dir, site, job.span)
        if not gaps:
            results.append(HealResult(site, 0, 0, 0, 0, 0, 0, 0, 0))
            continue
        points = land_points(client, storage, site)
        land_site_record(client, storage, site, job.time_zones)
        selector = resolve_selector(job.points, points, site=site)
        with SiteLease(storage, site, job.run_id) as lease:
            results.append(
                heal_site(client, storage, lease, gaps, selector, page_size=job.page_size, force=job.force)
            )
    return results
