"""Sites as a dimension: each site's record from the API, its time zone, and the overrides of it.

A site's time zone comes, in this order, from an override (a sites file, `ACE_SITES_FILE`, or a flow's
`time_zones`), from its coordinates (tzfpy, offline), or is `UTC` (source `default`). The record is fetched
beside the site's points (`GET /sites/{site}`, else the `/sites` list) and landed as one row under
`landing/sites/`; a server that has neither, or an error, keeps the row landed before, or lands the name
alone: a site without a record still gets a row in the warehouse, so no sample is ever dropped by a join.

Sites file (TOML):

    [sites."Some Site"]
    time_zone = "America/New_York"
"""

from __future__ import annotations

import io
import logging
import tomllib
import zoneinfo
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

import polars as pl

from extract.api import fields
from extract.api.client import AceClient
from extract.errors import ApiError, ConfigError, InvalidBodyError, PaginationError
from extract.lake import schemas
from extract.lake.landing import sites_path
from extract.lake.quarantine import quarantine
from extract.lake.storage import Storage
from extract.redact import one_line

log = logging.getLogger(__name__)

DEFAULT_TIME_ZONE = "UTC"
TimeZoneSource = Literal["override", "coordinates", "default"]
# What a site's table in a sites file may say.
SITE_KEYS = frozenset({"time_zone"})


def check_time_zones(time_zones: Mapping[str, Any], where: str) -> dict[str, str]:
    """The overrides, each an IANA time zone name (`America/New_York`); ConfigError naming the first that
    is not, and where it was given."""
    checked = {}
    for site, zone in time_zones.items():
        if not isinstance(zone, str) or zone not in _zone_names():
            raise ConfigError(
                f"{where}: time zone {zone!r} of site {site!r} is not an IANA time zone name; "
                "use one like America/New_York, Europe/London or UTC"
            )
        checked[str(site)] = zone
    return checked


def read_sites_file(path: Path) -> dict[str, str]:
    """The time-zone overrides of a sites file (site -> IANA name); ConfigError when it cannot be read."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read sites file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"sites file {path} is not valid TOML ({one_line(exc)}): fix it") from None
    sites = document.get("sites", {})
    if not isinstance(sites, dict) or not all(isinstance(entry, dict) for entry in sites.values()):
        raise ConfigError(
            f'sites file {path}: write each site as a table, e.g. [sites."Some Site"] then time_zone = "America/New_York"'
        )
    for site, entry in sites.items():
        unknown = sorted(set(entry) - SITE_KEYS)
        if unknown:
            raise ConfigError(
                f"sites file {path}: site {site!r} has unknown key {unknown[0]!r}; the keys are {', '.join(sorted(SITE_KEYS))}"
            )
    return check_time_zones(
        {site: entry["time_zone"] for site, entry in sites.items() if "time_zone" in entry},
        f"sites file {path}",
    )


def time_zone_overrides(
    sites_file: Path | None = None, time_zones: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The overrides of a sites file and of a mapping (site -> IANA name); the mapping wins for a site in both."""
    from_file = read_sites_file(sites_file) if sites_file is not None else {}
    return {**from_file, **check_time_zones(time_zones or {}, "time_zones")}


def coordinates_time_zone(latitude: float | None, longitude: float | None) -> str | None:
    """The IANA time zone at the coordinates (offline); None without usable ones. (0, 0) is the usual
    placeholder for unknown coordinates, not a building in the Gulf of Guinea."""
    if latitude is None or longitude is None or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if latitude == 0 and longitude == 0:
        return None
    import tzfpy

    return tzfpy.get_tz(longitude, latitude) or None


def site_time_zone(
    site: str, latitude: float | None, longitude: float | None, overrides: Mapping[str, str]
) -> tuple[str, TimeZoneSource]:
    if site in overrides:
        return overrides[site], "override"
    zone = coordinates_time_zone(latitude, longitude)
    return (zone, "coordinates") if zone else (DEFAULT_TIME_ZONE, "default")


