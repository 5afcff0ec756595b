"""Excursions and anomalies end to end: the simulator plants known excursions and a drift after four clean
weeks (`SimulatorConfig.excursions`), the real extractor lands them over loopback HTTP, real `dbt build`s
find them. Every planted event is found (start and end within one sample interval, peak exact) and nothing
else, on 46 points over five weeks; a second run adding a day completes the excursion across midnight and
finds the new one without duplicating the old; a changed limits file recomputes the points it touches.
The limits file's rules and errors are checked on their own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ace_etl.limits import canonical_units, load_rules, resolve
from ace_etl.simulator import PlantedEvent, Simulator, SimulatorConfig, planted_events, served_samples
from extract.api.client import AceClient
from extract.api.retry import RetryPolicy
from extract.errors import ConfigError
from extract.lake.storage import LocalStorage
from extract.run.job import Job
from extract.run.pipeline import run_extract
from extract.windows import Window
from tests.clihelp import ace_etl_script
from tests.support import Stage, build

pytestmark = pytest.mark.timeout(600)

SITE = "demo-site"
INTERVAL = 900
DAY = datetime(2024, 3, 4, tzinfo=UTC)  # the planting day D: four clean weeks before it
CFG = SimulatorConfig(
    sites=(SITE,), points=50, interval=INTERVAL, configured_fraction=1.0, excursions=DAY.date().isoformat()
)
FAST_RETRIES = RetryPolicy(max_attempts=6, deadline=30, backoff_initial=0.01, backoff_max=0.05, jitter=0.01)
STEP = timedelta(seconds=INTERVAL)
EXCURSION_COLUMNS = "point_name, excursion_start, excursion_end, closed, limit_kind, limit_value, peak_value, rule, created_at"


def extract(data_dir: Path, start: datetime, end: datetime) -> None:
    with (
        Simulator(CFG) as sim,
        AceClient(sim.url, CFG.api_key, retry_policy=FAST_RETRIES, requests_per_minute=None) as client,
    ):
        job = Job(sites=CFG.sites, span=Window(start, end), data_dir=data_dir, window_hours=24 * 7)
        run_extract(client, LocalStorage(data_dir), job).raise_if_failed()


@dataclass(frozen=True)
class Builds:
    first: Stage
    """Four clean weeks and the planting days D and D+1."""
    second: Stage
    """The same and D+2."""


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    data_dir = tmp_path_factory.mktemp("excursions") / "data"
    extract(data_dir, DAY - timedelta(weeks=4), DAY + timedelta(days=2))
    first = build(data_dir, "first")
    extract(data_dir, DAY + timedelta(days=2), DAY + timedelta(days=3))
    return Builds(first, build(data_dir, "second"))


def excursions(stage: Stage) -> dict[str, list[tuple]]:
    by_point: dict[str, list[tuple]] = {}
    for row in stage.rows(f"select {EXCURSION_COLUMNS} from timeseries_excursions order by all"):
        by_point.setdefault(row[0], []).append(row[1:])
    return by_point


def served_peak(event: PlantedEvent, end: datetime) -> float:
    values = served_samples(CFG, SITE, event.start, end).filter(pl.col("name") == event.point_name)["value"]
    return float(values.max() if event.limit_kind == "high" else values.min())  # type: ignore[arg-type]


PLANTED = [e for e in planted_events(CFG, SITE) if e.kind == "excursion"]
(DRIFT,) = [e for e in planted_events(CFG, SITE) if e.kind == "drift"]


def test_the_simulator_plants_each_event_exactly_in_its_range() -> None:
    assert [(e.point_name.split("/", 1)[1], e.kind) for e in planted_events(CFG, SITE)] == [
        ("vav-1/zone_temp", "excursion"),
        ("chiller-1/chws_temp", "excursion"),
        ("boiler-1/hws_temp", "excursion"),
        ("vav-2/zone_temp", "drift"),
    ]
    clean = SimulatorConfig(sites=(SITE,), points=50, interval=INTERVAL, configured_fraction=1.0)
    start, end = DAY - timedelta(days=1), DAY + timedelta(days=4)
    planted, plain = (served_samples(c, SITE, start, end) for c in (CFG, clean))
    changed = (
        planted.join(plain, on=["name", "time"], suffix="_clean")
        .filter(pl.col("value") != pl.col("value_clean"))
        .group_by("name")
        .agg(first=pl.col("time").min(), last=pl.col("time").max())
    )
    # a drift's first sample is at its start, where it has not moved yet
    expected = {
        e.point_name: (e.start + (STEP if e.ramp else timedelta(0)), e.end - STEP)
        for e in planted_events(CFG, SITE)
    }
    assert {name: (first, last) for name, first, last in changed.iter_rows()} == expected
    assert planted_events(clean, SITE) == []
    assert (
        planted_events(SimulatorConfig(sites=(SITE,), points=9, excursions="2024-03-04"), SITE) == []
    )  # one AHU


def test_every_planted_excursion_is_found_and_nothing_else(builds: Builds) -> None:
    found = excursions(builds.second)
    assert sorted(found) == sorted(e.point_name for e in PLANTED)
    for event in PLANTED:
        ((start, end, closed, kind, limit, peak, _, _),) = found[event.point_name]
        assert abs(start - event.start) < STEP and abs(end - event.end) < STEP, (event, start, end)
        assert closed and kind == event.limit_kind
        assert peak == served_peak(event, event.end)
        assert (kind == "high" and peak > limit) or (kind == "low" and peak < limit)


def test_an_excursion_across_midnight_is_one_row_once_the_next_day_lands(builds: Builds) -> None:
    across = next(e for e in PLANTED if e.start.date() != (e.end - STEP).date())
    last_landed = DAY + timedelta(days=2)
    ((start, end, closed, _, _, peak, _, _),) = excursions(builds.first)[across.point_name]
    # the data stopped at midnight: the excursion may go on
    assert (start, end, closed) == (across.start, last_landed - STEP, False)
    assert peak == served_peak(across, last_landed)
    ((start, end, closed, _, _, peak, _, _),) = excursions(builds.second)[across.point_name]
    assert (start, end, closed, peak) == (across.start, across.end, True, served_peak(across, across.end))


def test_a_second_run_adding_a_day_finds_the_new_excursion_and_keeps_the_old(builds: Builds) -> None:
    first, second = excursions(builds.first), excursions(builds.second)
    new = [e.point_name for e in PLANTED if e.start >= DAY + timedelta(days=2)]
    assert new and not set(new) & set(first)
    old = [e.point_name for e in PLANTED if e.end <= DAY + timedelta(days=2)]
    # the old excursion is neither recomputed (same build's created_at) nor doubled
    assert old and all(second[point] == first[point] for point in old)


def test_the_drift_is_the_only_anomaly_and_clean_weeks_flag_nothing(builds: Builds) -> None:
    for stage, data_end in ((builds.first, DAY + timedelta(days=2)), (builds.second, DRIFT.end)):
        ((point, start, end, direction, baseline, peak),) = stage.rows(
            "select point_name, anomaly_start, anomaly_end, direction, baseline, peak_value "
            "from timeseries_anomalies"
        )
        assert (point, direction, end) == (DRIFT.point_name, "above", data_end)
        # found within the first hours of the drift, by then a fraction of a degree
        assert DRIFT.start <= start <= DRIFT.start + timedelta(hours=4)
        assert peak - baseline == pytest.approx(DRIFT.offset, abs=0.5)


def test_a_changed_limits_file_recomputes_the_points_it_touches(builds: Builds, tmp_path: Path) -> None:
    data_dir = Path(str(builds.second.result.warehouse.parent))
    two_hours = next(
        e for e in PLANTED if e.end - e.start == timedelta(hours=2) and e.start.date() == e.end.date()
    )
    limits = tmp_path / "limits.toml"
    limits.write_text(
        f'[[rules]]\nname = "long only"\npoints = ["{two_hours.point_name}"]\nunits = "degF"\n'
        'high = 85\nmin_duration = "3h"\n'
    )
    third = build(data_dir, "third", limits_file=limits)
    before, after = excursions(builds.second), excursions(third)
    assert two_hours.point_name not in after  # 2 h is not long enough for the user's rule
    assert {p: rows for p, rows in after.items()} == {
        p: r for p, r in before.items() if p != two_hours.point_name
    }
    # without the file, the bundled rule applies again
    assert (
        excursions(build(data_dir, "fourth"))[two_hours.point_name][0][:6]
        == before[two_hours.point_name][0][:6]
    )


# --- the limits file -------------------------------------------------------------------------------


def points_frame(*rows: tuple[str, str | None, list[str] | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [("s", name, units, tags) for name, units, tags in rows],
        schema={
            "site_name": pl.String,
            "point_name": pl.String,
            "units": pl.String,
            "marker_tags": pl.List(pl.String),
        },
        orient="row",
    )


def test_a_point_takes_the_first_matching_rule_the_users_before_the_defaults(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(
        '[[rules]]\nname = "lab"\npoints = ["s/LAB-*"]\nunits = "°F"\nlow = 65\nhigh = 75\nmin_duration = "1h30m"\n'
        '[[rules]]\nname = "co2"\ntags = ["co2"]\nhigh = 1100\n'
    )
    points = points_frame(
        ("s/lab-1/zone_temp", "degreesFahrenheit", []),  # name (any case) and units: the user's rule
        ("s/vav-1/zone_temp", "degC", None),  # the default rule in degC
        ("s/vav-2/zone_temp", None, None),  # units unknown: no rule with units applies
        ("s/room-9/air", "ppm", ["co2", "sensor"]),  # tags
        ("s/ahu-1/discharge", "degF", ["discharge", "air", "temp"]),  # the default's tags
        ("s/meter-1/kw", "kW", []),
    )
    resolved = resolve(load_rules(limits), points)
    assert resolved.select("point_name", "rule", "units", "low", "high", "min_duration_s").rows() == [
        ("s/lab-1/zone_temp", "lab", "degF", 65.0, 75.0, 5400),
        ("s/vav-1/zone_temp", "zone temperature", "degC", 15.0, 29.0, 1800),
        ("s/room-9/air", "co2", None, None, 1100.0, 0),
        ("s/ahu-1/discharge", "supply air temperature", "degF", 40.0, 100.0, 900),
    ]
    assert set(resolved["rule_source"]) == {str(limits), "bundled"}
    assert [canonical_units(u) for u in ("°F", "deg F", "degrees-celsius", "in. w.c.", "%RH", "kW")] == [
        "degF", "degF", "degC", "inH2O", "%", "kW",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[rules]\nname = 1", "is not valid TOML"),
        ('[limits]\nname = "x"', "unknown table 'limits': write each rule as a [[rules]] table"),
        ('[[rules]]\nname = "z"\npoints = ["*/zone"]\nhigh = 85\nmax = 3', "rule 1 ('z'): unknown key 'max'"),
        (
            '[[rules]]\npoints = ["*/zone"]\nhigh = 85',
            'rule 1: give the rule a name, e.g. name = "zone temperature"',
        ),
        ('[[rules]]\nname = "z"\nhigh = 85', "rule 1 ('z'): say which points it is for"),
        ('[[rules]]\nname = "z"\npoints = ["*/zone"]', "rule 1 ('z'): give low, high or both"),
        (
            '[[rules]]\nname = "z"\npoints = ["*/zone"]\nlow = 90\nhigh = 85',
            "low (90) must be below high (85)",
        ),
        (
            '[[rules]]\nname = "z"\npoints = ["*/zone"]\nhigh = "85"',
            "high must be a finite number, e.g. high = 60",
        ),
        (
            '[[rules]]\nname = "z"\npoints = ["*/zone"]\nhigh = 85\nmin_duration = "2 days"',
            "min_duration must be",
        ),
        (
            '[[rules]]\nname = "z"\npoints = ["*/zone"]\nhigh = 85\nmin_duration = "25h"',
            "between 0 and 1 day",
        ),
        ('[[rules]]\nname = "z"\npoints = ["*/zone["]\nhigh = 85', "'[' without a closing ']'"),
        (
            '[[rules]]\nname = "z"\npoints = "*/zone"\nhigh = 85\n[[rules]]\nname = "y"\ntags = [1]\nhigh = 1',
            "rule 2 ('y'): tags must be a list",
        ),
    ],
)
def test_a_bad_limits_file_is_one_line_naming_file_rule_and_fix(tmp_path: Path, text: str, says: str) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_rules(limits)
    message = str(raised.value)
    assert message.startswith(f"limits file {limits}") and says in message and "\n" not in message, message


def test_transform_and_run_with_a_bad_limits_file_exit_2_in_one_line_and_build_nothing(
    tmp_path: Path,
) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text('[[rules]]\nname = "z"\npoints = ["*/zone"]\nlow = 90\nhigh = 85\n')
    data_dir = tmp_path / "data"
    for args, env in (
        (["transform", "--data-dir", str(data_dir), "--limits-file", str(limits)], {}),
        (["transform", "--data-dir", str(data_dir)], {"ACE_LIMITS_FILE": str(limits)}),
        (["transform", "--data-dir", str(data_dir), "--limits-file", str(tmp_path / "none.toml")], {}),
        # checked before anything is fetched: no API answers at this address
        (
            [
                "run",
                "--site",
                SITE,
                "--start",
                "2024-03-04",
                "--end",
                "2024-03-05",
                "--data-dir",
                str(data_dir),
            ],
            {
                "ACE_LIMITS_FILE": str(limits),
                "ACEIOT_API_URL": "http://127.0.0.1:9/api",
                "ACEIOT_API_KEY": "k",
            },
        ),
    ):
        result = ace_etl_script(*args, env=env)
        assert result.returncode == 2, result
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: limits file"), line
    assert not (data_dir / "warehouse.duckdb").exists() and not (data_dir / "landing").exists()
