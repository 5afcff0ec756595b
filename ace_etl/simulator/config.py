"""Configuration of one simulator instance: what it serves and which faults it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, get_args

from ace_etl.simulator.faults import Faults

Shape = Literal["real", "seed"]
Metadata = Literal["nested", "text", "sparse"]
SiteRecords = Literal["single", "list", "none"]
TimeFormat = Literal["z", "offset", "naive", "millis", "mixed"]
SHAPES: tuple[Shape, ...] = get_args(Shape)
METADATA: tuple[Metadata, ...] = get_args(Metadata)
SITE_RECORDS: tuple[SiteRecords, ...] = get_args(SiteRecords)
TIME_FORMATS: tuple[TimeFormat, ...] = get_args(TimeFormat)
Outage = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator serves.

    `points` per site; `interval=None` mixes 60, 300 and 900 s points, an int gives every point that
    interval. `shape` "real" answers as the live API, "seed" in the design-document shape. `time_format`
    spells sample times: "z" (`...Z`), "offset" (`-05:00` local time), "naive" (no offset, meaning UTC),
    "millis" (`...00.000Z`) or "mixed" (a deterministic per-sample mix, `+00:00` included); all name the
    same instant. `outages` are (point name, start, end): the point serves no samples in `[start, end)`,
    an ISO instant or None for unbounded, so a point with both None never has data yet stays in
    configured_points. `request_log` appends one JSON line per request. `port=0` picks a free port.
    `upload_horizon` (ISO instant) models gateways that upload late: samples at or after it are not served
    yet; `Simulator.set_upload_horizon` (or `PUT /api/_simulator/upload_horizon?at=ISO`) moves it.
    `extra_points` (collect_enabled) and `extra_disabled_points` are served by every site beside its
    generated points, named exactly as given (spaces, `[`, `*` and all), analog, listed in configured_points.
    `excursions` (a UTC day, YYYY-MM-DD) plants known excursions and a drift from that day on
    (`ace_etl.simulator.plants`; `planted_events` lists them).
    `constant_points` (name, value, units) are extra points that always read `value`, in `units`: a meter
    whose energy a test knows (10 kW over 22 hours is 220 kWh).
    `site_locations` (site, latitude, longitude) place sites elsewhere than their default place
    (`ace_etl.simulator.metadata.PLACES`); `metadata` and `site_records` vary how points and sites are
    described (see `ace_etl.simulator.metadata`).
    """

    sites: tuple[str, ...] = ("demo-site",)
    points: int = 50
    interval: int | None = None
    shape: Shape = "real"
    api_key: str = "demo"
    configured_fraction: float = 0.8
    time_format: TimeFormat = "z"
    faults: Faults = field(default_factory=Faults)
    outages: tuple[Outage, ...] = ()
    request_log: str | Path | None = None
    upload_horizon: str | None = None
    extra_points: tuple[str, ...] = ()
    extra_disabled_points: tuple[str, ...] = ()
    excursions: str | None = None
    constant_points: tuple[tuple[str, float, str], ...] = ()
    site_locations: tuple[tuple[str, float, float], ...] = ()
    metadata: Metadata = "nested"
    site_records: SiteRecords = "single"
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not self.sites or any(not site for site in self.sites):
            raise ValueError("sites must name at least one site, and no name may be empty")
        if len(set(self.sites)) != len(self.sites):
            raise ValueError("site names must be unique")
        if self.points < 1:
            raise ValueError("points must be at least 1")
        if self.interval is not None and self.interval < 1:
            raise ValueError("interval must be a positive number of seconds (or None to mix intervals)")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.time_format not in TIME_FORMATS:
            raise ValueError(f"time_format must be one of {', '.join(TIME_FORMATS)}")
        if not 0.0 <= self.configured_fraction <= 1.0:
            raise ValueError("configured_fraction must be between 0 and 1")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        for outage in self.outages:
            _check_outage(outage)
        extra = (
            *self.extra_points,
            *self.extra_disabled_points,
            *(name for name, _, _ in self.constant_points),
        )
        if any(not name for name in extra) or len(set(extra)) != len(extra):
            raise ValueError("extra point names must be unique and not empty")
        if self.excursions is not None:
            try:
                date.fromisoformat(self.excursions)
            except (TypeError, ValueError):
                raise ValueError(f"excursions {self.excursions!r} is not a day (YYYY-MM-DD)") from None
        for site, latitude, longitude in self.site_locations:
            if site not in self.sites:
                raise ValueError(f"site location of {site!r}: not a served site")
            if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
                raise ValueError(
                    f"site location of {site!r}: latitude must be in [-90, 90], longitude in [-180, 180]"
                )
        if self.metadata not in METADATA:
            raise ValueError(f"metadata must be one of {', '.join(METADATA)}")
        if self.site_records not in SITE_RECORDS:
            raise ValueError(f"site_records must be one of {', '.join(SITE_RECORDS)}")
        if self.upload_horizon is not None:
            try:
                utc_instant(self.upload_horizon)
            except (TypeError, ValueError):
                raise ValueError(
                    f"upload_horizon {self.upload_horizon!r} is not an ISO 8601 instant"
                ) from None

    @property
    def extra(self) -> tuple[tuple[str, bool, tuple[float, str] | None], ...]:
        """The extra points as the catalogue takes them: (name, collect_enabled, (constant value, units) or
        None for a varying reading)."""
        return (
            *((n, True, None) for n in self.extra_points),
            *((n, False, None) for n in self.extra_disabled_points),
            *((n, True, (value, units)) for n, value, units in self.constant_points),
        )


def utc_instant(instant: str | datetime) -> datetime:
    """An ISO 8601 instant (Z, offset, naive = UTC, fractions allowed) as an aware datetime."""
    moment = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_outage(outage: Outage) -> None:
    name, start, end = outage
    if not name:
        raise ValueError("an outage must name its point")
    bounds = []
    for bound in (start, end):
        if bound is None:
            continue
        try:
            bounds.append(utc_instant(bound))
        except (TypeError, ValueError):
            raise ValueError(f"outage of {name}: {bound!r} is not an ISO 8601 instant") from None
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        raise ValueError(f"outage of {name}: start {start} must be before end {end}")
