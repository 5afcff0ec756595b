"""Wide frames for analysts: one column per point, one row per instant of a regular grid in the site's time
zone (`ace-etl export --wide FILE`, or `wide_frame` from Python).

The value at a grid instant is the point's last sample at or before it, held at most one collect interval
(`points.collect_interval`; for a point the API never listed, its median step in the samples read, at most
`MAX_INFERRED_FILL`): a gap reads null, never a stale value. Binary and multi-state points
(`points.value_kind`) always give the state in force that way; `how="mean"` averages numeric points over
each grid period `[t, next t)` instead. Samples come from the lake's snapshot (one pinned version for the
whole export), point metadata and the time zone from the published warehouse (`points`, `sites`).

The grid steps in absolute time for seconds, minutes and hours (a DST day has 23 or 25 hours of rows, no
local instant twice or missing), and in local calendar days for `d` (a row per local midnight).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import polars as pl

from extract.errors import ConfigError

How = Literal["last", "mean"]
HOWS: tuple[How, ...] = ("last", "mean")
STATE_KINDS = ("binary", "multistate")
# A point without collect_interval is held its median step, but never longer: the reads' lookback.
MAX_INFERRED_FILL = timedelta(hours=1)
# The export reads and grids this much of the range at a time: memory stays bounded, progress is shown.
CHUNK = timedelta(days=7)
SUFFIXES = (".parquet", ".csv")
TIME_COLUMN = "timestamp"
# CSV spells instants as ISO 8601 with the offset, which says which of a repeated local hour is meant.
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"

_EVERY = re.compile(r"(\d+)\s*(s|m|min|h|d)")
_UNITS = {"s": "s", "m": "m", "min": "m", "h": "h", "d": "d"}
POINTS_SCHEMA = pl.Schema(
    {"point_name": pl.String(), "value_kind": pl.String(), "collect_interval": pl.Int64()}
)
SAMPLES_SCHEMA = pl.Schema(
    {"point_name": pl.String(), "timestamp": pl.Datetime("us", "UTC"), "value": pl.Float64()}
)


def parse_every(text: str, option: str = "every") -> str:
    """A grid step as Polars spells it (`30s`, `5m`, `1h`, `1d`); `min` is accepted for minutes."""
    found = _EVERY.fullmatch(text.strip().lower())
    if found is None or int(found.group(1)) == 0:
        raise ConfigError(
            f"{option} {text!r} is not a grid step: use a whole number and s, m, h or d, e.g. 5m"
        )
    return f"{int(found.group(1))}{_UNITS[found.group(2)]}"


def parse_how(text: str, option: str = "how") -> How:
    for how in HOWS:
        if text == how:
            return how
    raise ConfigError(f"{option} {text!r}: use last (the sample in force) or mean (of each grid step)")


def parse_instant(value: str | datetime | date, option: str) -> datetime:
    """An ISO date or date-time; without an offset it stays naive (the site's local time, see `localize`)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        try:
            return datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            raise ConfigError(
                f"{option} {value!r} is not an ISO date or time; use e.g. 2026-11-27, 2026-11-27T06:00 (site "
                "time) or 2026-11-27T06:00:00Z"
            ) from None


def localize(moment: datetime, time_zone: str) -> datetime:
    """`moment` in the site's time zone: a naive one is read as site-local time."""
    zone = ZoneInfo(time_zone)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def check_target(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"--wide {str(path)!r}: name a .parquet or .csv file (the suffix picks the format)")


def grid_instants(start: datetime, end: datetime, every: str, time_zone: str) -> pl.Series:
    """The grid's instants in `[start, end)`, from `start` by `every`, in `time_zone` (naive bounds are
    site-local)."""
    first, last = localize(start, time_zone), localize(end, time_zone)
    if last <= first:
        return pl.Series(TIME_COLUMN, [], dtype=pl.Datetime("us", time_zone))
    return pl.datetime_range(
        first,
        last,
        parse_every(every),
        closed="left",
        time_unit="us",
        time_zone=time_zone,
        eager=True,
    ).alias(TIME_COLUMN)


def wide_grid(
    samples: pl.DataFrame, points: pl.DataFrame, instants: pl.Series, every: str, how: How = "last"
) -> pl.DataFrame:
    """The wide frame of `samples` (`point_name`, `timestamp`, `value`) at `instants` (from
    `grid_instants`): a `timestamp` column (the instants, site-local), then one column per row of `points`
    (`point_name`, `value_kind`, `collect_interval` in seconds or null), in that order. Pure: no I/O.

    A column's value at t is the last sample at or before t no older than the point's fill limit; with
    `how="mean"`, an analog point's value at t is instead the mean of its samples in `[t, t + every)`."""
    step = parse_every(every)
    grid = pl.DataFrame({TIME_COLUMN: instants.dt.convert_time_zone("UTC")})
    by_point = {
        name: frame.select(TIME_COLUMN, "value").sort(TIME_COLUMN)
        for (name,), frame in samples.partition_by("point_name", as_dict=True).items()
    }
    columns = [instants.alias(TIME_COLUMN)]
    for name, kind, interval in points.select("point_name", "value_kind", "collect_interval").iter_rows():
        mine = by_point.get(name, pl.DataFrame(schema=SAMPLES_SCHEMA).select(TIME_COLUMN, "value"))
        if how == "mean" and kind not in STATE_KINDS:
            values = _period_means(instants, mine, step)
        else:
            values = grid.join_asof(
                mine, on=TIME_COLUMN, strategy="backward", tolerance=fill_limit(interval, mine)
            ).get_column("value")
        columns.append(values.alias(name))
    return pl.DataFrame(columns)


def fill_limit(interval: int | None, samples: pl.DataFrame) -> timedelta:
    """How long a sample holds: the collect interval, else the samples' median step (at most
    MAX_INFERRED_FILL; zero when there are too few samples to tell)."""
    if interval is not None:
        return timedelta(seconds=interval)
    steps = samples.get_column(TIME_COLUMN).diff().drop_nulls()
    median = steps.median()
    if not isinstance(median, timedelta):
        return timedelta(0)
    return min(median, MAX_INFERRED_FILL)


def _period_means(instants: pl.Series, samples: pl.DataFrame, step: str) -> pl.Series:
    # Periods end where the next one starts: in local calendar days for `d`, so offset in the site's zone.
    periods = pl.DataFrame(
        {
            "period": instants.dt.convert_time_zone("UTC"),
            "until": instants.dt.offset_by(step).dt.convert_time_zone("UTC"),
        }
    )
    means = (
        samples.join_asof(periods, left_on=TIME_COLUMN, right_on="period", strategy="backward")
        .filter(pl.col(TIME_COLUMN) < pl.col("until"))
        .group_by("period")
        .agg(pl.col("value").mean())
    )
    return periods.join(means, on="period", how="left", maintain_order="left").get_column("value")


@dataclass(frozen=True)
class Selection:
    """What the warehouse says about a site's selected points."""

    time_zone: str
    points: pl.DataFrame
    """`point_name`, `value_kind`, `collect_interval`, one row per selected point, sorted by name."""


def select_points(data_dir: Path | str, site: str, pattern: str) -> Selection:
    """The site's time zone and the points `pattern` (comma-separated names and globs, as `run --points`)
    selects, from the published warehouse's `sites` and `points`."""
    from ace_etl.transform import reading, warehouse_file
    from extract.api.points import PointSelector

    selector = PointSelector.from_list(pattern.split(","))
    warehouse = warehouse_file(data_dir)
    with reading(warehouse) as con:
        zone = con.sql("select time_zone from sites where site_name = ?", params=[site]).fetchall()
        if not zone:
            known = [name for (name,) in con.sql("select site_name from sites order by 1").fetchall()]
            raise ConfigError(
                f"no site {site!r} in the warehouse {warehouse} (it has {', '.join(map(repr, known)) or 'none'}): "
                "check --site, or land the site first with `ace-etl run --site ...`"
            )
        points = pl.from_arrow(
            con.sql(
                "select point_name, value_kind, collect_interval from points where site_name = ?",
                params=[site],
            ).to_arrow_table()
        )
    assert isinstance(points, pl.DataFrame)
    chosen = points.cast(dict(POINTS_SCHEMA)).filter(selector.expr()).sort("point_name")  # type: ignore[arg-type]
    if chosen.is_empty():
        raise ConfigError(
            f"--points {pattern!r} matches no point of site {site!r}: the warehouse's `points` table lists "
            "them (globs: * ? [abc], whole name, case-sensitive)"
        )
    return Selection(str(zone[0][0]), chosen)


def wide_frame(
    data_dir: Path | str,
    site: str,
    points: str,
    every: str,
    start: str | datetime | date,
    end: str | datetime | date,
    *,
    how: How = "last",
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """One column per point of `site` selected by `points` (names and globs, comma-separated), one row per
    `every` (e.g. `5m`) of `[start, end)` in the site's time zone; a start or end without offset is site-local.
    Read from the lake's snapshot and the published warehouse. `progress(done, total)` follows the parts.

    Use `.to_pandas()` on the result for pandas (`pip install 'ace-etl[pandas]'`)."""
    from extract.lake import tables as lake
    from extract.lake.landing import TIMESERIES
    from extract.run.datadir import open_storage

    parse_how(how)
    step = parse_every(every)
    first, last = parse_instant(start, "start"), parse_instant(end, "end")
    chosen = select_points(data_dir, site, points)
    zone = chosen.time_zone
    first, last = localize(first, zone), localize(last, zone)
    if last <= first:
        raise ConfigError(
            f"end {last.isoformat()} is not after start {first.isoformat()}: give an end later than the start"
        )
    instants = grid_instants(first, last, step, zone)
    storage = open_storage(data_dir)
    version = lake.version(storage, TIMESERIES)
    lookback = _lookback(chosen.points)
    names = chosen.points.get_column("point_name").to_list()
    parts = _parts(instants)
    frames = []
    for done, part in enumerate(parts, 1):
        # Holding looks back one fill limit; a mean's last period ends one step after its instant.
        part_utc = part.dt.convert_time_zone("UTC")
        since: datetime = part_utc.min() - lookback  # type: ignore[operator,assignment]
        until = part.dt.offset_by(step).dt.convert_time_zone("UTC").max() if how == "mean" else part_utc.max()
        assert isinstance(until, datetime)
        samples = lake.read(
            storage, TIMESERIES, site, since, until, columns=list(SAMPLES_SCHEMA), schema=SAMPLES_SCHEMA,
            points=names, at_version=version, inclusive_end=True,
        )  # fmt: skip
        frames.append(wide_grid(samples, chosen.points, part, step, how))
        if progress is not None:
            progress(done, len(parts))
    return pl.concat(frames)  # at least one part: the range is not empty


def _lookback(points: pl.DataFrame) -> timedelta:
    known = points.get_column("collect_interval").drop_nulls()
    longest = timedelta(seconds=int(known.max())) if known.len() else timedelta(0)  # type: ignore[arg-type]
    return max(longest, MAX_INFERRED_FILL) if known.len() < points.height else longest


def _parts(instants: pl.Series) -> list[pl.Series]:
    """The instants in consecutive runs of CHUNK."""
    if instants.is_empty():
        return []
    offsets = instants.dt.epoch("us") - instants.dt.epoch("us").min()
    part = offsets // (CHUNK // timedelta(microseconds=1))
    return [
        frame.get_column(TIME_COLUMN)
        for frame in pl.DataFrame([instants, part.alias("part")]).partition_by("part", maintain_order=True)
    ]


def write_wide(frame: pl.DataFrame, path: Path) -> None:
    """Write the frame as Parquet or CSV by the file's suffix, whole or not at all (a temporary file renamed
    over the target)."""
    check_target(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix.lower() == ".csv":
            frame.write_csv(partial, datetime_format=CSV_TIME_FORMAT)
        else:
            frame.write_parquet(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
