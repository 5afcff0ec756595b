"""The building's day, energy and weather: local-day aggregates under the site's time zone (DST days of 23
and 25 hours), partial days flagged, a constant meter's energy with a planted gap, a binary point's on-time,
degree days. Real CLI, simulator over loopback, real dbt builds."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

from ace_etl.simulator import Simulator, SimulatorConfig
from ace_etl.transform import build_warehouse
from tests.clihelp import ace_etl, expected_rows
from tests.landing_factory import samples, write_runs, write_timeseries, write_weather
from tests.support import warehouse_rows as rows

pytestmark = pytest.mark.timeout(600)

SITE = "hq"
NEW_YORK = ZoneInfo("America/New_York")
METER = "hq/meter-x/kw"  # reads 10 kW, always
FAN = "hq/ahu-1/fan_status"  # binary: on 12 hours a day
SUPPLY = "hq/ahu-1/sa_temp"
CFG = SimulatorConfig(
    sites=(SITE,),
    points=9,  # ahu-1's points, fan_status among them
    interval=300,
    configured_fraction=1.0,
    constant_points=(
        (METER, 10.0, "kW"),
        ("hq/meter-y/demand", 5.0, "kilowatts"),  # units spelled out
        ("hq/chiller-x/load", 2.0, "Tons"),  # of refrigeration: 3.5168528 kW each
        ("hq/meter-z/energy", 100.0, "kWh"),  # energy, not power: nothing to integrate
    ),
    # the meter is silent for two hours of the local day 2026-03-07 (05:00Z to 05:00Z next day)
    outages=((METER, "2026-03-07T15:00:00Z", "2026-03-07T17:00:00Z"),),
    api_key="building-day-key-0123456789",
    site_locations=((SITE, 40.7128, -74.0060),),  # New York: the site's zone comes from its coordinates
)


def env_of(sim: Simulator) -> dict[str, str]:
    return {"ACEIOT_API_URL": sim.url, "ACEIOT_API_KEY": CFG.api_key}


def local_bounds(day: date, zone: ZoneInfo = NEW_YORK) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


@pytest.fixture(scope="module")
def march(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three UTC windows around the spring-forward day, the site in New York: local days 03-06 (from 19:00)
    to 03-09 (to 20:00)."""
    data = tmp_path_factory.mktemp("march") / "data"
    with Simulator(CFG) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--start", "2026-03-07T00:00:00Z", "--end", "2026-03-10T00:00:00Z",
            "--data-dir", str(data), env=env_of(sim),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return data


def test_a_local_day_is_the_site_s_calendar_day_of_23_hours_when_clocks_go_forward(march: Path) -> None:
    daily = rows(
        march,
        f"select day, time_zone, day_start, day_end, sample_count from timeseries_daily "
        f"where point_name = '{SUPPLY}' order by day",
    )
    assert [r[0] for r in daily] == [date(2026, 3, d) for d in (6, 7, 8, 9)]
    assert {r[1] for r in daily} == {"America/New_York"}
    by_day = {r[0]: r[2:] for r in daily}
    start, end = local_bounds(date(2026, 3, 8))
    assert end - start == timedelta(hours=23)
    assert by_day[date(2026, 3, 8)] == (start, end, 23 * 12)  # every 5 minutes of 23 hours
    assert by_day[date(2026, 3, 7)][2] == 24 * 12
    # What the API served in the local day, counted independently of the warehouse.
    served = expected_rows(CFG, SITE, start.isoformat(), end.isoformat(), {SUPPLY})
    (aggregate,) = rows(
        march,
        f"select value_min, value_max, value_first, value_last from timeseries_daily "
        f"where point_name = '{SUPPLY}' and day = '2026-03-08'",
    )
    values = served["value"]
    assert aggregate == (values.min(), values.max(), values[0], values[-1])
    coverage = rows(
        march,
        f"select day, expected_samples, received_samples from timeseries_coverage "
        f"where point_name = '{SUPPLY}' order by day",
    )
    # The range edges count what was asked of them: 03-06 from 00:00Z (19:00 EST), 03-09 to 00:00Z (20:00 EDT).
    assert coverage == [
        (date(2026, 3, 6), 5 * 12, 5 * 12),
        (date(2026, 3, 7), 24 * 12, 24 * 12),
        (date(2026, 3, 8), 23 * 12, 23 * 12),
        (date(2026, 3, 9), 20 * 12, 20 * 12),
    ]


