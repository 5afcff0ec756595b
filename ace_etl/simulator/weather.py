"""Simulated weather: smooth daily, seasonal and multi-day swings per site, served in both API shapes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import polars as pl

from ace_etl.simulator.catalogue import DAY_S, US, stable_hash
from ace_etl.simulator.config import SimulatorConfig
from ace_etl.simulator.data import to_epoch_us

WEATHER_UNITS = {
    "temp": "degF",
    "feels_like": "degF",
    "pressure": "hPa",
    "humidity": "%",
    "dew_point": "degF",
    "clouds": "%",
    "wind_speed": "mph",
    "wind_deg": "deg",
    "wet_bulb": "degF",
}


def _weather(site: str, seconds: list[int]) -> pl.DataFrame:
    """Weather at the given instants: smooth daily, seasonal and multi-day swings, phased per site."""
    phase = stable_hash(site, "weather") % DAY_S
    t = pl.col("t") + phase
    tau = 2 * math.pi

    def swing(period_days: float, shift: float = 0.0) -> pl.Expr:
        return (t * (tau / (period_days * DAY_S)) + shift).sin()

    temp = 57 + 20 * ((t / DAY_S - 200) * (tau / 365.25)).cos() + 9 * swing(1, -tau * 9 / 24) + 4 * swing(4.3)
    humidity = (62 - 18 * swing(1, -tau * 9 / 24) + 15 * swing(3.1, 1.0)).clip(15, 100)
    celsius = (pl.col("temp") - 32) * 5 / 9
    rh = pl.col("humidity")
    gamma = (rh / 100).log() + 17.625 * celsius / (243.04 + celsius)
    dew_c = 243.04 * gamma / (17.625 - gamma)
    # Stull (2011): wet-bulb temperature from temperature and relative humidity at sea level.
    wet_c = (
        celsius * (0.151977 * (rh + 8.313659).sqrt()).arctan()
        + (celsius + rh).arctan()
        - (rh - 1.676331).arctan()
        + 0.00391838 * rh.pow(1.5) * (0.023101 * rh).arctan()
        - 4.686035
    )
    wind = pl.col("wind_speed")
    return (
        pl.DataFrame({"t": seconds}, schema={"t": pl.Int64})
        .with_columns(
            temp=temp.round(1),
            humidity=humidity.round(0),
            pressure=(1013 + 8 * swing(3.7, 2.0)).round(1),
            clouds=(50 + 50 * swing(2.9, 3.0)).round(0),
            wind_speed=(8 + 6 * swing(1.7, 4.0)).abs().round(1),
            wind_deg=(180 + 170 * swing(2.3, 5.0)).round(0),
        )
        .with_columns(
            dew_point=(dew_c * 9 / 5 + 32).round(1),
            wet_bulb=(wet_c * 9 / 5 + 32).round(1),
            feels_like=pl.when(pl.col("temp") < 50)
            .then(pl.col("temp") - 0.7 * wind)
            .when(pl.col("temp") > 80)
            .then(pl.col("temp") + 0.1 * (rh - 40))
            .otherwise(pl.col("temp"))
            .round(1),
            precipitation=pl.when((pl.col("clouds") > 85) & (rh > 70))
            .then((pl.col("clouds") - 85) / 100)
            .otherwise(0.0)
            .round(2),
        )
        .with_columns(
            conditions=pl.when(pl.col("precipitation") > 0)
            .then(pl.lit("rain"))
            .when(pl.col("clouds") >= 70)
            .then(pl.lit("cloudy"))
            .when(pl.col("clouds") >= 25)
            .then(pl.lit("partly cloudy"))
            .otherwise(pl.lit("clear")),
            time=(pl.col("t") * US).cast(pl.Datetime("us", "UTC")),
        )
    )


def _iso_z(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current_weather(site: str, now: datetime | float) -> dict[str, dict[str, object]]:
    """The real API's current conditions at `now` floored to the minute."""
    epoch = now if isinstance(now, float | int) else to_epoch_us(now) / US
    minute = int(epoch // 60 * 60)
    row = _weather(site, [minute]).row(0, named=True)
    return {
        field: {
            "name": field,
            "value": row[field],
            "time": _iso_z(minute),
            "units": units,
            "source": "openweathermap",
        }
        for field, units in WEATHER_UNITS.items()
    }


def served_weather(
    cfg: SimulatorConfig, site: str, start: str | datetime, end: str | datetime
) -> pl.DataFrame:
    """The design-document shape's hourly weather rows for `[start, end)`."""
    if site not in cfg.sites:
        raise ValueError(f"unknown site: {site!r}")
    hour_us = 3600 * US
    first = -(-to_epoch_us(start) // hour_us)
    last = -(-to_epoch_us(end) // hour_us)
    hours = [hour * 3600 for hour in range(first, max(first, last))]
    return _weather(site, hours).select(
        timestamp="time",
        temperature="temp",
        humidity="humidity",
        precipitation="precipitation",
        wind_speed="wind_speed",
        conditions="conditions",
    )


def weather_rows(frame: pl.DataFrame) -> list[dict[str, object]]:
    """served_weather rows as JSON-ready dicts (timestamps as ISO with Z)."""
    return [
        {**row, "timestamp": row["timestamp"].strftime("%Y-%m-%dT%H:%M:%SZ")}
        for row in frame.iter_rows(named=True)
    ]
