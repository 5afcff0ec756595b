"""Planted events: known excursions and a drift in the simulated telemetry (`SimulatorConfig.excursions`,
`ace-etl simulator --excursions`), so tests can check that each is found and nothing else is.

The plan is fixed, relative to 00:00 UTC of the planting day D; an event whose point the site does not
serve (too few `points`) is not planted:
- vav-1 zone temperature 17 degF higher on D from 10:00 to 12:00: above the 85 degF zone limit for 2 h;
- chiller-1 chilled-water supply 10 degF lower from D+1 23:00 to D+2 01:00: below 38 degF, across midnight;
- boiler-1 hot-water supply 55 degF higher on D+2 from 14:00 to 15:00: above 200 degF for 1 h;
- vav-2 zone temperature drifting up 5 degF over D+1, held until D+3 00:00: within every limit, a departure
  from its usual hour-of-week values (timeseries_anomalies).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal

import polars as pl

from ace_etl.simulator.catalogue import site_points
from ace_etl.simulator.config import SimulatorConfig

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class PlantedEvent:
    """One planted event of one site's point: served values are the clean ones plus `offset` (reached
    linearly over `ramp` from `start`, then held) in `[start, end)`."""

    point_name: str
    kind: Literal["excursion", "drift"]
    start: datetime
    end: datetime
    offset: float
    ramp: timedelta = timedelta(0)
    limit_kind: Literal["high", "low"] | None = None
    """Which limit an excursion crosses (None for a drift)."""


# (device/point, kind, start and end after D 00:00, offset, ramp, limit crossed)
_PLAN = (
    ("vav-1/zone_temp", "excursion", 10 * HOUR, 12 * HOUR, 17.0, timedelta(0), "high"),
    ("chiller-1/chws_temp", "excursion", DAY + 23 * HOUR, 2 * DAY + HOUR, -10.0, timedelta(0), "low"),
    ("boiler-1/hws_temp", "excursion", 2 * DAY + 14 * HOUR, 2 * DAY + 15 * HOUR, 55.0, timedelta(0), "high"),
    ("vav-2/zone_temp", "drift", DAY, 3 * DAY, 5.0, DAY, None),
)


def planted_events(cfg: SimulatorConfig, site: str) -> list[PlantedEvent]:
    """The events the simulator plants in `site` (none unless `cfg.excursions`), in the plan's order."""
    return list(site_events(site, cfg.excursions, cfg.points)) if cfg.excursions else []


@lru_cache(maxsize=32)
def site_events(site: str, day: str, n_points: int) -> tuple[PlantedEvent, ...]:
    """The events planted in `site` from `day` (YYYY-MM-DD, UTC), for the points a site of `n_points`
    serves."""
    served = {spec.name for spec in site_points(site, n_points)}
    origin = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return tuple(
        PlantedEvent(f"{site}/{point}", kind, origin + start, origin + end, offset, ramp, limit)  # type: ignore[arg-type]
        for point, kind, start, end, offset, ramp, limit in _PLAN
        if f"{site}/{point}" in served
    )


def plant_columns(events: Iterable[PlantedEvent]) -> pl.DataFrame:
    """The events as columns joined to the point table: `plant_lo`/`plant_hi` (epoch seconds, `[lo, hi)`),
    `plant_offset`, `plant_ramp_s`."""
    return pl.DataFrame(
        [
            (e.point_name, int(e.start.timestamp()), int(e.end.timestamp()), e.offset, e.ramp.total_seconds())
            for e in events
        ],
        schema={
            "name": pl.String,
            "plant_lo": pl.Int64,
            "plant_hi": pl.Int64,
            "plant_offset": pl.Float64,
            "plant_ramp_s": pl.Float64,
        },
        orient="row",
    )


def planted_offset() -> pl.Expr:
    """What a planted event adds to the clean value of a sample at `t` (0 outside events)."""
    t = pl.col("t")
    inside = (t >= pl.col("plant_lo")) & (t < pl.col("plant_hi"))
    share = pl.when(pl.col("plant_ramp_s") > 0).then(
        ((t - pl.col("plant_lo")) / pl.col("plant_ramp_s")).clip(upper_bound=1.0)
    )
    return pl.when(inside).then(pl.col("plant_offset") * share.otherwise(1.0)).otherwise(0.0)