def test_the_edges_of_a_range_are_partial_days(march: Path) -> None:
    complete = "select day, bool_and(complete), bool_or(complete) from {} group by day order by day"
    expected = [
        (date(2026, 3, 6), False, False),
        (date(2026, 3, 7), True, True),
        (date(2026, 3, 8), True, True),
        (date(2026, 3, 9), False, False),
    ]
    assert rows(march, complete.format("timeseries_daily")) == expected
    assert rows(march, complete.format("timeseries_coverage")) == expected
    # Hours are whole UTC hours: every one of the three windows is committed.
    assert rows(
        march,
        "select count(*), bool_and(complete) from timeseries_hourly where point_name = 'hq/ahu-1/sa_temp'",
    ) == [(72, True)]


def test_a_constant_10_kw_meter_with_a_2_hour_gap_used_220_kwh_and_the_gap_shows(march: Path) -> None:
    (day,) = rows(
        march,
        f"select energy_kwh, covered_s, epoch(day_end - day_start), complete from timeseries_daily "
        f"where point_name = '{METER}' and day = '2026-03-07'",
    )
    assert day == (pytest.approx(220.0), 22 * 3600, 24 * 3600, True)
    # The hours before the gap hold 10 kWh each; the gap's hours have no row, not zero use.
    hours = dict(
        rows(
            march,
            f"select hour, energy_kwh from timeseries_hourly where point_name = '{METER}' "
            f"and hour >= '2026-03-07 13:00:00+00' and hour < '2026-03-07 19:00:00+00'",
        )
    )
    at = datetime(2026, 3, 7, tzinfo=UTC)
    assert hours == {at + timedelta(hours=h): pytest.approx(10.0) for h in (13, 14, 17, 18)}
    gaps = rows(
        march,
        f"select gap_start, gap_end, missing_samples, day from timeseries_gaps where point_name = '{METER}'",
    )
    assert gaps == [(at + timedelta(hours=14, minutes=55), at + timedelta(hours=17), 24, date(2026, 3, 7))]
    # Power in other units is converted to kW; a point whose units are no power has no energy.
    assert rows(
        march,
        "select point_name, energy_kwh from timeseries_daily where day = '2026-03-07' "
        "and point_name in ('hq/meter-y/demand', 'hq/chiller-x/load', 'hq/meter-z/energy') order by 1",
    ) == [
        ("hq/chiller-x/load", pytest.approx(2 * 3.5168528 * 24)),
        ("hq/meter-y/demand", pytest.approx(5.0 * 24)),
        ("hq/meter-z/energy", None),
    ]
    # A whole day of the meter: 10 kW x 23 hours on the spring-forward day.
    assert rows(
        march, f"select energy_kwh from timeseries_daily where point_name = '{METER}' and day = '2026-03-08'"
    ) == [(pytest.approx(230.0),)]


def test_a_binary_point_is_summarized_by_its_on_time_not_averaged(march: Path) -> None:
    start, end = local_bounds(date(2026, 3, 7))
    served = expected_rows(CFG, SITE, start.isoformat(), end.isoformat(), {FAN})
    on = served.filter(pl.col("value") != 0).height * CFG.interval
    assert 0 < on < 24 * 3600
    assert rows(
        march,
        f"select value_kind, value_avg, on_seconds, on_ratio from timeseries_daily "
        f"where point_name = '{FAN}' and day = '2026-03-07'",
    ) == [("binary", None, on, pytest.approx(on / (24 * 3600)))]
    assert rows(
        march, f"select value_kind, on_seconds from timeseries_daily where point_name = '{SUPPLY}' limit 1"
    ) == [("analog", None)]