def site_frame(
    record: Mapping[str, Any] | None, *, site: str, collected_at: datetime, overrides: Mapping[str, str]
) -> pl.DataFrame:
    """The site's row of `schemas.SITES` from its API record (aceiot-models' `Site`: id, name, nice_name,
    address, latitude, longitude, archived, ...; any field may be missing, null or text), with its time
    zone; a site without a record (None) gets a row of its name and time zone alone."""
    record = record or {}
    latitude, longitude = fields.number(record.get("latitude")), fields.number(record.get("longitude"))
    zone, source = site_time_zone(site, latitude, longitude, overrides)
    row = {
        "site_name": site,
        "site_id": fields.integer(record.get("id")),
        "nice_name": fields.text(record.get("nice_name")),
        "address": fields.text(record.get("address")),
        "latitude": latitude,
        "longitude": longitude,
        "archived": fields.flag(record.get("archived")),
        "time_zone": zone,
        "time_zone_source": source,
        "api_item": fields.as_json(record) if record else None,
        "collected_at": collected_at,
    }
    return pl.DataFrame([row], schema=schemas.SITES)


def fetch_site(client: AceClient, site: str) -> dict[str, Any] | None:
    """The site's record: `GET /sites/{site}`, else (a server without that route answers 404) its item of
    the `/sites` list; None when neither has it."""
    try:
        return client.site(site)
    except ApiError as exc:
        if exc.status != 404:
            raise
    return next((item for item in client.sites() if item.get("name") == site), None)


# A site's record rarely changes: it is asked for again once a day, not on every run.
SITE_FRESH_FOR = timedelta(days=1)


def land_site(
    client: AceClient, storage: Storage, site: str, overrides: Mapping[str, str], now: datetime
) -> pl.DataFrame:
    """Land the site's row: its record fetched anew when the landed one is older than SITE_FRESH_FOR (else
    the landed record), with the overrides applied; the file is replaced only when the row changed.
    Returns the row.

    Never fails for the API's sake. A fetched record keeps the landed record's fields it leaves out (a
    `/sites` list item may carry the name alone); when no record can be had (an error, or no route of the
    server has it) a warning says so and the landed record stays, as old as it was, so the next run asks
    again. A site without coordinates gets UTC, with a warning, unless overridden."""
    path = sites_path(site)
    landed = _landed(storage, path)
    previous = landed.row(0, named=True) if landed is not None and landed.height else None
    known = fields.mapping(previous["api_item"]) if previous is not None else None
    if previous is not None and _fresh(previous["collected_at"], now):
        record, collected_at = known, previous["collected_at"]
    else:
        fetched = _fetched(client, site)
        if fetched is not None:
            record, collected_at = {**(known or {}), **fetched}, now
        else:
            record, collected_at = known, previous["collected_at"] if previous is not None else now
    frame = site_frame(record, site=site, collected_at=collected_at, overrides=overrides)
    if landed is not None and landed.equals(frame):
        return landed
    if frame.item(0, "time_zone_source") == "default" and collected_at == now:
        log.warning(
            "site %r: the API gives no coordinates for it, so its local days are UTC days; name its time zone "
            "in a sites file (--sites-file, ACE_SITES_FILE)", site,
        )  # fmt: skip
    storage.write_parquet_atomic(path, frame)
    return frame


def record_due(storage: Storage, site: str, now: datetime) -> bool:
    """Whether `land_site` would ask for the site's record again: none landed, or older than SITE_FRESH_FOR."""
    landed = _landed(storage, sites_path(site))
    return landed is None or not landed.height or not _fresh(landed.item(0, "collected_at"), now)


def _fresh(collected_at: datetime, now: datetime) -> bool:
    return now - collected_at < SITE_FRESH_FOR


def _fetched(client: AceClient, site: str) -> dict[str, Any] | None:
    try:
        record = fetch_site(client, site)
    except (ApiError, InvalidBodyError, PaginationError) as exc:
        log.warning(
            "site %r: its record could not be fetched (%s); keeping the one landed before",
            site,
            one_line(exc),
        )
        return None
    if record is None:
        log.warning(
            "site %r: the API has no record of it, neither GET /sites/{site} nor the /sites list", site
        )
    return record


def _landed(storage: Storage, path: str) -> pl.DataFrame | None:
    if not storage.exists(path):
        return None
    try:
        return pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
    except Exception as exc:  # polars raises several types for a damaged file
        quarantine(storage, path, f"unreadable sites file: {one_line(exc)}")
        return None


@cache
def _zone_names() -> frozenset[str]:
    # `localtime` and `posixrules` are this machine's files, not names the warehouse (DuckDB's ICU) knows.
    return frozenset(zoneinfo.available_timezones() - {"localtime", "posixrules"})
