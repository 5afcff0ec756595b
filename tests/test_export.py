"""Wide frames: the pure grid (fill limit, binary points, means, DST days, empty ranges) on hand-made samples.
`tests/test_export_cli.py` runs the command end to end on a simulator landing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from ace_etl.export import (
    grid_instants,
    localize,
    parse_every,
    parse_instant,
    wide_grid,
)
from extract.errors import ConfigError

NEW_YORK = "America/New_York"
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def samples(point: str, *pairs: tuple[float, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "point_name": [point] * len(pairs),
            "timestamp": [at(m) for m, _ in pairs],
            "value": [v for _, v in pairs],
        },
        schema={"point_name": pl.String(), "timestamp": pl.Datetime("us", "UTC"), "value": pl.Float64()},
    )


def points(*rows: tuple[str, str, int | None]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"point_name": pl.String(), "value_kind": pl.String(), "collect_interval": pl.Int64()},
        orient="row",
    )


def test_a_sample_holds_one_collect_interval_and_a_gap_reads_null() -> None:
    data = samples("t", (0, 1.0), (5, 2.0), (30, 3.0))
    grid = wide_grid(data, points(("t", "analog", 300)), grid_instants(at(0), at(40), "1m", "UTC"), "1m")
    held = [1.0] * 5 + [2.0] * 6 + [None] * 19 + [3.0] * 6 + [None] * 4
    assert grid.get_column("t").to_list() == held
    assert grid.get_column("timestamp").to_list() == [at(m) for m in range(40)]


def test_a_point_without_collect_interval_holds_its_median_step_at_most_an_hour() -> None:
    data = pl.concat([
        samples("listed-never", (0, 1.0), (10, 2.0), (20, 3.0), (45, 4.0)),
        samples("sparse", *((120.0 * k, float(k)) for k in range(4))),
    ])  # fmt: skip
    chosen = points(("listed-never", "analog", None), ("sparse", "analog", None))
    grid = wide_grid(data, chosen, grid_instants(at(0), at(360), "5m", "UTC"), "5m")
    assert (
        grid.get_column("listed-never").to_list()[:12]
        == [1.0] * 2 + [2.0] * 2 + [3.0] * 3 + [None] * 2 + [4.0] * 3
    )
    sparse = grid.get_column("sparse").to_list()
    assert sparse[:24] == [0.0] * 13 + [None] * 11  # held 60 min, not its 120-min step
    assert sparse[24:37] == [1.0] * 13


def test_binary_points_give_the_state_in_force_never_a_mean() -> None:
    data = pl.concat([
        samples("fan", (0, 1.0), (2, 0.0), (4, 1.0), (6, 0.0)),
        samples("temp", (0, 10.0), (2, 20.0), (4, 30.0), (6, 40.0)),
        samples("mode", (0, 3.0), (5, 2.0)),
    ])  # fmt: skip
    chosen = points(("fan", "binary", 60), ("temp", "analog", 60), ("mode", "multistate", 300))
    instants = grid_instants(at(0), at(10), "5m", "UTC")
    last = wide_grid(data, chosen, instants, "5m")
    mean = wide_grid(data, chosen, instants, "5m", how="mean")
    assert last.columns == ["timestamp", "fan", "temp", "mode"]
    assert last.get_column("fan").to_list() == [1.0, 1.0]  # 00:04's "on", held one minute to 00:05
    assert mean.get_column("fan").to_list() == [1.0, 1.0]
    assert mean.get_column("mode").to_list() == [3.0, 2.0]
    assert last.get_column("temp").to_list() == [10.0, 30.0]
    assert mean.get_column("temp").to_list() == [20.0, 40.0]  # [00:00, 00:05) and [00:05, 00:10)


@pytest.mark.parametrize(("day", "hours"), [("2026-03-08", 23), ("2026-11-01", 25), ("2026-06-01", 24)])
def test_a_site_local_day_has_its_own_hours_of_rows_each_instant_once(day: str, hours: int) -> None:
    start = parse_instant(day, "--start")
    instants = grid_instants(start, start + timedelta(days=1), "5m", NEW_YORK)
    assert instants.dtype == pl.Datetime("us", NEW_YORK)
    assert instants.len() == hours * 12
    utc = instants.dt.convert_time_zone("UTC")
    assert utc.diff().drop_nulls().unique().to_list() == [timedelta(minutes=5)]
    assert instants[0] == localize(start, NEW_YORK)
    # The day's data, one sample per 5 minutes in UTC, lands each sample on its own row.
    data = pl.DataFrame(
        {"point_name": "p", "timestamp": utc, "value": pl.int_range(utc.len(), eager=True) * 1.0}
    )
    grid = wide_grid(data, points(("p", "analog", 300)), instants, "5m")
    assert grid.get_column("p").to_list() == [float(i) for i in range(hours * 12)]


def test_a_daily_grid_is_local_midnights_and_means_local_days() -> None:
    instants = grid_instants(datetime(2026, 3, 7), datetime(2026, 3, 10), "1d", NEW_YORK)
    zone = ZoneInfo(NEW_YORK)
    assert instants.to_list() == [datetime(2026, 3, d, tzinfo=zone) for d in (7, 8, 9)]
    # 03-08 is 23 hours long: a sample at 23:30 local belongs to it, not to 03-09.
    late = datetime(2026, 3, 8, 23, 30, tzinfo=zone).astimezone(UTC)
    data = pl.DataFrame(
        {"point_name": "p", "timestamp": [late, late + timedelta(hours=1)], "value": [1.0, 3.0]},
        schema={"point_name": pl.String(), "timestamp": pl.Datetime("us", "UTC"), "value": pl.Float64()},
    )
    mean = wide_grid(data, points(("p", "analog", 300)), instants, "1d", how="mean")
    assert mean.get_column("p").to_list() == [None, 1.0, 3.0]


def test_an_empty_range_gives_the_columns_and_no_rows() -> None:
    chosen = points(("a", "analog", 60), ("b", "binary", 60))
    instants = grid_instants(at(10), at(10), "5m", NEW_YORK)
    grid = wide_grid(samples("a", (0, 1.0)), chosen, instants, "5m")
    assert grid.schema == pl.Schema(
        {"timestamp": pl.Datetime("us", NEW_YORK), "a": pl.Float64(), "b": pl.Float64()}
    )
    assert grid.is_empty()


def test_the_grid_starts_at_the_start_in_site_time() -> None:
    instants = grid_instants(
        parse_instant("2026-01-05T08:03", "--start"),
        parse_instant("2026-01-05T13:20:00Z", "--end"),
        "5m",
        NEW_YORK,
    )
    assert instants[0] == datetime(2026, 1, 5, 8, 3, tzinfo=ZoneInfo(NEW_YORK))
    assert instants[-1] == datetime(2026, 1, 5, 13, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "step"), [("5m", "5m"), ("30s", "30s"), ("15min", "15m"), (" 1H ", "1h"), ("1d", "1d")]
)
def test_grid_steps(text: str, step: str) -> None:
    assert parse_every(text) == step


@pytest.mark.parametrize("text", ["", "5", "0m", "5x", "1mo", "-5m", "1.5h", "5m10s"])
def test_a_bad_step_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^--every .* is not a grid step: use a whole number and s, m, h or d"
    ):
        parse_every(text, "--every")


def test_wide_frames_and_duckdb_results_convert_to_pandas() -> None:
    """The `pandas` extra (in `dev`): `.to_pandas()` keeps the site-local instants, DuckDB's `.df()` works."""
    import duckdb

    instants = grid_instants(datetime(2026, 11, 1, 1), datetime(2026, 11, 1, 3), "30m", NEW_YORK)
    data = pl.DataFrame({"point_name": "p", "timestamp": instants.dt.convert_time_zone("UTC"), "value": 1.0})
    pandas_frame = wide_grid(data, points(("p", "binary", 60)), instants, "30m").to_pandas()
    assert str(pandas_frame["timestamp"].dtype) == f"datetime64[us, {NEW_YORK}]"
    assert (
        len(pandas_frame) == 6 and pandas_frame["timestamp"].is_unique
    )  # 01:00-02:00 twice, then 02:00-03:00
    assert duckdb.sql("select 42 as answer").df()["answer"].tolist() == [42]