def test_the_fall_back_day_has_25_hours_and_a_live_day_is_partial(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = ["run", "--site", SITE, "--data-dir", str(data)]
    with Simulator(CFG) as sim:
        first = ace_etl(
            *run, "--start", "2026-10-31T00:00:00Z", "--end", "2026-11-04T00:00:00Z",
            "--as-of", "2026-11-03T18:00:00Z", env=env_of(sim),
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        daily = "select day, sample_count, complete from timeseries_daily where point_name = 'hq/ahu-1/sa_temp' order by day"
        assert rows(data, daily) == [
            (date(2026, 10, 30), 4 * 12, False),
            (date(2026, 10, 31), 24 * 12, True),
            (date(2026, 11, 1), 25 * 12, True),  # the clocks go back: 25 hours
            (date(2026, 11, 2), 24 * 12, False),  # it ends in the window still open at as-of
            (date(2026, 11, 3), 13 * 12, False),  # today, live up to 18:00Z (13:00 EST)
        ]
        assert rows(
            data,
            "select received_samples, expected_samples from timeseries_coverage "
            "where point_name = 'hq/ahu-1/sa_temp' and day = '2026-11-01'",
        ) == [(300, 300)]
        # The day closes: a later run completes the open window, and the days it held become complete.
        later = ace_etl(
            *run, "--start", "2026-11-03T00:00:00Z", "--end", "2026-11-04T00:00:00Z",
            "--as-of", "2026-11-04T06:00:00Z", env=env_of(sim),
        )  # fmt: skip
        assert later.returncode == 0, later.stderr
    assert rows(data, daily)[3:] == [(date(2026, 11, 2), 24 * 12, True), (date(2026, 11, 3), 19 * 12, False)]


def test_a_time_zone_override_recomputes_every_local_day_of_the_site(march: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(march, data)
    total = rows(data, f"select sum(sample_count) from timeseries_daily where point_name = '{SUPPLY}'")
    # An override edited in the sites file: `transform` applies it without fetching anything.
    zones = tmp_path / "sites.toml"
    zones.write_text(f'[sites."{SITE}"]\ntime_zone = "Europe/Berlin"\n')
    result = ace_etl("transform", "--sites-file", str(zones), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert rows(data, "select time_zone, time_zone_source from sites") == [("Europe/Berlin", "override")]
    daily = rows(
        data,
        f"select day, time_zone, sample_count, complete from timeseries_daily where point_name = '{SUPPLY}' "
        f"order by day",
    )
    # 2026-03-07 00:00Z is 01:00 in Berlin, 2026-03-10 00:00Z is 01:00: every day cut at Berlin's midnight.
    assert daily == [
        (date(2026, 3, 7), "Europe/Berlin", 23 * 12, False),
        (date(2026, 3, 8), "Europe/Berlin", 24 * 12, True),
        (date(2026, 3, 9), "Europe/Berlin", 24 * 12, True),
        (date(2026, 3, 10), "Europe/Berlin", 1 * 12, False),
    ]
    assert (
        rows(data, f"select sum(sample_count) from timeseries_daily where point_name = '{SUPPLY}'") == total
    )
    assert rows(
        data,
        f"select day, received_samples from timeseries_coverage where point_name = '{SUPPLY}' order by day",
    ) == [(d, n) for d, _, n, _ in daily]
    # Recorded: the next build with the same file recomputes nothing.
    assert ace_etl("transform", "--sites-file", str(zones), "--data-dir", str(data)).returncode == 0
    assert rows(data, "select count(*) from internal.int_site_zone_changes") == [(0,)]


def test_degree_days_from_known_temperatures_in_either_unit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    at = datetime(2026, 1, 15, tzinfo=UTC)

    def weather(site: str, temperatures: list[float], metadata: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "site_name": site,
                "timestamp": [at + timedelta(hours=h) for h in range(len(temperatures))],
                "temperature": temperatures,
                "humidity": 50.0,
                "precipitation": 0.0,
                "wind_speed": 3.0,
                "conditions": "clear",
                "metadata": metadata,
                "collected_at": at + timedelta(days=2),
            }
        )

    # Fahrenheit (the API says so): a day of 12 h at 40 and 12 h at 50 degF, mean 45: 20 HDD, 0 CDD;
    # Celsius: 24 h at 21 degC: 3 CDD against 18 degC; a half day with no units (the var's degF): partial.
    write_weather(data, weather("f-site", [40.0] * 12 + [50.0] * 12, '{"temp": {"units": "degF"}}'), "f")
    write_weather(data, weather("c-site", [21.0] * 24, '{"temp": {"units": "°C"}}'), "c")
    write_weather(data, weather("u-site", [70.0] * 12, "{}"), "u")
    build_warehouse(data)
    assert rows(
        data,
        "select site_name, day, temperature_units, base_temperature, heating_degree_days, cooling_degree_days, "
        "hours_with_weather, complete from degree_days order by site_name",
    ) == [
        ("c-site", date(2026, 1, 15), "degC", 18.0, 0.0, pytest.approx(3.0), 24, True),
        ("f-site", date(2026, 1, 15), "degF", 65.0, pytest.approx(20.0), 0.0, 24, True),
        ("u-site", date(2026, 1, 15), "degF", 65.0, 0.0, pytest.approx(5.0), 12, False),
    ]
    assert rows(
        data,
        "select count(*), min(temperature_avg), max(temperature_avg) from weather_hourly where site_name = 'f-site'",
    ) == [(24, 40.0, 50.0)]


def test_a_site_the_api_has_no_record_of_keeps_utc_days(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = replace(CFG, outages=(), site_locations=(), site_records="none")
    with Simulator(cfg) as sim:
        result = ace_etl(
            "run", "--site", SITE, "--start", "2026-03-07T00:00:00Z", "--end", "2026-03-08T00:00:00Z",
            "--data-dir", str(data), env=env_of(sim),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert rows(
        data,
        f"select day, time_zone, sample_count, energy_kwh, complete from timeseries_daily where point_name = '{METER}'",
    ) == [(date(2026, 3, 7), "UTC", 288, pytest.approx(240.0), True)]


def commit_window(data: Path, run_id: str, start: datetime) -> None:
    """A run's `complete` row for the UTC day from `start` that lands no sample."""
    at = start + timedelta(days=2)
    write_runs(
        data,
        pl.DataFrame(
            {
                "run_id": run_id, "site_name": "site", "window_start": start, "window_end": start + timedelta(days=1),
                "status": "complete", "api_requests": 1, "retries": 0, "pages": 1, "bytes": 1, "records_fetched": 0,
                "records_kept": 0, "records_filtered": 0, "records_rejected": 0, "duration_s": 0.1, "error": None,
                "started_at": at, "finished_at": at,
            }
        ),
        run_id,
    )  # fmt: skip


def test_a_day_becomes_complete_when_a_run_commits_its_window_without_new_samples(tmp_path: Path) -> None:
    data = tmp_path / "data"
    day = datetime(2026, 3, 7, tzinfo=UTC)
    write_timeseries(data, samples("site", ["p1"], day, 24 * 60, collected_at=day + timedelta(days=1)), "d")
    build_warehouse(data)
    flags = "select bool_or(complete) from {}"
    assert [rows(data, flags.format(t)) for t in ("timeseries_hourly", "timeseries_daily")] == [
        [(False,)]
    ] * 2
    # A run commits the day's window and lands nothing new (the samples were there): no partition changes.
    commit_window(data, "r1", day)
    build_warehouse(data)
    assert rows(data, "select count(*) from internal.lake_changes") == [(0,)]
    assert [rows(data, flags.format(t)) for t in ("timeseries_hourly", "timeseries_daily")] == [[(True,)]] * 2
    assert rows(data, "select bool_and(complete) from timeseries_hourly") == [(True,)]


def test_promotion_looks_only_at_windows_committed_since_the_last_build(tmp_path: Path) -> None:
    """What keeps a build's cost from growing with history: rows of windows committed before the last build
    are not checked again. A row marked incomplete by hand inside such a window shows it: it stays so."""
    data = tmp_path / "data"
    day = datetime(2026, 3, 7, tzinfo=UTC)
    write_timeseries(
        data, samples("site", ["p1"], day, 2 * 24 * 60, collected_at=day + timedelta(days=2)), "d"
    )
    commit_window(data, "r1", day)
    build_warehouse(data)
    hour = day + timedelta(hours=5)
    with duckdb.connect(str(data / "warehouse.duckdb")) as con:
        con.execute("update timeseries_hourly set complete = false where hour = $hour", {"hour": hour})
    assert rows(data, "select count(*) from timeseries_hourly where not complete") == [(25,)]
    # The next day's window commits without new samples: only its hours are looked at, and become complete.
    commit_window(data, "r2", day + timedelta(days=1))
    build_warehouse(data)
    incomplete = "select hour from timeseries_hourly where not complete order by hour"
    assert rows(data, incomplete) == [(hour,)]
    build_warehouse(data)  # nothing new
    assert rows(data, incomplete) == [(hour,)]


NOTE = "weather history comes only from the hourly weather deployment"


@pytest.mark.parametrize("shape", ["real", "seed"])
def test_a_run_over_a_past_range_says_once_where_weather_history_comes_from(
    tmp_path: Path, shape: str
) -> None:
    cfg = replace(CFG, sites=("hq", "annex"), shape=shape, site_locations=(), constant_points=(), outages=())
    with Simulator(cfg) as sim:
        result = ace_etl(
            "run", "--site", "hq", "--site", "annex", "--start", "2026-03-07T00:00:00Z", "--end",
            "2026-03-10T00:00:00Z", "--data-dir", str(tmp_path / "data"), "--no-transform", env=env_of(sim),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The real API answers with current conditions: one line for the run (two sites, three windows each);
    # an API serving the range's series needs none.
    assert result.stderr.count(NOTE) == (1 if shape == "real" else 0), result.stderr
    if shape == "real":
        (line,) = [line for line in result.stderr.splitlines() if NOTE in line]
        assert "2 site(s) got one reading of now" in line


def test_a_backfill_s_hours_are_stored_by_time_so_a_day_s_build_skips_the_other_days(tmp_path: Path) -> None:
    """Statements scoped to the changed days bound the hour by constants, which DuckDB checks against each
    row group's min and max: that skips the other days only if a row group holds consecutive hours, not a
    few points' whole history."""
    data = tmp_path / "data"
    day = datetime(2026, 3, 1, tzinfo=UTC)
    points = [f"p{i:03d}" for i in range(180)]
    every = timedelta(hours=1)
    # 180 points x 30 days of hours: 129,600 hourly rows, over DuckDB's row group of 122,880
    write_timeseries(
        data, samples("site", points, day, 30 * 24, collected_at=day + timedelta(days=31), every=every), "d"
    )
    build_warehouse(data)
    groups = rows(
        data,
        "select min(hour), max(hour) from timeseries_hourly group by rowid // 122880 order by min(hour)",
    )
    assert len(groups) == 2
    assert groups[0][1] <= groups[1][0], groups


# A DST zone, zones half and three quarters of an hour off UTC, one whose clocks change by half an hour,
# one whose clocks change at midnight, and a site without a zone.
SAMPLE_ZONES = {
    "new-york": "America/New_York",
    "kolkata": "Asia/Kolkata",
    "kathmandu": "Asia/Kathmandu",
    "lord-howe": "Australia/Lord_Howe",
    "santiago": "America/Santiago",
    "nowhere": "UTC",
}


def instants_around(zone: ZoneInfo, first: date, days: int) -> list[datetime]:
    """A microsecond either side of every local midnight of `days` days from `first` and of every change of
    the zone's UTC offset in them, and each instant itself."""
    marks = [
        datetime.combine(first + timedelta(days=d), datetime.min.time(), zone).astimezone(UTC)
        for d in range(days + 1)
    ]
    hour = marks[0]
    while hour < marks[-1]:
        if hour.astimezone(zone).utcoffset() != (hour + timedelta(hours=1)).astimezone(zone).utcoffset():
            change = hour
            while change.astimezone(zone).utcoffset() == hour.astimezone(zone).utcoffset():
                change += timedelta(minutes=1)
            marks.append(change)
        hour += timedelta(hours=1)
    step = timedelta(microseconds=1)
    return sorted({at + d for at in marks for d in (-step, timedelta(0), step)})


def test_each_sample_counts_in_its_site_s_local_day_at_midnights_and_clock_changes(tmp_path: Path) -> None:
    """The samples' local days are computed by integer arithmetic on each zone's UTC offsets over the span a
    build reads (ICU only around offset changes): checked here against Python's zoneinfo, on a first build
    and on an incremental one."""
    data = tmp_path / "data"
    # New York's clocks go forward on 03-08; Santiago's go back at its midnight on 04-05 (so the instant
    # after the change is in the day before) and Lord Howe's by half an hour; Santiago's go forward on 09-06.
    batches = ((date(2026, 3, 6), "march"), (date(2026, 4, 2), "april"), (date(2026, 9, 4), "september"))

    def land(first: date, name: str) -> None:
        frames = [
            pl.DataFrame(
                {
                    "site_name": site,
                    "point_name": f"{site}/p",
                    "timestamp": instants_around(ZoneInfo(zone), first, 5),
                    "value": 1.0,
                    "collected_at": datetime(2027, 1, 1, tzinfo=UTC),
                },
                schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
            )
            for site, zone in SAMPLE_ZONES.items()
        ]
        write_timeseries(data, pl.concat(frames), name)

    expected: dict[tuple[str, date], list[datetime]] = {}
    for first, name in batches:
        land(first, name)
        build_warehouse(data, time_zones=SAMPLE_ZONES)
        for site, zone in SAMPLE_ZONES.items():
            for at in instants_around(ZoneInfo(zone), first, 5):
                expected.setdefault((site, at.astimezone(ZoneInfo(zone)).date()), []).append(at)
        assert rows(
            data,
            "select site_name, day, received_samples, first_sample_at, last_sample_at "
            "from internal.int_timeseries__point_days order by site_name, day",
        ) == [(site, day, len(ats), min(ats), max(ats)) for (site, day), ats in sorted(expected.items())]
